--- @include "rcall"
--- @include "live"
--- @include "stat"

-- Move a task to the dead-letter queue.
local function bury(P, id, now, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local user = rcall('HGET', tk, 'u') or '?'
  rcall('HSET', tk, 'st', 'dead', 'err', err, 'et', etype, 'tb', tb, 'ft', ftype, 'dt', now)
  rcall('HDEL', tk, 'tok', 'wk', 'wt')
  rcall('ZADD', P .. ':dlq', now, id)
  live(P, user, -1)
  stat(P, 'dead', 1)
  stat(P, 'u:' .. user .. ':dead', 1)
end
