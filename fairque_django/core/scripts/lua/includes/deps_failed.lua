--- @include "rcall"
--- @include "deps_count_down"
--- @include "cancel_waiting"

-- Task id failed for good, was cancelled or deleted: the tasks waiting on it are cancelled, and
-- theirs in turn (a work list, not recursion: a chain of any length in this one call, O(tasks
-- cancelled)); a waiting task that allows failure counts the dependency as met instead.
local function deps_failed(P, id, now)
  local todo, i = {id}, 1
  while i <= #todo do
    local x = todo[i]
    i = i + 1
    local dk = P .. ':deps:' .. x
    local ds = rcall('SMEMBERS', dk)
    table.sort(ds) -- (a set has no order: dependents become ready in id order)
    rcall('DEL', dk)
    for _, d in ipairs(ds) do
      local f = rcall('HMGET', P .. ':t:' .. d, 'st', 'df')
      if f[1] == 'waiting' then
        if f[2] == '1' then
          deps_count_down(P, d, now)
        else
          cancel_waiting(P, d, now, 'dependency ' .. x .. ' failed or was cancelled')
          todo[#todo + 1] = d
        end
      end
    end
  end
end
