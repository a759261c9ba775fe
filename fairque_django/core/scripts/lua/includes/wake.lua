--- @include "rcall"

-- Leave one wake-up token for the idle workers of a partition (BLPOP), unless one waits already.
local function wake(P, part)
  local wk = P .. ':wake:' .. part
  if rcall('LLEN', wk) == 0 then
    rcall('LPUSH', wk, '1')
  end
end
