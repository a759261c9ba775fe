--- @include "rcall"
--- @include "may_steal"
--- @include "steal_ready_key"
--- @include "steal_invalidate"
--- @include "stealers"

-- User joined partition part's ready set at virtual time score: add it to the steal copies of
-- the stealers of part that may take it (P:stealers:<part> holds their definitions).
-- O(stealers of part), whatever the number of ready users; the registry is read once per call.
local function steal_index_add(P, part, user, score)
  local moved, bad = #quarantined, false
  local reg = P .. ':stealers:' .. part
  local defs = stealer_defs(P, part)
  for i = 1, #defs, 2 do
    local may = may_steal(P, defs[i], defs[i + 1], user)
    if may == nil then -- a definition no sync wrote: drop it (its stealer rebuilds)
      rcall('HDEL', reg, defs[i])
      stealers_memo[part], stealer_defs_memo[part] = nil, nil
      bad = true
    elseif may then
      rcall('ZADD', steal_ready_key(P, part, defs[i]), score, user)
    end
  end
  if bad or #quarantined > moved then
    steal_invalidate(P)
  end
end
