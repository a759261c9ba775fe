--- @include "rcall"
--- @include "num"
--- @include "repaired"

-- The limits of each user looked up in this call (user -> {c cap, t interval ms, b burst}).
local tenant_limit_memo = {}

-- One part of a limit spec: nil = not set by this source (the next decides), false = explicitly
-- none, else a number > 0 (cap and burst whole); 'bad' for anything else.
local function limit_part(v)
  if v == '' then return nil end
  if v == '-' then return false end
  local n = num(v)
  if n and n > 0 then return n end
  return 'bad'
end

-- A spec "cap\tinterval_ms\tburst\trate text" as {c, t, b} (see limit_part), or nil when it is
-- malformed.
local function limit_spec(s)
  local c, t, b = string.match(s or '', '^([^\t]*)\t([^\t]*)\t([^\t]*)\t[^\t]*$')
  if not c then return nil end
  local spec = {c = limit_part(c), t = limit_part(t), b = limit_part(b)}
  if spec.c == 'bad' or spec.t == 'bad' or spec.b == 'bad' or (spec.c and spec.c % 1 ~= 0)
      or (spec.b and spec.b % 1 ~= 0) then
    return nil
  end
  return spec
end

-- The limits in force for user: per field the runtime limits (P:tlimits), else the settings entry
-- (P:limitcfg: the exact id, else the first matching pattern), else the default (cap: 'def'; no
-- rate; burst 1). Returns {c = cap or nil, t = interval ms or nil, b = burst}. Garbage in a runtime
-- spec drops it; garbage in the settings mirror drops the mirror (the next sync writes it again);
-- both are reported as repairs.
local function tenant_limits(P, user)
  local hit = tenant_limit_memo[user]
  if hit then return hit end
  local lk, ck = P .. ':tlimits', P .. ':limitcfg'
  local raw = rcall('HGET', lk, user)
  local runtime = raw and limit_spec(raw)
  if raw and not runtime then
    rcall('HDEL', lk, user)
    repaired(lk, user, raw, 'none')
  end
  local cfg = rcall('HMGET', ck, 'x:' .. user, 'p', 'def')
  local entry = cfg[1] and limit_spec(cfg[1])
  local ok = not cfg[1] or entry
  if not entry and cfg[2] and ok then
    for line in string.gmatch(cfg[2], '[^\n]+') do
      local pat, spec = string.match(line, '^([^\t]+)\t(.*)$')
      if not pat then ok = false break end
      if string.match(user, pat) then
        entry = limit_spec(spec)
        ok = entry ~= nil
        break
      end
    end
  end
  local def = limit_part(cfg[3] or '')
  if def == 'bad' or (def and def % 1 ~= 0) then ok = false end
  if not ok then
    rcall('DEL', ck)
    repaired(ck, nil, 'a malformed limit definition', 'none (mirrored again by the next sync)')
    entry, def = nil, nil
  end
  local out = {c = def or nil, t = nil, b = 1}
  for _, f in ipairs({'c', 't', 'b'}) do
    local v = nil
    if runtime and runtime[f] ~= nil then
      v = runtime[f]
    elseif entry and entry[f] ~= nil then
      v = entry[f]
    end
    if v ~= nil then out[f] = v or nil end
  end
  if not out.b then out.b = 1 end
  tenant_limit_memo[user] = out
  return out
end
