-- tenant: change a tenant's runtime limits or pause it (TaskQueue.set_tenant_limits,
-- clear_tenant_limits, pause_tenant, resume_tenant), then put it where its limits say: out of
-- its rotation when they hold it back now (keeping its place), back in at its fair place when they
-- no longer do. A change of its rate starts the new rate with a full bucket. Idempotent: the same
-- call again changes nothing.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] user    ARGV[3] 'set' | 'clear' | 'pause' | 'resume'
-- ARGV[4]  ('set') the runtime spec "cap\tinterval_ms\tburst\trate text" given: a part '' keeps the
--          runtime value set before (if any), '-' is explicitly none (overrides the settings), else a
--          number (the rate text goes with the interval)
-- Returns  {paused (0/1), why it is held ('' = not held), tasks leased now}
--- @include "includes/rcall"
--- @include "includes/now_ms"
--- @include "includes/rejoin"
--- @include "includes/tenant_limits"
--- @include "includes/limits_state"
local P, user, op = ARGV[1], ARGV[2], ARGV[3]
local lk = P .. ':tlimits'
local interval = tenant_limits(P, user).t
if op == 'set' then
  local pat = '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$'
  local given = {string.match(ARGV[4], pat)}
  local old = {string.match(rcall('HGET', lk, user) or '', pat)}
  if given[2] == '' then given[4] = old[4] or '' end
  for i = 1, 4 do
    if given[i] == '' then given[i] = old[i] or '' end
  end
  rcall('HSET', lk, user, table.concat(given, '\t'))
elseif op == 'clear' then
  rcall('HDEL', lk, user)
elseif op == 'pause' then
  rcall('HSETNX', P .. ':tpaused', user, now_ms())
elseif op == 'resume' then
  rcall('HDEL', P .. ':tpaused', user)
else
  return redis.error_reply('tenant: unknown operation ' .. tostring(op))
end
tenant_limit_memo[user] = nil
tenant_paused_memo[user] = nil
limits_memo = true -- (looked at again below, once the tenant's place is settled)
if tenant_limits(P, user).t ~= interval then -- a new rate starts with a full bucket
  rcall('HDEL', P .. ':trate', user)
end
rejoin(P, user)
limits_state(P)
return {rcall('HEXISTS', P .. ':tpaused', user), rcall('HGET', P .. ':theld', user) or '',
        tonumber(rcall('HGET', P .. ':tleased', user)) or 0}
