--- @include "rcall"
--- @include "stored_num"
--- @include "due_now"
--- @include "recover_expired"
--- @include "promote_delayed"
--- @include "next_due"
--- @include "rate_timers"
--- @include "limits_on"

-- Run the timer work (lease recovery, delayed promotion, rate tokens due) when the gate says something may be
-- due, then move the gate to the next due time (at most a minute ahead). Keeps the common pop
-- free of timer scans. A gate that holds no number is repaired to 0: the timers run now.
-- Returns the gate (ms). Reads the limits flag with the gate (one command: see limits_on).
local function run_timers(P, now)
  local gk = P .. ':gate'
  local both = redis.call('MGET', gk, P .. ':tlimon')
  local raw = both[1]
  if not raw then -- missing, or not a string (GET moves it aside)
    raw = rcall('GET', gk)
  end
  limits_on(P, both[2])
  local gate = stored_num(gk, nil, raw, 0)
  if gate > now and gate <= now + 60000 then
    return gate
  end
  due_now(P, now)
  recover_expired(P, now, 50)
  promote_delayed(P, now, 200)
  rate_timers(P, now, 100)
  local due = next_due(P, now)
  local nxt = now + 60000
  if due >= 0 and due < 60000 then
    nxt = now + math.max(due, 1)
  end
  rcall('SET', gk, nxt)
  return nxt
end
