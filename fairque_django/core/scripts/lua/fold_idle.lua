-- fold_idle: the retention sweep: fold and forget the per-tenant state of tenants idle (no
-- unfinished task) for longer than the retention window, a bounded number per call. Any worker
-- may run it at any time (each call is atomic; two sweeps never fold a tenant twice). First it
-- stamps up to that many fresh idle marks (score 0, see includes/went_idle) with the server's
-- clock: a tenant is folded a window after the first sweep that saw it idle.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] the retention window (ms)    ARGV[3] at most this many tenants
-- ARGV[4..] the configured partitions (those of P:vclock are looked at too): where finish tags live
-- Returns  {folded, kept, back, more, then the problems (keys moved aside, values repaired)}:
--          folded: tenants whose state is gone; kept: tenants with a finish tag still ahead of their
--          rotation or a rate bucket not spent yet (looked at again one window later); back: tenants
--          live again (no longer idle); more: 1 when more tenants may be due (call again)
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/fold_tenant"
local P = ARGV[1]
local window, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local ik = P .. ':idle'
-- marks not stamped yet (score 0, see went_idle; a negative score is garbage, taken as 0): idle from now on
local fresh = rcall('ZRANGEBYSCORE', ik, '-inf', 0, 'LIMIT', 0, limit)
if fresh[1] then
  local args = {}
  for _, user in ipairs(fresh) do
    args[#args + 1] = now
    args[#args + 1] = user
  end
  rcall('ZADD', ik, 'XX', unpack(args))
end
local due = rcall('ZRANGEBYSCORE', ik, '(0', now - window, 'LIMIT', 0, limit)
local folded, kept, back = 0, 0, 0
if due[1] then
  local parts, seen = {}, {}
  for i = 4, #ARGV do
    if not seen[ARGV[i]] then
      seen[ARGV[i]] = true
      parts[#parts + 1] = ARGV[i]
    end
  end
  for _, part in ipairs(rcall('HKEYS', P .. ':vclock')) do
    if not seen[part] then
      seen[part] = true
      parts[#parts + 1] = part
    end
  end
  local seen_parts = {} -- what forget_finish learnt of each partition (its head, its clock)
  for _, user in ipairs(due) do
    if rcall('ZSCORE', P .. ':live', user) then
      rcall('ZREM', ik, user)
      back = back + 1
    elseif fold_tenant(P, user, parts, now, seen_parts) then
      rcall('ZREM', ik, user)
      folded = folded + 1
    else
      rcall('ZADD', ik, now + 1, user) -- (+1: not due again in this ms, even with a window of 0)
      kept = kept + 1
    end
  end
end
local more = 0
if #due == limit or #fresh == limit then more = 1 end
local out = {folded, kept, back, more}
for _, problem in ipairs(quarantined) do
  out[#out + 1] = problem
end
return out
