-- fail: record a failed attempt of a leased task; retry it after a backoff or bury it in the DLQ.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] task id    ARGV[3] lease token (required: '' holds no lease)
-- ARGV[4]  backoff ms before the retry    ARGV[5] '1' = dead-letter now, without retrying
-- ARGV[6]  error message    ARGV[7] error type    ARGV[8] traceback    ARGV[9] failure type
-- ARGV[10] '1' = record the attempt's wait in the metrics histograms
-- ARGV[11] result ttl (s) of a task failed as cancelled without a cancel flag
-- Returns  'retry' | 'dead' | 'cancelled' (the task carries a cancel flag, or the failure type is
--          'cancelled': finished as cancelled, never retried), 0 when the task is not leased with
--          that token, -1 no such task
--- @include "includes/now_ms"
--- @include "includes/observe"
--- @include "includes/flush_observations"
--- @include "includes/leased_fields"
--- @include "includes/fail_attempt"
--- @include "includes/num"
--- @include "includes/cancel_leased"
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local f, refused = leased_fields(P, id, token, 'wt', 'cx')
if not f then
  return refused
end
if f[5] or ARGV[9] == 'cancelled' then
  cancel_leased(P, id, now_ms(), tonumber(ARGV[11]))
  return 'cancelled'
end
if ARGV[10] == '1' and f[4] then
  local totals = {}
  observe(P, totals, f[1], num(f[4]) or 0, -1)
  flush_observations(P, totals)
end
return fail_attempt(P, id, now_ms(), tonumber(ARGV[4]), ARGV[5] == '1', ARGV[6], ARGV[7], ARGV[8], ARGV[9])
