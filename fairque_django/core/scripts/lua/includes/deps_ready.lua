--- @include "rcall"
--- @include "num"
--- @include "live"
--- @include "lower_gate"
--- @include "enqueue_ready"

-- A waiting task whose dependencies are all met becomes ready: into its lane (joining the
-- rotation), or delayed when it has a not-before time (na) still to come. It counts as live now.
local function deps_ready(P, id, now)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'na')
  rcall('HDEL', tk, 'dw')
  live(P, f[1], 1)
  local na = num(f[2]) or 0
  if na > now then
    rcall('HSET', tk, 'st', 'delayed')
    rcall('ZADD', P .. ':delayed', na, id)
    lower_gate(P, na)
  else
    enqueue_ready(P, id, false)
  end
end
