-- A steal copy may have lost members (one of its keys was moved aside, or a definition was bad):
-- change the steal epoch, so that no stealer's digest matches any more and each rebuilds its copies
-- from the ready sets (steal_sync.lua; pop steals nothing from out-of-date copies meanwhile).
local function steal_invalidate(P)
  local k = P .. ':stealepoch'
  if type(redis.pcall('INCR', k)) ~= 'number' then -- not a counter: start a value never used before
    local t = redis.call('TIME')
    redis.call('SET', k, 'r' .. t[1] .. '.' .. t[2])
  end
end
