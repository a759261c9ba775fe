--- @include "num"

-- A task's packed header (field 'h'): {p priority, s seq, q partition, w weight, m max_retries};
-- a part that holds no usable value reads as its default (see header_problem).
local function header(h)
  local p, s, q, w, m = string.match(h or '', '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  p, w = num(p) or 3, num(w) or 1
  if p < 1 or p > 6 or p % 1 ~= 0 then p = 3 end
  if w <= 0 then w = 1 end
  if q == '' then q = nil end
  return {p = p, s = num(s) or 0, q = q, w = w, m = math.max(0, math.floor(num(m) or 0))}
end
