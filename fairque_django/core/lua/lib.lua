-- Shared helpers, included at the top of every script by the loader (fairque_django/core/scripts.py).
-- Key layout (P is the hash-tagged prefix "{fq}", so every key lives in one cluster slot):
--   P:t:<id>                        HASH  task: b body, u user, h header "priority\tseq\tpartition\t
--                                         weight\tmax_retries" (few fields keep the hash cheap to write),
--                                         r failures, a attempts (absent = 0), st state, wk worker,
--                                         tok lease token (deadline: P:leases), e ready since (ms),
--                                         lt leased at (ms), wt wait of the attempt (ms), err/et/tb/ft/dt on failure
--   P:queue:user:<u>:critical       LIST  CRITICAL lane (LPUSH, RPOP: FIFO)
--   P:queue:user:<u>:normal         ZSET  priorities 1-5, score (6-p)*2^40 + seq
--   P:ready:<part>                  ZSET  users with ready work in a partition, score = virtual start time
--   P:vclock                        HASH  partition -> virtual time when its rotation last emptied
--   P:gate                          STRING earliest ms at which a delayed task or a lease may be due
--   P:vfinish:<part>                HASH  idle user -> its last finish tag (keeps round-robin honest)
--   P:wake:<part>                   LIST  at most one wake-up token for idle workers (BLPOP)
--   P:parked:<part>                 ZSET  idle worker slots waiting on the partition, member
--                                         "token\tworker\tlease_ms\tflags", score = until when (ms)
--   P:hand:<token>                  LIST  a task a push leased straight to a parked slot
--                                         ("id\tuser\tdeadline_ms\tbody"), or '-' (wake at once)
--   P:delayed / P:leases / P:dlq    ZSET  task id -> ready time / lease deadline / death time (ms)
--   P:live                          ZSET  user -> tasks not yet finished (queued, delayed, leased)
--   P:runavg                        HASH  user -> moving average run time in ms (fairness "time")
--   P:queue:stats                   HASH  counters (no total pushed: the read side sums p:<n>:pushed)
--   P:layout                        STRING the layout version of the stored tasks (migrate.lua)
--   P:m:<user> / P:m:~all           HASH  wait ('w:<le>', 'w:sum') and run ('r:<le>', 'r:sum') histograms in ms
--   P:m:~tput                       HASH  minute (epoch ms / 60000) -> tasks completed (user ids never start with ~)
--   P:quarantine:<key>:<n>          any   a key that held the wrong type of value, moved aside
--   P:quarantined                   STRING counter numbering the keys moved aside
local PRIO_SPAN = 1099511627776 -- 2^40: priority band width in the normal-lane score
local QP = ARGV[1]               -- every script's ARGV[1] is the prefix P
local PROBLEMS = {}              -- keys moved aside during this call, for the caller to log

