-- cancel: cancel tasks by id (see includes/cancel_task): queued and delayed ones are removed and
-- recorded as cancelled, leased ones flagged for their worker. Idempotent.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] result ttl (s)    ARGV[3] user: only tasks of this user ('' = any)
-- ARGV[4]  '1' = flag leased tasks (else they answer 'running'), then the task ids
-- Returns  one answer per id: 'cancelled' | 'cancelling' | 'running' | 'finished' | 'not_found'
--- @include "includes/now_ms"
--- @include "includes/cancel_task"
local P, ttl, user, flag = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
local now = now_ms()
local out = {}
for i = 5, #ARGV do
  out[#out + 1] = cancel_task(P, ARGV[i], user, flag, now, ttl)
end
return out
