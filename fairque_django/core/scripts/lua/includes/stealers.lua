--- @include "rcall"

-- partition -> the workers that keep steal copies of it (P:stealers:<part>), and -> the registry
-- itself (worker, definition, ...), each as read once in this call (steal_index_add forgets a
-- partition whose registry it changes).
local stealers_memo, stealer_defs_memo = {}, {}

-- The workers that keep a steal copy of partition part.
local function stealers(P, part)
  local ws = stealers_memo[part]
  if not ws then
    ws = rcall('HKEYS', P .. ':stealers:' .. part)
    stealers_memo[part] = ws
  end
  return ws
end

-- The registry of partition part's stealers: worker, definition, worker, definition, ...
local function stealer_defs(P, part)
  local defs = stealer_defs_memo[part]
  if not defs then
    defs = rcall('HGETALL', P .. ':stealers:' .. part)
    stealer_defs_memo[part] = defs
  end
  return defs
end
