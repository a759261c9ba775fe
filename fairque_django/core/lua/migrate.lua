-- migrate: bring task hashes stored by an earlier layout to the current one.
-- Layout 1 kept priority, seq, partition, weight and max_retries as fields p s q w m; layout 2
-- packs them into 'h' (see lib.lua). Tasks already in layout 2 are left alone.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P, then task keys (P:t:<id>)
-- Returns  the number of task hashes changed
-- @include lib.lua
local n = 0
for i = 2, #ARGV do
  local tk = ARGV[i]
  if redis.call('TYPE', tk)['ok'] == 'hash' and redis.call('HEXISTS', tk, 'h') == 0 then
    local f = redis.call('HMGET', tk, 'p', 's', 'q', 'w', 'm')
    if f[1] then
      rcall('HSET', tk, 'h', pack_header(f[1], f[2] or '0', f[3] or '~pool', f[4] or '1', f[5] or '0'))
      rcall('HDEL', tk, 'p', 's', 'q', 'w', 'm', 'dl')
      n = n + 1
    end
  end
end
return n
