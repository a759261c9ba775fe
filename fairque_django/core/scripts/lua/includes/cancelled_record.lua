--- @include "result_key"
--- @include "num"

-- Keep the outcome CANCELLED of task id of user for ttl seconds, in the key and shape of a result
-- record (core/results.py), with the task's body under "task" when it is JSON (what was cancelled:
-- the Django backend rebuilds its TaskResult from it). The body is checked, never re-encoded.
-- why / etype: the error and its type (nil: "cancelled", TaskCancelled).
local function cancelled_record(P, id, user, attempts, body, now, ttl, why, etype)
  local task = ''
  if body and string.sub(body, 1, 1) == '{' then
    local ok, decoded = pcall(cjson.decode, body)
    if ok and type(decoded) == 'table' then
      task = ',"task":' .. body
    end
  end
  local record = '{"status":"CANCELLED","error":' .. cjson.encode(why or 'cancelled') .. ',"error_type":' ..
    cjson.encode(etype or 'TaskCancelled') .. ',"attempts":' .. math.max(0, math.floor(num(attempts) or 0)) ..
    ',"finished_at":' .. string.format('%.3f', now / 1000) .. task .. '}'
  redis.call('SET', result_key(P, user, id), record, 'EX', math.max(1, math.floor(ttl)))
end
