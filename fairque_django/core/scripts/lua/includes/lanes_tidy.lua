--- @include "rcall"
--- @include "num"
--- @include "repaired"
--- @include "lane_keys"
--- @include "gone_add"

-- The number of tasks queued in user's lanes (exact: stale entries not counted; the former zset
-- lane counted too until it is converted). A stale count that is no number (or < 0) counts 0.
local function queued_count(P, user)
  local lanes = {lane_keys(P, user)}
  local n = rcall('ZCARD', P .. ':queue:user:' .. user .. ':normal')
  for i = 1, 6 do
    n = n + rcall('LLEN', lanes[i])
  end
  local stale = rcall('HMGET', gone_key(P, user), '\t6', '\t5', '\t4', '\t3', '\t2', '\t1')
  for i = 1, 6 do
    n = n - math.max(0, num(stale[i]) or 0)
  end
  return math.max(0, n)
end

-- When the user's lanes hold no queued task, they go with their stale entries (and the gone hash);
-- returns whether they did. Called where a removal may have left only stale entries. The entries
-- are looked at first (as many as were counted stale since they last emptied): when one is a
-- queued task of the user after all (the stale counts held garbage), they stay, and the counts
-- are repaired.
local function lanes_tidy(P, user)
  if queued_count(P, user) > 0 then
    return false
  end
  local lanes, gk = {lane_keys(P, user)}, gone_key(P, user)
  local live, stale = false, {}
  for i = 1, 6 do
    stale[i] = 0
    for _, id in ipairs(rcall('LRANGE', lanes[i], 0, -1)) do
      local f = redis.pcall('HMGET', P .. ':t:' .. id, 'u', 'st')
      if f.err or (f[1] == user and f[2] == 'queued') then -- (a key of another type: for a pop to bury)
        live = true
      else
        stale[i] = stale[i] + 1
      end
    end
  end
  if live then
    for i = 1, 6 do
      local field = '\t' .. (7 - i)
      local was = rcall('HGET', gk, field)
      if (num(was) or 0) ~= stale[i] then
        repaired(gk, field, was, stale[i])
        if stale[i] > 0 then rcall('HSET', gk, field, stale[i]) else rcall('HDEL', gk, field) end
      end
    end
    return false
  end
  rcall('DEL', gk)
  for i = 1, 6 do
    rcall('DEL', lanes[i])
  end
  return true
end
