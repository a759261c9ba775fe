--- @include "rcall"
--- @include "stored_num"

-- fairness "time": the virtual-time cost (ms) charged when a task of user is leased (its moving
-- average run time, 10 ms before anything is known), corrected on completion by the run time.
local function expected_cost(P, user)
  local avg = stored_num(P .. ':runavg', user, rcall('HGET', P .. ':runavg', user), 0)
  if avg <= 0 then
    return 10
  end
  return avg
end
