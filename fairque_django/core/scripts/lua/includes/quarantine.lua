-- Keys moved aside during this script call ("key -> new name"), for the caller to log. The one
-- per-call record the includes keep: every keyed call may quarantine, and threading a list
-- through each of them would cost every call; commands only read it (into their reply).
local quarantined = {}

-- Move a key of the wrong type out of the way (data kept) so that one bad key cannot stop the
-- queue. The prefix P is the key's own hash tag, so no caller has to pass it.
local function quarantine(key)
  local P = string.match(key, '^%b{}')
  local n = redis.pcall('INCR', P .. ':quarantined')
  if type(n) ~= 'number' then -- the counter holds garbage: restart it from the clock (a fresh name)
    local t = redis.call('TIME')
    n = tonumber(t[1]) * 1000000 + tonumber(t[2])
    redis.pcall('DEL', P .. ':quarantined')
    redis.pcall('SET', P .. ':quarantined', n)
  end
  local dest = P .. ':quarantine:' .. key .. ':' .. n
  redis.call('RENAME', key, dest)
  quarantined[#quarantined + 1] = key .. ' -> ' .. dest
  local stats = P .. ':queue:stats'
  if type(redis.pcall('HINCRBY', stats, 'quarantined', 1)) ~= 'number' then
    quarantine(stats)  -- the stats key itself is bad: move it too; the fresh one counts this
  end
end
