--- @include "rcall"
--- @include "leased_later"
--- @include "rejoin"
--- @include "limits_on"

-- A lease of a task of user ended (ack, failure, expiry, release, delete): its leased tasks - 1;
-- a user held out of its rotation may rejoin it (at its fair place). While no limit exists
-- anywhere (limits_on) no user is held: nothing to look up. later: the count is written at the
-- end of the call (leased_later; the caller runs leased_flush), a rejoin sees it at once.
local function lease_ended(P, user, later)
  leased_change(P, user, -1, later)
  if limits_on(P) and rcall('HEXISTS', P .. ':theld', user) == 1 then
    rejoin(P, user)
  end
end
