--- @include "rcall"
--- @include "num"
--- @include "stored_num"
--- @include "steal_index_update"

-- Move a user's virtual time by delta, wherever its position is kept (in rotation or idle).
-- (A score of +-inf in the rotation is left for pop to repair.)
local function shift_vtime(P, part, user, delta)
  local rk = P .. ':ready:' .. part
  local raw = rcall('ZSCORE', rk, user)
  if raw then
    local s = num(raw)
    if s then
      local moved = s + delta
      rcall('ZADD', rk, moved, user)
      steal_index_update(P, part, user, moved)
    end
  else
    local fk = P .. ':vfinish:' .. part
    rcall('HSET', fk, user, stored_num(fk, user, rcall('HGET', fk, user), 0) + delta)
  end
end
