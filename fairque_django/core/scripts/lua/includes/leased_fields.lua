--- @include "rcall"
--- @include "stat"

-- Check that token holds the lease of task id. Returns the task fields u, tok, st and the
-- requested ones, or nil and the script's answer when it does not: -1 no such task, 0 not leased
-- with this token (a late ack, counted). An empty token holds no lease: it is always refused.
local function leased_fields(P, id, token, ...)
  local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'tok', 'st', ...)
  if not f[1] then
    return nil, -1
  end
  if token == '' or f[3] ~= 'leased' or f[2] ~= token then
    stat(P, 'late_acks', 1)
    return nil, 0
  end
  return f, nil
end
