--- @include "rcall"
--- @include "observation"

-- Observe an attempt that ended: its wait and, when known (run_ms >= 0), its run time, for its
-- user (one read and one write of the user's histogram hash); totals gathers the everyone part.
local function observe(P, totals, user, wait_ms, run_ms)
  local uk = P .. ':m:' .. user
  local wf, ws, wait = observation(totals, 'w', wait_ms)
  if run_ms < 0 then
    rcall('HINCRBY', uk, wf, 1)
    rcall('HINCRBY', uk, ws, wait)
    return
  end
  local rf, rs, run = observation(totals, 'r', run_ms)
  local old = rcall('HMGET', uk, wf, ws, rf, rs)
  rcall('HSET', uk, wf, (tonumber(old[1]) or 0) + 1, ws, (tonumber(old[2]) or 0) + wait,
    rf, (tonumber(old[3]) or 0) + 1, rs, (tonumber(old[4]) or 0) + run)
end
