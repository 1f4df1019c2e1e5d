-- unlock: releases a customer's lock when it still holds the token (the cluster protocol,
-- store_write.c: a customer locked and then not committed, or a holder locked by held.lua).
-- KEYS: the lock keys (all of one slot). ARGV[1] the token. Returns how many were released.
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    n = n + 1
  end
end
return n
