-- The peer's delink, step 2 (after common.redis.lua; peer.lua runs delink_read.redis.lua
-- first): one customer entry of deLinkCustomer, atomically, in partnerd's stored formats:
-- each membership must still be the one step 1 read (else nothing is written and the
-- entry answers RETRY: the peer reads and tries it again), the link check (2004), the
-- membership field removed, its membership-id index entries (the membership's id and a
-- pending relink's) released when they name the customer, the version bump, the history
-- LPUSH/LTRIM of the DELINK record and the feed XADD of its fields (format 3), as
-- partnerd's commit stores them.
-- Left out (docs/PERFORMANCE.md, "The equal-work peer"): a relink that took effect is not
-- settled first (the DELINK record's before is the stored current membership).
-- ARGV after common.redis.lua's six: cid, n_items, then per item: program name, pid, code
--   (0, or the code decided before the stored check: 2002, 2102, 2006), the value read
--   ('' when none), n_keys, (bucket key, membership id)* of the value's ids.
-- Returns {"RETRY"} or {item_code*}.
local cid = ARGV[7]
local tag = tag_of_cid(cid)
local ck = 'pp:{' .. tag .. '}:c:' .. org .. ':' .. cid
local hk = 'pp:{' .. tag .. '}:h:' .. org .. ':' .. cid
local fk = 'pp:{' .. tag .. '}:feed:' .. org
local n = tonumber(ARGV[8])
local i = 9
local out, dels, releases, events = {}, {}, {}, {}
for k = 1, n do
  local prog, pid, code, read, nk = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], tonumber(ARGV[i + 4])
  local keys_at = i + 5
  i = keys_at + 2 * nk
  if code == 0 then
    local v = redis.call('HGET', ck, 'm:' .. pid)
    if (v or '') ~= read then return {'RETRY'} end
    if not v then
      code = 2004
    else
      dels[#dels + 1] = 'm:' .. pid
      for j = 0, nk - 1 do
        releases[#releases + 1] = ARGV[keys_at + 2 * j]
        releases[#releases + 1] = ARGV[keys_at + 2 * j + 1]
      end
      events[#events + 1] = fields('D', prog, '', values(parse(v)), NONE)
      code = 200
    end
  end
  out[k] = code
end

if #events > 0 then
  local nv = (tonumber(redis.call('HGET', ck, 'v')) or 0) + 1
  for j = 1, #releases, 2 do
    if redis.call('HGET', releases[j], releases[j + 1]) == cid then redis.call('HDEL', releases[j], releases[j + 1]) end
  end
  redis.call('HDEL', ck, unpack(dels))
  redis.call('HSET', ck, 'v', nv, 'w', writer)
  store_events(cid, hk, fk, nv, events)
end
return out
