-- settle: a read's write-back of a customer's relinks that took effect (reads.c).
-- ARGV: customer_key, version_read, cid,
--   n_set, (field, value)*        the settled memberships (m:PID, compact value)
--   n_release, (mid_index_key, membership_id)*   ids the customer no longer holds
--   n_claim, (mid_index_key, membership_id)*     ids it holds now (claimed when queued;
--                                                set here only when the entry is missing)
--   and, on a Redis Cluster only, token, lock_ttl_ms: the index buckets are in other slots
--   there (n_release and n_claim are 0), so the write-back takes the customer's lock (the
--   hash's field `lock`, lock.lua; "BUSY" when it is taken) and keeps it when it answers
--   "OK": the caller
--   releases and claims the ids in their buckets under it (claim.lua, hdel_if.lua) and then
--   releases the lock (unlock.lua); any other answer leaves no lock.
-- Fenced like a commit, without a lock of its own: nothing is written when a writer holds
-- the customer's lock ("BUSY": that writer settles it in its own commit) or when the
-- version is not the one read ("STALE": the values were computed from older data). A
-- release removes an entry only while it still names this customer (another customer may
-- have taken the id over meanwhile: holds.lua). The version is not bumped: the customer's
-- state is the same, only its stored form catches up with the clock. "BROKEN" when an
-- index key has another type than a hash (nothing written); else "OK".
local ck, ver, cid = ARGV[1], ARGV[2], ARGV[3]
local i = 4
local nset = tonumber(ARGV[i]); local sset = i + 1; i = sset + 2 * nset
local nrel = tonumber(ARGV[i]); local srel = i + 1; i = srel + 2 * nrel
local ncl = tonumber(ARGV[i]); local scl = i + 1
local token, ttl = ARGV[scl + 2 * ncl], ARGV[scl + 2 * ncl + 1]

--#include lock.lua
local cur = redis.call('HMGET', ck, LOCK_FIELD, 'v')
local now = lock_now()
if lock_taken(cur[1], now) then return 'BUSY' end
if (cur[2] or '') ~= ver then return 'STALE' end
for j = 0, nrel - 1 do
  local t = redis.call('TYPE', ARGV[srel + 2 * j]).ok
  if t ~= 'none' and t ~= 'hash' then return 'BROKEN' end
end
for j = 0, ncl - 1 do
  local t = redis.call('TYPE', ARGV[scl + 2 * j]).ok
  if t ~= 'none' and t ~= 'hash' then return 'BROKEN' end
end
if token and token ~= '' then
  redis.call('HSET', ck, LOCK_FIELD, token .. LOCK_SEP .. (now + ttl))
end
for j = 0, nrel - 1 do
  local key, mid = ARGV[srel + 2 * j], ARGV[srel + 2 * j + 1]
  if redis.call('HGET', key, mid) == cid then redis.call('HDEL', key, mid) end
end
for j = 0, ncl - 1 do
  redis.call('HSETNX', ARGV[scl + 2 * j], ARGV[scl + 2 * j + 1], cid)
end
if nset > 0 then
  redis.call('HSET', ck, unpack(ARGV, sset, sset + 2 * nset - 1))
end
return 'OK'
