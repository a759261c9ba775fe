--- @include "num"

-- Why a task's packed header h (see header) is unusable, or nil when it is fine, and then also its
-- weight (> 0: what header(h).w reads; pop needs no second parse).
local function header_problem(h)
  local p, s, q, w, m = string.match(h or '', '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  if not p then
    return "its header 'h' is not priority, seq, partition, weight, max_retries"
  end
  p, s, w, m = num(p), num(s), num(w), num(m)
  if not (p and p >= 1 and p <= 6 and p % 1 == 0 and s and q ~= '' and w and w > 0 and m and m >= 0) then
    return "its header 'h' holds an invalid priority, seq, partition, weight or max_retries"
  end
  return nil, w
end
