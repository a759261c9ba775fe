--- @include "rcall"
--- @include "result_key"

-- Where a pushed task's dependencies ({user, id} pairs) stand. Returns the ids not finished yet
-- (waiting, queued, delayed, running), the id of one that failed for good (dead) or was cancelled
-- (its result record says CANCELLED) -- nil when allow --, or nil, nil and why a dependency is
-- refused: it is not a task of the user named with it, or it is unknown (never pushed, deleted,
-- or finished without a kept result).
local function deps_check(P, deps, allow)
  local unmet, failed = {}, nil
  for _, d in ipairs(deps) do
    local user, id = d[1], d[2]
    local f = rcall('HMGET', P .. ':t:' .. id, 'u', 'st')
    if f[1] then
      if f[1] ~= user then
        return nil, nil, 'dependency ' .. id .. ' is not a task of user ' .. user
      end
      if f[2] == 'dead' then
        if not allow then
          failed = failed or id
        end
      else
        unmet[#unmet + 1] = id
      end
    else
      local r = rcall('GET', result_key(P, user, id))
      if type(r) ~= 'string' then
        return nil, nil, 'dependency ' .. id .. ' of user ' .. user .. ' is unknown (never pushed, deleted, ' ..
          'or finished without a kept result)'
      end
      if not string.find(r, '"status"%s*:%s*"SUCCESSFUL"') and not allow then
        failed = failed or id
      end
    end
  end
  return unmet, failed, nil
end
