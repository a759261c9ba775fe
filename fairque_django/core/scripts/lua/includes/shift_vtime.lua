--- @include "rcall"
--- @include "steal_index_update"

-- Move a user's virtual time by delta, wherever its position is kept (in rotation or idle).
local function shift_vtime(P, part, user, delta)
  local rk = P .. ':ready:' .. part
  local s = rcall('ZSCORE', rk, user)
  if s then
    local moved = tonumber(s) + delta
    rcall('ZADD', rk, moved, user)
    steal_index_update(P, part, user, moved)
  else
    local fk = P .. ':vfinish:' .. part
    rcall('HSET', fk, user, tonumber(rcall('HGET', fk, user) or '0') + delta)
  end
end
