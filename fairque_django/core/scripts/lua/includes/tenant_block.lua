--- @include "rcall"
--- @include "num"
--- @include "stored_num"
--- @include "repaired"
--- @include "now_ms"
--- @include "tenant_limits"
--- @include "recount_leased"
--- @include "leased_add"
--- @include "limits_on"

-- Whether each user looked up in this call is paused (tenant.lua forgets the one it changes).
local tenant_paused_memo = {}

-- Why user may not be leased a task now: 'paused', 'cap' (its leased tasks reached its cap) or
-- 'rate' (then also the ms at which its next token is due), or nil. now: server ms (nil: read it
-- only when a rate applies). A leased count that holds garbage is counted again (recount_leased);
-- the leases this call has not written yet (leased_delta) count.
-- No lookup at all while no tenant limit exists anywhere (limits_on).
local function tenant_block(P, user, now)
  if not limits_on(P) then
    return nil
  end
  local paused = tenant_paused_memo[user]
  if paused == nil then
    paused = rcall('HEXISTS', P .. ':tpaused', user) == 1
    tenant_paused_memo[user] = paused
  end
  if paused then
    return 'paused'
  end
  local lim = tenant_limits(P, user)
  if lim.c then
    local raw = rcall('HGET', P .. ':tleased', user)
    local n = num(raw)
    if raw and (not n or n < 0 or n % 1 ~= 0) then
      repaired(P .. ':tleased', user, raw, 'recounted')
      n = recount_leased(P, user)
    end
    if leased_delta[user] then -- (leases this call counts at its end: leased_later)
      n = (n or 0) + leased_delta[user]
      if n < 0 then n = leased_add(P, user, 0) end -- (written now: recounted)
    end
    if (n or 0) >= lim.c then
      return 'cap'
    end
  end
  if lim.t then
    local rk = P .. ':trate'
    local tat = stored_num(rk, user, rcall('HGET', rk, user), 0)
    local at = tat - (lim.b - 1) * lim.t
    if at > (now or now_ms()) then
      return 'rate', at
    end
  end
  return nil
end
