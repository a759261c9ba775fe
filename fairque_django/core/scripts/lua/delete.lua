-- delete: remove tasks wherever they are (queued, delayed, leased or dead).
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P, then the task ids ('*' alone: up to 1000 dead tasks per call, i.e. a DLQ purge step)
-- Returns  the ids deleted
--- @include "includes/rcall"
--- @include "includes/header"
--- @include "includes/lane_keys"
--- @include "includes/forget"
--- @include "includes/live"
--- @include "includes/stat"
--- @include "includes/dlq_ids"
local P = ARGV[1]
local ids = dlq_ids(P)
local done = {}
for _, id in ipairs(ids) do
  local tk = P .. ':t:' .. id
  local f = rcall('HMGET', tk, 'u', 'h', 'st')
  if f.err then
    rcall('DEL', tk)
    rcall('ZREM', P .. ':dlq', id)
    done[#done + 1] = id
  elseif f[1] then
    local ck, nk = lane_keys(P, f[1])
    if header(f[2]).p == 6 then
      rcall('LREM', ck, 0, id)
    else
      rcall('ZREM', nk, id)
    end
    rcall('ZREM', P .. ':delayed', id)
    rcall('ZREM', P .. ':dlq', id)
    forget(P, id)
    if f[3] ~= 'dead' then
      live(P, f[1], -1)
    end
    stat(P, 'deleted', 1)
    done[#done + 1] = id
  end
end
return done
