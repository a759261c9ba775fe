--- @include "rcall"
--- @include "lane_keys"
--- @include "lane_stale"
--- @include "lanes_upgrade"
--- @include "header"

-- The partition of the task user would be served next (from its header), or nil when the user
-- has no queued task. Stale entries at the heads of its lanes (lane_stale) are taken out on the way.
local function queued_part(P, user)
  lanes_upgrade(P, user)
  local lanes = {lane_keys(P, user)}
  for i = 1, 6 do
    while true do
      local id = rcall('LINDEX', lanes[i], -1)
      if not id then break end
      local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'st', 'h')
      if (f[1] == user and f[2] == 'queued') or not lane_stale(P, user, 7 - i, id) then
        return header(f[3]).q or '~pool'
      end
      rcall('RPOP', lanes[i]) -- (the stale entry read above: the head)
    end
  end
  return nil
end
