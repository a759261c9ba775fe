--- @include "rcall"
--- @include "rejoin"

-- Rate-limited users whose next token is due by now rejoin their rotation (up to limit of them).
local function rate_timers(P, now, limit)
  local users = rcall('ZRANGEBYSCORE', P .. ':tnext', '-inf', now, 'LIMIT', 0, limit)
  for _, user in ipairs(users) do
    rcall('ZREM', P .. ':tnext', user)
    rejoin(P, user)
  end
  return #users
end
