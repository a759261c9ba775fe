--- @include "quarantine"

-- Record that key (field: a hash field or member, nil for a string key) held the value bad, of the
-- right type but unusable, and was repaired to fix: reported with the keys moved aside (see
-- quarantine) and counted in the stats field 'repaired'. Makes no other write.
local function repaired(key, field, bad, fix)
  local P = string.match(key, '^%b{}')
  local where = key
  if field then where = key .. ' field ' .. field end
  quarantined[#quarantined + 1] = where .. ': ' .. string.sub(tostring(bad), 1, 40) .. ' is not a valid value; '
    .. 'repaired to ' .. tostring(fix)
  local stats = P .. ':queue:stats'
  local r = redis.pcall('HINCRBY', stats, 'repaired', 1)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then
      quarantine(stats)
    end
    redis.call('HSET', stats, 'repaired', 1) -- the counter itself held garbage: it restarts
  end
end
