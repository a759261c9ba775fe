--- @include "rcall"
--- @include "stored_num"
--- @include "forget_finish"
--- @include "lanes_tidy"

-- The per-user stats counters (each also counted in a total the stats hash keeps for good)
local TENANT_STATS = {'pushed', 'completed', 'failed', 'dead', 'cancelled'}

-- Fold the per-tenant state of user, idle (no unfinished task) since before the retention
-- window, at server time now (ms), with the partitions parts (a list) where it may have a
-- finish tag: its counters in P:queue:stats, its histograms P:m:<user> (every observation is
-- counted in P:m:~all too), its run-time average, its leased count (0), a spent rate bucket and its finish tags
-- (forget_finish; seen: what this call learnt of the partitions) and lanes left with stale entries
-- only go. Its settings (runtime
-- limits, a pause) stay. Returns whether nothing is left (false: a finish tag still ahead of
-- its rotation, or a rate bucket not yet spent).
local function fold_tenant(P, user, parts, now, seen)
  local fields = {}
  for i, what in ipairs(TENANT_STATS) do
    fields[i] = 'u:' .. user .. ':' .. what
  end
  rcall('HDEL', P .. ':queue:stats', unpack(fields))
  rcall('DEL', P .. ':m:' .. user)
  rcall('HDEL', P .. ':runavg', user)
  rcall('HDEL', P .. ':tleased', user) -- (its count of leases: 0, the tenant being idle)
  lanes_tidy(P, user) -- stale lane entries of its cancelled tasks that no pop took out (lane_drop)
  local done = true
  local rk = P .. ':trate'
  if stored_num(rk, user, rcall('HGET', rk, user), 0) <= now then
    rcall('HDEL', rk, user)
  else
    done = false
  end
  for _, part in ipairs(parts) do
    if not forget_finish(P, part, user, seen) then
      done = false
    end
  end
  return done
end
