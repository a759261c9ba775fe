--- @include "rcall"

-- A task just stored takes its unique key (for ttl ms, 0 = until it finishes); its hash names the
-- key (uk) so that its end releases it (release_unique).
local function unique_claim(P, id, uk, ttl)
  if ttl > 0 then
    rcall('SET', uk, id, 'PX', ttl)
  else
    rcall('SET', uk, id)
  end
  rcall('HSET', P .. ':t:' .. id, 'uk', uk)
end
