-- The peer's Redis script (bench/peer/peer.lua loads it with EVALSHA): one customer entry of
-- customerPartnerProgramUpdate, atomically, in partnerd's stored formats (docs/DATA-MODEL.md,
-- docs/CHANGE-FEED.md): the identifier lookup in the layout-2 index buckets, the update checks
-- of SPEC 4.2 that need the stored membership (2004, 2104), the compact membership value, the
-- version bump, the history LPUSH/LTRIM of the activity's compact record and the feed XADD
-- of its fields (feed format 3), as partnerd's commit stores them.
-- Not partnerd's code: partnerd locks, reads, decides in C and commits (src/lua/); this is what
-- one would write for nginx + Lua. The peer's nginx side computes the bucket tags (SipHash-2-4
-- in LuaJIT) and does every check that needs no stored data.
-- ARGV: org, now_ms, writer (32 hex, stored as the hash's `w` like partnerd's lock token),
--   request_id, history_max, feed_max (per partition), n_idents, (kind, value, bucket_key)*,
--   n_items, then per item: program name, pid, update type (as sent), code (0, or the code
--   decided before the membership check: 2002, 2006, 2102), type code (2002, 2009: after the
--   link check's 2004), n_tiers, tier*, new tier index (1-based; 0 with a late code), late
--   code (2002, 2007: after the type), new expiry (ms, or '' to keep), expiry code (2103,
--   2003: after 2104).
-- Returns {code, id, mobile, email, externalId, item_code*} (code 1000, 8015 or 8016).
local TAGS = '@LAYOUT_TAGS@'
local org, now, writer, rid = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local hmax, fmax = tonumber(ARGV[5]), ARGV[6]

local function tag_of_cid(cid)
  local h = 0
  for k = 1, #cid do
    local d = string.byte(cid, k) - 48
    if d >= 0 and d <= 9 then h = (h * 10 + d) % 65521 end
  end
  local at = (h % 256) * 10
  return (string.match(string.sub(TAGS, at + 1, at + 10), '^[^ ]+'))
end

-- identifiers: all must name one customer
local ni = tonumber(ARGV[7])
local i = 8
local cid, missing, differ = nil, false, false
for k = 0, ni - 1 do
  local kind, val, key = ARGV[i + 3 * k], ARGV[i + 3 * k + 1], ARGV[i + 3 * k + 2]
  local c
  if kind == 'id' then
    if redis.call('EXISTS', 'pp:{' .. tag_of_cid(val) .. '}:c:' .. org .. ':' .. val) == 1 then c = val end
  else
    c = redis.call('HGET', key, val)
  end
  if not c then missing = true elseif cid == nil then cid = c elseif cid ~= c then differ = true end
end
i = i + 3 * ni
if cid == nil then return {8015} end
if missing or differ then return {8016} end

local tag = tag_of_cid(cid)
local ck = 'pp:{' .. tag .. '}:c:' .. org .. ':' .. cid
local hk = 'pp:{' .. tag .. '}:h:' .. org .. ':' .. cid
local fk = 'pp:{' .. tag .. '}:feed:' .. org
local cust = redis.call('HMGET', ck, 'id', 'mobile', 'email', 'externalId', 'v')

-- base 36 (lowercase, no leading zeros), exact for |ms| < 2^53
local D36 = '0123456789abcdefghijklmnopqrstuvwxyz'
local function b36(n)
  if n == 0 then return '0' end
  local neg = n < 0
  if neg then n = -n end
  local s = ''
  while n > 0 do
    local d = n % 36
    s = string.sub(D36, d + 1, d + 1) .. s
    n = (n - d) / 36
  end
  return neg and ('-' .. s) or s
end

-- a stored date (base 36, '' for none) as the record's: epoch ms in decimal, '' for none
local function ddate(t)
  if t == '' or t == nil then return '' end
  return string.format('%.0f', tonumber(t, 36))
end

-- the compact membership value: LEN:MID,TIER,EXP,START,END,LK,UP[,relink...]
local function lenstr(v, p)
  local c = string.find(v, ':', p, true)
  local n = tonumber(string.sub(v, p, c - 1))
  return string.sub(v, c + 1, c + n), c + n + 1
end
local function parse(v)
  local m = {}
  local p
  m.mid, p = lenstr(v, 1)
  p = p + 1
  if string.sub(v, p, p) == '-' then p = p + 1 else m.tier, p = lenstr(v, p) end
  p = p + 1
  local rest = string.sub(v, p)
  local exp, start, e, lk, up, tail = string.match(rest, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)(.*)$')
  m.exp, m.start, m['end'], m.lk, m.up, m.tail = exp, start, e, lk, up, tail
  return m
end
local function tierpart(t)
  if t == nil then return '-' end
  return #t .. ':' .. t
end
local function encode(m)
  return #m.mid .. ':' .. m.mid .. ',' .. tierpart(m.tier) .. ',' .. m.exp .. ',' .. m.start .. ',' ..
    m['end'] .. ',' .. m.lk .. ',' .. m.up .. m.tail
end
-- a membership's five fields of the activity record (docs/CHANGE-FEED.md "History
-- entries"): membership id, tier ('' for none), expiry, start (the link's time when it has
-- none of its own), end
local function values(m)
  local start = m.start ~= '' and m.start or m.lk
  return {m.mid, m.tier or '', ddate(m.exp), ddate(start), ddate(m['end'])}
end

-- the compact record of an activity (src/activity.h): a variant byte, then 15 fields, each
-- its length (one byte; four big-endian bytes each when one field is over 255) and its bytes
local function record(f)
  local long = false
  for k = 1, #f do
    if #f[k] > 255 then long = true end
  end
  local parts = {long and '\2' or '\1'}
  for k = 1, #f do
    local n = #f[k]
    if long then
      parts[#parts + 1] = string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
                                      math.floor(n / 256) % 256, n % 256)
    else
      parts[#parts + 1] = string.char(n)
    end
    parts[#parts + 1] = f[k]
  end
  return table.concat(parts)
end

local n = tonumber(ARGV[i]); i = i + 1
local out = {1000, cust[1] or cid, cust[2] or '', cust[3] or '', cust[4] or ''}
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
  local hlen = 0
  -- feed format 3 (docs/CHANGE-FEED.md): the record's fields as stream fields, after the
  -- version and the entry's place among the customer's entries of this call
  for j = 1, #events do
    local f = events[j]
    hlen = redis.call('LPUSH', hk, record(f))
    redis.call('XADD', fk, 'MAXLEN', '~', fmax, '*', 'v', '3', 'type', 'UPDATE', 'customerId', cid,
               'customerVersion', nv, 'seq', j - 1, 'date', f[2], 'program', f[3],
               'updateType', f[4], 'requestId', f[5],
               'beforeMembershipId', f[6], 'beforeTierName', f[7], 'beforeTierExpiryDate', f[8],
               'beforeStartDate', f[9], 'beforeEndDate', f[10],
               'afterMembershipId', f[11], 'afterTierName', f[12], 'afterTierExpiryDate', f[13],
               'afterStartDate', f[14], 'afterEndDate', f[15])
  end
  if hlen > hmax then redis.call('LTRIM', hk, 0, hmax - 1) end
end
return out
