-- read: one customer's state for the read routes, in one call.
-- ARGV: org, identifier kind (id | mobile | email | externalId), value (normalised), what,
--   rate_key, rate_limit (as in begin.lua: {"LIMITED", seconds} when over the limit)
--   what = "programs": returns {cid, hgetall customer, hgetall programs}
--   what = "history":  returns {cid, hgetall customer, lrange history 0 -1}
-- Returns {} when no customer matches.
local org, kind, val, what = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit = tonumber(ARGV[6])
if limit > 0 then
  local now = tonumber(redis.call('TIME')[1])
  local key = ARGV[5] .. ':' .. math.floor(now / 60)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, 120) end
  if count > limit then return {'LIMITED', tostring(60 - now % 60)} end
end
local cid
if kind == 'id' then
  if redis.call('EXISTS', 'pp:{' .. org .. ':' .. val .. '}:c') == 1 then cid = val end
else
  cid = redis.call('HGET', 'pp:{' .. org .. '}:ix:' .. kind, val)
end
if not cid then return {} end
local tag = 'pp:{' .. org .. ':' .. cid .. '}:'
local extra
if what == 'history' then
  extra = redis.call('LRANGE', tag .. 'h', 0, -1)
else
  extra = redis.call('HGETALL', 'pp:{' .. org .. '}:progs')
end
return {cid, redis.call('HGETALL', tag .. 'c'), extra}
