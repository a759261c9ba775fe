-- steal_sync: keep a worker's steal copies (P:sready:...: per steal partition, the users of its ready
-- set the worker may take, same scores) and their definitions in step with its configuration.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] worker id    ARGV[3] digest of its steal definitions (targets, partitions)
-- ARGV[4]  forget ms: the copies of a stealer that has not synced for this long are deleted (a
--          worker removed from the configuration, or long stopped; it rebuilds when it comes back)
-- ARGV[5]  '1' = the definitions follow (rebuild when the digest does not match): the number of
--          exact targets E, the E targets, the number of anchored Lua patterns K, the K patterns, then
--          the partitions it steals from
-- Returns  1 the copies match the digest (now, after a rebuild); 0 they do not and no definitions
--          were given (call again with them)
-- The copies are valid while P:stealdigest:<worker> is "<digest>|<P:stealepoch>": a rebuild runs in
-- one call (the copy of a ready set is complete at once) and registers the worker in
-- P:stealers:<part> in the same call, so every later change of the ready set is applied to it.
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/may_steal"
--- @include "includes/steal_ready_key"
--- @include "includes/steal_invalidate"
--- @include "includes/chunked"
local P, worker, digest = ARGV[1], ARGV[2], ARGV[3]
local seen_key, digest_key = P .. ':stealseen', P .. ':stealdigest:' .. worker

-- Delete what a stealer registered: its definitions, copies and exact set.
local function drop(w)
  local pk = P .. ':stealparts:' .. w
  for _, part in ipairs(rcall('SMEMBERS', pk)) do
    rcall('HDEL', P .. ':stealers:' .. part, w)
    rcall('DEL', steal_ready_key(P, part, w))
  end
  rcall('DEL', pk, P .. ':steal:' .. w, P .. ':stealdigest:' .. w)
  rcall('ZREM', seen_key, w)
end

local function current()
  local seen = redis.call('MGET', digest_key, P .. ':stealepoch')
  return seen[1] == digest .. '|' .. (seen[2] or '')
end

local moved = #quarantined
local now = now_ms()
for _, w in ipairs(rcall('ZRANGEBYSCORE', seen_key, '-inf', now - tonumber(ARGV[4]), 'LIMIT', 0, 10)) do
  if w ~= worker then
    drop(w)
  end
end
if #quarantined > moved then -- a stealer's key was moved aside: every stealer rebuilds
  steal_invalidate(P)
  moved = #quarantined
end
if current() then
  rcall('ZADD', seen_key, now, worker)
  return 1
elseif ARGV[5] ~= '1' then
  return 0
end
drop(worker)
local i = 6
local n_exact = tonumber(ARGV[i])
chunked('SADD', P .. ':steal:' .. worker, ARGV, i + 1, i + n_exact)
i = i + n_exact + 1
local def = '0'
if n_exact > 0 then def = '1' end
for j = i + 1, i + tonumber(ARGV[i]) do
  def = def .. '\t' .. ARGV[j]
end
for j = i + tonumber(ARGV[i]) + 1, #ARGV do
  local part = ARGV[j]
  rcall('SADD', P .. ':stealparts:' .. worker, part)
  rcall('HSET', P .. ':stealers:' .. part, worker, def)
  local key = steal_ready_key(P, part, worker)
  local ready = rcall('ZRANGE', P .. ':ready:' .. part, 0, -1, 'WITHSCORES')
  local batch = {}
  for r = 1, #ready, 2 do
    if may_steal(P, worker, def, ready[r]) then
      batch[#batch + 1] = ready[r + 1]
      batch[#batch + 1] = ready[r]
      if #batch >= 1000 then
        rcall('ZADD', key, unpack(batch))
        batch = {}
      end
    end
  end
  if batch[1] then
    rcall('ZADD', key, unpack(batch))
  end
end
if #quarantined > moved then -- a key was moved aside: the other stealers rebuild too
  steal_invalidate(P)
end
rcall('SET', digest_key, digest .. '|' .. (redis.call('MGET', P .. ':stealepoch')[1] or ''))
rcall('ZADD', seen_key, now, worker)
return 1
