--- @include "recount_leased"
--- @include "leased_add"

-- Users in the order leased_later first saw them in this call (their counts are written in it).
local leased_order = {}
-- While true, leased_flush leaves the counts to a later leased_flush of this call (ack_pop.lua: the
-- acknowledgements' counts are written with the pop's, once per user).
local leased_flush_later = false

-- Add n to the tasks user has leased at the end of this call (leased_flush): a batch of leases
-- or acks writes each user's count once. Until then a reader of the count adds leased_delta
-- (tenant_block), so a cap holds between two tasks of one call as it would one call a task.
local function leased_later(user, n)
  local d = leased_delta[user]
  if d == nil then
    leased_order[#leased_order + 1] = user
  end
  leased_delta[user] = (d or 0) + n
end

-- Add n to the tasks user has leased: now (leased_add), or at the end of this call when later
-- (leased_later; the caller runs leased_flush).
local function leased_change(P, user, n, later)
  if later then
    leased_later(user, n)
  else
    leased_add(P, user, n)
  end
end

-- Write the counts leased_later gathered (leased_add: one HINCRBY per user, garbage or a
-- negative count recounted).
local function leased_flush(P)
  if leased_flush_later then return end
  for _, user in ipairs(leased_order) do
    if leased_delta[user] then
      leased_add(P, user, 0) -- (adds the user's leased_delta)
    end
  end
  leased_order = {}
end
