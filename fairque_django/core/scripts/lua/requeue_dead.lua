-- requeue_dead: move tasks from the dead-letter queue back to their user's queue, retries reset.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P, then the task ids, or '*' and a score: up to 1000 of the oldest dead tasks per call
--          that died at or before that score (see dlq_ids)
-- Returns  the ids requeued
--- @include "includes/rcall"
--- @include "includes/header"
--- @include "includes/pack_header"
--- @include "includes/enqueue_ready"
--- @include "includes/live"
--- @include "includes/stat"
--- @include "includes/dlq_ids"
--- @include "includes/next_seq"
--- @include "includes/counter_problem"
local P = ARGV[1]
local ids = dlq_ids(P, 2)
local done = {}
for _, id in ipairs(ids) do
  local tk = P .. ':t:' .. id
  if rcall('ZREM', P .. ':dlq', id) == 1 and rcall('HGET', tk, 'st') == 'dead' then
    local seq = next_seq(P, 1)
    local h = header(rcall('HGET', tk, 'h'))
    rcall('HSET', tk, 'r', 0, 'h', pack_header(h.p, seq, h.q or '~pool', h.w, h.m))
    if counter_problem('a', rcall('HGET', tk, 'a')) then
      rcall('HSET', tk, 'a', 0) -- a corrupt attempts count (see fail_attempt) restarts
    end
    rcall('HDEL', tk, 'err', 'et', 'tb', 'ft', 'dt')
    enqueue_ready(P, id, false)
    live(P, rcall('HGET', tk, 'u'), 1)
    stat(P, 'requeued', 1)
    done[#done + 1] = id
  end
end
return done
