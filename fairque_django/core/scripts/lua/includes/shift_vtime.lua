--- @include "rcall"
--- @include "num"
--- @include "stored_num"

-- Move a user's virtual time by delta, wherever its position is kept (in rotation or idle).
-- (A score of +-inf in the rotation is left for pop to repair.)
local function shift_vtime(P, part, user, delta)
  local rk = P .. ':ready:' .. part
  local raw = rcall('ZSCORE', rk, user)
  if raw then
    local s = num(raw)
    if s then
      rcall('ZADD', rk, s + delta, user)
    end
  else
    local fk = P .. ':vfinish:' .. part
    rcall('HSET', fk, user, stored_num(fk, user, rcall('HGET', fk, user), 0) + delta)
  end
end
