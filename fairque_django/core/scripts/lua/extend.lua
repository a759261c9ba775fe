-- extend: heartbeat; push the lease deadline of tasks a worker still runs.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] lease ms, then pairs of (task id, lease token)
-- Returns  {the ids whose lease was lost (expired and taken back, or finished elsewhere), the ids
--          renewed that carry a cancel flag (cancel.lua): their worker tells the task}
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/lower_gate"
local P, lease_ms = ARGV[1], tonumber(ARGV[2])
local deadline = now_ms() + lease_ms
local lost, cancelling = {}, {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'tok', 'st', 'cx')
  if f[2] == 'leased' and f[1] == token then
    rcall('ZADD', P .. ':leases', deadline, id)
    lower_gate(P, deadline)
    if f[3] then
      cancelling[#cancelling + 1] = id
    end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancelling}
