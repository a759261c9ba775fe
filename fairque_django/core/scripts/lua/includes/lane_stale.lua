--- @include "rcall"
--- @include "num"
--- @include "gone_add"

-- An entry id, taken out of lane prio of user, is not a queued task of the user: whether it was a
-- stale entry (counted in the gone hash, which counts it no more), not a stray id.
local function lane_stale(P, user, prio, id)
  local gk = gone_key(P, user)
  local c = num(rcall('HGET', gk, id))
  if not c or c < 1 then
    return false
  end
  gone_add(gk, id, -1)
  gone_add(gk, '\t' .. prio, -1)
  return true
end
