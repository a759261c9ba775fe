--- @include "rcall"
--- @include "header"
--- @include "lane_keys"
--- @include "normal_score"
--- @include "now_ms"
--- @include "mark_ready"

-- Place a task (whose hash exists) in its user's lane. front=true puts a CRITICAL task at the
-- head of its lane (normal-lane tasks keep their enqueue order through their score).
local function enqueue_ready(P, id, front)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, h = f[1], header(f[2])
  local prio, seq, part = h.p, h.s, h.q or '~pool'
  local ck, nk = lane_keys(P, user)
  if prio == 6 then
    if front then
      rcall('RPUSH', ck, id)
    else
      rcall('LPUSH', ck, id)
    end
  else
    rcall('ZADD', nk, normal_score(prio, seq), id)
  end
  rcall('HSET', tk, 'st', 'queued', 'e', now_ms())
  mark_ready(P, part, user)
end
