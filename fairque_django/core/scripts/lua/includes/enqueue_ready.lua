--- @include "rcall"
--- @include "header"
--- @include "lane_keys"
--- @include "lanes_upgrade"
--- @include "now_ms"
--- @include "mark_ready"

-- Place a task (whose hash exists) in its user's lane: at the back (LPUSH), or, front=true (a
-- retry or a released task), at the head (RPUSH), served next among its priority.
local function enqueue_ready(P, id, front)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, h = f[1], header(f[2])
  local prio, part = h.p, h.q or '~pool'
  lanes_upgrade(P, user)
  if front then
    rcall('RPUSH', lane_key(P, user, prio), id)
  else
    rcall('LPUSH', lane_key(P, user, prio), id)
  end
  rcall('HSET', tk, 'st', 'queued', 'e', now_ms())
  mark_ready(P, part, user)
end
