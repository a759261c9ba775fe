--- @include "rcall"

-- Task id (its hash just written, state 'waiting') waits for the unmet dependency ids: each
-- dependency lists it in P:deps:<dep> and is flagged as having dependents (hd), so that its end
-- (task_finished) reaches it; dw counts the dependencies still to succeed, dn names them.
local function deps_wait(P, id, unmet, allow, keep, after)
  local tk = P .. ':t:' .. id
  rcall('HSET', tk, 'dw', #unmet, 'kp', keep)
  if #unmet > 0 then
    rcall('HSET', tk, 'dn', table.concat(unmet, ' ')) -- (ids hold no spaces) so a cancel can unlist it
  end
  if allow then
    rcall('HSET', tk, 'df', '1')
  end
  if after > 0 then
    rcall('HSET', tk, 'na', after)
  end
  for _, dep in ipairs(unmet) do
    rcall('SADD', P .. ':deps:' .. dep, id)
    rcall('HSET', P .. ':t:' .. dep, 'hd', '1')
  end
end
