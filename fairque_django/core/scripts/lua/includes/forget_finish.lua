--- @include "rcall"
--- @include "num"
--- @include "stored_num"
--- @include "repaired"

-- Forget the finish tag of idle user in partition part (P:vfinish:<part>) when that changes
-- nothing for it: a user joins at max(V, its tag), V the head of the rotation or, with the
-- rotation empty, the partition clock. With a head at or past the tag, the tag is dropped; with
-- the rotation empty (its busy period over), the clock moves up to the tag first, as start-time
-- fair queueing ends a busy period at the largest finish tag served: nobody joins before it any
-- more, so the forgotten tenant cannot jump the rotation. A tag still ahead of a non-empty
-- rotation is kept (returns false: try again later). A tag that holds no number is dropped (the
-- user would join at V). seen (a table) keeps what one call learnt of each partition: the head's
-- score (false: the rotation is empty) and the clock. Returns whether the user has no tag left there.
local function forget_finish(P, part, user, seen)
  local fk = P .. ':vfinish:' .. part
  local raw = rcall('HGET', fk, user)
  if not raw then
    return true
  end
  local tag = num(raw)
  if tag then
    local at = seen[part]
    if not at then
      local head = rcall('ZRANGE', P .. ':ready:' .. part, 0, 0, 'WITHSCORES')
      at = {head = head[1] and (num(head[2]) or -math.huge) or false} -- (a head of garbage: keep tags)
      if not at.head then
        at.clock = stored_num(P .. ':vclock', part, rcall('HGET', P .. ':vclock', part), 0)
      end
      seen[part] = at
    end
    if at.head then
      if tag > at.head then
        return false
      end
    elseif tag > at.clock then
      rcall('HSET', P .. ':vclock', part, raw)
      at.clock = tag
    end
  else
    repaired(fk, user, raw, 'none')
  end
  rcall('HDEL', fk, user)
  return true
end
