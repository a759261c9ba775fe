-- release: hand leased tasks back to their queue (graceful shutdown, or a prefetched task a worker
-- did not get to in time); no failure is counted.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] '1' = count it in the 'released' stat (a shutdown hand-back), then pairs of
--          (task id, lease token)
-- Returns  the number of tasks handed back (a task with a cancel flag is finished as cancelled
--          instead, not counted)
--- @include "includes/rcall"
--- @include "includes/enqueue_ready"
--- @include "includes/stat"
--- @include "includes/num"
--- @include "includes/now_ms"
--- @include "includes/cancel_leased"
--- @include "includes/lease_ended"
local P = ARGV[1]
local n = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'tok', 'st', 'a', 'u', 'cx')
  if f[2] == 'leased' and f[1] == token and f[5] then
    cancel_leased(P, id, now_ms())
  elseif f[2] == 'leased' and f[1] == token then
    if rcall('ZREM', P .. ':leases', id) == 1 then
      lease_ended(P, f[4] or '?')
    end
    rcall('HDEL', tk, 'tok', 'wk', 'wt')
    -- the attempt did not happen: do not count it
    rcall('HSET', tk, 'a', math.max(0, math.floor(num(f[3]) or 1) - 1))
    enqueue_ready(P, id, true)
    if ARGV[2] == '1' then
      stat(P, 'released', 1)
    end
    n = n + 1
  end
end
return n
