--- @include "rcall"

-- woke: whether this call asked for a wake-up (push.lua reports it to a sharded producer, which
-- then wakes the workers waiting on the home wake list: see core/sharded.py).
local woke = false
-- The partitions this call left a wake-up for (no script takes one: once per partition is enough).
local woken = {}

-- Leave one wake-up token for the idle workers of a partition (BLPOP), unless one waits already.
local function wake(P, part)
  woke = true
  if woken[part] then
    return
  end
  woken[part] = true
  local wk = P .. ':wake:' .. part
  if rcall('LLEN', wk) == 0 then
    rcall('LPUSH', wk, '1')
  end
end
