--- @include "rcall"
--- @include "stored_num"
--- @include "tenant_limits"
--- @include "leased_add"

-- Count a lease of a task of user at server time now: its leased tasks + 1 and, under a rate
-- limit, one token taken (GCRA: the theoretical arrival time moves one interval on).
local function lease_taken(P, user, now)
  leased_add(P, user, 1)
  local lim = tenant_limits(P, user)
  if lim.t then
    local rk = P .. ':trate'
    local tat = stored_num(rk, user, rcall('HGET', rk, user), 0)
    if tat < now then tat = now end
    rcall('HSET', rk, user, tat + lim.t)
  end
end
