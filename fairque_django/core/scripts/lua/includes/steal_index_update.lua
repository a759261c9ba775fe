--- @include "rcall"
--- @include "steal_ready_key"
--- @include "steal_invalidate"
--- @include "stealers"

-- User moved to virtual time score in partition part's ready set (nil: it left the set): do the
-- same in the steal copies of part that hold it. O(stealers of part); the registry is read once
-- per call (stealers).
local function steal_index_update(P, part, user, score)
  local moved = #quarantined
  for _, w in ipairs(stealers(P, part)) do
    local key = steal_ready_key(P, part, w)
    if score then
      rcall('ZADD', key, 'XX', score, user)
    else
      rcall('ZREM', key, user)
    end
  end
  if #quarantined > moved then
    steal_invalidate(P)
  end
end
