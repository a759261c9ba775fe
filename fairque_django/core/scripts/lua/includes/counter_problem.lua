--- @include "num"

-- Why a task's counter field (retries 'r', attempts 'a') holding v is unusable, or nil: absent
-- means 0; otherwise a whole number >= 0.
local function counter_problem(name, v)
  if not v then
    return nil
  end
  local n = num(v)
  if n and n >= 0 and n % 1 == 0 then
    return nil
  end
  return "its field '" .. name .. "' holds " .. string.sub(v, 1, 40) .. ', not a count'
end
