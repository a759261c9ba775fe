-- pop: lease the next task for a worker, fairly.
-- Own partition first (round-robin / stride over its users by virtual time); only when it has no
-- ready user, steal from the partitions in ARGV[6..] among users the worker may steal.
-- Within a user: CRITICAL lane (FIFO) first, then priority 5..1, FIFO within a priority.
-- Before choosing, expired leases are taken back and due delayed tasks are promoted.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P            ARGV[2] worker id        ARGV[3] own partition ('' = none)
-- ARGV[4]  lease ms     ARGV[5] lease token
-- ARGV[6]  steal set key ('' = none: exact steal targets live in that SET)
-- ARGV[7]  '1' = record wait-time metrics
-- ARGV[8]  number of steal patterns K, then K anchored Lua patterns
-- then     the partitions to steal from
-- Returns  {id, body, retries, attempts, deadline_ms, user, stolen(0/1)}
--          or {false, next_due_ms, problems} when nothing is ready
--          (problems: quarantined keys, for the caller to log)
-- @include lib.lua
local P, worker, own = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, token, steal_set = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local metrics = ARGV[7] == '1'
local npat = tonumber(ARGV[8])
local patterns = {}
for i = 1, npat do
  patterns[i] = ARGV[8 + i]
end
local parts = {}
for i = 9 + npat, #ARGV do
  parts[#parts + 1] = ARGV[i]
end
local now = now_ms()
local gate = run_timers(P, now)
local problems = {}

-- Move a key of the wrong type out of the way so that one bad key cannot stop the queue.
local function quarantine(key)
  local dest = P .. ':quarantine:' .. key .. ':' .. now
  redis.call('RENAME', key, dest)
  stat(P, 'quarantined', 1)
  problems[#problems + 1] = key .. ' -> ' .. dest
end

-- Pop the next task id of a user (and whether it came from the critical lane), or nil.
local function take(user)
  local ck, nk = lane_keys(P, user)
  local r = redis.pcall('RPOP', ck)
  if type(r) == 'table' and r.err then
    quarantine(ck)
    r = false
  end
  if r then
    return r, true
  end
  r = redis.pcall('ZPOPMIN', nk)
  if r.err then
    quarantine(nk)
    return nil, false
  end
  return r[1], false
end

-- Whether the user has more ready tasks (the critical lane is known empty when from_critical is false).
local function has_more(user, from_critical)
  local ck, nk = lane_keys(P, user)
  if from_critical then
    local a = redis.pcall('LLEN', ck)
    if type(a) == 'number' and a > 0 then
      return true
    end
  end
  local b = redis.pcall('ZCARD', nk)
  return type(b) == 'number' and b > 0
end

-- Serve one task of user from partition part whose virtual start time is score.
local function serve(part, user, score)
  local rk = P .. ':ready:' .. part
  while true do
    local id, from_critical = take(user)
    if not id then
      redis.call('ZREM', rk, user)
      return nil
    end
    local tk = P .. ':t:' .. id
    local f = redis.pcall('HMGET', tk, 'b', 'w', 'r', 'a', 'e')
    if f.err then
      quarantine(tk)
    elseif f[1] then
      local weight = tonumber(f[2] or '1') or 1
      if weight <= 0 then weight = 1 end
      local finish = score + 1 / weight
      if has_more(user, from_critical) then
        redis.call('ZADD', rk, finish, user)
        wake(P, part)
      else
        redis.call('ZREM', rk, user)
        redis.call('HSET', P .. ':vfinish:' .. part, user, finish)
        redis.call('HSET', P .. ':vclock', part, score)
      end
      if metrics then
        observe(P, 'w', user, now - tonumber(f[5] or now))
      end
      local attempts = tonumber(f[4] or '0') + 1
      local deadline = now + lease_ms
      redis.call('HSET', tk, 'st', 'leased', 'wk', worker, 'tok', token, 'dl', deadline, 'a', attempts,
        'lt', now)
      redis.call('ZADD', P .. ':leases', deadline, id)
      if deadline < gate then
        redis.call('SET', P .. ':gate', deadline)
        gate = deadline
      end
      stat(P, 'popped', 1)
      return {id, f[1], tonumber(f[3] or '0'), attempts, deadline, user}
    elseif redis.call('EXISTS', tk) == 1 then
      if not redis.call('HGET', tk, 'u') then
        redis.call('HSET', tk, 'u', user)
      end
      bury(P, id, now, 'corrupt task: its hash has no body', 'CorruptTaskError', '', 'corrupt')
      problems[#problems + 1] = tk .. ' has no body: dead-lettered'
    end
    -- otherwise an id without a task hash (deleted meanwhile): skip it
  end
end

local function may_steal(user)
  if steal_set ~= '' and redis.call('SISMEMBER', steal_set, user) == 1 then
    return true
  end
  for _, pat in ipairs(patterns) do
    if string.find(user, pat) then
      return true
    end
  end
  return false
end

-- 1. own partition
if own ~= '' then
  local rk = P .. ':ready:' .. own
  for _ = 1, 100 do
    local head = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
    if not head[1] then break end
    local r = serve(own, head[1], tonumber(head[2]))
    if r then
      r[7] = 0
      return r
    end
  end
end

-- 2. steal: the lowest virtual start time among stealable users across the partitions
for _ = 1, 100 do
  local best_part, best_user, best_score = nil, nil, nil
  for _, part in ipairs(parts) do
    local rk = P .. ':ready:' .. part
    local offset = 0
    local found = false
    while not found and offset < 2000 do
      local chunk = redis.call('ZRANGE', rk, offset, offset + 31, 'WITHSCORES')
      if not chunk[1] then break end
      for i = 1, #chunk, 2 do
        local s = tonumber(chunk[i + 1])
        if best_score and s >= best_score then
          found = true
          break
        end
        if may_steal(chunk[i]) then
          best_part, best_user, best_score = part, chunk[i], s
          found = true
          break
        end
      end
      offset = offset + 32
    end
  end
  if not best_user then break end
  local r = serve(best_part, best_user, best_score)
  if r then
    r[7] = 1
    return r
  end
end

return {false, next_due(P, now), problems}
