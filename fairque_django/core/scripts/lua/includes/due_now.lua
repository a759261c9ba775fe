--- @include "rcall"
--- @include "repaired"

-- Repair the timer scores of +inf (a lease that would never expire, a delayed task that would
-- never run): they become due now. A finite score, however far, is a real deadline.
local function due_now(P, now)
  for _, k in ipairs({P .. ':delayed', P .. ':leases', P .. ':tnext'}) do
    local ids = rcall('ZRANGEBYSCORE', k, '+inf', '+inf', 'LIMIT', 0, 50)
    for _, id in ipairs(ids) do
      rcall('ZADD', k, now, id)
      repaired(k, id, 'inf', now)
    end
  end
end
