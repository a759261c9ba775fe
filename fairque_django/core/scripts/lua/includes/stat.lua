--- @include "rcall"

-- Add n to a counter of the stats hash.
local function stat(P, field, n)
  rcall('HINCRBY', P .. ':queue:stats', field, n)
end
