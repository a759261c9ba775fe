--- @include "rcall"
--- @include "live"
--- @include "stat"
--- @include "task_finished"

-- Move a task to the dead-letter queue.
local function bury(P, id, now, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'uk', 'hd')
  local user = f[1] or '?'
  rcall('HSET', tk, 'st', 'dead', 'err', err, 'et', etype, 'tb', tb, 'ft', ftype, 'dt', now)
  rcall('HDEL', tk, 'tok', 'wk', 'wt')
  rcall('ZADD', P .. ':dlq', now, id)
  live(P, user, -1)
  stat(P, 'dead', 1)
  stat(P, 'u:' .. user .. ':dead', 1)
  if f[2] or f[3] then -- its unique key is released, its dependents cancelled (or run: allow_failure)
    task_finished(P, id, f[2], f[3], false)
  end
end
