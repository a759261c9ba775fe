--- @include "rcall"

-- Whether stealer worker may take user, by its definition def kept in P:stealers:<part>: '1' (it
-- has exact targets, the set P:steal:<worker>) or '0', then each anchored Lua pattern after a tab.
-- nil: def is not such a definition.
local function may_steal(P, worker, def, user)
  local flag = string.sub(def, 1, 1)
  if (flag ~= '0' and flag ~= '1') or (#def > 1 and string.sub(def, 2, 2) ~= '\t') then
    return nil
  end
  if flag == '1' and rcall('SISMEMBER', P .. ':steal:' .. worker, user) == 1 then
    return true
  end
  for pat in string.gmatch(string.sub(def, 3), '[^\t]+') do
    local ok, hit = pcall(string.find, user, pat)
    if not ok then
      return nil
    end
    if hit then
      return true
    end
  end
  return false
end
