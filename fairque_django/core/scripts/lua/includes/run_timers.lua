--- @include "rcall"
--- @include "recover_expired"
--- @include "promote_delayed"
--- @include "next_due"

-- Run the timer work (lease recovery, delayed promotion) when the gate says something may be
-- due, then move the gate to the next due time. Keeps the common pop free of timer scans.
-- Returns the gate (ms).
local function run_timers(P, now)
  local gate = tonumber(rcall('GET', P .. ':gate') or '0')
  if gate > now then
    return gate
  end
  recover_expired(P, now, 50)
  promote_delayed(P, now, 200)
  local due = next_due(P, now)
  local nxt = now + 60000
  if due >= 0 then
    nxt = now + math.max(due, 1)
  end
  rcall('SET', P .. ':gate', nxt)
  return nxt
end
