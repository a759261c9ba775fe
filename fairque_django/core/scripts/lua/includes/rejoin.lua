--- @include "rcall"
--- @include "num"
--- @include "queued_part"
--- @include "tenant_block"
--- @include "hold_tenant"
--- @include "join_rotation"
--- @include "steal_index_update"

-- Look at user's place again after its limits, pause or leases changed: with nothing queued it
-- is held no longer; in its rotation but blocked now (tenant_block), it leaves it keeping its
-- virtual start time as its finish tag (it rejoins at its fair place); out of it, it joins
-- (join_rotation, which holds it again if it is still blocked).
local function rejoin(P, user)
  local part = queued_part(P, user)
  if not part then
    if rcall('HDEL', P .. ':theld', user) == 1 then rcall('ZREM', P .. ':tnext', user) end
    return
  end
  local rk = P .. ':ready:' .. part
  local score = rcall('ZSCORE', rk, user)
  if not score then
    join_rotation(P, part, user)
    return
  end
  local why, at = tenant_block(P, user, nil)
  if why then
    rcall('ZREM', rk, user)
    steal_index_update(P, part, user, nil)
    if num(score) then rcall('HSET', P .. ':vfinish:' .. part, user, score) end
    hold_tenant(P, part, user, why, at)
  end
end
