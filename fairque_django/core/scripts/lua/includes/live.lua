--- @include "rcall"
--- @include "num"
--- @include "repaired"
--- @include "went_idle"

-- Change a user's count of unfinished (queued, delayed or leased) tasks. A count that is not
-- finite (+-inf) is dropped: the count restarts. A count that ends marks the user idle (went_idle).
local function live(P, user, n)
  local c = rcall('ZINCRBY', P .. ':live', n, user)
  if not num(c) then
    repaired(P .. ':live', user, c, 'none')
    rcall('ZREM', P .. ':live', user)
    went_idle(P, user)
  elseif tonumber(c) <= 0 then
    rcall('ZREM', P .. ':live', user)
    went_idle(P, user)
  end
end
