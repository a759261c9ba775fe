--- @include "rcall"
--- @include "num"
--- @include "repaired"

-- The number v read from key (field: a hash field, nil for a string key): default when v is
-- absent; when v is garbage (see num), default is written in its place and the repair reported.
local function stored_num(key, field, v, default)
  if v == nil or v == false then
    return default
  end
  local n = num(v)
  if n then
    return n
  end
  if field then
    rcall('HSET', key, field, default)
  else
    rcall('SET', key, default)
  end
  repaired(key, field, v, default)
  return default
end
