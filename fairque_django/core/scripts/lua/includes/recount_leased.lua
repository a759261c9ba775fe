--- @include "rcall"

-- Ids leased by this call that are not in P:leases yet (pop adds them all at its end).
local leased_in_call = {}

-- Count again, from P:leases (and this call's leases), the tasks user has leased, and store it
-- in P:tleased: the repair of a leased counter that holds garbage or went negative. O(leases).
local function recount_leased(P, user)
  local n = 0
  local seen = {}
  for _, id in ipairs(rcall('ZRANGE', P .. ':leases', 0, -1)) do
    seen[id] = true
    local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'st')
    if f[1] == user and f[2] == 'leased' then n = n + 1 end
  end
  for _, id in ipairs(leased_in_call) do
    if not seen[id] and rcall('HGET', P .. ':t:' .. id, 'u') == user then n = n + 1 end
  end
  if n > 0 then
    rcall('HSET', P .. ':tleased', user, n)
  else
    rcall('HDEL', P .. ':tleased', user)
  end
  return n
end
