--- @include "release_unique"
--- @include "deps_met"
--- @include "deps_failed"
--- @include "now_ms"

-- A task left the queue: its unique key (uk) is released and, when it has dependents (hd), they
-- learn of it: ok = succeeded (they count it as met), else died or was cancelled (they are cancelled).
local function task_finished(P, id, uk, hd, ok)
  release_unique(P, id, uk)
  if hd then
    if ok then
      deps_met(P, id, now_ms())
    else
      deps_failed(P, id, now_ms())
    end
  end
end
