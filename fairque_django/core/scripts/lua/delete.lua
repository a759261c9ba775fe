-- delete: remove tasks wherever they are (queued, delayed, leased or dead), or dead ones only.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] 'dead': only tasks that are dead now (delete_dead, purge; a DLQ entry of a
--          task that is not dead is dropped, the task kept) | 'any'
-- then     the task ids, or '*' and a score: up to 1000 dead tasks per call (a purge step, see dlq_ids)
-- Returns  the ids deleted
--- @include "includes/rcall"
--- @include "includes/header"
--- @include "includes/lane_drop"
--- @include "includes/lanes_tidy"
--- @include "includes/lanes_upgrade"
--- @include "includes/forget"
--- @include "includes/live"
--- @include "includes/stat"
--- @include "includes/dlq_ids"
--- @include "includes/task_finished"
--- @include "includes/lease_ended"
local P, dead_only = ARGV[1], ARGV[2] == 'dead'
local ids = dlq_ids(P, 3)
local done = {}
local queued = {} -- the users whose queued tasks were deleted: lanes left with stale entries only go
for _, id in ipairs(ids) do
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h', 'st', 'uk', 'hd')
  if (dead_only and not f.err and f[3] ~= 'dead') or (not f.err and not f[1]) then
    rcall('ZREM', P .. ':dlq', id) -- not dead (just requeued, say), or gone: not a dead task
  elseif f.err then
    rcall('DEL', tk)
    rcall('ZREM', P .. ':dlq', id)
    done[#done + 1] = id
  else
    if f[3] == 'queued' then -- its id stays in its lane, stale, until a pop takes it
      lanes_upgrade(P, f[1])
      lane_drop(P, f[1], header(f[2]).p, id)
      queued[f[1]] = true
    end
    rcall('ZREM', P .. ':delayed', id)
    rcall('ZREM', P .. ':dlq', id)
    local was_leased = f[3] == 'leased' and rcall('ZSCORE', P .. ':leases', id)
    forget(P, id)
    if was_leased then
      lease_ended(P, f[1])
    end
    if f[3] ~= 'dead' and f[3] ~= 'waiting' then -- (those are not live)
      live(P, f[1], -1)
    end
    if f[4] or f[5] then -- a deleted task counts as cancelled: its dependents are cancelled
      task_finished(P, id, f[4], f[5], false)
    end
    stat(P, 'deleted', 1)
    done[#done + 1] = id
  end
end
for user in pairs(queued) do
  lanes_tidy(P, user)
end
return done
