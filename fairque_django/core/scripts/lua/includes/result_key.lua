-- The key of a task's result record (core/keys.py Keys.result): the user id is prefixed by its
-- length in characters (Python's len), counted here as the UTF-8 bytes that start a character.
local function result_key(P, user, id)
  local chars = #(string.gsub(user, '[\128-\191]', ''))
  return P .. ':result:' .. chars .. ':' .. user .. ':' .. id
end
