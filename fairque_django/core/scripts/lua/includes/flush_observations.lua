--- @include "hincr"

-- Write the everyone histogram increments gathered by observe() (a batch writes each field once).
local function flush_observations(P, totals)
  for field, n in pairs(totals) do
    hincr(P .. ':m:~all', field, n)
  end
end
