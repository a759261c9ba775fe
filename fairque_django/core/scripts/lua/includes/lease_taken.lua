--- @include "rcall"
--- @include "stored_num"
--- @include "tenant_limits"
--- @include "leased_later"
--- @include "limits_on"

-- Count a lease of a task of user at server time now: its leased tasks + 1 and, under a rate
-- limit, one token taken (GCRA: the theoretical arrival time moves one interval on). A lease up
-- to min(interval / 2, 50 ms) after its token was due keeps the schedule (the tolerance of a
-- worker's wake-up and round trip), so the rate does not drift below its value; after an idle
-- spell the next token may come that much early. later: the count is written at the end of the
-- call (leased_later; the caller runs leased_flush).
local function lease_taken(P, user, now, later)
  leased_change(P, user, 1, later)
  if not limits_on(P) then return end -- no limits anywhere: no rate (the count above is kept)
  local lim = tenant_limits(P, user)
  if lim.t then
    local rk = P .. ':trate'
    local tat = stored_num(rk, user, rcall('HGET', rk, user), 0)
    local late = now - math.min(lim.t / 2, 50)
    if tat < late then tat = late end
    rcall('HSET', rk, user, tat + lim.t)
  end
end
