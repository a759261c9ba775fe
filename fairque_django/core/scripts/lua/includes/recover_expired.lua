--- @include "rcall"
--- @include "stat"
--- @include "fail_attempt"
--- @include "cancel_leased"

-- Take back leases whose deadline passed: the attempt counts as failed (type lease_expired); a
-- task with a cancel flag is finished as cancelled instead (never retried).
local function recover_expired(P, now, limit)
  local ids = rcall('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(ids) do
    if redis.pcall('HEXISTS', P .. ':t:' .. id, 'cx') == 1 then
      cancel_leased(P, id, now)
    elseif rcall('EXISTS', P .. ':t:' .. id) == 1 then
      local worker = rcall('HGET', P .. ':t:' .. id, 'wk') or '?'
      stat(P, 'expired', 1)
      fail_attempt(P, id, now, 0, false,
        'lease expired: worker ' .. worker .. ' stopped heartbeating before finishing the task',
        'LeaseExpired', '', 'lease_expired')
    else
      rcall('ZREM', P .. ':leases', id)
    end
  end
  return #ids
end
