--- @include "rcall"
--- @include "header"
--- @include "lane_keys"
--- @include "lanes_upgrade"
--- @include "now_ms"
--- @include "mark_ready"

-- lane -> the tasks this script call put back at its head, {seq, id} in serving order (the state
-- of this helper; no script pops a lane between two of its calls with front=true)
local front_run = {}

-- Place a task (whose hash exists) in its user's lane: at the back (LPUSH), or, front=true (a
-- retry or a released task), at the head, among the tasks this call put back there by their
-- enqueue order (a released batch, the leases of a worker that died, keep their order).
local function enqueue_ready(P, id, front)
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h')
  local user, h = f[1], header(f[2])
  local prio, part = h.p, h.q or '~pool'
  lanes_upgrade(P, user)
  local lk = lane_key(P, user, prio)
  if front then
    local run = front_run[lk] or {}
    front_run[lk] = run
    for _ = 1, #run do
      rcall('RPOP', lk)
    end
    local at = #run + 1
    while at > 1 and run[at - 1][1] > h.s do
      at = at - 1
    end
    table.insert(run, at, {h.s, id})
    local back = {}
    for j = #run, 1, -1 do -- (RPUSH a b: b is served first)
      back[#back + 1] = run[j][2]
    end
    rcall('RPUSH', lk, unpack(back))
  else
    rcall('LPUSH', lk, id)
  end
  rcall('HSET', tk, 'st', 'queued', 'e', now_ms())
  mark_ready(P, part, user)
end
