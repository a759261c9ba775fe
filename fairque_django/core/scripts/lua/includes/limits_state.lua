--- @include "rcall"

-- Whether any tenant limit may apply, remembered for the rest of this call (nil: not known yet):
-- see limits_on.
local limits_memo = nil

-- Look at every source of tenant limits again and store the answer in P:tlimon: '1' when a tenant
-- is paused, held out of its rotation or given runtime limits, or the settings mirror defines a
-- default cap, a pattern or an entry; else '0' (then the hot scripts skip every limit lookup).
-- Written by the scripts that change limits (tenant, limits_sync) and when the flag is missing or
-- holds garbage. Returns the answer. O(settings entries).
local function limits_state(P)
  local on = rcall('HLEN', P .. ':tpaused') > 0 or rcall('HLEN', P .. ':tlimits') > 0
    or rcall('HLEN', P .. ':theld') > 0
  if not on then
    for _, field in ipairs(rcall('HKEYS', P .. ':limitcfg')) do
      if field ~= 'd' and (field ~= 'def' and field ~= 'p' or (rcall('HGET', P .. ':limitcfg', field) or '') ~= '') then
        on = true
        break
      end
    end
  end
  local v = '0'
  if on then v = '1' end
  rcall('SET', P .. ':tlimon', v)
  limits_memo = on
  return on
end
