-- complete: acknowledge a leased task as done and forget it.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] task id    ARGV[3] lease token ('' = no check: administrative)
-- ARGV[4]  run time in ms (-1 = unknown)
-- ARGV[5]  '1' = fairness "time": replace the cost charged at pop by the run time (and learn it)
-- ARGV[6]  '1' = record metrics (run-time histogram, completions per minute)    ARGV[7] client clock in ms
-- Returns  1 done, 0 the lease belongs to someone else (late ack, rejected), -1 no such task
-- @include lib.lua
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local run_ms = tonumber(ARGV[4] or '-1')
local f, refused = leased_fields(P, id, token, 'h', 'ch')
if not f then
  return refused
end
local user = f[1]
if ARGV[5] == '1' and run_ms >= 0 then
  -- time fairness: the user pays for the time it used (>= 1 ms), not the estimate charged at pop
  local used = math.max(run_ms, 1)
  local h = header(f[4])
  local w = h.w
  if w <= 0 then w = 1 end
  shift_vtime(P, h.q or '~pool', user, (used - tonumber(f[5] or '0')) / w)
  local avg = tonumber(rcall('HGET', P .. ':runavg', user) or '0')
  if avg > 0 then
    used = avg * 0.8 + used * 0.2
  end
  rcall('HSET', P .. ':runavg', user, used)
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
