--- @include "rcall"

-- rcall(command, key, list[first..last]) (no key: the list's elements are the keys) in calls of
-- at most 1,000 elements, the most unpack passes at once; first, last: 1 and #list when nil.
-- Returns the sum of the integer replies (EXISTS: how many exist); nothing is called for an empty range.
local function chunked(command, key, list, first, last)
  first, last = first or 1, last or #list
  local sum = 0
  for from = first, last, 1000 do
    local to = math.min(from + 999, last)
    local r
    if key then
      r = rcall(command, key, unpack(list, from, to))
    else
      r = rcall(command, unpack(list, from, to))
    end
    sum = sum + (tonumber(r) or 0)
  end
  return sum
end
