-- schedule_tick: claim a tick of a periodic schedule, exactly once fleet-wide; hand over stale claims.
-- KEYS[1]  P:queue:stats (routes the call to the prefix's slot)
-- ARGV[1]  P, the hash-tagged prefix    ARGV[2] the schedule's name (P:sched:<name>, a hash)
-- ARGV[3]  the tick to claim (epoch s; '' = none: only look for stale claims)
-- ARGV[4]  the caller's claim token     ARGV[5] stale ms: a claim not confirmed for this long is
--          handed to this caller again (its pusher died between claim and push)
-- ARGV[6]  '1' = skip the tick (advance last without firing: a missed tick of a schedule without
--          catch-up), else fire it
-- The hash: last (the latest tick claimed or skipped), fired / skipped (counts), paused ('1'), at (ms of
-- the last claim), c:<tick> "<token>|<ms>" (a claim whose push the claimer has not confirmed yet:
-- schedule_done deletes it). A tick is claimed when it is later than last: ticks only move forward, so
-- no tick is claimed twice; nothing here is a lock (a claim that is never confirmed is handed to the
-- next caller after stale ms, and the tasks' ids make pushing them again a duplicate).
-- Returns  {status, last, stale tick...}: status 'claimed' (also for the same token's retry),
--          'behind' (an equal or later tick was claimed already), 'paused' (the tick is skipped:
--          last advances), 'skipped' or '' (no tick given); then every stale claim now the caller's.
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/num"
--- @include "includes/stored_num"
--- @include "includes/hincr"
--- @include "includes/repaired"
local P = ARGV[1]
local key = P .. ':sched:' .. ARGV[2]
local tick = ARGV[3]
local token = ARGV[4]
local stale_ms = tonumber(ARGV[5]) or 60000
local now = now_ms()
local last = stored_num(key, 'last', rcall('HGET', key, 'last'), 0)
local status = ''
if tick ~= '' then
  local t = tonumber(tick)
  local mine = rcall('HGET', key, 'c:' .. tick)
  if mine and string.sub(mine, 1, #token + 1) == token .. '|' then
    status = 'claimed' -- a retry of this caller's claim whose reply was lost
  elseif t <= last then
    status = 'behind'
  elseif rcall('HGET', key, 'paused') == '1' or ARGV[6] == '1' then
    status = rcall('HGET', key, 'paused') == '1' and 'paused' or 'skipped'
    rcall('HSET', key, 'last', tick)
    hincr(key, 'skipped', 1)
    last = t
  else
    status = 'claimed'
    rcall('HSET', key, 'last', tick, 'at', now, 'c:' .. tick, token .. '|' .. now)
    hincr(key, 'fired', 1)
    last = t
  end
end
local out = {status, tostring(last)}
local fields = rcall('HGETALL', key)
for i = 1, #fields, 2 do
  local f, v = fields[i], fields[i + 1]
  if string.sub(f, 1, 2) == 'c:' and f ~= 'c:' .. tick then
    local since = num(string.match(v, '|(.*)$'))
    if not string.match(f, '^c:%d+$') then -- not a tick: nothing to push
      rcall('HDEL', key, f)
      repaired(key, f, v, '(deleted)')
    elseif not since or since < now - stale_ms then -- a claim time of garbage counts as stale
      rcall('HSET', key, f, token .. '|' .. now)
      out[#out + 1] = string.sub(f, 3)
    end
  end
end
return out
