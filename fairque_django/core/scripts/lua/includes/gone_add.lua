--- @include "rcall"
--- @include "num"

-- The user's gone hash (P:queue:user:<u>:gone): id -> how many stale entries of that id its lanes
-- hold (a queued task cancelled or deleted, its id left in its lane), '\t<p>' -> how many stale
-- entries lane p holds. A lane's exact count of queued tasks is its length less the latter.
local function gone_key(P, user)
  return P .. ':queue:user:' .. user .. ':gone'
end

-- Add n to a count of the gone hash gk; a count that falls to 0 goes (garbage counts as 0).
local function gone_add(gk, field, n)
  local c = (num(rcall('HGET', gk, field)) or 0) + n
  if c >= 1 then
    rcall('HSET', gk, field, c)
  else
    rcall('HDEL', gk, field)
  end
end