-- Move a key of the wrong type out of the way (data kept) so that one bad key cannot stop the queue.
local function quarantine(key)
  local n = redis.pcall('INCR', QP .. ':quarantined')
  if type(n) ~= 'number' then
    n = redis.call('TIME')[2]
  end
  local dest = QP .. ':quarantine:' .. key .. ':' .. n
  redis.call('RENAME', key, dest)
  PROBLEMS[#PROBLEMS + 1] = key .. ' -> ' .. dest
  local stats = QP .. ':queue:stats'
  if type(redis.pcall('HINCRBY', stats, 'quarantined', 1)) ~= 'number' then
    quarantine(stats)  -- the stats key itself is bad: move it too; the fresh one counts this
  end
end

-- redis.call on a data key; a WRONGTYPE error quarantines the key and the call is made again.
-- Scripts do not roll back, so an error after a write must never happen: every keyed call goes here.
local function rcall(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      quarantine(key)
      return redis.call(cmd, key, ...)
    end
    return redis.error_reply(r.err)
  end
  return r
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function lane_keys(P, user)
  local base = P .. ':queue:user:' .. user
  return base .. ':critical', base .. ':normal'
end

-- A task's packed header (field 'h'): {p priority, s seq, q partition, w weight, m max_retries}.
local function header(h)
  local p, s, q, w, m = string.match(h or '', '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  return {p = tonumber(p) or 3, s = tonumber(s) or 0, q = q, w = tonumber(w) or 1, m = tonumber(m) or 0}
end

local function pack_header(prio, seq, part, weight, maxr)
  return prio .. '\t' .. seq .. '\t' .. part .. '\t' .. weight .. '\t' .. maxr
end

local function normal_score(prio, seq)
  return (6 - prio) * PRIO_SPAN + seq
end

local function wake(P, part)
  local wk = P .. ':wake:' .. part
  if rcall('LLEN', wk) == 0 then
    rcall('LPUSH', wk, '1')
  end
end

-- The virtual start time of a user joining partition part's rotation, whose head has score head
-- (nil: the rotation is empty): the current round, or the user's last finish tag when later.
-- Also returns whether the user had a finish tag (kept in P:vfinish:<part> while it was idle).
local function joining_start(P, part, user, head)
  local start = tonumber(head or rcall('HGET', P .. ':vclock', part) or '0')
  local finish = rcall('HGET', P .. ':vfinish:' .. part, user)
  if finish and tonumber(finish) > start then
    start = tonumber(finish)
  end
  return start, not not finish
end

-- Put a user that is not in its partition's rotation into it.
local function join_rotation(P, part, user)
  local rk = P .. ':ready:' .. part
  local start, had_finish = joining_start(P, part, user, rcall('ZRANGE', rk, 0, 0, 'WITHSCORES')[2])
  if had_finish then
    rcall('HDEL', P .. ':vfinish:' .. part, user)
  end
  rcall('ZADD', rk, start, user)
  wake(P, part)
end

-- Put a user into its partition's rotation unless it is already there.
local function mark_ready(P, part, user)
  if not rcall('ZSCORE', P .. ':ready:' .. part, user) then
    join_rotation(P, part, user)
  end
end

-- Place a task (whose hash exists) in its user's lane. front=true puts a CRITICAL task at the
-- head of its lane (normal-lane tasks keep their enqueue order through their score).
local function enqueue_ready(P, id, front)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, h = f[1], header(f[2])
  local prio, seq, part = h.p, h.s, h.q or '~pool'
  local ck, nk = lane_keys(P, user)
  if prio == 6 then
    if front then
      rcall('RPUSH', ck, id)
    else
      rcall('LPUSH', ck, id)
    end
  else
    rcall('ZADD', nk, normal_score(prio, seq), id)
  end
  rcall('HSET', tk, 'st', 'queued', 'e', now_ms())
  mark_ready(P, part, user)
end

-- Make sure pop looks at timers (delayed tasks, leases) no later than at ms.
local function lower_gate(P, ms)
  local gate = tonumber(rcall('GET', P .. ':gate') or '0')
  if gate == 0 or ms < gate then
    rcall('SET', P .. ':gate', ms)
  end
end

-- Fixed histogram bounds (ms), shared by every worker so histograms can be summed.
local BUCKETS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
-- kind -> bucket index -> histogram field (literals: a script's text runs on every call)
local FIELDS = {
  w = {'w:5', 'w:10', 'w:25', 'w:50', 'w:100', 'w:250', 'w:500', 'w:1000',
    'w:2500', 'w:5000', 'w:10000', 'w:30000', 'w:60000', 'w:300000', 'w:inf'},
  r = {'r:5', 'r:10', 'r:25', 'r:50', 'r:100', 'r:250', 'r:500', 'r:1000',
    'r:2500', 'r:5000', 'r:10000', 'r:30000', 'r:60000', 'r:300000', 'r:inf'},
}

-- Increments of the everyone ('~all') histogram gathered during a call: a batch of tasks writes
-- it once per field, not once per task (see flush_observations).
local ALL = {}

-- The histogram fields (bucket, sum) of one observation of kind 'w' (wait) or 'r' (run), and
-- the observation in whole ms; counted for everyone once the script runs flush_observations(P).
local function observation(kind, ms)
  if ms < 0 then ms = 0 end
  ms = math.floor(ms)
  local i = 1
  while i <= #BUCKETS and ms > BUCKETS[i] do
    i = i + 1
  end
  local field, sum = FIELDS[kind][i], kind .. ':sum'
  ALL[field] = (ALL[field] or 0) + 1
  ALL[sum] = (ALL[sum] or 0) + ms
  return field, sum, ms
end

-- Observe an attempt that ended: its wait and, when known (run_ms >= 0), its run time, for its
-- user (one read and one write of the user's histogram hash) and for everyone.
local function observe(P, user, wait_ms, run_ms)
  local uk = P .. ':m:' .. user
  local wf, ws, wait = observation('w', wait_ms)
  if run_ms < 0 then
    rcall('HINCRBY', uk, wf, 1)
    rcall('HINCRBY', uk, ws, wait)
    return
  end
  local rf, rs, run = observation('r', run_ms)
  local old = rcall('HMGET', uk, wf, ws, rf, rs)
  rcall('HSET', uk, wf, (tonumber(old[1]) or 0) + 1, ws, (tonumber(old[2]) or 0) + wait,
    rf, (tonumber(old[3]) or 0) + 1, rs, (tonumber(old[4]) or 0) + run)
end

local function flush_observations(P)
  for field, n in pairs(ALL) do
    rcall('HINCRBY', P .. ':m:~all', field, n)
  end
  ALL = {}
end

-- fairness "time": the virtual-time cost (ms) charged when a task of user is leased, corrected
-- on completion by its measured run time.
local DEFAULT_COST_MS = 10

local function expected_cost(P, user)
  local avg = tonumber(rcall('HGET', P .. ':runavg', user) or '0')
  if avg <= 0 then
    return DEFAULT_COST_MS
  end
  return avg
end

-- Move a user's virtual time by delta, wherever its position is kept (in rotation or idle).
local function shift_vtime(P, part, user, delta)
  local rk = P .. ':ready:' .. part
  local s = rcall('ZSCORE', rk, user)
  if s then
    rcall('ZADD', rk, tonumber(s) + delta, user)
  else
    local fk = P .. ':vfinish:' .. part
    rcall('HSET', fk, user, tonumber(rcall('HGET', fk, user) or '0') + delta)
  end
end

local function stat(P, field, n)
  rcall('HINCRBY', P .. ':queue:stats', field, n)
end

-- Change a user's count of unfinished (queued, delayed or leased) tasks.
local function live(P, user, n)
  if tonumber(rcall('ZINCRBY', P .. ':live', n, user)) <= 0 then
    rcall('ZREM', P .. ':live', user)
  end
end

-- An idle worker slot parked on partition part, taken off the parked set, when nothing in the
-- partition is ready and user's lanes are empty (so a pop would choose the task at hand too);
-- nil otherwise. Also returns the server time (ms) when a slot was found.
local function parked_slot(P, part, user)
  if rcall('ZCARD', P .. ':ready:' .. part) > 0 or rcall('EXISTS', lane_keys(P, user)) > 0 then
    return nil
  end
  local pk = P .. ':parked:' .. part
  local now = now_ms()
  local slot = rcall('ZRANGEBYSCORE', pk, now, '+inf', 'LIMIT', 0, 1)[1]
  if slot then
    rcall('ZREM', pk, slot)
  end
  return slot, now
end

-- Lease a new task that is ready now to a parked slot (see parked_slot) and hand it over on the
-- slot's list: what pop would do for a user that joins an empty rotation and has no other task.
local function hand_over(P, slot, now, id, body, user, h, client_ms, part, weight)
  local token, worker, lease_ms, flags = string.match(slot, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  lease_ms = tonumber(lease_ms) or 30000
  -- as join_rotation then serve would: the user joins the empty rotation and, served its only
  -- task, leaves it again with its finish tag
  local start = joining_start(P, part, user, nil)
  local cost = 1
  if flags == 't' then
    cost = expected_cost(P, user)
  end
  if weight <= 0 then weight = 1 end
  rcall('HSET', P .. ':vfinish:' .. part, user, start + cost / weight)
  rcall('HSET', P .. ':vclock', part, start)
  local deadline = now + lease_ms
  local tk = P .. ':t:' .. id
  rcall('HSET', tk, 'b', body, 'u', user, 'h', h, 'st', 'leased', 'e', client_ms, 'wk', worker, 'tok', token,
    'a', 1, 'lt', now, 'wt', now - tonumber(client_ms))
  if flags == 't' then
    rcall('HSET', tk, 'ch', cost)
  end
  rcall('ZADD', P .. ':leases', deadline, id)
  lower_gate(P, deadline)
  stat(P, 'popped', 1)
  local hk = P .. ':hand:' .. token
  rcall('LPUSH', hk, id .. '\t' .. user .. '\t' .. deadline .. '\t' .. body)
  rcall('PEXPIRE', hk, lease_ms)
end

-- Forget a task: its hash and its lease.
local function forget(P, id)
  rcall('DEL', P .. ':t:' .. id)
  rcall('ZREM', P .. ':leases', id)
end

-- Move a task to the dead-letter queue.
local function bury(P, id, now, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local user = rcall('HGET', tk, 'u') or '?'
  rcall('HSET', tk, 'st', 'dead', 'err', err, 'et', etype, 'tb', tb, 'ft', ftype, 'dt', now)
  rcall('HDEL', tk, 'tok', 'wk', 'wt')
  rcall('ZADD', P .. ':dlq', now, id)
  live(P, user, -1)
  stat(P, 'dead', 1)
  stat(P, 'u:' .. user .. ':dead', 1)
end

-- Count a failed attempt: schedule a retry after backoff_ms, or bury the task.
-- Returns 'retry' or 'dead'.
local function fail_attempt(P, id, now, backoff_ms, force_dead, err, etype, tb, ftype)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, maxr = f[1] or '?', header(f[2]).m
  local retries = rcall('HINCRBY', tk, 'r', 1)
  rcall('ZREM', P .. ':leases', id)
  stat(P, 'failed', 1)
  stat(P, 'u:' .. user .. ':failed', 1)
  rcall('HSET', tk, 'err', err, 'et', etype, 'ft', ftype)
  if force_dead or retries > maxr then
    bury(P, id, now, err, etype, tb, ftype)
    return 'dead'
  end
  stat(P, 'retried', 1)
  rcall('HDEL', tk, 'tok', 'wk', 'wt')
  if backoff_ms <= 0 then
    enqueue_ready(P, id, true)
  else
    rcall('HSET', tk, 'st', 'delayed')
    rcall('ZADD', P .. ':delayed', now + backoff_ms, id)
    lower_gate(P, now + backoff_ms)
  end
  return 'retry'
end

-- Take back leases whose deadline passed: the attempt counts as failed (type lease_expired).
local function recover_expired(P, now, limit)
  local ids = rcall('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    if rcall('EXISTS', P .. ':t:' .. id) == 1 then
      local worker = rcall('HGET', P .. ':t:' .. id, 'wk') or '?'
      stat(P, 'expired', 1)
      fail_attempt(P, id, now, 0, false,
        'lease expired: worker ' .. worker .. ' stopped heartbeating before finishing the task',
        'LeaseExpired', '', 'lease_expired')
    else
      rcall('ZREM', P .. ':leases', id)
    end
  end
  return #ids
end

-- Move delayed tasks whose time has come into their user's lane (at the back of the critical
-- lane: FIFO by the time they became ready; normal-lane tasks keep their enqueue order).
local function promote_delayed(P, now, limit)
  local ids = rcall('ZRANGEBYSCORE', P .. ':delayed', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    rcall('ZREM', P .. ':delayed', id)
    if rcall('EXISTS', P .. ':t:' .. id) == 1 then
      enqueue_ready(P, id, false)
    end
  end
  return #ids
end

-- Milliseconds until the next delayed task or lease deadline is due (-1: nothing scheduled).
local function next_due(P, now)
  local best = -1
  for _, k in ipairs({P .. ':delayed', P .. ':leases'}) do
    local r = rcall('ZRANGE', k, 0, 0, 'WITHSCORES')
    if r[2] then
      local d = tonumber(r[2]) - now
      if d < 0 then d = 0 end
      if best < 0 or d < best then best = d end
    end
  end
  return best
end


-- Run the timer work (lease recovery, delayed promotion) when the gate says something may be
-- due, then move the gate to the next due time. Keeps the common pop free of timer scans.
local function run_timers(P, now)
  local gate = tonumber(rcall('GET', P .. ':gate') or '0')
  if gate > now then
    return gate
  end
  recover_expired(P, now, 50)
  promote_delayed(P, now, 200)
  local due = next_due(P, now)
  local nxt = now + 60000
  if due >= 0 then
    nxt = now + math.max(due, 1)
  end
  rcall('SET', P .. ':gate', nxt)
  return nxt
end

-- Check that token still holds the lease of task id. Returns the requested task fields, or the
-- script's answer when it does not: -1 no such task, 0 lease lost (a late ack, counted).
local function leased_fields(P, id, token, ...)
  local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'tok', 'st', ...)
  if not f[1] then
    return nil, -1
  end
  if token ~= '' and (f[3] ~= 'leased' or f[2] ~= token) then
    stat(P, 'late_acks', 1)
    return nil, 0
  end
  return f, nil
end

-- The task ids a DLQ script works on: ARGV[2..], or '*' alone for up to 1000 of the oldest dead.
local function dlq_ids(P)
  if ARGV[2] == '*' then
    return rcall('ZRANGE', P .. ':dlq', 0, 999)
  end
  local ids = {}
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
  return ids
end
