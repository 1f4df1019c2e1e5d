-- held: does a customer still hold a membership id? The cluster protocol's check
-- (store_write.c, docs/CONSISTENCY.md "On a Redis Cluster"): there the id's claim bucket
-- and the holder's customer hash are in different slots, so the check that commit.lua and
-- begin.lua make in the same script on one Redis is a call of its own, in the holder's slot.
-- KEYS[1] the holder's customer hash, whose field `lock` is its lock (lock.lua; declared: a
-- cluster routes by it).
-- ARGV: org, holder cid, pid, membership id, mode, token, lock_ttl_ms
--   mode "check": 1 when the holder holds the id (holds.lua), else 0; changes nothing.
--   mode "lock": first takes the holder's lock for token until lock_ttl_ms from now: "BUSY"
--     when another request holds it (the holder may be committing that very id); then
--     "HELD" (no lock left) when the holder holds the id, else "FREE" with the
--     lock kept: the caller takes the id over in its bucket (claim.lua, with this holder
--     as the expected one) and only then releases the lock (unlock.lua). Holding the lock
--     over both steps is what keeps the holder from claiming the id anew in between.
--     A holder whose hash does not exist holds nothing and cannot claim: "FREE" without a
--     lock (a lock field would make a hash of it; unlock.lua then finds nothing to release).
local org, h, pid, mid, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
--#include tags.lua
--#include lock.lua
--#include holds.lua
local now = lock_now()
if mode == 'check' then
  if mid_holds(org, h, pid, mid, now) then return 1 end
  return 0
end
if mode ~= 'lock' then return redis.error_reply('held: unknown mode') end
if redis.call('EXISTS', KEYS[1]) == 0 then return 'FREE' end
if lock_taken(redis.call('HGET', KEYS[1], LOCK_FIELD), now) then return 'BUSY' end
if mid_holds(org, h, pid, mid, now) then return 'HELD' end
redis.call('HSET', KEYS[1], LOCK_FIELD, ARGV[6] .. LOCK_SEP .. (now + ARGV[7]))
return 'FREE'
