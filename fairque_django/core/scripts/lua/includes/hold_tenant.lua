--- @include "rcall"
--- @include "lower_gate"
--- @include "wake"

-- Record that user, with work queued, stays out of its rotation (see tenant_block): why in
-- P:theld; for 'rate' a timer at ms at (P:tnext, run by run_timers) and a wake-up for partition
-- part, so that an idle slot pops, learns the due time and waits for it (no polling).
local function hold_tenant(P, part, user, why, at)
  rcall('HSET', P .. ':theld', user, why)
  if why == 'rate' then
    if rcall('ZADD', P .. ':tnext', 'CH', at, user) == 1 then
      lower_gate(P, at)
      wake(P, part)
    end
  else
    rcall('ZREM', P .. ':tnext', user)
  end
end
