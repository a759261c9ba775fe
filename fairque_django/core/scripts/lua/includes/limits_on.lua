--- @include "rcall"
--- @include "repaired"
--- @include "limits_state"

-- Whether any tenant limit may apply (P:tlimon, read once per call; raw: its value when the caller
-- read it already, false when it was missing). '0' lets tenant_block, lease_taken and lease_ended
-- skip their lookups (3 to 4 commands a lease): no tenant is paused, held or limited. The leased
-- counts (P:tleased) are kept either way, so a cap set later holds at once. Missing (a new queue,
-- an upgrade) or garbage: looked at again (limits_state; garbage is reported).
local function limits_on(P, raw)
  if limits_memo ~= nil then
    return limits_memo
  end
  if not raw then -- (read here when missing from the caller's MGET: a wrong-typed key is moved aside)
    raw = rcall('GET', P .. ':tlimon')
  end
  if raw == '1' or raw == '0' then
    limits_memo = raw == '1'
    return limits_memo
  end
  if raw then
    repaired(P .. ':tlimon', nil, raw, 'looked at again')
  end
  return limits_state(P)
end
