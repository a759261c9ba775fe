-- A pushed task's options (unique key and dependencies) from its options argument
-- "uk\tmode\tttl_ms\tplen\tallow\tkeep_ms[\tdep user\tdep id]..." (core/scripts/commands.py
-- push_options), or nil for '' or absent. Fields hold no tabs (ids and keys have no whitespace).
local function push_options(s)
  if not s or s == '' then
    return nil
  end
  local g, at = {}, 1
  while true do
    local tab = string.find(s, '\t', at, true)
    if not tab then
      g[#g + 1] = string.sub(s, at)
      break
    end
    g[#g + 1] = string.sub(s, at, tab - 1)
    at = tab + 1
  end
  local o = {uk = nil, mode = g[2], ttl = tonumber(g[3]) or 0, plen = tonumber(g[4]) or 0,
             allow = g[5] == '1', keep = tonumber(g[6]) or 86400000, deps = {}}
  if g[1] and g[1] ~= '' then
    o.uk = g[1]
  end
  for j = 7, #g - 1, 2 do
    o.deps[#o.deps + 1] = {g[j], g[j + 1]}
  end
  return o
end
