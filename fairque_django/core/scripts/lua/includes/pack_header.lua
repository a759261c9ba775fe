-- The packed header (field 'h') of a task; see header().
local function pack_header(prio, seq, part, weight, maxr)
  return prio .. '\t' .. seq .. '\t' .. part .. '\t' .. weight .. '\t' .. maxr
end
