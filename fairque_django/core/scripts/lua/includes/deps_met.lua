--- @include "rcall"
--- @include "deps_count_down"

-- Task id succeeded: each task waiting on it counts it as met (and becomes ready on its last).
local function deps_met(P, id, now)
  local dk = P .. ':deps:' .. id
  local ds = rcall('SMEMBERS', dk)
  table.sort(ds) -- (a set has no order: dependents become ready in id order)
  rcall('DEL', dk)
  for _, d in ipairs(ds) do
    deps_count_down(P, d, now)
  end
end
