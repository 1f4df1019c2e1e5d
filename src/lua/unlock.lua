-- unlock: releases a customer's lock when it still holds the token (the cluster protocol,
-- store_write.c: a customer locked and then not committed, or a holder locked by held.lua;
-- a read's write-back, store_read.c).
-- KEYS: the customer hashes (all of one slot), whose field `lock` is the lock (lock.lua).
-- ARGV[1] the token. Returns how many were released.
--#include lock.lua
local mine = ARGV[1] .. LOCK_SEP   -- how a lock value of ours starts (lock.lua)
local n = 0
for i = 1, #KEYS do
  local l = redis.call('HGET', KEYS[i], LOCK_FIELD)
  if l and string.sub(l, 1, #mine) == mine then
    redis.call('HDEL', KEYS[i], LOCK_FIELD)
    n = n + 1
  end
end
return n
