--- @include "rcall"
--- @include "now_ms"
--- @include "deps_wait"
--- @include "cancel_waiting"
--- @include "unique_claim"

-- Store a pushed task out of the lanes: 'W' waiting for its unmet dependencies (not live until
-- they succeed: deps_ready), or 'C' cancelled at once, a dependency (failed) having failed for good.
local function push_waiting(P, id, user, body, h, client_ms, opt, unmet, after, code, failed)
  rcall('HSET', P .. ':t:' .. id, 'b', body, 'u', user, 'h', h, 'st', 'waiting', 'e', client_ms)
  deps_wait(P, id, unmet or {}, opt.allow, opt.keep, after)
  if code == 'C' then
    cancel_waiting(P, id, now_ms(), 'dependency ' .. failed .. ' failed or was cancelled')
  elseif opt.uk then
    unique_claim(P, id, opt.uk, opt.ttl)
  end
end
