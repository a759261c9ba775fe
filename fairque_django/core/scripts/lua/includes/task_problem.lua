--- @include "header_problem"
--- @include "counter_problem"

-- Why a task with header h, retries r and attempts a cannot be leased as it is (its retry
-- budget or lane would be guessed), or nil.
local function task_problem(h, r, a)
  return header_problem(h) or counter_problem('r', r) or counter_problem('a', a)
end
