-- read: one customer's state for the read routes, in one call.
-- ARGV: org, identifier kind (id | mobile | email | externalId), value (normalised),
--   the tag of the value's index bucket ('' for id: see begin.lua), what,
--   rate_key, rate_limit (as in begin.lua: {"LIMITED", seconds} when over the limit),
--   and for what = "history": offset, limit, program ("" for every program), scan_max
--   what = "programs": returns {cid, hgetall customer, hgetall programs}
--   what = "history":  returns {cid, hgetall customer, page, total}, where page holds the
--     activities offset .. offset+limit-1 (newest first) of those that match the program.
--     Without a program, total is the history's length and only the page is read (LRANGE
--     of the page). With one, only the newest scan_max entries (the history's trim length,
--     --history-max) are scanned and total counts the matches among them: the work is
--     bounded however long an old history is (SPEC §5).
-- Returns {} when no customer matches.
local org, kind, val, vtag, what = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit = tonumber(ARGV[7])
--#include tags.lua
if limit > 0 then
  local now = tonumber(redis.call('TIME')[1])
  local key = ARGV[6] .. ':' .. math.floor(now / 60)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, 120) end
  if count > limit then return {'LIMITED', tostring(60 - now % 60)} end
end
local cid
if kind == 'id' then
  if redis.call('EXISTS', 'pp:{' .. tag_of_cid(val) .. '}:c:' .. org .. ':' .. val) == 1 then cid = val end
else
  cid = redis.call('HGET', 'pp:{' .. vtag .. '}:ix:' .. org .. ':' .. kind, val)
end
if not cid then return {} end
local ctag = tag_of_cid(cid)
local ck = 'pp:{' .. ctag .. '}:c:' .. org .. ':' .. cid

-- The partnerProgramName of an activity (docs/CHANGE-FEED.md): of a compact record
-- (src/activity.h: a variant byte 1 or 2, then length-prefixed fields), its third field;
-- of a JSON entry (an older partnerd's), found without decoding the whole entry: the first '"partnerProgramName":' outside a string is the key (inside a
-- JSON string every '"' is escaped), then its string value, decoded only when it holds
-- an escape. nil when there is none.
local function program_of(e)
  local b = string.byte(e, 1)
  if b == 1 or b == 2 then
    local ok, _, _, p = pcall(struct.unpack, b == 1 and '>Bc0Bc0Bc0' or '>I4c0I4c0I4c0', e, 2)
    if ok then return p end
    return nil
  end
  local _, f = string.find(e, '"partnerProgramName":', 1, true)
  if not f then return nil end
  local p = f + 1
  while string.byte(e, p) == 32 do p = p + 1 end
  if string.byte(e, p) ~= 34 then return nil end
  local q, esc = p + 1, false
  while true do
    local r = string.find(e, '["\\]', q)
    if not r then return nil end
    if string.byte(e, r) == 34 then
      if not esc then return string.sub(e, p + 1, r - 1) end
      local ok, v = pcall(cjson.decode, string.sub(e, p, r))
      if ok and type(v) == 'string' then return v end
      return nil
    end
    esc = true
    q = r + 2
  end
end

if what == 'history' then
  local hk = 'pp:{' .. ctag .. '}:h:' .. org .. ':' .. cid
  local offset, count, prog, scan = tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10], tonumber(ARGV[11])
  local cust = redis.call('HGETALL', ck)
  if prog == '' then
    return {cid, cust, redis.call('LRANGE', hk, offset, offset + count - 1), redis.call('LLEN', hk)}
  end
  local page, total = {}, 0
  local scanned = redis.call('LRANGE', hk, 0, scan - 1)
  for i = 1, #scanned do
    if program_of(scanned[i]) == prog then
      if total >= offset and total < offset + count then page[#page + 1] = scanned[i] end
      total = total + 1
    end
  end
  return {cid, cust, page, total}
end
return {cid, redis.call('HGETALL', ck), redis.call('HGETALL', 'pp:{' .. org .. '}:progs')}
