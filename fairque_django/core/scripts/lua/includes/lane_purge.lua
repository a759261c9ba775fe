--- @include "rcall"
--- @include "lane_keys"
--- @include "gone_add"

-- A fresh task id (no hash) is about to enter a lane of user: stale entries of an earlier task of
-- that id (cancelled, then its id pushed again) are taken out of the lanes now, so that the new
-- task is served at its own place. (Rare; each lane is scanned.)
local function lane_purge(P, user, id)
  local gk = gone_key(P, user)
  if rcall('HEXISTS', gk, id) == 0 then
    return
  end
  local lanes = {lane_keys(P, user)}
  for i = 1, 6 do
    local removed = rcall('LREM', lanes[i], 0, id)
    if removed > 0 then
      gone_add(gk, '\t' .. (7 - i), -removed)
    end
  end
  rcall('HDEL', gk, id)
end
