--- @include "rcall"
--- @include "num"

-- Milliseconds until the next delayed task, lease deadline or rate token (P:tnext) is due (-1:
-- nothing scheduled).
-- A score of +inf is no due time (run_timers repairs it).
local function next_due(P, now)
  local best = -1
  for _, k in ipairs({P .. ':delayed', P .. ':leases', P .. ':tnext'}) do
    local r = rcall('ZRANGE', k, 0, 0, 'WITHSCORES')
    local at = num(r[2])
    if r[2] and not at and (tonumber(r[2]) or 0) < 0 then at = now end -- -inf: due now
    if at then
      local d = at - now
      if d < 0 then d = 0 end
      if best < 0 or d < best then best = d end
    end
  end
  return best
end
