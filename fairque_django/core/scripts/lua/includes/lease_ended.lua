--- @include "rcall"
--- @include "leased_add"
--- @include "leased_later"
--- @include "rejoin"
--- @include "limits_on"

-- A lease of a task of user ended (ack, failure, expiry, release, delete): its leased tasks - 1;
-- a user held out of its rotation may rejoin it (at its fair place). While no limit exists
-- anywhere (limits_on) no user is held: nothing to look up. later: the count is written at the
-- end of the call (leased_later; the caller runs leased_flush), a rejoin sees it at once.
local function lease_ended(P, user, later)
  if later then
    leased_later(user, -1)
  else
    leased_add(P, user, -1)
  end
  if limits_on(P) and rcall('HEXISTS', P .. ':theld', user) == 1 then
    rejoin(P, user)
  end
end
