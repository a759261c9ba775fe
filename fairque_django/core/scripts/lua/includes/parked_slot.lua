--- @include "rcall"
--- @include "lane_keys"
--- @include "now_ms"
--- @include "repaired"
--- @include "tenant_block"

-- An idle worker slot parked on partition part, taken off the parked set, when nothing in the
-- partition is ready, user's lanes are empty (stale entries too) and its limits let it have a task now (so a pop
-- would choose the task at hand too);
-- nil otherwise. Also returns the server time (ms) when a slot was found. A member that is not
-- "token\tworker\tlease_ms\tfairness" is dropped (reported) and the next one tried.
local function parked_slot(P, part, user)
  if rcall('ZCARD', P .. ':ready:' .. part) > 0
      or redis.call('EXISTS', P .. ':queue:user:' .. user .. ':normal', lane_keys(P, user)) > 0 then
    return nil
  end
  if tenant_block(P, user, nil) then -- held back by its limits: it does not join (join_rotation)
    return nil
  end
  local pk = P .. ':parked:' .. part
  local now = now_ms()
  for _ = 1, 10 do
    local slot = rcall('ZRANGEBYSCORE', pk, now, '+inf', 'LIMIT', 0, 1)[1]
    if not slot then
      return nil
    end
    rcall('ZREM', pk, slot)
    if string.match(slot, '^[^\t]+\t[^\t]+\t%d+\t[^\t]*$') then
      return slot, now
    end
    repaired(pk, slot, 'a malformed slot', 'removed')
  end
  return nil
end
