--- @include "rcall"
--- @include "num"
--- @include "hincr"
--- @include "repaired"
--- @include "observation"

-- Observe an attempt that ended: its wait and, when known (run_ms >= 0), its run time, for its
-- user (one read and one write of the user's histogram hash); totals gathers the everyone part.
local function observe(P, totals, user, wait_ms, run_ms)
  local uk = P .. ':m:' .. user
  local wf, ws, wait = observation(totals, 'w', wait_ms)
  if run_ms < 0 then
    hincr(uk, wf, 1)
    hincr(uk, ws, wait)
    return
  end
  local rf, rs, run = observation(totals, 'r', run_ms)
  local fields = {wf, ws, rf, rs}
  local old = rcall('HMGET', uk, wf, ws, rf, rs)
  for i = 1, 4 do
    local n = num(old[i])
    if old[i] and not n then
      repaired(uk, fields[i], old[i], 0) -- written below with this observation
    end
    old[i] = n or 0
  end
  rcall('HSET', uk, wf, old[1] + 1, ws, old[2] + wait, rf, old[3] + 1, rs, old[4] + run)
end
