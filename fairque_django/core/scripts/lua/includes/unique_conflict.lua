--- @include "rcall"
--- @include "swap_body"

-- A push whose unique key uk names an unfinished task (queued, delayed, waiting or running):
-- 'D' drop: the push is dropped; 'R' replace / 'B' debounce: the task, unless it is running,
-- takes the pushed body (its place in line kept; debounce also moves a delayed task's due time
-- to after and renews the key's ttl). Returns the answer and that task's id, or nil when the push
-- goes ahead (the key is free, names a finished task, or names a running one under replace or
-- debounce: the new task then takes the key).
local function unique_conflict(P, uk, mode, ttl, body, plen, after)
  local old = rcall('GET', uk)
  if not old then
    return nil
  end
  local tk = P .. ':t:' .. old
  local st = rcall('HGET', tk, 'st')
  if st ~= 'queued' and st ~= 'delayed' and st ~= 'waiting' and st ~= 'leased' then
    return nil
  end
  if mode == 'drop' then
    return 'D', old
  end
  if st == 'leased' then
    return nil
  end
  swap_body(P, old, body, plen)
  if mode ~= 'debounce' then
    return 'R', old
  end
  if after > 0 then
    if st == 'delayed' then
      rcall('ZADD', P .. ':delayed', 'XX', after, old)
    elseif st == 'waiting' then
      rcall('HSET', tk, 'na', after)
    end
  end
  if ttl > 0 then
    rcall('PEXPIRE', uk, ttl)
  end
  return 'B', old
end
