--- @include "gone_add"

-- Queued task id of user (priority prio) left its lane without being popped: its entry is stale.
local function lane_drop(P, user, prio, id)
  local gk = gone_key(P, user)
  gone_add(gk, id, 1)
  gone_add(gk, '\t' .. prio, 1)
end
