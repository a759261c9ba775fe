--- @include "rcall"

-- Milliseconds until the next delayed task or lease deadline is due (-1: nothing scheduled).
local function next_due(P, now)
  local best = -1
  for _, k in ipairs({P .. ':delayed', P .. ':leases'}) do
    local r = rcall('ZRANGE', k, 0, 0, 'WITHSCORES')
    if r[2] then
      local d = tonumber(r[2]) - now
      if d < 0 then d = 0 end
      if best < 0 or d < best then best = d end
    end
  end
  return best
end
