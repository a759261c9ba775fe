--- @include "rcall"
--- @include "leased_add"
--- @include "rejoin"

-- A lease of a task of user ended (ack, failure, expiry, release, delete): its leased tasks - 1;
-- a user held out of its rotation may rejoin it (at its fair place).
local function lease_ended(P, user)
  leased_add(P, user, -1)
  if rcall('HEXISTS', P .. ':theld', user) == 1 then
    rejoin(P, user)
  end
end
