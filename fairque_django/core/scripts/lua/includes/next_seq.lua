--- @include "quarantine"
--- @include "repaired"
--- @include "now_ms"

-- Take n numbers of the enqueue sequence P:seq; returns the last one. A sequence that holds no
-- integer in [0, 2^39] (normal_score needs seq < 2^40) continues from the server clock in
-- hundredths of a second: above any sequence a queue reaches (1.7e11 pushes), so later tasks still
-- sort after earlier ones.
local function next_seq(P, n)
  local k = P .. ':seq'
  local r = redis.pcall('INCRBY', k, n)
  if type(r) == 'table' and r.err and string.find(r.err, 'WRONGTYPE', 1, true) then
    quarantine(k)
    r = redis.pcall('INCRBY', k, n)
  end
  if type(r) ~= 'number' or r < n or r > 549755813888 then
    local bad = redis.call('GET', k)
    local fix = math.floor(now_ms() / 10)
    redis.call('SET', k, fix + n)
    repaired(k, nil, bad, fix)
    return fix + n
  end
  return r
end
