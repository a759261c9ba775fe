--- @include "rcall"
--- @include "header"
--- @include "header_problem"
--- @include "counter_problem"
--- @include "pack_header"
--- @include "stat"
--- @include "bury"
--- @include "enqueue_ready"
--- @include "lower_gate"
--- @include "lease_ended"

-- Count a failed attempt: schedule a retry after backoff_ms, or bury the task. A task whose
-- retry counter or header holds garbage (its retry budget is unknown) is dead-lettered as
-- corrupt, counters repaired, so that a requeue runs it again.
-- Returns 'retry' or 'dead'.
local function fail_attempt(P, id, now, backoff_ms, force_dead, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h', 'r', 'a')
  local user, h = f[1] or '?', header(f[2])
  local why = counter_problem('r', f[3]) or header_problem(f[2]) or counter_problem('a', f[4])
  if why then
    rcall('HSET', tk, 'r', 0, 'h', pack_header(h.p, h.s, h.q or '~pool', h.w, h.m))
    if counter_problem('a', f[4]) then
      rcall('HSET', tk, 'a', 1)
    end
    force_dead, err, etype, ftype = true, 'corrupt task: ' .. why .. ' (at a failure: ' .. err .. ')',
      'CorruptTaskError', 'corrupt'
  end
  local retries = rcall('HINCRBY', tk, 'r', 1)
  if rcall('ZREM', P .. ':leases', id) == 1 then
    lease_ended(P, user)
  end
  stat(P, 'failed', 1)
  stat(P, 'u:' .. user .. ':failed', 1)
  rcall('HSET', tk, 'err', err, 'et', etype, 'ft', ftype)
  if force_dead or retries > h.m then
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
