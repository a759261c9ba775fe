--- @include "rcall"
--- @include "join_rotation"

-- Put a user into its partition's rotation unless it is already there.
local function mark_ready(P, part, user)
  if not rcall('ZSCORE', P .. ':ready:' .. part, user) then
    join_rotation(P, part, user)
  end
end
