--- @include "rcall"
--- @include "joining_start"
--- @include "expected_cost"
--- @include "lower_gate"
--- @include "stat"
--- @include "lease_taken"

-- Lease a new task that is ready now to a parked slot (see parked_slot) and hand it over on the
-- slot's list: what pop would do for a user that joins an empty rotation and has no other task.
-- slot is the parked member "token\tworker\tlease_ms\tfairness" (fairness 't': by run time).
local function hand_over(P, slot, now, id, body, user, h, client_ms, part, weight)
  local token, worker, lease_ms, fairness = string.match(slot, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  lease_ms = tonumber(lease_ms) or 30000
  -- as join_rotation then serve would: the user joins the empty rotation and, served its only
  -- task, leaves it again with its finish tag
  local start = joining_start(P, part, user, nil)
  local cost = 1
  if fairness == 't' then
    cost = expected_cost(P, user)
  end
  if weight <= 0 then weight = 1 end
  rcall('HSET', P .. ':vfinish:' .. part, user, start + cost / weight)
  rcall('HSET', P .. ':vclock', part, start)
  local deadline = now + lease_ms
  local tk = P .. ':t:' .. id
  rcall('HSET', tk, 'b', body, 'u', user, 'h', h, 'st', 'leased', 'e', client_ms, 'wk', worker, 'tok', token,
    'a', 1, 'lt', now, 'wt', now - tonumber(client_ms))
  if fairness == 't' then
    rcall('HSET', tk, 'ch', cost)
  end
  rcall('ZADD', P .. ':leases', deadline, id)
  lease_taken(P, user, now)
  lower_gate(P, deadline)
  stat(P, 'popped', 1)
  local hk = P .. ':hand:' .. token
  rcall('LPUSH', hk, id .. '\t' .. user .. '\t' .. deadline .. '\t' .. body)
  rcall('PEXPIRE', hk, lease_ms)
end
