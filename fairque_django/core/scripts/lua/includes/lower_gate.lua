--- @include "rcall"
--- @include "stored_num"

-- Make sure pop looks at timers (delayed tasks, leases) no later than at ms.
local function lower_gate(P, ms)
  local gk = P .. ':gate'
  local gate = stored_num(gk, nil, rcall('GET', gk), 0)
  if gate == 0 or ms < gate then
    rcall('SET', gk, ms)
  end
end
