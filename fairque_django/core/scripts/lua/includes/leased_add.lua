--- @include "rcall"
--- @include "repaired"
--- @include "recount_leased"

-- Add n to the tasks user has leased (P:tleased; a count that reaches 0 stays: the tenant's next
-- lease needs no new field, and the retention sweep removes it with the tenant's state). A field that
-- holds no count, or a count that would go negative, is counted again from the leases
-- (recount_leased) and reported. What this call left to add for user (leased_delta) is added
-- with n. Returns the count.
local function leased_add(P, user, n)
  local key = P .. ':tleased'
  n = n + (leased_delta[user] or 0)
  leased_delta[user] = nil
  local r = redis.pcall('HINCRBY', key, user, n)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      quarantine(key)
    else
      repaired(key, user, redis.call('HGET', key, user), 'recounted')
    end
    return recount_leased(P, user)
  end
  if r < 0 then
    repaired(key, user, r - n, 'recounted')
    return recount_leased(P, user)
  end
  return r
end
