--- @include "rcall"
--- @include "header"
--- @include "lane_drop"
--- @include "lanes_upgrade"
--- @include "leave_rotation"
--- @include "cancel_done"
--- @include "deps_failed"

-- Cancel task id (only a task of user when user is not ''). A queued, delayed or waiting (for its
-- dependencies) task is taken out of its lane (lazily: lane_drop; its user leaves the rotation when that was its
-- last ready task) or the delayed set and finished as cancelled (cancel_done: unique key
-- released), its dependents cancelled (deps_failed); a leased one gets the cancel flag 'cx' (its
-- value: the result ttl, for when it ends), which its worker sees at its next heartbeat
-- (extend.lua) and which makes its ack, failure, lease expiry or release finish it as cancelled
-- (cancel_leased) -- unless flag_running is false. Idempotent.
-- Returns 'cancelled', 'cancelling' (flagged now or before), 'running' (leased, not flagged),
-- 'finished' (dead: the DLQ API deletes it), 'not_found' (no such task, or another user's).
local function cancel_task(P, id, user, flag_running, now, ttl)
  local tk = P .. ':t:' .. id
  local f = redis.pcall('HMGET', tk, 'u', 'h', 'st')
  if f.err or not f[1] or (user ~= '' and f[1] ~= user) then
    return 'not_found'
  end
  local owner, st, part = f[1], f[3], nil
  if st == 'leased' then
    if not flag_running then
      return 'running'
    end
    rcall('HSET', tk, 'cx', ttl)
    return 'cancelling'
  elseif st == 'dead' then
    return 'finished'
  elseif st == 'queued' then
    local h = header(f[2])
    lanes_upgrade(P, owner)
    lane_drop(P, owner, h.p, id) -- (its id stays in its lane, stale, until a pop takes it)
    part = h.q or '~pool'
  elseif st == 'delayed' then
    rcall('ZREM', P .. ':delayed', id)
  elseif st ~= 'waiting' then -- (a waiting task is in no lane)
    return 'not_found' -- no known state: not a task this call may touch
  end
  local cascade = cancel_done(P, id, owner, now, ttl)
  if part then -- (once its hash is gone: leave_rotation looks at the lanes' entries)
    leave_rotation(P, part, owner)
  end
  if cascade then
    deps_failed(P, id, now)
  end
  return 'cancelled'
end
