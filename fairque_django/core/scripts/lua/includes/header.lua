-- A task's packed header (field 'h'): {p priority, s seq, q partition, w weight, m max_retries}.
local function header(h)
  local p, s, q, w, m = string.match(h or '', '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  return {p = tonumber(p) or 3, s = tonumber(s) or 0, q = q, w = tonumber(w) or 1, m = tonumber(m) or 0}
end
