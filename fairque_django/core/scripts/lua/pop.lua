-- pop: lease the next tasks for a worker slot, fairly; optionally park the slot (hand-off).
-- Own partition first (round-robin / stride over its users by virtual time); only when it has no
-- ready user, steal: the lowest virtual time among the heads of the worker's steal copies of the
-- partitions at the end of ARGV (P:sready:..., the users of a partition's ready set it may take,
-- same scores; kept by every script that changes a ready set, built by steal_sync.lua).
-- Within a user: CRITICAL lane (FIFO) first, then priority 5..1, FIFO within a priority (a lane per
-- priority: includes/lane_keys; stale entries of cancelled tasks are skipped: lane_stale).
-- Before choosing, expired leases are taken back and due delayed tasks are promoted.
-- Keys: every key is P .. a suffix named in core/keys.py (Keys); the hand list is P:hand:<token>.
-- KEYS[1]  P:queue:stats (routes the call to the prefix's slot)
-- ARGV[1]  P, the hash-tagged prefix        ARGV[2]  worker id      ARGV[3] own partition ('' = none)
-- ARGV[4]  lease ms                         ARGV[5]  lease token
-- ARGV[6]  steal digest ('' = steals nothing): the steal copies are used only while
--          P:stealdigest:<worker> is "<digest>|<P:stealepoch>"; otherwise nothing is stolen and
--          problems gets the entry 'resync: steal copies out of date' (the caller syncs them again)
-- ARGV[7]  fairness: 'time' charges the user's run time (ms), 'count' one per task
-- ARGV[8]  count: lease up to this many tasks (each chosen as a single pop would choose it)
-- ARGV[9]  park ms (0 = no park): the slot is about to wait (BLPOP on P:hand:<token>, then the wake
--          lists). When nothing is ready it parks on its own partition for that long, so that a push
--          can lease it a task directly (push.lua); when a task was leased, '-' goes on its hand
--          list so that the wait returns at once
-- ARGV[10] '1' = unpark: the slot's wait ended; unpark it first, and when it is no longer parked
--          (a push leased it a task, or it never parked) lease nothing and answer status 0
-- ARGV[11] number of steal partitions N, then the N partitions to steal from
-- ARGV[12 + N] orphan partitions, tab-separated ('' = none): taken over, their workers having no live
--          heartbeat (core/ops.py); every user of theirs may be taken, by the same virtual-time rule
-- Returns  {due, problems, then 3 fields per task leased: id, body,
--           "retries\tattempts\tlease deadline ms\tstolen (0/1)\tuser"}
--          due: ms until a delayed task or lease is due when no task was leased; -1 when a task was
--          leased or nothing is scheduled; -2 when an unpark found the slot no longer parked (nothing
--          leased). problems: keys moved aside or tasks dead-lettered as corrupt, for the caller to
--          log. (Few reply elements: each costs the client more to read than a split string.)
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lane_keys"
--- @include "includes/lane_stale"
--- @include "includes/lanes_upgrade"
--- @include "includes/pack_header"
--- @include "includes/wake"
--- @include "includes/expected_cost"
--- @include "includes/stat"
--- @include "includes/bury"
--- @include "includes/run_timers"
--- @include "includes/next_due"
--- @include "includes/num"
--- @include "includes/stored_num"
--- @include "includes/repaired"
--- @include "includes/task_problem"
--- @include "includes/steal_ready_key"
--- @include "includes/steal_index_update"
--- @include "includes/steal_invalidate"
--- @include "includes/tenant_block"
--- @include "includes/hold_tenant"
--- @include "includes/lease_taken"
local P, worker, own = ARGV[1], ARGV[2], ARGV[3]
local lease_ms, token, steal_digest = tonumber(ARGV[4]), ARGV[5], ARGV[6]
local timefair = ARGV[7] == 'time'
local want = tonumber(ARGV[8])
local park_ms = tonumber(ARGV[9])
local unpark = ARGV[10] == '1'
local nparts = tonumber(ARGV[11])
local orphans = {}
for part in string.gmatch(ARGV[12 + nparts] or '', '[^\t]+') do
  orphans[#orphans + 1] = part
end
local parts = {}
for i = 12, 11 + nparts do
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
-- (per call, not per task: a number becomes a string at each use; now is whole ms, so its string is
-- the one Redis would make of it)
local now_s, deadline = tostring(now), now + lease_ms
local deadline_s = tostring(deadline)
local gate = run_timers(P, now)
local problems = quarantined -- the keys moved aside, then the tasks dead-lettered as corrupt
local out = {-1, problems}
local leased = {} -- deadline, id pairs of the tasks leased in this call, for one ZADD at the end

-- user -> its first lane that may hold an id, once a pop of this call took one from it (no
-- script call puts an id into a lane before it between: its later pops start there)
local lane_from = {}

-- Pop the next task id of a user (lanes: lane_keys) and the priority of the lane it came from, or
-- nil (the lanes of the former layout are converted first when the lists are empty: lanes_upgrade).
local function take(user, lanes)
  for _ = 1, 2 do
    local first = lane_from[user] or 1
    -- (NORMAL, 3, is the usual priority: one EXISTS spares the RPOPs of the lanes before it)
    if first == 1 and redis.call('EXISTS', lanes[1], lanes[2], lanes[3]) == 0 then
      first = 4
    end
    for i = first, 6 do
      local r = rcall('RPOP', lanes[i])
      if r then
        lane_from[user] = i
        return r, 7 - i
      end
    end
    lane_from[user] = nil
    if not lanes_upgrade(P, user) then
      return nil
    end
  end
  return nil
end

-- user -> its six lanes (lane_keys), then its lane of the former layout: the keys are built once a
-- call, not once a task (never changed once built).
local lanes_of = {}

-- The lanes of user, as lanes_of holds them.
local function user_lanes(user)
  local lanes = lanes_of[user]
  if not lanes then
    local critical, p5, p4, p3, p2, p1 = lane_keys(P, user)
    lanes = {critical, p5, p4, p3, p2, p1, P .. ':queue:user:' .. user .. ':normal'}
    lanes_of[user] = lanes
  end
  return lanes
end

-- Whether a user has more ready tasks (its lanes of a higher priority than prio are known
-- empty; a lane of the former layout, lanes[7], counts). Stale entries count here: a pop that
-- finds only those takes them out (serve).
local function has_more(lanes, prio)
  return redis.call('EXISTS', unpack(lanes, 7 - prio)) > 0
end

-- The own partition's rotation read ahead (one ZRANGE a call, not one a task): view holds the
-- first members of its ready set in order, {score, member} each: all of them when view_all, else
-- every member up to bound (the last one read). serve keeps it in step with its ZADD / ZREM of
-- that set (rotated); anything else that writes the set drops it (view = nil: read again).
local view, view_all, bound = nil, false, nil

-- Whether (s1, m1) comes before (s2, m2) in a sorted set: by score, then by the member's bytes.
local function zbefore(s1, m1, s2, m2)
  if s1 ~= s2 then
    return s1 < s2
  end
  for i = 1, math.min(#m1, #m2) do
    local a, b = string.byte(m1, i), string.byte(m2, i)
    if a ~= b then
      return a < b
    end
  end
  return #m1 < #m2
end

-- User's place in partition part's rotation is now score (nil: it left it): the view follows.
local function rotated(part, user, score)
  if part ~= own or not view then
    return
  end
  for i = 1, #view do
    if view[i][2] == user then
      table.remove(view, i)
      break
    end
  end
  if score and (view_all or not zbefore(bound[1], bound[2], score, user)) then
    local at = #view + 1
    while at > 1 and zbefore(score, user, view[at - 1][1], view[at - 1][2]) do
      at = at - 1
    end
    table.insert(view, at, {score, user})
  end
end

-- The head of the own partition's rotation, {score, member}, or nil when it is empty.
local function own_head()
  if not view or (not view[1] and not view_all) then
    local k = math.max(1, math.min(want - #leased / 2, 64)) -- (the heads this call may still serve)
    local r = rcall('ZRANGE', P .. ':ready:' .. own, 0, k - 1, 'WITHSCORES')
    view, view_all = {}, #r < 2 * k
    for i = 1, #r, 2 do
      view[#view + 1] = {tonumber(r[i + 1]), r[i]}
    end
    bound = view[#view]
  end
  return view[1]
end

-- Dead-letter task id (its key tk) as corrupt, for why; what this call read ahead is read again (a
-- dependent that may run after a failure went into its lane: deps_failed).
local function bury_as_corrupt(id, tk, why)
  bury(P, id, now, why, 'CorruptTaskError', '', 'corrupt')
  lane_from, view = {}, nil
  problems[#problems + 1] = tk .. ': ' .. why .. ' (dead-lettered)'
end

-- A task id whose hash is unusable (wrong type, no body, or garbage in its bookkeeping fields,
-- given as bad: see task_problem): keep what there is, dead-letter it (counters repaired, so
-- that a requeue runs it).
local function bury_corrupt(id, user, part, tk, bad)
  local kind = redis.call('TYPE', tk)['ok']
  local raw = ''
  if kind == 'string' then
    raw = redis.call('GET', tk)
  end
  if kind ~= 'hash' and kind ~= 'none' then
    quarantine(tk)
  end
  rcall('HSET', tk, 'u', user, 'r', 0)
  if not bad or header_problem(rcall('HGET', tk, 'h')) then -- (a header that is fine is kept)
    rcall('HSET', tk, 'h', pack_header(3, 0, part, 1, 0))
  end
  if kind ~= 'hash' or bad then
    rcall('HSET', tk, 'a', 1)
  end
  if kind ~= 'hash' then
    rcall('HSET', tk, 'b', raw)
  end
  local why = 'corrupt task: its hash has no body'
  if bad then
    why = 'corrupt task: ' .. bad
  elseif kind ~= 'hash' then
    why = 'corrupt task: its key held a ' .. kind .. ' instead of a hash'
  end
  bury_as_corrupt(id, tk, why)
end

-- Serve one task of user from partition part whose virtual start time is score: its 3 reply
-- fields go to out. Returns whether a task was leased. A user its limits hold back (paused, at
-- its cap, no rate token: tenant_block) leaves the rotation instead, keeping its place as its
-- finish tag; so does a user that reaches its cap or runs out of tokens with this task.
local function serve(part, user, score, stolen)
  local rk = P .. ':ready:' .. part
  local why, at = tenant_block(P, user, now)
  if why then
    rcall('ZREM', rk, user)
    rotated(part, user, nil)
    steal_index_update(P, part, user, nil)
    if num(score) then rcall('HSET', P .. ':vfinish:' .. part, user, score) end
    hold_tenant(P, part, user, why, at)
    if why == 'rate' and at < gate then gate = at end -- (hold_tenant lowered the stored gate)
    return false
  end
  local lanes = user_lanes(user)
  while true do
    local id, prio = take(user, lanes)
    if not id then -- (its lanes held only stale entries) it leaves the rotation as after its last pop
      rcall('ZREM', rk, user)
      rotated(part, user, nil)
      steal_index_update(P, part, user, nil)
      if num(score) then
        rcall('HSET', P .. ':vfinish:' .. part, user, score)
        if rcall('ZCARD', rk) == 0 then rcall('HSET', P .. ':vclock', part, score) end
      end
      return false
    end
    local tk = P .. ':t:' .. id
    local f = redis.pcall('HMGET', tk, 'b', 'h', 'r', 'a', 'e', 'st', 'u')
    local bad, weight = nil, nil -- (the header is parsed once: its weight comes with the check)
    if not f.err and f[1] then bad, weight = task_problem(f[2], f[3], f[4]) end
    if f.err then
      bury_corrupt(id, user, part, tk)
    elseif f[1] and f[7] == user and not f[6] then
      bury_as_corrupt(id, tk, 'corrupt task: its hash has no state')
    elseif f[1] and (f[6] ~= 'queued' or f[7] ~= user) then
      -- not a queued task of this user: a stale entry (lane_stale: the task was cancelled, its id used
      -- again), or a stray id in its lane: never lease it; it is dropped from the lane
      if not lane_stale(P, user, prio, id) then
        problems[#problems + 1] = tk .. ': in the lane of user ' .. user .. ' but ' .. (f[6] or 'without state') ..
          ' for user ' .. tostring(f[7] or '?') .. ' (dropped from the lane)'
      end
    elseif bad then
      bury_corrupt(id, user, part, tk, bad)
    elseif f[1] then
      if not num(score) then -- a rotation score of +-inf: the user restarts at the partition clock
        local clock = stored_num(P .. ':vclock', part, rcall('HGET', P .. ':vclock', part), 0)
        repaired(rk, user, score, clock)
        score = clock
      end
      local cost = 1
      if timefair then
        cost = expected_cost(P, user)
      end
      local finish = score + cost / weight
      lease_taken(P, user, now, true) -- (the leased counts are written at the end: leased_flush)
      leased_in_call[#leased_in_call + 1] = id
      local more = has_more(lanes, prio)
      if more then why, at = tenant_block(P, user, now) end
      if more and not why then
        rcall('ZADD', rk, finish, user)
        rotated(part, user, finish)
        steal_index_update(P, part, user, finish)
        wake(P, part)
      else
        rcall('ZREM', rk, user)
        rotated(part, user, nil)
        steal_index_update(P, part, user, nil)
        rcall('HSET', P .. ':vfinish:' .. part, user, finish)
        rcall('HSET', P .. ':vclock', part, score)
        if why then hold_tenant(P, part, user, why, at) end
        if why == 'rate' and at < gate then gate = at end
      end
      local attempts = tonumber(f[4] or '0') + 1
      -- 'wt' the wait (ms) of this attempt, observed in the histograms when the attempt ends
      local wait = now - (num(f[5]) or now)
      if timefair then
        rcall('HSET', tk, 'st', 'leased', 'wk', worker, 'tok', token, 'a', attempts, 'lt', now_s, 'wt', wait,
          'ch', cost)
      else
        rcall('HSET', tk, 'st', 'leased', 'wk', worker, 'tok', token, 'a', attempts, 'lt', now_s, 'wt', wait)
      end
      leased[#leased + 1] = deadline
      leased[#leased + 1] = id
      if deadline < gate then
        rcall('SET', P .. ':gate', deadline)
        gate = deadline
      end
      local n = #out
      out[n + 1], out[n + 2] = id, f[1]
      out[n + 3] = (f[3] or '0') .. '\t' .. attempts .. '\t' .. deadline_s .. '\t' .. stolen .. '\t' .. user
      return true
    elseif rcall('EXISTS', tk) == 1 then
      bury_corrupt(id, user, part, tk)
    else -- an id without a task hash: a stale entry (cancelled or deleted, lane_drop), skipped
      lane_stale(P, user, prio, id)
    end
  end
end

-- the steal sources, read at the first steal; whether they are out of date; keys moved aside by then
local sources, stale, sources_moved = nil, false, 0

-- The sources of the steal step, each {partition, sorted set, copy, orphan}: a sorted set whose head
-- is the next user this worker may take from that partition, by virtual time. Per steal partition,
-- the worker's steal copy (copy = true: checked against the ready set before use); none while the
-- copies are out of date (Redis lost them, or a key was moved aside): the caller syncs and pops
-- again. Per orphan partition (orphan takeover), its whole ready set: every user may be taken.
local function steal_sources()
  local found = {}
  if steal_digest ~= '' then
    local seen = redis.call('MGET', P .. ':stealdigest:' .. worker, P .. ':stealepoch')
    if seen[1] ~= steal_digest .. '|' .. (seen[2] or '') then
      problems[#problems + 1] = 'resync: steal copies out of date'
      stale = true
    else
      for _, part in ipairs(parts) do
        found[#found + 1] = {part, steal_ready_key(P, part, worker), true, false}
      end
    end
  end
  for _, part in ipairs(orphans) do
    found[#found + 1] = {part, P .. ':ready:' .. part, false, true}
  end
  return found
end

local orphan_served = 0 -- tasks leased from orphan partitions (counted as stolen too)

-- Lease the next task for this worker (own partition first, then stealing); whether one was.
local function pop_one()
  -- 1. own partition
  if own ~= '' then
    for _ = 1, 100 do
      local head = own_head()
      if not head then break end
      if serve(own, head[2], head[1], 0) then
        return true
      end
    end
  end

  -- 2. steal: the lowest virtual start time among the sources' heads (the earlier source on ties)
  if not sources then
    sources, sources_moved = steal_sources(), #quarantined
  end
  for _ = 1, 100 do
    local best, user, score, moved = nil, nil, nil, #quarantined
    for _, src in ipairs(sources) do
      local head = rcall('ZRANGE', src[2], 0, 0, 'WITHSCORES')
      if head[1] and (not score or tonumber(head[2]) < score) then
        best, user, score = src, head[1], tonumber(head[2])
      end
    end
    if #quarantined > moved then -- a copy held something else (moved aside): all copies out of date
      steal_invalidate(P)
    end
    if #quarantined > sources_moved then -- a key was moved aside since: trust no copy (sync first)
      problems[#problems + 1] = 'resync: steal copies out of date'
      sources, stale, best = {}, true, nil
    end
    if not best then break end
    local real = nil
    if best[3] then -- a copy: the user must be in the ready set, at that virtual time
      real = rcall('ZSCORE', P .. ':ready:' .. best[1], user)
      if not real then
        rcall('ZREM', best[2], user)
      elseif tonumber(real) ~= score then
        rcall('ZADD', best[2], real, user)
      end
    end
    if (not best[3] or (real and tonumber(real) == score)) and serve(best[1], user, score, 1) then
      if best[4] then orphan_served = orphan_served + 1 end
      return true
    end
  end
  return false
end

for _ = 1, want do
  if not pop_one() then break end
end
leased_flush(P)
if #leased > 0 then
  rcall('ZADD', P .. ':leases', unpack(leased))
  stat(P, 'popped', #leased / 2)
  if orphan_served > 0 then stat(P, 'orphan_served', orphan_served) end
else
  out[1] = next_due(P, now)
end
if park_ms > 0 and slot then
  if #leased > 0 or stale then -- the wait about to start returns at once (stale: to sync, then pop)
    local hk = P .. ':hand:' .. token
    rcall('LPUSH', hk, '-')
    rcall('PEXPIRE', hk, park_ms)
  else
    rcall('ZREMRANGEBYSCORE', parked_key, '-inf', now) -- parks whose slots stopped waiting
    rcall('ZADD', parked_key, now + park_ms, slot)
  end
end
return out
