--- @include "quarantine"
--- @include "repaired"

-- HINCRBY on a counter hash (stats, histograms): a key of the wrong type is moved aside; a field
-- that holds no integer (or would overflow) restarts from n, repaired and reported. Never fails.
local function hincr(key, field, n)
  local r = redis.pcall('HINCRBY', key, field, n)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      quarantine(key)
      return redis.call('HINCRBY', key, field, n)
    end
    local bad = redis.call('HGET', key, field)
    redis.call('HSET', key, field, n)
    repaired(key, field, bad, n)
    return n
  end
  return r
end
