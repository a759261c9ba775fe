--- @include "forget"
--- @include "live"
--- @include "stat"
--- @include "cancelled_record"

-- Finish task id of user as cancelled: its hash and lease are forgotten (the id is free again), it
-- leaves the user's live count, counts in 'cancelled', and its outcome CANCELLED is kept for ttl
-- seconds (cancelled_record). The caller has taken it out of its lane or the delayed set.
local function cancel_done(P, id, user, attempts, body, now, ttl)
  forget(P, id)
  live(P, user, -1)
  stat(P, 'cancelled', 1)
  stat(P, 'u:' .. user .. ':cancelled', 1)
  cancelled_record(P, id, user, attempts, body, now, ttl)
end
