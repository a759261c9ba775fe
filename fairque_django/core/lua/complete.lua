-- complete: acknowledge a leased task as done and forget it.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] task id    ARGV[3] lease token ('' = no check: administrative)
-- ARGV[4]  run time in ms (-1 = unknown)    ARGV[5] '1' = charge it to the user's virtual time (fairness "time")
-- ARGV[6]  '1' = record metrics (run-time histogram, completions per minute)    ARGV[7] client clock in ms
-- Returns  1 done, 0 the lease belongs to someone else (late ack, rejected), -1 no such task
-- @include lib.lua
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local run_ms = tonumber(ARGV[4] or '-1')
local charge = 0
if ARGV[5] == '1' and run_ms > 0 then
  charge = run_ms
end
local f, refused = leased_fields(P, id, token, 'q', 'w')
if not f then
  return refused
end
local user = f[1]
if charge > 0 then
  -- time fairness: the user pays for the time it used, measured in lease-free units of 100 ms
  local part = f[4]
  local w = tonumber(f[5] or '1') or 1
  local extra = (charge / 100.0) / w
  local rk = P .. ':ready:' .. part
  local s = rcall('ZSCORE', rk, user)
  if s then
    rcall('ZADD', rk, tonumber(s) + extra, user)
  else
    local fk = P .. ':vfinish:' .. part
    local fin = tonumber(rcall('HGET', fk, user) or '0')
    rcall('HSET', fk, user, fin + extra)
  end
end
forget(P, id)
live(P, user, -1)
if ARGV[6] == '1' then
  if run_ms >= 0 then
    observe(P, 'r', user, run_ms)
  end
  rcall('HINCRBY', P .. ':m:~tput', math.floor(tonumber(ARGV[7]) / 60000), 1)
end
stat(P, 'completed', 1)
stat(P, 'u:' .. user .. ':completed', 1)
return 1
