-- Fixed histogram bounds (ms), shared by every worker so histograms can be summed, and, by kind,
-- each bucket's field (literals: a script's text runs on every call). Constants: never written.
local OBS_BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local OBS_FIELDS = {
  w = {'w:5', 'w:10', 'w:25', 'w:50', 'w:100', 'w:250', 'w:500', 'w:1000',
    'w:2500', 'w:5000', 'w:10000', 'w:30000', 'w:60000', 'w:300000', 'w:inf'},
  r = {'r:5', 'r:10', 'r:25', 'r:50', 'r:100', 'r:250', 'r:500', 'r:1000',
    'r:2500', 'r:5000', 'r:10000', 'r:30000', 'r:60000', 'r:300000', 'r:inf'},
}

-- The histogram fields (bucket, sum) of one observation of kind 'w' (wait) or 'r' (run), and the
-- observation in whole ms; also added to totals (field -> increment): the everyone ('~all')
-- histogram of the call, written once per field by flush_observations.
local function observation(totals, kind, ms)
  if ms < 0 then ms = 0 end
  ms = math.floor(ms)
  local i = 1
  while i <= #OBS_BOUNDS and ms > OBS_BOUNDS[i] do
    i = i + 1
  end
  local field, sum = OBS_FIELDS[kind][i], kind .. ':sum'
  totals[field] = (totals[field] or 0) + 1
  totals[sum] = (totals[sum] or 0) + ms
  return field, sum, ms
end
