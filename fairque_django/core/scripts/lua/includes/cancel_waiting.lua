--- @include "rcall"
--- @include "num"
--- @include "stat"
--- @include "release_unique"

-- Cancel a task that waits for its dependencies (state 'cancelled', kept for its keep time so
-- that its handle reads CANCELLED; its unique key released). It is in no lane and not live.
local function cancel_waiting(P, id, now, why)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'uk', 'kp')
  local user = f[1] or '?'
  rcall('HSET', tk, 'st', 'cancelled', 'err', why, 'et', 'DependencyFailed', 'ft', 'cancelled', 'dt', now)
  rcall('HDEL', tk, 'dw')
  release_unique(P, id, f[2])
  rcall('PEXPIRE', tk, math.max(num(f[3]) or 86400000, 1000))
  stat(P, 'cancelled', 1)
  stat(P, 'u:' .. user .. ':cancelled', 1)
end
