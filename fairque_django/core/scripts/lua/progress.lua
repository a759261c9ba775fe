-- progress: a running task says how far it got, fenced by its lease token.
-- KEYS[1]  P:queue:stats
-- ARGV[1]  P    ARGV[2] task id    ARGV[3] lease token    ARGV[4] fraction (text, 0..1)    ARGV[5] message
-- Returns  1 stored (field pg of the task: "token\tfraction\tms\tmessage"), 0 not stored: the task is not
--          leased under this token (finished, retried, or its lease was taken over by another attempt)
--- @include "includes/rcall"
--- @include "includes/now_ms"
local P, id, token = ARGV[1], ARGV[2], ARGV[3]
local tk = P .. ':t:' .. id
local f = rcall('HMGET', tk, 'tok', 'st')
if token == '' or f[2] ~= 'leased' or f[1] ~= token then
  return 0
end
rcall('HSET', tk, 'pg', token .. '\t' .. ARGV[4] .. '\t' .. now_ms() .. '\t' .. ARGV[5])
return 1
