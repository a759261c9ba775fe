-- A user's lanes, LISTs of task ids: CRITICAL (priority 6), then priorities 5..1, in the order pop
-- serves them (lane_keys); each FIFO: LPUSH, RPOP (a retried or released task goes back to the
-- head: RPUSH). Removal is lazy: a queued task cancelled or deleted leaves its id in its lane,
-- counted in the user's gone hash (gone_add) until a pop takes it out (lane_stale).
local function lane_key(P, user, prio)
  if prio == 6 then
    return P .. ':queue:user:' .. user .. ':critical'
  end
  return P .. ':queue:user:' .. user .. ':p' .. prio
end

-- The six lanes of a user in serving order (critical, p5 .. p1): lane i holds priority 7 - i.
local function lane_keys(P, user)
  local base = P .. ':queue:user:' .. user
  return base .. ':critical', base .. ':p5', base .. ':p4', base .. ':p3', base .. ':p2', base .. ':p1'
end
