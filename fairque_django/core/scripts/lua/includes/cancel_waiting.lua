--- @include "rcall"
--- @include "num"
--- @include "cancel_done"

-- Cancel a task that waits for its dependencies because one failed for good or was cancelled
-- (deps_failed, push_waiting): finished as cancelled like any other (cancel_done), its outcome
-- kept for its keep time (kp) with the reason, error type DependencyFailed. It is in no lane and
-- not live. Its own dependents are the caller's (deps_failed's work list).
local function cancel_waiting(P, id, now, why)
  local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'kp')
  cancel_done(P, id, f[1] or '?', now, (num(f[2]) or 86400000) / 1000, why, 'DependencyFailed')
end
