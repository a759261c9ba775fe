--- @include "rcall"

-- The task ids a DLQ script works on: ARGV[2..], or '*' alone for up to 1000 of the oldest dead.
local function dlq_ids(P)
  if ARGV[2] == '*' then
    return rcall('ZRANGE', P .. ':dlq', 0, 999)
  end
  local ids = {}
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
  return ids
end
