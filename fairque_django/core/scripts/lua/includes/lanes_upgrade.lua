--- @include "rcall"
--- @include "lane_keys"
--- @include "chunked"

-- Upgrading: before the lanes were lists, priorities 1-5 of a user were one ZSET,
-- P:queue:user:<u>:normal, score (6 - priority) * 2^40 + seq. The first script that writes to or
-- pops from a user's lanes converts it: its ids go to the heads of the lists of their priorities,
-- in their order (they are older than anything pushed since), and the zset goes. A key of another
-- type there is moved aside (rcall). Returns whether there was one to convert.
local function lanes_upgrade(P, user)
  local nk = P .. ':queue:user:' .. user .. ':normal'
  if redis.call('EXISTS', nk) == 0 then
    return false
  end
  local old = rcall('ZRANGE', nk, 0, -1, 'WITHSCORES')
  local per = {{}, {}, {}, {}, {}}
  for i = #old - 1, 1, -2 do -- from the last served to the first: RPUSH puts each ahead of the one before
    local prio = 6 - math.floor((tonumber(old[i + 1]) or 3298534883328) / 1099511627776)
    if prio ~= prio or prio < 1 or prio > 5 then prio = 3 end
    local ids = per[prio]
    ids[#ids + 1] = old[i]
  end
  for prio = 1, 5 do
    chunked('RPUSH', lane_key(P, user, prio), per[prio])
  end
  rcall('DEL', nk)
  return true
end
