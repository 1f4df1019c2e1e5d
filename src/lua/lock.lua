-- lock: a customer's lock, kept in the customer's own hash (key layout 3,
-- docs/DATA-MODEL.md, docs/CONSISTENCY.md): the field `lock` holds TOKEN:EXPIRY, the token
-- (32 hex chars) of the request that holds it and when it ends (ms on Redis's clock). It
-- exists only while the lock is taken or was left behind by a request that died; one past
-- its expiry is free, and the next request to lock the customer overwrites it. The token and
-- the expiry are the fence: commit.lua refuses a lock of its own once it has expired (and
-- deletes it), even when nobody has taken it over since.
-- In the hash (not a key of its own) so that taking the lock is one more field of the
-- customer's slot: a slot migration of a Redis Cluster moves it with the customer (a
-- separate key would make every begin of a migrating slot TRYAGAIN), and reading it costs
-- nothing beyond the HGETALL/HMGET that reads the customer anyway.
-- (scripts/embed-lua puts this file where a script says "--#include lock.lua".)
-- A script writes a lock value as token .. LOCK_SEP .. expiry (one per call: every customer a
-- call locks gets the same), and a value is token's when it starts with token .. LOCK_SEP.
-- Those two are written out in each script rather than made functions here: a function is
-- a closure made on every call of every script that includes this file, and at one
-- customer per call each costs (bench/scripts_micro.py --profile --batch 1).
local LOCK_FIELD, LOCK_SEP = 'lock', ':'

-- Redis's clock in ms.
local function lock_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether the stored lock value l (a string or nil/false) keeps others out at now: taken
-- and not yet expired (a value whose expiry does not read is free: no request could ever
-- end it).
local function lock_taken(l, now)
  if not l then return false end
  local c = string.find(l, LOCK_SEP, 1, true)
  local e = c and tonumber(string.sub(l, c + 1))
  return e ~= nil and e > now
end
