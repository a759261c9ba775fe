--- @include "rcall"
--- @include "num"
--- @include "cancel_done"
--- @include "deps_failed"

-- Finish a leased task as cancelled (its worker acknowledged it, failed it, let its lease expire
-- or handed it back after a cancel: see cancel_task): out of the leases (its tenant's cap frees),
-- never retried, its dependents cancelled. Its outcome is kept for the ttl its cancel flag holds,
-- else for ttl seconds.
local function cancel_leased(P, id, now, ttl)
  local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'cx')
  if cancel_done(P, id, f[1] or '?', now, num(f[2]) or ttl or 3600) then
    deps_failed(P, id, now)
  end
end
