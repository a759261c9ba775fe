--- @include "rcall"

-- Change a user's count of unfinished (queued, delayed or leased) tasks.
local function live(P, user, n)
  if tonumber(rcall('ZINCRBY', P .. ':live', n, user)) <= 0 then
    rcall('ZREM', P .. ':live', user)
  end
end
