--- @include "rcall"
--- @include "num"
--- @include "repaired"

-- Change a user's count of unfinished (queued, delayed or leased) tasks. A count that is not
-- finite (+-inf) is dropped: the count restarts.
local function live(P, user, n)
  local c = rcall('ZINCRBY', P .. ':live', n, user)
  if not num(c) then
    repaired(P .. ':live', user, c, 'none')
    rcall('ZREM', P .. ':live', user)
  elseif tonumber(c) <= 0 then
    rcall('ZREM', P .. ':live', user)
  end
end
