--- @include "quarantine"

-- redis.call on a data key; a WRONGTYPE error quarantines the key and the call is made again.
-- Scripts do not roll back, so an error after a write must never happen: every keyed call goes here.
local function rcall(cmd, key, ...)
  local r = redis.pcall(cmd, key, ...)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      quarantine(key)
      return redis.call(cmd, key, ...)
    end
    return redis.error_reply(r.err)
  end
  return r
end
