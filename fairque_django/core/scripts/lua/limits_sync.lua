-- limits_sync: mirror the tenant limit settings (queue.tenant_concurrency, queue.tenant_limits)
-- into P:limitcfg, where every script reads them (see includes/tenant_limits).
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] digest of the settings    ARGV[3] '1' = write them when the mirror does not
--          carry that digest, then field, value pairs (see core/config/limits.py limits_mirror)
-- Returns  1 when the mirror carries the digest (the flag P:tlimon is then looked at again unless
--          it is on: a pause or limit written by a former version's tenant script turns it on); else 0 (and, when asked to, it was rewritten and
--          every held tenant looked at again: a raised cap lets it rejoin, a lowered one holds it at
--          its next turn; every rate bucket starts full)
--- @include "includes/rcall"
--- @include "includes/rejoin"
--- @include "includes/limits_state"
local P, digest = ARGV[1], ARGV[2]
local ck = P .. ':limitcfg'
if rcall('HGET', ck, 'd') == digest then
  if rcall('GET', P .. ':tlimon') ~= '1' then -- a limit written by a script that does not keep the
    limits_state(P)                            -- flag (a process of a former version): seen here
  end
  return 1
end
if ARGV[3] ~= '1' then
  return 0
end
rcall('DEL', ck)
local fields = {'d', digest}
for i = 4, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
rcall('HSET', ck, unpack(fields))
rcall('DEL', P .. ':trate') -- rates may have changed: every bucket starts full
limits_memo = true -- (looked at again below, once every held tenant's place is settled)
for _, user in ipairs(rcall('HKEYS', P .. ':theld')) do
  rejoin(P, user)
end
limits_state(P)
return 0
