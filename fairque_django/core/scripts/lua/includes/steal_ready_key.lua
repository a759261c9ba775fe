-- The key of stealer worker's copy of partition part's ready set: the users of the partition it may
-- take, with their scores (P:sready:<bytes in part>:<part>:<worker>; the length keeps the name
-- unambiguous when ids contain ':').
local function steal_ready_key(P, part, worker)
  return P .. ':sready:' .. #part .. ':' .. part .. ':' .. worker
end
