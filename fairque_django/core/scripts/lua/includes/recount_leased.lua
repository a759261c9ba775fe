--- @include "rcall"

-- Ids leased by this call that are not in P:leases yet (pop adds them all at its end).
local leased_in_call = {}
-- Ids whose lease ended in this call but whose hash and lease entry are still there (complete
-- forgets its tasks all at once at its end): not leased any more.
local unleased_in_call = {}
-- user -> leases begun (+) or ended (-) in this call and not yet added to P:tleased (a batch
-- writes each user's count once: leased_later, leased_flush); whoever reads a leased count adds it.
local leased_delta = {}

-- Count again, from P:leases (and this call's leases), the tasks user has leased, and store it
-- in P:tleased: the repair of a leased counter that holds garbage or went negative. O(leases).
-- The count stored is the true one: nothing of this call is left to add for user.
local function recount_leased(P, user)
  local n = 0
  local seen = {}
  for _, id in ipairs(rcall('ZRANGE', P .. ':leases', 0, -1)) do
    seen[id] = true
    if not unleased_in_call[id] then
      local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'st')
      if f[1] == user and f[2] == 'leased' then n = n + 1 end
    end
  end
  for _, id in ipairs(leased_in_call) do
    if not seen[id] and rcall('HGET', P .. ':t:' .. id, 'u') == user then n = n + 1 end
  end
  if n > 0 then
    rcall('HSET', P .. ':tleased', user, n)
  else
    rcall('HDEL', P .. ':tleased', user)
  end
  leased_delta[user] = nil
  return n
end
