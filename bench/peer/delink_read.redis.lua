-- The peer's delink, step 1 (after common.redis.lua): the customer and its memberships of
-- the entry's programs, read without writing. The membership-id index bucket of a stored
-- membership id is a SipHash-2-4 of it (layout_bucket_of), which a Redis script cannot
-- compute cheaply: the peer's nginx side computes it from what this read returns and
-- delink.redis.lua then checks, atomically, that the membership is still the one read
-- (partnerd, too, reads a customer in one round trip and commits in another).
-- ARGV after common.redis.lua's: n_items, pid* ('' for an item that needs no read).
-- Returns {1000, cid, id, mobile, email, externalId, value or false per item}, or {8015} /
-- {8016}.
local cid, i = identify()
if not cid then return {i} end
local ck = 'pp:{' .. tag_of_cid(cid) .. '}:c:' .. org .. ':' .. cid
local n = tonumber(ARGV[i])
local f = {'id', 'mobile', 'email', 'externalId'}
for k = 1, n do
  local pid = ARGV[i + k]
  f[4 + k] = pid ~= '' and ('m:' .. pid) or 'id'
end
local got = redis.call('HMGET', ck, unpack(f))
local out = {1000, cid, got[1] or cid, got[2] or '', got[3] or '', got[4] or ''}
for k = 1, n do out[6 + k] = ARGV[i + k] ~= '' and got[4 + k] or false end
return out
