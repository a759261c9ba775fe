--- @include "rcall"

-- Release a task's unique key (its name is the task hash's uk field) when the key still names the
-- task: a replace or debounce of a running task may have moved it to a newer one.
local function release_unique(P, id, uk)
  if uk and uk ~= '' and rcall('GET', uk) == id then
    rcall('DEL', uk)
  end
end
