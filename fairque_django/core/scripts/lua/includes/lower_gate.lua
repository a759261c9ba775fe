--- @include "rcall"

-- Make sure pop looks at timers (delayed tasks, leases) no later than at ms.
local function lower_gate(P, ms)
  local gate = tonumber(rcall('GET', P .. ':gate') or '0')
  if gate == 0 or ms < gate then
    rcall('SET', P .. ':gate', ms)
  end
end
