--- @include "rcall"

-- Forget a task: its hash and its lease.
local function forget(P, id)
  rcall('DEL', P .. ':t:' .. id)
  rcall('ZREM', P .. ':leases', id)
end
