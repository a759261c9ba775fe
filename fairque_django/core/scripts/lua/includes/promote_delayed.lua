--- @include "rcall"
--- @include "enqueue_ready"

-- Move delayed tasks whose time has come into their user's lane (at the back of the critical
-- lane: FIFO by the time they became ready; normal-lane tasks keep their enqueue order).
local function promote_delayed(P, now, limit)
  local ids = rcall('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    rcall('ZREM', P .. ':delayed', id)
    if rcall('EXISTS', P .. ':t:' .. id) == 1 then
      enqueue_ready(P, id, false)
    end
  end
  return #ids
end
