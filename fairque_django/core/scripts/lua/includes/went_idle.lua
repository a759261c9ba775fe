--- @include "rcall"
--- @include "now_ms"

-- User's last unfinished task ended (its live count fell to 0): note when, so that the retention
-- sweep (fold_idle.lua) can fold its per-tenant state once it has stayed idle long enough. A
-- user that comes back is not taken out here: the sweep checks P:live (once per burst, not per task).
local function went_idle(P, user)
  rcall('ZADD', P .. ':idle', now_ms(), user)
end
