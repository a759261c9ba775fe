--- @include "rcall"

-- The virtual start time of a user joining partition part's rotation, whose head has score head
-- (nil: the rotation is empty): the current round, or the user's last finish tag when later.
-- Also returns whether the user had a finish tag (kept in P:vfinish:<part> while it was idle).
local function joining_start(P, part, user, head)
  local start = tonumber(head or rcall('HGET', P .. ':vclock', part) or '0')
  local finish = rcall('HGET', P .. ':vfinish:' .. part, user)
  if finish and tonumber(finish) > start then
    start = tonumber(finish)
  end
  return start, not not finish
end
