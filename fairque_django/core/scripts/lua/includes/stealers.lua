--- @include "rcall"

-- partition -> the workers that keep steal copies of it (P:stealers:<part>), and -> the registry
-- itself (worker, definition, ...), each as read once in this call (steal_index_add forgets a
-- partition whose registry it changes).
local stealers_memo, stealer_defs_memo = {}, {}

-- What command (HKEYS, HGETALL) answers of P:stealers:<part>, read once per call into memo.
local function stealers_read(memo, command, P, part)
  local got = memo[part]
  if not got then
    got = rcall(command, P .. ':stealers:' .. part)
    memo[part] = got
  end
  return got
end

-- The workers that keep a steal copy of partition part.
local function stealers(P, part)
  return stealers_read(stealers_memo, 'HKEYS', P, part)
end

-- The registry of partition part's stealers: worker, definition, worker, definition, ...
local function stealer_defs(P, part)
  return stealers_read(stealer_defs_memo, 'HGETALL', P, part)
end
