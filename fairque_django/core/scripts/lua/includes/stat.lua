--- @include "hincr"

-- Add n to a counter of the stats hash.
local function stat(P, field, n)
  hincr(P .. ':queue:stats', field, n)
end
