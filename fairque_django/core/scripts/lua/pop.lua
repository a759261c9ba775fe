-- pop: lease the next tasks for a worker slot, fairly; optionally park the slot (hand-off).
-- Own partition first (round-robin / stride over its users by virtual time); only when it has no
-- ready user, steal from the partitions at the end of ARGV among users the worker may steal.
-- Within a user: CRITICAL lane (FIFO) first, then priority 5..1, FIFO within a priority.
-- Before choosing, expired leases are taken back and due delayed tasks are promoted.
-- Keys: every key is P .. a suffix named in core/keys.py (Keys); the hand list is P:hand:<token>.
-- KEYS[1]  P:queue:stats (routes the call to the prefix's slot)
-- ARGV[1]  P, the hash-tagged prefix        ARGV[2]  worker id      ARGV[3] own partition ('' = none)
-- ARGV[4]  lease ms                         ARGV[5]  lease token
-- ARGV[6]  steal set key ('' = none): a SET of the users the worker may steal by exact name
-- ARGV[7]  fairness: 'time' charges the user's run time (ms), 'count' one per task
-- ARGV[8]  count: lease up to this many tasks (each chosen as a single pop would choose it)
-- ARGV[9]  park ms (0 = no park): the slot is about to wait (BLPOP on P:hand:<token>, then the wake
--          lists). When nothing is ready it parks on its own partition for that long, so that a push
--          can lease it a task directly (push.lua); when a task was leased, '-' goes on its hand
--          list so that the wait returns at once
-- ARGV[10] '1' = unpark: the slot's wait ended; unpark it first, and when it is no longer parked
--          (a push leased it a task, or it never parked) lease nothing and answer status 0
-- ARGV[11] orphan partitions, tab-separated ('' = none): taken over, their workers having no live
--          heartbeat (core/ops.py); the head of each competes with the steal candidates by score
-- ARGV[12] number of steal patterns K, then K anchored Lua patterns, then the partitions to steal from
-- Returns  {due, problems, then 3 fields per task leased: id, body,
--           "retries\tattempts\tlease deadline ms\tstolen (0/1)\tuser"}
--          due: ms until a delayed task or lease is due when no task was leased; -1 when a task was
--          leased or nothing is scheduled; -2 when an unpark found the slot no longer parked (nothing
--          leased). problems: keys moved aside or tasks dead-lettered as corrupt, for the caller to
--          log. (Few reply elements: each costs the client more to read than a split string.)
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lane_keys"
--- @include "includes/header"
--- @include "includes/pack_header"
--- @include "includes/wake"
--- @include "includes/expected_cost"
--- @include "includes/stat"
--- @include "includes/bury"
--- @include "includes/run_timers"
--- @include "includes/next_due"
local P, worker, own = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, token, steal_set = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local timefair = ARGV[7] == 'time'
local want = tonumber(ARGV[8])
local park_ms = tonumber(ARGV[9])
local unpark = ARGV[10] == '1'
local orphans = {}
for part in string.gmatch(ARGV[11], '[^\t]+') do
  orphans[#orphans + 1] = part
end
local npat = tonumber(ARGV[12])
local patterns = {}
for i = 1, npat do
  patterns[i] = ARGV[12 + i]
end
local parts = {}
for i = 13 + npat, #ARGV do
  parts[#parts + 1] = ARGV[i]
end
local parked_key, slot = P .. ':parked:' .. own, nil
if own ~= '' and (park_ms > 0 or unpark) then
  local mode = '-'
  if timefair then mode = 't' end
  slot = token .. '\t' .. worker .. '\t' .. lease_ms .. '\t' .. mode
  if park_ms == 0 and rcall('ZREM', parked_key, slot) == 0 then
    return {-2, quarantined}
  end
end
local now = now_ms()
local gate = run_timers(P, now)
local problems = quarantined -- the keys moved aside, then the tasks dead-lettered as corrupt
local out = {-1, problems}
local leased = {} -- deadline, id pairs of the tasks leased in this call, for one ZADD at the end

-- Pop the next task id of a user (and whether it came from the critical lane), or nil.
local function take(user)
  local ck, nk = lane_keys(P, user)
  local r = rcall('RPOP', ck)
  if r then
    return r, true
  end
  return rcall('ZPOPMIN', nk)[1], false
end

-- Whether the user has more ready tasks (the critical lane is known empty when from_critical is false).
local function has_more(user, from_critical)
  local ck, nk = lane_keys(P, user)
  if from_critical and rcall('LLEN', ck) > 0 then
    return true
  end
  return rcall('ZCARD', nk) > 0
end

-- A task id whose hash is unusable (wrong type, or no body): keep what there is, dead-letter it.
local function bury_corrupt(id, user, part, tk)
  local kind = redis.call('TYPE', tk)['ok']
  local raw = ''
  if kind == 'string' then
    raw = redis.call('GET', tk)
  end
  if kind ~= 'hash' and kind ~= 'none' then
    quarantine(tk)
  end
  rcall('HSET', tk, 'u', user, 'h', pack_header(3, 0, part, 1, 0), 'r', 0)
  if kind ~= 'hash' then
    rcall('HSET', tk, 'b', raw, 'a', 1)
  end
  local why = 'corrupt task: its hash has no body'
  if kind ~= 'hash' then
    why = 'corrupt task: its key held a ' .. kind .. ' instead of a hash'
  end
  bury(P, id, now, why, 'CorruptTaskError', '', 'corrupt')
  problems[#problems + 1] = tk .. ': ' .. why .. ' (dead-lettered)'
end

-- Serve one task of user from partition part whose virtual start time is score: its 3 reply
-- fields go to out. Returns whether a task was leased.
local function serve(part, user, score, stolen)
  local rk = P .. ':ready:' .. part
  while true do
    local id, from_critical = take(user)
    if not id then
      rcall('ZREM', rk, user)
      return false
    end
    local tk = P .. ':t:' .. id
    local f = redis.pcall('HMGET', tk, 'b', 'h', 'r', 'a', 'e')
    if f.err then
      bury_corrupt(id, user, part, tk)
    elseif f[1] then
      local weight = header(f[2]).w
      if weight <= 0 then weight = 1 end
      local cost = 1
      if timefair then
        cost = expected_cost(P, user)
      end
      local finish = score + cost / weight
      if has_more(user, from_critical) then
        rcall('ZADD', rk, finish, user)
        wake(P, part)
      else
        rcall('ZREM', rk, user)
        rcall('HSET', P .. ':vfinish:' .. part, user, finish)
        rcall('HSET', P .. ':vclock', part, score)
      end
      local attempts = tonumber(f[4] or '0') + 1
      local deadline = now + lease_ms
      -- 'wt' the wait (ms) of this attempt, observed in the histograms when the attempt ends
      local wait = now - (tonumber(f[5]) or now)
      if timefair then
        rcall('HSET', tk, 'st', 'leased', 'wk', worker, 'tok', token, 'a', attempts, 'lt', now, 'wt', wait,
          'ch', cost)
      else
        rcall('HSET', tk, 'st', 'leased', 'wk', worker, 'tok', token, 'a', attempts, 'lt', now, 'wt', wait)
      end
      leased[#leased + 1] = deadline
      leased[#leased + 1] = id
      if deadline < gate then
        rcall('SET', P .. ':gate', deadline)
        gate = deadline
      end
      local n = #out
      out[n + 1], out[n + 2] = id, f[1]
      out[n + 3] = (f[3] or '0') .. '\t' .. attempts .. '\t' .. deadline .. '\t' .. stolen .. '\t' .. user
      return true
    elseif rcall('EXISTS', tk) == 1 then
      bury_corrupt(id, user, part, tk)
    end
    -- otherwise an id without a task hash (deleted meanwhile): skip it
  end
end

local function may_steal(user)
  if steal_set ~= '' and rcall('SISMEMBER', steal_set, user) == 1 then
    return true
  end
  for _, pat in ipairs(patterns) do
    if string.find(user, pat) then
      return true
    end
  end
  return false
end

-- Orphan takeover: the best candidate against the heads (lowest virtual start) of the orphan
-- partitions, whose every user may be taken; the 4th value says the best is an orphan head.
local orphan_served = 0
local function orphan_candidate(best_part, best_user, best_score)
  local orphan = false
  for _, part in ipairs(orphans) do
    local head = rcall('ZRANGE', P .. ':ready:' .. part, 0, 0, 'WITHSCORES')
    if head[1] and (not best_score or tonumber(head[2]) < best_score) then
      best_part, best_user, best_score, orphan = part, head[1], tonumber(head[2]), true
    end
  end
  return best_part, best_user, best_score, orphan
end

-- Lease the next task for this worker (own partition first, then stealing); whether one was.
local function pop_one()
  -- 1. own partition
  if own ~= '' then
    local rk = P .. ':ready:' .. own
    for _ = 1, 100 do
      local head = rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')
      if not head[1] then break end
      if serve(own, head[1], tonumber(head[2]), 0) then
        return true
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
        local chunk = rcall('ZRANGE', rk, offset, offset + 31, 'WITHSCORES')
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
    local orphan
    best_part, best_user, best_score, orphan = orphan_candidate(best_part, best_user, best_score)
    if not best_user then break end
    if serve(best_part, best_user, best_score, 1) then
      if orphan then orphan_served = orphan_served + 1 end
      return true
    end
  end
  return false
end

for _ = 1, want do
  if not pop_one() then break end
end
if #leased > 0 then
  rcall('ZADD', P .. ':leases', unpack(leased))
  stat(P, 'popped', #leased / 2)
  if orphan_served > 0 then stat(P, 'orphan_served', orphan_served) end
else
  out[1] = next_due(P, now)
end
if park_ms > 0 and slot then
  if #leased > 0 then -- the wait about to start returns at once
    local hk = P .. ':hand:' .. token
    rcall('LPUSH', hk, '-')
    rcall('PEXPIRE', hk, park_ms)
  else
    rcall('ZREMRANGEBYSCORE', parked_key, '-inf', now) -- parks whose slots stopped waiting
    rcall('ZADD', parked_key, now + park_ms, slot)
  end
end
return out
