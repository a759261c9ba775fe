--- @include "rcall"

-- Give task old the body a push brought for another id: the body (JSON, its "id" first, plen
-- bytes up to the end of that id) is kept byte for byte after the id, which becomes old's.
local function swap_body(P, old, body, plen)
  rcall('HSET', P .. ':t:' .. old, 'b', '{"id":' .. cjson.encode(old) .. string.sub(body, plen + 1))
end
