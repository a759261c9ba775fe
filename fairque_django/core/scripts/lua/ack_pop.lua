-- ack_pop: a worker's acknowledgements and its next pop in one call: complete.lua, then pop.lua
-- (what each does, takes and answers: there). They share one prologue, and a user's leased count
-- changed by both is written once (leased_flush at the end of pop.lua).
-- KEYS[1]  P:queue:stats (routes the call to the prefix's slot)
-- ARGV[1]  n, the number of complete.lua's arguments; then those n; then pop.lua's arguments
-- Returns  {complete.lua's reply, pop.lua's reply}
--- @command "complete"
--- @command "pop"
local n = tonumber(ARGV[1])
local acks, pops = {}, {}
for i = 2, n + 1 do
  acks[i - 1] = ARGV[i]
end
for i = n + 2, #ARGV do
  pops[i - n - 1] = ARGV[i]
end
leased_flush_later = true
local acked = complete_command(acks)
leased_flush_later = false
return {acked, pop_command(pops)}
