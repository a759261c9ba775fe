--- @include "rcall"
--- @include "forget"
--- @include "live"
--- @include "stat"
--- @include "cancelled_record"
--- @include "release_unique"
--- @include "lease_ended"

-- Finish task id of user as cancelled -- the one way every cancel ends (cancel, cancel_tenant, a
-- flagged lease's end, a dependency that failed: cancel_waiting): its hash and lease are forgotten
-- (the id is free again), a lease it held ends (its tenant's cap frees: lease_ended), it leaves
-- the user's live count (a waiting task, not in it, leaves the lists of its dependencies), counts
-- once in 'cancelled', its unique key is released and its outcome CANCELLED kept for ttl seconds
-- (cancelled_record; why / etype: its error, nil for a plain cancel). The caller has taken it out
-- of its lane or the delayed set, and cancels its dependents (deps_failed) when this returns true.
local function cancel_done(P, id, user, now, ttl, why, etype)
  local f = rcall('HMGET', P .. ':t:' .. id, 'st', 'a', 'b', 'uk', 'hd', 'dn')
  local leased = rcall('ZSCORE', P .. ':leases', id)
  if f[1] == 'waiting' and f[6] then -- its dependencies list it no more (its id is free again)
    for dep in string.gmatch(f[6], '%S+') do
      rcall('SREM', P .. ':deps:' .. dep, id)
    end
  end
  forget(P, id)
  if leased then
    lease_ended(P, user)
  end
  if f[1] ~= 'waiting' then
    live(P, user, -1)
  end
  stat(P, 'cancelled', 1)
  stat(P, 'u:' .. user .. ':cancelled', 1)
  release_unique(P, id, f[4])
  cancelled_record(P, id, user, f[2], f[3], now, ttl, why, etype)
  return f[5] and true or false
end
