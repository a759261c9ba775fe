--- @include "rcall"

-- User's last unfinished task ended (its live count fell to 0): mark it idle for the retention
-- sweep (fold_idle.lua), unstamped (score 0): the sweep stamps it with its own clock when it
-- first sees it, and folds it once it has stayed idle a whole window after that. One command per
-- burst, none per task; a user that comes back is not unmarked here (the sweep checks P:live), and
-- one that goes idle again is marked unstamped again (its window starts over).
local function went_idle(P, user)
  rcall('ZADD', P .. ':idle', 0, user)
end
