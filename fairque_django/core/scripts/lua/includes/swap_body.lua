--- @include "rcall"

-- Give task old the body a push brought for another id. A body of the compact format (plen 0)
-- names no id: it is kept as it is. One of the former format (its "id" first, plen bytes up to
-- the end of that id) is kept byte for byte after the id, which becomes old's.
local function swap_body(P, old, body, plen)
  if plen == 0 then
    rcall('HSET', P .. ':t:' .. old, 'b', body)
    return
  end
  rcall('HSET', P .. ':t:' .. old, 'b', '{"id":' .. cjson.encode(old) .. string.sub(body, plen + 1))
end
