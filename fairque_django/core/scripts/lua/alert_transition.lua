-- alert_transition: record the evaluated state of alert rules; report each change exactly once.
-- Runs atomically, so when several processes evaluate the same rules only the first one that sees
-- a new state gets it back: every transition (firing / resolved) is reported once in all. An
-- evaluation of a snapshot older than the last one recorded for a rule is ignored, so a slow
-- evaluator cannot flip a rule back to what an earlier snapshot said.
-- KEYS[1]  P:alerts   HASH  s:<rule> 'firing' | 'ok'      t:<rule> ms since that state
--                           e:<rule> ms of the snapshot last evaluated    d:<rule> its details (JSON)
-- ARGV[1]  the time of the evaluated snapshot in ms (Redis time, fractions allowed)
-- ARGV[2..] triples: rule name, new state ('firing' or 'ok'), details JSON
-- Returns  a flat array of quadruples {rule, old state ('' = none), new state, since ms} for the
--          rules whose state changed; a rule seen for the first time as 'ok' is not a change.
--- @include "includes/num"
local key = KEYS[1]
local at = ARGV[1]
local out = {}
for i = 2, #ARGV, 3 do
  local rule, new, details = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local last = num(redis.call('HGET', key, 'e:' .. rule)) or 0 -- garbage: evaluated again
  if tonumber(at) >= last then
    local old = redis.call('HGET', key, 's:' .. rule)
    redis.call('HSET', key, 'e:' .. rule, at, 'd:' .. rule, details)
    if old ~= new then
      redis.call('HSET', key, 's:' .. rule, new, 't:' .. rule, at)
      if old or new ~= 'ok' then
        out[#out + 1] = rule
        out[#out + 1] = old or ''
        out[#out + 1] = new
        out[#out + 1] = at
      end
    end
  end
end
return out
