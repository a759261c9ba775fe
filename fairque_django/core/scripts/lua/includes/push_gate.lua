--- @include "unique_conflict"
--- @include "deps_check"

-- What a push with options (push_options) does instead of a plain store: returns an answer for
-- the push and its detail ('D'/'R'/'B' and the other task's id: unique_conflict; 'X' and why a
-- dependency is refused; 'C' and the failed dependency: the task is stored cancelled), or nil and
-- the ids of the dependencies still to succeed (the task is stored waiting when there are any).
local function push_gate(P, opt, body, after)
  if not opt then
    return nil, nil, nil
  end
  if opt.uk then
    local code, old = unique_conflict(P, opt.uk, opt.mode, opt.ttl, body, opt.plen, after)
    if code then
      return code, old, nil
    end
  end
  if not opt.deps[1] then
    return nil, nil, nil
  end
  local unmet, failed, why = deps_check(P, opt.deps, opt.allow)
  if why then
    return 'X', why, nil
  end
  if failed then
    return 'C', failed, nil
  end
  return nil, nil, unmet
end
