-- The score of a task in its user's normal lane: priority bands of 2^40, FIFO (seq) within one.
local function normal_score(prio, seq)
  return (6 - prio) * 1099511627776 + seq
end
