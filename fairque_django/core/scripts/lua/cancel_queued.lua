-- cancel_queued: cancel up to a limit of a user's queued tasks, taken from the heads of its lanes
-- (the caller repeats it until none is left: bounded work per call). Ids in a lane that are not a
-- queued task of the user (stray, or stale: cancelled or deleted, see lane_stale) are dropped from
-- it, as a pop would; a task key of the wrong type is moved aside and counted as cancelled. Safe to
-- repeat (it cancels the next ones of the same user).
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] result ttl (s)    ARGV[3] user    ARGV[4] limit (ids per call)
-- Returns  {tasks cancelled, ids still in the user's lanes}
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lane_keys"
--- @include "includes/lane_stale"
--- @include "includes/lanes_upgrade"
--- @include "includes/header"
--- @include "includes/leave_rotation"
--- @include "includes/cancel_done"
--- @include "includes/deps_failed"
local P, ttl, user, limit = ARGV[1], tonumber(ARGV[2]), ARGV[3], math.max(1, tonumber(ARGV[4]))
local now = now_ms()
lanes_upgrade(P, user)
local lanes = {lane_keys(P, user)}
local ids, prios = {}, {}
for i = 1, 6 do
  if #ids >= limit then break end
  local taken = rcall('LRANGE', lanes[i], -(limit - #ids), -1)
  if #taken > 0 then
    rcall('LTRIM', lanes[i], 0, -#taken - 1)
  end
  for j = #taken, 1, -1 do -- from the head (the RPOP end)
    ids[#ids + 1] = taken[j]
    prios[#ids] = 7 - i
  end
end
local n, part = 0, nil
for k, id in ipairs(ids) do
  local f = redis.pcall('HMGET', P .. ':t:' .. id, 'u', 'h', 'st')
  if f.err then -- not a hash: moved aside (data kept), counted as the user's task cancelled
    quarantine(P .. ':t:' .. id)
    cancel_done(P, id, user, now, ttl)
    n = n + 1
  elseif f[1] == user and f[3] == 'queued' then
    part = header(f[2]).q or '~pool'
    if cancel_done(P, id, user, now, ttl) then -- (its unique key released: cancel_done)
      deps_failed(P, id, now) -- its dependents are cancelled
    end
    n = n + 1
  else -- a stale entry (its count goes), or a stray id: dropped, as a pop would
    lane_stale(P, user, prios[k], id)
  end
end
if part then
  leave_rotation(P, part, user)
end
local left = 0
for i = 1, 6 do
  left = left + rcall('LLEN', lanes[i])
end
return {n, left}
