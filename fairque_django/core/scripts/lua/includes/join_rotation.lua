--- @include "rcall"
--- @include "joining_start"
--- @include "wake"
--- @include "steal_index_add"
--- @include "tenant_block"
--- @include "hold_tenant"

-- Put a user that is not in its partition's rotation into it, unless its tenant limits hold it
-- back (paused, at its cap, waiting for a rate token: see tenant_block), which is recorded
-- instead (hold_tenant; its finish tag stays: it joins at its fair place later). Returns whether
-- it joined.
local function join_rotation(P, part, user)
  local why, at = tenant_block(P, user, nil)
  if why then
    hold_tenant(P, part, user, why, at)
    return false
  end
  if rcall('HDEL', P .. ':theld', user) == 1 then
    rcall('ZREM', P .. ':tnext', user)
  end
  local rk = P .. ':ready:' .. part
  local start, had_finish = joining_start(P, part, user, rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')[2])
  if had_finish then
    rcall('HDEL', P .. ':vfinish:' .. part, user)
  end
  rcall('ZADD', rk, start, user)
  steal_index_add(P, part, user, start)
  wake(P, part)
  return true
end
