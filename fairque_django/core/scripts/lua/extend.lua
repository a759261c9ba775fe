-- extend: heartbeat; push the lease deadline of tasks a worker still runs.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] lease ms, then pairs of (task id, lease token)
-- Returns  the ids whose lease was lost (expired and taken back, or finished elsewhere)
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lower_gate"
local P, lease_ms = ARGV[1], tonumber(ARGV[2])
local deadline = now_ms() + lease_ms
local lost = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'tok', 'st')
  if f[2] == 'leased' and f[1] == token then
    rcall('ZADD', P .. ':leases', deadline, id)
    lower_gate(P, deadline)
  else
    lost[#lost + 1] = id
  end
end
return lost
