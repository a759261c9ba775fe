-- metrics_flush: write the wait / run histogram increments and completions per minute a worker
-- gathered from its acknowledgements (core/scripts/buffered.py; complete.lua with ARGV[3] '2'), one
-- call per tick instead of a few commands per task.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P
-- then     triples: hash (a user for P:m:<user>, '~all' or '~tput'), field, increment (an integer)
-- Returns  the keys repaired or moved aside (hincr), for the caller to log
--- @include "includes/hincr"
local P = ARGV[1]
for i = 2, #ARGV - 2, 3 do
  local n = tonumber(ARGV[i + 2])
  if n then
    hincr(P .. ':m:' .. ARGV[i], ARGV[i + 1], n)
  end
end
return quarantined
