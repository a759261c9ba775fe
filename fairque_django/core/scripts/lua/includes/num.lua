-- A stored value as a finite number, or nil when it is absent or is not a finite number (garbage,
-- 'nan', 'inf'): every number a script reads from a key goes through here (or stored_num).
local function num(v)
  local n = tonumber(v)
  if n and n == n and n ~= math.huge and n ~= -math.huge then
    return n
  end
  return nil
end
