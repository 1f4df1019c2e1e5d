-- The head of the peer's scripts (bench/peer/peer.lua prepends it to update.redis.lua,
-- link.redis.lua, delink_read.redis.lua and delink.redis.lua before SCRIPT LOAD): the
-- customer lookup and partnerd's stored formats (docs/DATA-MODEL.md, docs/CHANGE-FEED.md).
-- ARGV, common to all: org, now_ms, writer (32 hex, stored as the hash's `w` like partnerd's
--   lock token), request_id, history_max, feed_max (per partition), n_idents,
--   (kind, value, bucket_key)*, then the route's own (n_items, ...).
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

-- identifiers: all must name one customer. Returns cid (or nil, the code) and the index of
-- the route's first argument.
local function identify()
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
  if cid == nil then return nil, 8015 end
  if missing or differ then return nil, 8016 end
  return cid, i
end

-- the customer's hash, history and feed partition keys, its stored identifiers and version
-- (HMGET id, mobile, email, externalId, v), and the reply's head {1000, identifiers}
local function customer(cid)
  local tag = tag_of_cid(cid)
  local ck = 'pp:{' .. tag .. '}:c:' .. org .. ':' .. cid
  local cust = redis.call('HMGET', ck, 'id', 'mobile', 'email', 'externalId', 'v')
  return ck, 'pp:{' .. tag .. '}:h:' .. org .. ':' .. cid, 'pp:{' .. tag .. '}:feed:' .. org, cust,
         {1000, cust[1] or cid, cust[2] or '', cust[3] or '', cust[4] or ''}
end

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
  -- the pending relink's membership id (its index entry is released with the membership's)
  if tail ~= '' then m.rl_mid = lenstr(tail, 2) end
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
local NONE = {'', '', '', '', ''}

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

-- the record's 15 fields: type letter, date, program, updateType, requestId, before's five,
-- after's five
local function fields(letter, prog, utype, before, after)
  return {letter, string.format('%.0f', now), prog, utype, rid, before[1], before[2], before[3], before[4],
          before[5], after[1], after[2], after[3], after[4], after[5]}
end

local TYPE = {L = 'LINK', U = 'UPDATE', D = 'DELINK'}

-- the history LPUSH/LTRIM of each event's record and its feed XADD (format 3), as
-- partnerd's commit stores them; nv: the customer's version after the change
local function store_events(cid, hk, fk, nv, events)
  local hlen = 0
  for j = 1, #events do
    local f = events[j]
    hlen = redis.call('LPUSH', hk, record(f))
    redis.call('XADD', fk, 'MAXLEN', '~', fmax, '*', 'v', '3', 'type', TYPE[f[1]], 'customerId', cid,
               'customerVersion', nv, 'seq', j - 1, 'date', f[2], 'program', f[3],
               'updateType', f[4], 'requestId', f[5],
               'beforeMembershipId', f[6], 'beforeTierName', f[7], 'beforeTierExpiryDate', f[8],
               'beforeStartDate', f[9], 'beforeEndDate', f[10],
               'afterMembershipId', f[11], 'afterTierName', f[12], 'afterTierExpiryDate', f[13],
               'afterStartDate', f[14], 'afterEndDate', f[15])
  end
  if hlen > hmax then redis.call('LTRIM', hk, 0, hmax - 1) end
end
