--- @include "rcall"
--- @include "num"
--- @include "stored_num"

-- The virtual start time of a user joining partition part's rotation, whose head has score head
-- (nil: the rotation is empty): the current round, or the user's last finish tag when later.
-- Also returns whether the user had a finish tag (kept in P:vfinish:<part> while it was idle).
-- A partition clock or finish tag that holds no number is repaired: the clock to 0, the finish
-- tag to the start (the user joins at the head of the rotation, never outside it).
local function joining_start(P, part, user, head)
  local start = num(head)
  if not start then
    start = stored_num(P .. ':vclock', part, rcall('HGET', P .. ':vclock', part), 0)
  end
  local fk = P .. ':vfinish:' .. part
  local raw = rcall('HGET', fk, user)
  local finish = stored_num(fk, user, raw, start)
  if finish > start then
    start = finish
  end
  return start, not not raw
end
