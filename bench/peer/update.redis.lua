-- The peer's update script (after common.redis.lua: bench/peer/peer.lua prepends it before
-- SCRIPT LOAD, then calls it with EVALSHA): one customer entry of
-- customerPartnerProgramUpdate, atomically, in partnerd's stored formats (docs/DATA-MODEL.md,
-- docs/CHANGE-FEED.md): the identifier lookup in the layout-2 index buckets, the update checks
-- of SPEC 4.2 that need the stored membership (2004, 2104), the compact membership value, the
-- version bump, the history LPUSH/LTRIM of the activity's compact record and the feed XADD
-- of its fields (feed format 3), as partnerd's commit stores them.
-- Not partnerd's code: partnerd locks, reads, decides in C and commits (src/lua/); this is what
-- one would write for nginx + Lua. The peer's nginx side computes the bucket tags (SipHash-2-4
-- in LuaJIT) and does every check that needs no stored data.
-- ARGV after common.redis.lua's (org, now_ms, writer, request_id, history_max, feed_max,
--   n_idents, (kind, value, bucket_key)*): n_items, then per item: program name, pid, update
--   type (as sent), code (0, or the code decided before the membership check: 2002, 2006,
--   2102), type code (2002, 2009: after the link check's 2004), n_tiers, tier*, new tier index (1-based; 0 with a late code), late
--   code (2002, 2007: after the type), new expiry (ms, or '' to keep), expiry code (2103,
--   2003: after 2104).
-- Returns {code, id, mobile, email, externalId, item_code*} (code 1000, 8015 or 8016).
local cid, i = identify()
if not cid then return {i} end
local ck, hk, fk, cust, out = customer(cid)

local n = tonumber(ARGV[i]); i = i + 1
local mem = {}      -- pid -> parsed membership (changed by earlier items of the entry)
local sets, events = {}, {}
local nowb = b36(now)
local date = string.format('%.0f', now)
for k = 1, n do
  local prog, pid, utype, code, tcode = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local nt = tonumber(ARGV[i + 5])
  local tiers_at = i + 6
  i = tiers_at + nt
  local next, late, exp, ecode = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  local m
  if code == 0 then
    m = mem[pid]
    if m == nil then
      local v = redis.call('HGET', ck, 'm:' .. pid)
      m = v and parse(v) or false
      mem[pid] = m
    end
    if not m then code = 2004 elseif tcode ~= 0 then code = tcode end
  end
  if code == 0 and late ~= 0 then code = late end
  if code == 0 then
    local cur = 0
    for t = 1, nt do
      if ARGV[tiers_at + t - 1] == m.tier then cur = t end
    end
    if (utype == 'UPGRADE' and next <= cur) or (utype == 'DOWNGRADE' and (cur == 0 or next >= cur)) or
       ((utype == 'RENEWAL' or utype == 'RENEW') and next ~= cur) then
      code = 2104
    elseif ecode ~= 0 then
      code = ecode
    end
  end
  if code == 0 then
    local before = values(m)
    m.tier = ARGV[tiers_at + next - 1]
    if exp ~= '' then m.exp = b36(tonumber(exp)) end
    m.up = nowb
    sets[pid] = m
    -- the record's fields: type, date, program, updateType, requestId, before's five,
    -- after's five
    local after = values(m)
    local f = {'U', date, prog, utype, rid, before[1], before[2], before[3], before[4], before[5],
               after[1], after[2], after[3], after[4], after[5]}
    events[#events + 1] = f
    code = 200
  end
  out[#out + 1] = code
end


if #events > 0 then
  local nv = (tonumber(cust[5]) or 0) + 1
  local args = {'v', nv, 'w', writer}
  for pid, m in pairs(sets) do
    args[#args + 1] = 'm:' .. pid
    args[#args + 1] = encode(m)
  end
  redis.call('HSET', ck, unpack(args))
  store_events(cid, hk, fk, nv, events)
end
return out
