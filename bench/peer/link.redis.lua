-- The peer's link script (after common.redis.lua; bench/peer/peer.lua loads it with
-- EVALSHA): one customer entry of linkCustomer, atomically, in partnerd's stored formats:
-- the identifier lookup in the layout-2 index buckets, the link checks of SPEC 4.1 that
-- need stored data (already linked: 2005; the membership id held by another customer in
-- the program, looked up in its layout-2 bucket pp:{TAG}:mid:ORG:PID: 2101), the compact
-- membership value, the membership-id index entry, the version bump, the history
-- LPUSH/LTRIM of the LINK record and the feed XADD of its fields (format 3), as partnerd's
-- commit stores them.
-- Not partnerd's code: partnerd locks, reads, decides in C and commits (src/lua/). The
-- peer's nginx side does every check that needs no stored data and computes the buckets
-- (SipHash-2-4 in LuaJIT). Left out (docs/PERFORMANCE.md, "The equal-work peer"): relinks
-- (a linked SUPPLEMENTARY program with a future start answers 2005, where partnerd queues
-- a pending relink), the takeover of a membership id whose holder's relink took effect,
-- the refusal of changes to a membership stored over the size limits.
-- ARGV after common.redis.lua's: n_items, then per item 11 values: program name, pid, code
--   (0, or the code decided before the stored checks: 2002, 2102, 2006, 2103), membership-id
--   code (0 or 2002: after 2005), membership id, its bucket key, late code (2002, 2007,
--   2003: after 2101), tier ('' for a program without tiers), expiry (ms in decimal, or
--   ''), start (ms in decimal: the given start or now), end (ms, or '').
-- Returns {code, id, mobile, email, externalId, item_code*} (code 1000, 8015 or 8016).
local cid, i = identify()
if not cid then return {i} end
local ck, hk, fk, cust, out = customer(cid)

local n = tonumber(ARGV[i]); i = i + 1
local sets, claims, events = {}, {}, {}
local nowb = b36(now)
for k = 1, n do
  local prog, pid, code, midc, mid, midkey = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3]),
    ARGV[i + 4], ARGV[i + 5]
  local late, tier, exp, start, e = tonumber(ARGV[i + 6]), ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], ARGV[i + 10]
  i = i + 11
  if code == 0 then
    if redis.call('HEXISTS', ck, 'm:' .. pid) == 1 then
      code = 2005
    elseif midc ~= 0 then
      code = midc
    else
      local h = redis.call('HGET', midkey, mid)
      if h and h ~= cid then code = 2101 elseif late ~= 0 then code = late end
    end
  end
  if code == 0 then
    local m = {mid = mid, tier = tier ~= '' and tier or nil, exp = exp ~= '' and b36(tonumber(exp)) or '',
               start = tonumber(start) == now and '' or b36(tonumber(start)),
               ['end'] = e ~= '' and b36(tonumber(e)) or '', lk = nowb, up = nowb, tail = ''}
    sets[#sets + 1] = 'm:' .. pid
    sets[#sets + 1] = encode(m)
    claims[#claims + 1] = midkey
    claims[#claims + 1] = mid
    events[#events + 1] = fields('L', prog, '', NONE, {mid, tier, exp, start, e})
    code = 200
  end
  out[#out + 1] = code
end

if #events > 0 then
  local nv = (tonumber(cust[5]) or 0) + 1
  for j = 1, #claims, 2 do redis.call('HSET', claims[j], claims[j + 1], cid) end
  redis.call('HSET', ck, 'v', nv, 'w', writer, unpack(sets))
  store_events(cid, hk, fk, nv, events)
end
return out
