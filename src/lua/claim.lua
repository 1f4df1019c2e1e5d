-- claim: a membership id claimed in its bucket before the commit (the cluster protocol,
-- store_write.c, docs/CONSISTENCY.md "On a Redis Cluster"). On one Redis commit.lua claims
-- in the same script as the write; on a cluster the bucket is in another slot than the
-- customer, so the claim comes first, under the claimant's lock, and the commit after it.
-- KEYS[1] pp:{TAG}:mid:ORG:PID (the id's bucket). ARGV: membership id, cid, expected
-- ('' : the id must be free or already the customer's; a cid: the id is taken over from
-- that holder, whom held.lua found not holding it, under the holder's lock).
-- Returns "OK" (the entry names cid now), else the holder's cid (nothing written), or
-- "BROKEN" when the bucket is not a hash.
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'none' and t ~= 'hash' then return 'BROKEN' end
local mid, cid, expected = ARGV[1], ARGV[2], ARGV[3]
local h = redis.call('HGET', KEYS[1], mid)
if h and h ~= cid and h ~= expected then return h end
if h ~= cid then redis.call('HSET', KEYS[1], mid, cid) end
return 'OK'
