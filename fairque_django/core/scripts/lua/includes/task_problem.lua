--- @include "header_problem"
--- @include "counter_problem"

-- Why a task with header h, retries r and attempts a cannot be leased as it is (its retry
-- budget or lane would be guessed), or nil; then also the header's weight when it is fine.
local function task_problem(h, r, a)
  local why, weight = header_problem(h)
  return why or counter_problem('r', r) or counter_problem('a', a), weight
end
