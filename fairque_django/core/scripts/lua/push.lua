-- push: store and enqueue one or more tasks in one call.
-- KEYS[1]  P:queue:stats (routes the call to the prefix's slot)
-- ARGV[1]  P, the hash-tagged prefix, e.g. "{fq}"
-- ARGV[2]  number of tasks N    ARGV[3] the client's clock in ms (ready-since stamp)
--          then N pairs: a header "id\tuser\tpriority\tpartition\tweight\tmax_retries\tafter_ms"
--          (after_ms 0 = ready now; ids never contain tabs) and the body (JSON)
--          then, optionally, an idempotency TTL in ms (> 0: P:idem:<id> remembers each id pushed, so a
--          later push of the same id is a duplicate even once the task finished and its hash is gone)
--          then, optionally (the TTL then given, 0 = none), N options, one per task: '' none, or a unique
--          key and dependencies (includes/push_options; docs/workflows.md)
--          then, optionally (the TTL and the N options then given), '1': report wake-ups (a shard of a
--          sharded prefix, core/sharded.py: the reply then starts with '~' when a user joined a rotation)
-- Returns  a string of N characters: '1' stored, '0' a task with that id already exists (nothing changed);
--          with options also 'W' stored waiting for its dependencies, 'C' stored cancelled (a dependency
--          failed), 'D' dropped / 'R' replaced the queued task / 'B' debounced it (its unique key names an
--          unfinished task), 'X' refused (a dependency is unknown or of another user); then, for each
--          answer other than '1' and '0', in order, a tab and its detail (the other task's id, the failed
--          dependency's id, why it was refused; '' for 'W')
-- A task that is ready now, of a user that is not in its partition's rotation while the rotation is
-- empty, is leased at once to a worker slot parked on the partition (see pop.lua's park ms).
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lane_keys"
--- @include "includes/pack_header"
--- @include "includes/lane_purge"
--- @include "includes/lanes_upgrade"
--- @include "includes/chunked"
--- @include "includes/lower_gate"
--- @include "includes/join_rotation"
--- @include "includes/parked_slot"
--- @include "includes/hand_over"
--- @include "includes/stat"
--- @include "includes/next_seq"
--- @include "includes/push_options"
--- @include "includes/push_gate"
--- @include "includes/push_waiting"
--- @include "includes/unique_claim"
local P = ARGV[1]
local n = tonumber(ARGV[2])
local client_ms = ARGV[3]
local idem_ms = tonumber(ARGV[4 + n * 2]) or 0
local now = nil -- server time, read only when a task has a not-before time
local first = next_seq(P, n) - n
local out = {}
local counts = {}
local stored = 0
local readied = {}
local lives = {}
local notes = {} -- the details of answers other than '1' and '0' (unique keys, dependencies)
-- fresh: none of the call's task keys (nor idempotency markers) existed when it started, read
-- with one EXISTS for the whole call when its tasks outnumber its users by 2 or more (else each
-- task's key is looked at with its turn, as before); then only an id given twice in the call is
-- looked up again (no script call creates the hash of an id before that id's turn)
local fresh, seen = false, {}
do
  local keys, users, nusers = {}, {}, 0
  for i = 0, n - 1 do
    local id, user = string.match(ARGV[4 + i * 2], '^([^\t]+)\t([^\t]+)\t')
    if id then
      keys[#keys + 1] = P .. ':t:' .. id
      if idem_ms > 0 then keys[#keys + 1] = P .. ':idem:' .. id end
      if not users[user] then users[user], nusers = true, nusers + 1 end
    end
  end
  if n - nusers >= 2 then
    fresh = chunked('EXISTS', nil, keys) == 0
  end
end
-- user -> whether its lanes may hold stale entries (its gone hash exists: lane_purge), looked at
-- with the first task of the user in this call, in the same EXISTS as that task's key; lanes of the
-- former layout found there are converted (lanes_upgrade). known: the task's key is known absent.
local stale = {}
local function exists(tk, user, known)
  if stale[user] ~= nil then
    return not known and redis.call('EXISTS', tk) == 1
  end
  local gk, nk = P .. ':queue:user:' .. user .. ':gone', P .. ':queue:user:' .. user .. ':normal'
  local found
  if known then
    found = redis.call('EXISTS', gk, nk)
  else
    found = redis.call('EXISTS', tk, gk, nk)
  end
  if found == 0 then
    stale[user] = false
    return false
  end
  lanes_upgrade(P, user)
  stale[user] = redis.call('EXISTS', gk) == 1
  return not known and redis.call('EXISTS', tk) == 1
end
local lanes, lane_order = {}, {} -- lane -> the ids pushed to it in this call (one LPUSH per lane, at the end)
for i = 0, n - 1 do
  local o = 4 + i * 2
  local id, user, prio, part, weight, maxr, after = string.match(ARGV[o],
    '^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)$')
  prio, after = tonumber(prio), tonumber(after)
  local body = ARGV[o + 1]
  local tk = P .. ':t:' .. id
  local ik = idem_ms > 0 and P .. ':idem:' .. id
  local known = fresh and not seen[id] -- (a first turn of an id in a fresh call: neither key exists)
  seen[id] = true
  local dup = exists(tk, user, known) or (ik and not known and rcall('EXISTS', ik) == 1)
  -- >>> unique keys and dependencies: an answer other than a plain store, or the unmet dependencies
  local opt, code, detail, unmet = nil, nil, nil, nil
  if not dup then
    opt = push_options(ARGV[5 + n * 2 + i])
    code, detail, unmet = push_gate(P, opt, body, after)
    if not code and unmet and unmet[1] then
      code = 'W'
    end
  end
  -- <<<
  if dup then
    out[i + 1] = '0'
    if ik then -- remembered from now on, so a push after the task finished is a duplicate too
      rcall('SET', ik, '1', 'PX', idem_ms)
    end
  elseif code then -- >>> answered by its options (unique key, dependencies): in no lane
    out[i + 1] = code
    notes[#notes + 1] = detail or ''
    if code == 'W' or code == 'C' then
      stored = stored + 1
      if stale[user] then lane_purge(P, user, id) end
      push_waiting(P, id, user, body, pack_header(prio, first + i + 1, part, weight, maxr), client_ms, opt, unmet,
        after, code, detail)
      local pk = 'p:' .. prio .. ':pushed'
      counts[pk] = (counts[pk] or 0) + 1
      local uk = 'u:' .. user .. ':pushed'
      counts[uk] = (counts[uk] or 0) + 1
    end
    if ik and code ~= 'X' then
      rcall('SET', ik, '1', 'PX', idem_ms)
    end
    -- <<<
  else
    out[i + 1] = '1'
    stored = stored + 1
    if stale[user] then lane_purge(P, user, id) end
    local seq = first + i + 1
    lives[user] = (lives[user] or 0) + 1
    if after > 0 and not now then
      now = now_ms()
    end
    local h = pack_header(prio, seq, part, weight, maxr)
    if after > 0 and after > now then
      rcall('HSET', tk, 'b', body, 'u', user, 'h', h, 'st', 'delayed', 'e', after)
      rcall('ZADD', P .. ':delayed', after, id)
      lower_gate(P, after)
    else
      local pu = part .. '|' .. user
      local joins = not readied[pu] and not rcall('ZSCORE', P .. ':ready:' .. part, user)
      local slot, at = nil, nil
      if joins then
        slot, at = parked_slot(P, part, user)
      end
      if slot then -- an idle slot waits and nothing else is ready: lease the task to it directly
        hand_over(P, slot, at, id, body, user, h, client_ms, part, tonumber(weight) or 1)
      else
        rcall('HSET', tk, 'b', body, 'u', user, 'h', h, 'st', 'queued', 'e', client_ms)
        local lk = lane_key(P, user, prio)
        local ids = lanes[lk]
        if not ids then
          ids = {}
          lanes[lk] = ids
          lane_order[#lane_order + 1] = lk
        end
        ids[#ids + 1] = id
        if joins then
          join_rotation(P, part, user)
        end
        readied[pu] = true
      end
    end
    if opt and opt.uk then -- >>> the task takes its unique key <<<
      unique_claim(P, id, opt.uk, opt.ttl)
    end
    if ik then -- last: an error above leaves no marker, so a retry stores the task
      rcall('SET', ik, '1', 'PX', idem_ms)
    end
    local uk = 'u:' .. user .. ':pushed'
    counts[uk] = (counts[uk] or 0) + 1
    local pk = 'p:' .. prio .. ':pushed'
    counts[pk] = (counts[pk] or 0) + 1
  end
end
for _, lk in ipairs(lane_order) do -- (LPUSH a b c leaves a served first, as three LPUSHes would)
  chunked('LPUSH', lk, lanes[lk])
end
for user, c in pairs(lives) do
  rcall('ZINCRBY', P .. ':live', c, user)
end
if stored > 0 then -- the total 'pushed' is the sum of the per-priority counters (read side)
  for field, c in pairs(counts) do
    stat(P, field, c)
  end
end
local mark = (woke and ARGV[5 + n * 3] == '1') and '~' or ''
if notes[1] then
  return mark .. table.concat(out) .. '\t' .. table.concat(notes, '\t')
end
return mark .. table.concat(out)
