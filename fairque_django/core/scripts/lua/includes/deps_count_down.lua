--- @include "rcall"
--- @include "hincr"
--- @include "deps_ready"

-- One dependency of task id is met: when it waits for no other, it becomes ready. A task that is
-- not waiting (gone, cancelled) is left alone; a counter holding garbage restarts (hincr), so the
-- task runs rather than stalls.
local function deps_count_down(P, id, now)
  local tk = P .. ':t:' .. id
  if rcall('HGET', tk, 'st') ~= 'waiting' then
    return
  end
  if hincr(tk, 'dw', -1) <= 0 then
    deps_ready(P, id, now)
  end
end
