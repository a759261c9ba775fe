--- @include "rcall"
--- @include "joining_start"
--- @include "wake"
--- @include "steal_index_add"

-- Put a user that is not in its partition's rotation into it.
local function join_rotation(P, part, user)
  local rk = P .. ':ready:' .. part
  local start, had_finish = joining_start(P, part, user, rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')[2])
  if had_finish then
    rcall('HDEL', P .. ':vfinish:' .. part, user)
  end
  rcall('ZADD', rk, start, user)
  steal_index_add(P, part, user, start)
  wake(P, part)
end
