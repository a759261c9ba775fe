--- @include "rcall"
--- @include "lane_keys"
--- @include "header"

-- The partition of the task user would be served next (from its header), or nil when the user
-- has no queued task.
local function queued_part(P, user)
  local ck, nk = lane_keys(P, user)
  local id = rcall('LINDEX', ck, -1) or rcall('ZRANGE', nk, 0, 0)[1]
  if not id then return nil end
  return header(rcall('HGET', P .. ':t:' .. id, 'h')).q or '~pool'
end
