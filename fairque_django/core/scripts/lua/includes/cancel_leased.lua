--- @include "rcall"
--- @include "num"
--- @include "cancel_done"

-- Finish a leased task as cancelled (its worker acknowledged it, failed it, let its lease expire
-- or handed it back after a cancel: see cancel_task): out of the leases, never retried. Its
-- outcome is kept for the ttl its cancel flag holds, else for ttl seconds.
local function cancel_leased(P, id, now, ttl)
  local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'a', 'b', 'cx')
  cancel_done(P, id, f[1] or '?', f[2], f[3], now, num(f[4]) or ttl or 3600)
end
