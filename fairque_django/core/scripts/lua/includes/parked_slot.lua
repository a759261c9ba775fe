--- @include "rcall"
--- @include "lane_keys"
--- @include "now_ms"

-- An idle worker slot parked on partition part, taken off the parked set, when nothing in the
-- partition is ready and user's lanes are empty (so a pop would choose the task at hand too);
-- nil otherwise. Also returns the server time (ms) when a slot was found.
local function parked_slot(P, part, user)
  if rcall('ZCARD', P .. ':ready:' .. part) > 0 or rcall('EXISTS', lane_keys(P, user)) > 0 then
    return nil
  end
  local pk = P .. ':parked:' .. part
  local now = now_ms()
  local slot = rcall('ZRANGEBYSCORE', pk, now, '+inf', 'LIMIT', 0, 1)[1]
  if slot then
    rcall('ZREM', pk, slot)
  end
  return slot, now
end
