--- @include "rcall"
--- @include "lanes_tidy"
--- @include "num"
--- @include "steal_index_update"

-- A task of user left its lane without being served (cancelled): when the user has no ready task
-- left (its lanes, holding only stale entries, go: lanes_tidy), it leaves partition part's
-- rotation as after its last pop (steal copies kept in step), keeping its place: its virtual time
-- becomes its finish tag (it cannot come back earlier), and the partition clock when the rotation
-- is now empty. A user held out of the rotation by its tenant limits (P:theld, see hold_tenant) is
-- held no longer: it has nothing to wait for.
local function leave_rotation(P, part, user)
  if not lanes_tidy(P, user) then
    return
  end
  if rcall('HDEL', P .. ':theld', user) == 1 then
    rcall('ZREM', P .. ':tnext', user)
  end
  local rk = P .. ':ready:' .. part
  local score = rcall('ZSCORE', rk, user)
  if not score then
    return
  end
  rcall('ZREM', rk, user)
  steal_index_update(P, part, user, nil)
  if num(score) then
    rcall('HSET', P .. ':vfinish:' .. part, user, score)
    if rcall('ZCARD', rk) == 0 then
      rcall('HSET', P .. ':vclock', part, score)
    end
  end
end
