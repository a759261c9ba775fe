--- @include "rcall"

-- The task ids a DLQ script works on: ARGV[from..], or '*' at ARGV[from] for up to 1000 of the
-- oldest dead tasks that died at or before the score ARGV[from + 1] (the newest when "all" began:
-- a task requeued by this "all" that dies again is not taken twice).
local function dlq_ids(P, from)
  if ARGV[from] == '*' then
    return rcall('ZRANGEBYSCORE', P .. ':dlq', '-inf', ARGV[from + 1] or '+inf', 'LIMIT', 0, 1000)
  end
  local ids = {}
  for i = from, #ARGV do ids[#ids + 1] = ARGV[i] end
  return ids
end
