--- @include "rcall"
--- @include "header"
--- @include "stat"
--- @include "bury"
--- @include "enqueue_ready"
--- @include "lower_gate"

-- Count a failed attempt: schedule a retry after backoff_ms, or bury the task.
-- Returns 'retry' or 'dead'.
local function fail_attempt(P, id, now, backoff_ms, force_dead, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, maxr = f[1] or '?', header(f[2]).m
  local retries = rcall('HINCRBY', tk, 'r', 1)
  rcall('ZREM', P .. ':leases', id)
  stat(P, 'failed', 1)
  stat(P, 'u:' .. user .. ':failed', 1)
  rcall('HSET', tk, 'err', err, 'et', etype, 'ft', ftype)
  if force_dead or retries > maxr then
    bury(P, id, now, err, etype, tb, ftype)
    return 'dead'
  end
  stat(P, 'retried', 1)
  rcall('HDEL', tk, 'tok', 'wk', 'wt')
  if backoff_ms <= 0 then
    enqueue_ready(P, id, true)
  else
    rcall('HSET', tk, 'st', 'delayed')
    rcall('ZADD', P .. ':delayed', now + backoff_ms, id)
    lower_gate(P, now + backoff_ms)
  end
  return 'retry'
end
