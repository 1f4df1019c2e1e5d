-- held: does a customer still hold a membership id? The cluster protocol's check
-- (store_write.c, docs/CONSISTENCY.md "On a Redis Cluster"): there the id's claim bucket
-- and the holder's customer hash are in different slots, so the check that commit.lua and
-- begin.lua make in the same script on one Redis is a call of its own, in the holder's slot.
-- KEYS[1] the holder's customer hash, KEYS[2] its lock key (declared: a cluster routes by
-- them, and refuses the call while a migration splits them).
-- ARGV: org, holder cid, pid, membership id, mode, token, lock_ttl_ms
--   mode "check": 1 when the holder holds the id (holds.lua), else 0; changes nothing.
--   mode "lock": first takes the holder's lock for token (SET NX PX lock_ttl_ms): "BUSY"
--     when another request holds it (the holder may be committing that very id); then
--     "HELD" (the lock released again) when the holder holds the id, else "FREE" with the
--     lock kept: the caller takes the id over in its bucket (claim.lua, with this holder
--     as the expected one) and only then releases the lock (unlock.lua). Holding the lock
--     over both steps is what keeps the holder from claiming the id anew in between.
local org, h, pid, mid, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
--#include tags.lua
--#include holds.lua
if mode == 'check' then
  if mid_holds(org, h, pid, mid, holds_now_ms()) then return 1 end
  return 0
end
if mode ~= 'lock' then return redis.error_reply('held: unknown mode') end
if not redis.call('SET', KEYS[2], ARGV[6], 'NX', 'PX', ARGV[7]) then return 'BUSY' end
if mid_holds(org, h, pid, mid, holds_now_ms()) then
  redis.call('DEL', KEYS[2])
  return 'HELD'
end
return 'FREE'
