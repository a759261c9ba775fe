-- complete: acknowledge leased tasks as done and forget them (one call for a worker's whole batch).
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P
-- ARGV[2]  '1' = fairness "time": replace the cost charged at pop by the run time (and learn it)
-- ARGV[3]  '1' = record metrics (wait and run histograms, completions per minute); '2' = the caller
--          records them (a worker's buffer, flushed once per tick by metrics_flush.lua): each task's
--          wait is returned instead    ARGV[4] client clock (ms)
-- then     triples: task id, lease token (required: '' holds no lease), run time in ms (-1 = unknown)
-- Returns  one code per task: 1 done, 2 finished as cancelled (a cancel flagged it: never a
--          success, see includes/cancel_task), 0 not leased with that token (late ack, rejected),
--          -1 no such task; with ARGV[3] '2' then one wait (ms) per task (-1: not acknowledged as done)
--- @include "includes/rcall"
--- @include "includes/header"
--- @include "includes/shift_vtime"
--- @include "includes/observe"
--- @include "includes/flush_observations"
--- @include "includes/live"
--- @include "includes/stat"
--- @include "includes/leased_fields"
--- @include "includes/num"
--- @include "includes/stored_num"
--- @include "includes/hincr"
--- @include "includes/now_ms"
--- @include "includes/cancel_leased"
--- @include "includes/task_finished"
--- @include "includes/lease_ended"
--- @include "includes/chunked"
local P = ARGV[1]
local timefair, metrics, buffered = ARGV[2] == '1', ARGV[3] == '1', ARGV[3] == '2'
local codes = {}
local waits = {}    -- (buffered) each task's wait in ms, -1 when it was not acknowledged as done
local done = {}     -- ids acknowledged in this call (an id given twice counts once)
local per_user = {} -- user -> tasks acknowledged
local totals = {}   -- the everyone histogram's increments (see observe)
local gone = {}     -- the acknowledged tasks' keys and ids, forgotten at the end in one DEL and one ZREM
local n = 0
for i = 5, #ARGV, 3 do
  local id, token, run_ms = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]) or -1
  local f, refused = nil, -1
  if not done[id] then
    f, refused = leased_fields(P, id, token, 'h', 'ch', 'wt', 'uk', 'hd', 'cx')
  end
  waits[#codes + 1] = -1
  if not f then
    codes[#codes + 1] = refused
  elseif f[9] then -- cancelled while it ran: finished as cancelled, whatever it returned
    cancel_leased(P, id, now_ms())
    done[id] = true
    codes[#codes + 1] = 2
  else
    local user = f[1]
    if timefair and run_ms >= 0 then
      -- time fairness: the user pays for the time it used (>= 1 ms), not the estimate charged at pop
      local used = math.max(run_ms, 1)
      local h = header(f[4])
      local w = h.w
      if w <= 0 then w = 1 end
      shift_vtime(P, h.q or '~pool', user, (used - (num(f[5]) or 0)) / w)
      local avg = stored_num(P .. ':runavg', user, rcall('HGET', P .. ':runavg', user), 0)
      if avg > 0 then
        used = avg * 0.8 + used * 0.2
      end
      rcall('HSET', P .. ':runavg', user, used)
    end
    gone[#gone + 1] = id -- (forgotten below: until then no longer leased for recount_leased)
    unleased_in_call[id] = true
    lease_ended(P, user, true)
    if f[7] or f[8] then -- its unique key is released, its dependents count it as met
      task_finished(P, id, f[7], f[8], true)
    end
    done[id] = true
    n = n + 1
    per_user[user] = (per_user[user] or 0) + 1
    if metrics and f[6] then
      observe(P, totals, user, num(f[6]) or 0, run_ms)
    elseif buffered and f[6] then
      waits[#codes + 1] = math.floor(num(f[6]) or 0)
    end
    codes[#codes + 1] = 1
  end
end
local gone_keys = {} -- forget them (forget, one command each per call), then write the leased counts
for j, id in ipairs(gone) do
  gone_keys[j] = P .. ':t:' .. id
end
chunked('DEL', nil, gone_keys)
chunked('ZREM', P .. ':leases', gone)
leased_flush(P)
if n > 0 then
  for user, c in pairs(per_user) do
    live(P, user, -c)
    stat(P, 'u:' .. user .. ':completed', c)
  end
  stat(P, 'completed', n)
  if metrics then
    flush_observations(P, totals)
    hincr(P .. ':m:~tput', math.floor(tonumber(ARGV[4]) / 60000), n)
  end
end
if buffered then
  local m = #codes
  for i = 1, m do
    codes[m + i] = waits[i]
  end
end
return codes
