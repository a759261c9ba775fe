-- The two lanes of a user: CRITICAL (LIST, FIFO) and priorities 1-5 (ZSET).
local function lane_keys(P, user)
  local base = P .. ':queue:user:' .. user
  return base .. ':critical', base .. ':normal'
end
