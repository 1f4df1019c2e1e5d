-- The equal-work peer of scripts/bench (issue 16): POST /v2/partnerProgram/customerPartnerProgramUpdate,
-- linkCustomer and deLinkCustomer written in nginx + Lua (Debian's libnginx-mod-http-lua,
-- lua-nginx-redis, lua-cjson) over the same Redis data as partnerd (key layout 2,
-- docs/DATA-MODEL.md). Per request: basic auth (a verified Authorization header is cached
-- in the worker, like partnerd's auth cache), body parse, the checks that need no stored
-- data, then ONE atomic Redis script per customer entry (EVALSHA; the entries of a request
-- pipelined in one round trip, in order): update.redis.lua, link.redis.lua (each after
-- common.redis.lua): identifier lookup in the layout-2 index bucket, the checks that need
-- the stored data, the compact membership value, the membership-id index entry (link),
-- version bump, history LPUSH/LTRIM of the activity's compact record and feed XADD of its
-- fields (format 3), in partnerd's formats. A delink takes two round trips, as partnerd's
-- requests do: delink_read.redis.lua reads the memberships (their membership ids' index
-- buckets are a SipHash of the stored ids, computed here), then delink.redis.lua checks
-- atomically that they are still the ones read and writes (else the entry is read and
-- tried again). The responses have partnerd's shapes.
-- What it does not do (docs/PERFORMANCE.md, "The equal-work peer"): no per-customer lock
-- protocol (the script is the atomic step), no Idempotency-Key, no rate or failed-login limits,
-- no MEMBERSHIP_RELINKING_CANCELLED (answered 2009), no relinks (queued or taking effect: a
-- linked SUPPLEMENTARY program with a future start answers 2005), no takeover of a
-- membership id whose holder's relink took effect, no refusal of changes to a membership
-- stored over the size limits, no duplicate-key or depth checks of the JSON, no metrics
-- beyond item counts, no logging.
local redis = require "nginx.redis"
local cjson = require "cjson.safe"
local bit = require "bit"
local ffi = require "ffi"

local M = {}
local cfg                       -- set by init() (bench/bench.py writes it into nginx.conf)
local scripts = {}              -- name -> {text, sha}: update, link, delink_read, delink
local TAG = {}                  -- partition -> layout-2 tag (keys.py's tags, from the config)
local auth_cache = {}           -- Authorization header -> org (verified)
local progs, progs_at = nil, 0  -- program name -> {pid, tiers, rank}; refreshed every 5 s
local orgset                    -- {cc, nnl}
local loaded = false            -- the scripts loaded on this worker's Redis

-- ---------------------------------------------------------------- SipHash-2-4 (layout_bucket_of)
local u64 = ffi.typeof("uint64_t")
local rol, bxor, bor, lshift, band = bit.rol, bit.bxor, bit.bor, bit.lshift, bit.band
local function le64(s, at)
  local m = u64(0)
  for j = 7, 0, -1 do m = bor(lshift(m, 8), string.byte(s, at + j)) end
  return m
end
local K0, K1 -- "partnerd-layout2" (src/layout.c)

local function rounds(v0, v1, v2, v3, n)
  for _ = 1, n do
    v0 = v0 + v1; v1 = rol(v1, 13); v1 = bxor(v1, v0); v0 = rol(v0, 32)
    v2 = v2 + v3; v3 = rol(v3, 16); v3 = bxor(v3, v2)
    v0 = v0 + v3; v3 = rol(v3, 21); v3 = bxor(v3, v0)
    v2 = v2 + v1; v1 = rol(v1, 17); v1 = bxor(v1, v2); v2 = rol(v2, 32)
  end
  return v0, v1, v2, v3
end

-- layout_bucket_of(s): SipHash-2-4 of s with the layout's key, mod 256.
function M.bucket_of(s)
  local v0 = bxor(K0, 0x736f6d6570736575ULL)
  local v1 = bxor(K1, 0x646f72616e646f6dULL)
  local v2 = bxor(K0, 0x6c7967656e657261ULL)
  local v3 = bxor(K1, 0x7465646279746573ULL)
  local n = #s
  local full = n - n % 8
  for off = 1, full, 8 do
    local m = le64(s, off)
    v3 = bxor(v3, m)
    v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
    v0 = bxor(v0, m)
  end
  local b = lshift(u64(n % 256), 56)
  for j = n % 8, 1, -1 do b = bor(b, lshift(u64(string.byte(s, full + j)), 8 * (j - 1))) end
  v3 = bxor(v3, b)
  v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 2)
  v0 = bxor(v0, b)
  v2 = bxor(v2, 0xff)
  v0, v1, v2, v3 = rounds(v0, v1, v2, v3, 4)
  return tonumber(band(bxor(bxor(v0, v1), bxor(v2, v3)), 0xff))
end

-- ---------------------------------------------------------------- setup
function M.init(c)
  cfg = c
  K0, K1 = le64("partnerd-layout2", 1), le64("partnerd-layout2", 9)
  local k = 0
  for t in string.gmatch(c.tags, "%S+") do TAG[k] = t; k = k + 1 end
  assert(k == 256, "peer: 256 tags expected")
  local function read(name)
    local f = assert(io.open(c.dir .. "/" .. name))
    local t = f:read("*a")
    f:close()
    return t
  end
  local common = read("common.redis.lua")
  for _, name in ipairs({ "update", "link", "delink_read", "delink" }) do
    local t = common .. read(name .. ".redis.lua")
    -- (a function as the replacement: the tags hold no %, but gsub reads % in a string)
    t = string.gsub(t, "@LAYOUT_TAGS@", function() return c.tags_padded end)
    scripts[name] = { text = t }
  end
end

function M.init_worker()
  math.randomseed(ngx.worker.pid() * 1000003 + math.floor(ngx.now() * 1000))
end

local function hex32()
  return string.format("%04x%04x%04x%04x%04x%04x%04x%04x", math.random(0, 65535), math.random(0, 65535),
    math.random(0, 65535), math.random(0, 65535), math.random(0, 65535), math.random(0, 65535),
    math.random(0, 65535), math.random(0, 65535))
end

-- ---------------------------------------------------------------- responses
local MSG = {
  [200] = "Success", [400] = "the request is not valid", [1000] = "Customer successfully retrieved",
  [2001] = "the change could not be stored; nothing of it was applied: retry",
  [2002] = "a required field is missing or empty", [2003] = "the tier expiry date must be in the future",
  [2004] = "the customer is not linked to this partner program",
  [2005] = "the customer is already linked to this partner program",
  [2006] = "no such partner program in this org", [2007] = "no such tier in this partner program",
  [2008] = "too many entries: at most 50 customers per request and 50 programs per customer",
  [2009] = "updateType must be UPGRADE, DOWNGRADE, RENEWAL or MEMBERSHIP_RELINKING_CANCELLED",
  [2101] = "this partnerMembershipId is already held by another customer in this partner program",
  [2102] = "this partner program appears more than once for the customer; only the first is processed",
  [2103] = "not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm",
  [2104] = "the tier change contradicts updateType",
  [8015] = "no customer of this org matches the identifiers",
  [8016] = "the identifiers do not all name the same customer",
}

local function status(code, msg)
  return ((code == 200 or code == 1000) and '{"status":true,"message":"' or '{"status":false,"message":"') ..
    (msg or MSG[code] or "error") .. '","code":' .. code .. '}'
end

-- partnerd's item messages (src/rules.c), by the check that decided (the script's order)
local M2104 = { UPGRADE = "an UPGRADE must move to a higher tier than the current one",
                DOWNGRADE = "a DOWNGRADE must move to a lower tier than the current one" }
local function item_message(code, why, utype)
  if why.pre ~= 0 or code == 2004 then return why.pre_msg end
  if why.t ~= 0 then return why.t_msg end
  if why.late ~= 0 then return why.late_msg end
  if code == 2104 then return M2104[utype] or "a RENEWAL must keep the current tier" end
  if code == why.e then return why.e_msg end
end

local function fail(http, code, message, extra)
  ngx.status = http
  ngx.header["Content-Type"] = "application/json"
  if extra then for k, v in pairs(extra) do ngx.header[k] = v end end
  ngx.print('{"errors":[{"status":false,"code":' .. code .. ',"message":' .. cjson.encode(message) ..
    '}],"warnings":[]}')
  return ngx.exit(http)
end

local function jstr(s)
  if s == nil then return "null" end
  return '"' .. string.gsub(s, '[%c"\\]', function(ch)
    if ch == '"' then return '\\"' elseif ch == '\\' then return '\\\\'
    elseif ch == '\n' then return '\\n' elseif ch == '\r' then return '\\r' elseif ch == '\t' then return '\\t'
    elseif ch == '\b' then return '\\b' elseif ch == '\f' then return '\\f' end
    return string.format('\\u%04x', string.byte(ch))
  end) .. '"'
end

-- a message's text inside JSON quotes (the messages above need no escape but a quote)
local function jsonsafe(s)
  return (string.gsub(s, '"', '\\"'))
end

-- ---------------------------------------------------------------- auth
local function auth()
  local h = ngx.var.http_authorization
  if not h then return nil end
  local org = auth_cache[h]
  if org then return org end
  local b64 = string.match(h, "^[Bb]asic%s+(%S+)$")
  local dec = b64 and ngx.decode_base64(b64)
  local user, pw
  if dec then user, pw = string.match(dec, "^([^:]*):(.*)$") end
  local cred = user and cfg.creds[user]
  if not cred or ngx.encode_base64(ngx.sha1_bin(cred.salt .. pw)) ~= cred.sha1 then return nil end
  auth_cache[h] = cred.org
  return cred.org
end

-- ---------------------------------------------------------------- reference data (cached)
local function load_refdata(r, org)
  local now = ngx.now()
  if progs and now - progs_at < 5 then return true end
  local h, err = r:hgetall("pp:{" .. org .. "}:progs")
  if not h then return nil, err end
  local p = {}
  for k = 1, #h, 2 do
    local d = cjson.decode(h[k + 1])
    if d then
      local rank = {}
      local tiers = type(d.tiers) == "table" and d.tiers or {}
      for t = 1, #tiers do rank[tiers[t]] = t end
      local cyc = type(d.cycle) == "table" and d.cycle or nil
      p[h[k]] = { pid = tostring(d.pid), tiers = tiers, rank = rank,
                  expires = type(d.expiresAt) == "number" and d.expiresAt or nil,
                  cycle = cyc and { unit = cyc.unit, n = tonumber(cyc.value) or 0 } or nil }
    end
  end
  local o, err2 = r:hmget("pp:{" .. org .. "}:org", "defaultCountryCode", "nationalNumberLength")
  if not o then return nil, err2 end
  orgset = { cc = o[1] ~= ngx.null and o[1] or "", nnl = tonumber(o[2]) or 0 }
  progs, progs_at = p, now
  return true
end

-- ---------------------------------------------------------------- request fields
local function given(v)
  return v ~= nil and v ~= cjson.null and v ~= ""
end

local function intstr(v)
  if type(v) == "number" and v == math.floor(v) and v > -1e18 and v < 1e18 then
    return string.format("%.0f", v)
  end
end

-- SPEC 4: spaces, + - . ( ) dropped; 6 to 15 digits; national length: the country code first.
local function normalise_mobile(v)
  local s = type(v) == "string" and v or intstr(v)
  if not s then return nil end
  s = string.gsub(s, "[ +%-%.%(%)]", "")
  if not string.match(s, "^%d+$") or #s < 6 or #s > 15 then return nil end
  if #s == orgset.nnl then s = orgset.cc .. s end
  return s
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- A date-time of SPEC 4 (2103) -> ms since the epoch, or nil.
local function parse_date(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, hh, mi, ss, rest = string.match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d, hh, mi, ss = tonumber(y), tonumber(mo), tonumber(d), tonumber(hh), tonumber(mi), tonumber(ss)
  local frac = 0
  local f, r2 = string.match(rest, "^%.(%d+)(.*)$")
  if f then
    if #f > 9 then return nil end
    frac = math.floor(tonumber(string.sub(f .. "000", 1, 3)))
    rest = r2
  end
  local off
  if rest == "Z" then
    off = 0
  else
    local sg, oh, om = string.match(rest, "^ ?([+-])(%d%d):(%d%d)$")
    if not sg then return nil end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return nil end
    off = (oh * 60 + om) * 60000 * (sg == "-" and -1 or 1)
  end
  if y < 1 or mo < 1 or mo > 12 or d < 1 or hh > 23 or mi > 59 or ss > 59 then return nil end
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  if d > (mo == 2 and leap and 29 or MDAYS[mo]) then return nil end
  local ms = ((days_from_civil(y, mo, d) * 24 + hh) * 60 + mi) * 60000 + ss * 1000 + frac - off
  if ms < -62135596800000 or ms > 253402300799999 then return nil end
  return ms
end

local function is_array(t)
  return type(t) == "table" and (next(t) == nil or t[1] ~= nil)
end

local TYPES = { UPGRADE = true, DOWNGRADE = true, RENEWAL = true, RENEW = true }

-- The scripts' common ARGV of one entry (org, now, writer, request id, limits, the
-- identifiers with their index buckets), or a customer-level code (400) and its message.
local function ident_args(org, cust, now_ms, writer, rid)
  local args = { org, now_ms, writer, rid, cfg.history_max, cfg.feed_max }
  local idents = {}
  if given(cust.id) then
    local s = intstr(cust.id)
    if not s then return 400, "id must be an integer" end
    idents[#idents + 1] = { "id", s, "" }
  end
  if given(cust.mobile) then
    local s = normalise_mobile(cust.mobile)
    if not s then
      return 400, "mobile is not a valid mobile number: 6 to 15 digits, optionally with spaces, +, -, ., ( and )"
    end
    idents[#idents + 1] = { "mobile", s }
  end
  for _, kind in ipairs({ "email", "externalId" }) do
    local v = cust[kind]
    if given(v) then
      if type(v) ~= "string" or #v > (kind == "email" and 254 or 128) then
        return 400, kind .. " must be a string of at most " .. (kind == "email" and 254 or 128) .. " bytes"
      end
      idents[#idents + 1] = { kind, v }
    end
  end
  if #idents == 0 then
    return 400, "no customer identifier given: send one of id, mobile, email or externalId"
  end
  args[#args + 1] = #idents
  for _, id in ipairs(idents) do
    args[#args + 1] = id[1]
    args[#args + 1] = id[2]
    args[#args + 1] = id[3] or ("pp:{" .. TAG[M.bucket_of(id[2])] .. "}:ix:" .. org .. ":" .. id[1])
  end
  return args
end

-- update.redis.lua's ARGV for one entry, or a customer-level code (400).
local function update_args(org, e, now_ms, writer, rid, whys)
  local args, msg = ident_args(org, e.customer, now_ms, writer, rid)
  if type(args) ~= "table" then return args, msg end
  local items = e.partnerProgramUpdates
  args[#args + 1] = #items
  local seen = {}
  for k = 1, #items do
    local it = items[k]
    local name = it.partnerProgramName
    local p = type(name) == "string" and progs[name]
    local code, tcode, late, ecode, nextt, exp = 0, 0, 0, 0, 0, ""
    local why = {}
    whys[k] = why
    if type(name) ~= "string" or name == "" or #name > 128 then
      code = 2002
      why.pre_msg = "partnerProgramName is required (a non-empty string)"
    elseif not p then code = 2006
    elseif seen[name] then code = 2102 end
    if type(name) == "string" then seen[name] = true end
    local ut = it.updateType
    if not given(ut) or type(ut) ~= "string" then
      tcode = 2002
      why.t_msg = "updateType is required (a non-empty string)"
    elseif not TYPES[ut] then tcode = 2009 end
    local det = it.updateDetails
    if type(det) ~= "table" or is_array(det) and next(det) ~= nil then
      late = 2002
      why.late_msg = "updateDetails is required (an object) for a tier change"
    elseif not given(det.updatedTierName) or type(det.updatedTierName) ~= "string" then
      late = 2002
      why.late_msg = "updateDetails.updatedTierName is required (a non-empty string)"
    elseif p and #p.tiers == 0 then
      late = 2007
      why.late_msg = "this partner program has no tiers"
    elseif p then
      nextt = p.rank[det.updatedTierName] or 0
      if nextt == 0 then late = 2007 end
    end
    if type(det) == "table" and given(det.updatedTierExpiryDate) then
      local ms = parse_date(det.updatedTierExpiryDate)
      if not ms then
        ecode = 2103
        why.e_msg = "updatedTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm"
      elseif ms <= now_ms then
        ecode = 2003
        why.e_msg = "updatedTierExpiryDate must be in the future"
      else exp = string.format("%.0f", ms) end
    end
    why.pre, why.t, why.late, why.e = code, tcode, late, ecode
    local n = #args
    args[n + 1] = type(name) == "string" and name or ""
    args[n + 2] = p and p.pid or ""
    args[n + 3] = type(ut) == "string" and ut or ""
    args[n + 4] = code
    args[n + 5] = tcode
    local tiers = p and p.tiers or {}
    args[n + 6] = #tiers
    for t = 1, #tiers do args[n + 6 + t] = tiers[t] end
    n = n + 6 + #tiers
    args[n + 1] = nextt
    args[n + 2] = late
    args[n + 3] = exp
    args[n + 4] = ecode
  end
  return args
end


-- ---------------------------------------------------------------- link and delink items
local NAME_MAX = 128
local DATES_MAX_MS = 253402300799999

-- A string field of obj (request.c's string_field / name_field): "absent" (missing, null or
-- ""), "ok", "long" (over 128 bytes) or "badtype"; and the string.
local function sfield(obj, key)
  local v = type(obj) == "table" and obj[key] or nil
  if v == nil or v == cjson.null then return "absent" end
  if type(v) ~= "string" then return "badtype" end
  if v == "" then return "absent" end
  if #v > NAME_MAX then return "long", v end
  return "ok", v
end

-- A date-time field: "absent", "ok" (and its ms) or "bad" (mistyped or not a date-time).
local function dfield(obj, key)
  local st, v = sfield(obj, key)
  if st == "absent" then return st end
  if st == "badtype" then return "bad" end
  local ms = parse_date(v)
  if not ms then return "bad" end
  return "ok", ms
end

local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- dates_add_cycle (src/dates.c): start + n days, or + n calendar months (the day clamped to
-- the month's last).
local function add_cycle(ms, cyc)
  if cyc.n < 1 then return ms end
  if cyc.unit == "DAYS" then return ms + cyc.n * 86400000 end
  local days = math.floor(ms / 86400000)
  local rest = ms - days * 86400000
  local y, m, d = civil_from_days(days)
  local months = y * 12 + (m - 1) + cyc.n
  y, m = math.floor(months / 12), months % 12 + 1
  local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
  local md = (m == 2 and leap) and 29 or MDAYS[m]
  if d > md then d = md end
  return days_from_civil(y, m, d) * 86400000 + rest
end

local function fmt_ms(ms)
  return string.format("%.0f", ms)
end

local function too_long_msg(field)
  return field .. " is too long: at most 128 bytes (UTF-8)"
end

-- link.redis.lua's ARGV for one entry, or a customer-level code (400).
local function link_args(org, e, now_ms, writer, rid, whys)
  local args, msg = ident_args(org, e.customer, now_ms, writer, rid)
  if type(args) ~= "table" then return args, msg end
  local items = e.linkToPartnerPrograms
  args[#args + 1] = #items
  local seen = {}
  for k = 1, #items do
    local it = items[k]
    local why = { pre = 0, mid = 0, late = 0 }
    whys[k] = why
    local pst, name = sfield(it, "partnerProgramName")
    local ref = it.customerPartnerReference
    local refok = type(ref) == "table" and not (is_array(ref) and next(ref) ~= nil)
    local mst, mid = sfield(refok and ref, "partnerMembershipId")
    local tst, tier = sfield(refok and ref, "partnerTierName")
    local est, exp = dfield(refok and ref, "partnerTierExpiryDate")
    local sst, start = dfield(refok and ref, "membershipStartDate")
    local p = pst == "ok" and progs[name] or nil
    local code, m
    if pst == "long" then code, m = 2002, too_long_msg("partnerProgramName")
    elseif mst == "long" then code, m = 2002, too_long_msg("partnerMembershipId")
    elseif tst == "long" then code, m = 2002, too_long_msg("partnerTierName")
    elseif pst ~= "ok" then code, m = 2002, "partnerProgramName is required (a non-empty string)"
    elseif seen[name] then code = 2102
    elseif not p then code = 2006
    elseif p.expires and p.expires <= now_ms then
      code, m = 2006, "the partner program has expired: no new links are accepted"
    elseif not refok then code, m = 2002, "customerPartnerReference is required (an object)"
    elseif est == "bad" then
      code, m = 2103, "partnerTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm"
    elseif sst == "bad" then
      code, m = 2103, "membershipStartDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm"
    elseif sst == "ok" and p.cycle and add_cycle(start, p.cycle) > DATES_MAX_MS then
      code, m = 2103, "membershipStartDate is too late: the membership would end (start + the program's membership cycle) after 9999-12-31T23:59:59.999Z"
    end
    if pst == "ok" then seen[name] = true end
    why.pre, why.pre_msg = code or 0, m
    local n = #args
    for j = 1, 11 do args[n + j] = "" end
    args[n + 1] = type(name) == "string" and name or ""
    args[n + 2] = p and p.pid or ""
    args[n + 3] = code or 0
    args[n + 4], args[n + 7] = 0, 0
    if not code then
      if mst ~= "ok" then
        why.mid, why.mid_msg = 2002, "partnerMembershipId is required (a non-empty string)"
        args[n + 4] = 2002
      else
        args[n + 5] = mid
        args[n + 6] = "pp:{" .. TAG[M.bucket_of(mid)] .. "}:mid:" .. org .. ":" .. p.pid
      end
      local late, lm = 0, nil
      if #p.tiers == 0 then
        if tst ~= "absent" then late, lm = 2007, "this partner program has no tiers: leave partnerTierName out" end
      elseif tst ~= "ok" then late, lm = 2002, "partnerTierName is required for a tier-based partner program"
      elseif not p.rank[tier] then late = 2007 end
      local st_ms = sst == "ok" and start or now_ms
      local end_ms = p.cycle and add_cycle(st_ms, p.cycle) or nil
      if late == 0 then
        if est == "ok" and exp <= now_ms then late, lm = 2003, "partnerTierExpiryDate must be in the future"
        elseif p.cycle and sst == "ok" and end_ms <= now_ms then
          late, lm = 2003, "the membership would already have ended: membershipStartDate plus the program's membership cycle must be in the future"
        end
      end
      why.late, why.late_msg = late, lm
      args[n + 7] = late
      if late == 0 then
        args[n + 8] = #p.tiers > 0 and tier or ""
        args[n + 9] = est == "ok" and fmt_ms(exp) or ""
        args[n + 10] = fmt_ms(st_ms)
        args[n + 11] = end_ms and fmt_ms(end_ms) or ""
      end
    end
  end
  return args
end

local function link_message(code, why)
  if why.pre ~= 0 then return why.pre_msg end
  if code == 200 or code == 2005 or code == 2101 then return nil end
  if why.mid ~= 0 then return why.mid_msg end
  if code == why.late then return why.late_msg end
end

-- delink: the checks that need no stored data (2002, 2102, 2006); whys[k] = {pre, pre_msg, p}.
local function delink_checks(e, whys)
  local items = e.deLinkFromPartnerPrograms
  local seen = {}
  for k = 1, #items do
    local pst, name = sfield(items[k], "partnerProgramName")
    local p = pst == "ok" and progs[name] or nil
    local code, m = 0, nil
    if pst == "long" then code, m = 2002, too_long_msg("partnerProgramName")
    elseif pst ~= "ok" then code, m = 2002, "partnerProgramName is required (a non-empty string)"
    elseif seen[name] then code = 2102
    elseif not p then code = 2006 end
    if pst == "ok" then seen[name] = true end
    whys[k] = { pre = code, pre_msg = m, p = p, name = type(name) == "string" and name or "" }
  end
end

-- The membership ids of a stored compact value (docs/DATA-MODEL.md): its own and a pending
-- relink's.
local function lenstr(v, p)
  local c = string.find(v, ":", p, true)
  local n = tonumber(string.sub(v, p, c - 1))
  return string.sub(v, c + 1, c + n), c + n + 1
end
local function value_mids(v)
  local mid, p = lenstr(v, 1)
  p = p + 1
  if string.sub(v, p, p) == "-" then p = p + 1 else local _; _, p = lenstr(v, p) end
  -- five base-36 fields (no commas), then the relink's values
  local _, e = string.find(v, "^,[^,]*,[^,]*,[^,]*,[^,]*,[^,]*", p)
  if e and e < #v then return { mid, (lenstr(v, e + 2)) } end
  return { mid }
end

-- ---------------------------------------------------------------- the routes
local ROUTES = {
  update = { top = "customersPartnerUpdates", items = "partnerProgramUpdates", status = "updateStatus",
             utype = true, script = "update", args = update_args,
             message = function(code, why, it) return item_message(code, why, it.updateType) end },
  link = { top = "linkCustomers", items = "linkToPartnerPrograms", status = "partnerLinkStatus",
           script = "link", args = link_args, message = function(code, why) return link_message(code, why) end },
  delink = { top = "deLinkCustomers", items = "deLinkFromPartnerPrograms", status = "partnerDeLinkStatus",
             message = function(code, why) if why.pre ~= 0 then return why.pre_msg end end },
}

local function store_down(err)
  return fail(503, 503, "the store failed: " .. tostring(err), { ["Retry-After"] = "1" })
end

-- The delink's two steps for the entries `todo` (indexes into entries, in order): results
-- into res[k] ({code, id, mobile, email, externalId, item_code*}); entries whose
-- memberships changed between the steps are read and tried again.
local function delink_entries(r, org, entries, todo, now_ms, writer, rid, whys, res)
  for attempt = 1, 20 do
    if #todo == 0 then return true end
    r:init_pipeline(#todo)
    for _, k in ipairs(todo) do
      local args = ident_args(org, entries[k].customer, now_ms, writer, rid)
      local items = entries[k].deLinkFromPartnerPrograms
      args[#args + 1] = #items
      for j = 1, #items do
        local w = whys[k][j]
        args[#args + 1] = (w.pre == 0 and w.p) and w.p.pid or ""
      end
      r:evalsha(scripts.delink_read.sha, 0, unpack(args))
    end
    local got, err = r:commit_pipeline()
    if not got then return nil, err end
    local writes = {}
    r:init_pipeline(#todo)
    for x, k in ipairs(todo) do
      local g = got[x]
      if type(g) ~= "table" then
        res[k] = { 2001 }
      elseif g[1] ~= 1000 then
        res[k] = { g[1] }
      else
        res[k] = { 1000, g[3], g[4], g[5], g[6] }
        local items = entries[k].deLinkFromPartnerPrograms
        local args = { org, now_ms, writer, rid, cfg.history_max, cfg.feed_max, g[2], #items }
        for j = 1, #items do
          local w = whys[k][j]
          local v = g[6 + j]
          if v == ngx.null or v == false then v = "" end
          local n = #args
          args[n + 1], args[n + 2], args[n + 3], args[n + 4] = w.name, w.p and w.p.pid or "", w.pre, v
          local mids = v ~= "" and value_mids(v) or {}
          args[n + 5] = #mids
          for _, mid in ipairs(mids) do
            args[#args + 1] = "pp:{" .. TAG[M.bucket_of(mid)] .. "}:mid:" .. org .. ":" .. w.p.pid
            args[#args + 1] = mid
          end
        end
        r:evalsha(scripts.delink.sha, 0, unpack(args))
        writes[#writes + 1] = k
      end
    end
    local again = {}
    if #writes > 0 then
      local w, err2 = r:commit_pipeline()
      if not w then return nil, err2 end
      for x, k in ipairs(writes) do
        local codes = w[x]
        if type(codes) ~= "table" then
          res[k] = { 2001 }
        elseif codes[1] == "RETRY" then
          again[#again + 1] = k
        else
          for j = 1, #codes do res[k][5 + j] = codes[j] end
        end
      end
    else
      r:cancel_pipeline()
    end
    if #again > 0 then ngx.shared.peer:incr("retries", #again, 0) end
    todo = again
  end
  for _, k in ipairs(todo) do res[k] = { 2001 } end   -- changed under it 20 times: not applied
  return true
end

local function serve(R)
  local counts = {}
  if ngx.req.get_method() ~= "POST" then
    return fail(405, 405, "method not allowed", { Allow = "POST" })
  end
  local org = auth()
  if not org then
    return fail(401, 401, "authentication required", { ["WWW-Authenticate"] = 'Basic realm="partnerProgram"' })
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then return fail(400, 400, "the request body is missing or too large") end
  local doc = cjson.decode(body)
  local entries = type(doc) == "table" and doc[R.top]
  if not is_array(entries) or #entries == 0 then
    return fail(400, 400, R.top .. " must be a non-empty array")
  end
  if #entries > 50 then return fail(400, 2008, MSG[2008]) end
  for k = 1, #entries do
    local e = entries[k]
    if type(e) ~= "table" or is_array(e) and next(e) ~= nil or type(e.customer) ~= "table" then
      return fail(400, 400, "an entry or its customer is not an object")
    end
    local items = e[R.items]
    if not is_array(items) or #items == 0 then return fail(400, 400, R.items .. " must be a non-empty array") end
    if #items > 50 then return fail(400, 2008, MSG[2008]) end
    for j = 1, #items do
      if type(items[j]) ~= "table" then return fail(400, 400, "an item is not an object") end
    end
  end
  local rid = ngx.var.http_x_request_id
  if not rid or #rid > 128 or not string.match(rid, '^[%w%-_%.:]+$') then rid = hex32() end
  ngx.header["X-Request-Id"] = rid

  local r = redis:new()
  r:set_timeout(5000)   -- connect, send and read (resty.redis 0.27 has no set_timeouts)
  local ok, err = r:connect("127.0.0.1", cfg.redis_port)
  if not ok then return fail(503, 503, "the store is unreachable: " .. tostring(err), { ["Retry-After"] = "1" }) end
  ok, err = load_refdata(r, org)
  if not ok then return fail(503, 503, "the store is unreachable: " .. tostring(err), { ["Retry-After"] = "1" }) end
  if not loaded then
    for _, s in pairs(scripts) do
      local sha, e2 = r:script("LOAD", s.text)
      if not sha then return fail(503, 503, "the store refused the script: " .. tostring(e2)) end
      s.sha = sha
    end
    loaded = true
  end

  ngx.update_time()
  local now_ms = math.floor(ngx.now() * 1000)
  local writer = hex32()
  local pre, premsg, whys = {}, {}, {}
  local res = {}
  if R.script then
    local sent = {}
    r:init_pipeline(#entries)
    for k = 1, #entries do
      whys[k] = {}
      local a, msg = R.args(org, entries[k], now_ms, writer, rid, whys[k])
      if type(a) == "table" then
        r:evalsha(scripts[R.script].sha, 0, unpack(a))
        sent[#sent + 1] = k
      else
        pre[k], premsg[k] = a, msg
      end
    end
    if #sent > 0 then
      local got
      got, err = r:commit_pipeline()
      if not got then return store_down(err) end
      for x, k in ipairs(sent) do res[k] = got[x] end
    else
      r:cancel_pipeline()
    end
  else
    -- the delink (two steps)
    local todo = {}
    for k = 1, #entries do
      whys[k] = {}
      local a, msg = ident_args(org, entries[k].customer, now_ms, writer, rid)
      if type(a) == "table" then
        delink_checks(entries[k], whys[k])
        todo[#todo + 1] = k
      else
        pre[k], premsg[k] = a, msg
      end
    end
    ok, err = delink_entries(r, org, entries, todo, now_ms, writer, rid, whys, res)
    if not ok then return store_down(err) end
  end
  r:set_keepalive(60000, 64)

  local out = { '{"' .. R.top .. '":[' }
  for k = 1, #entries do
    local e = entries[k]
    local rr
    if pre[k] then rr = { pre[k] } else rr = res[k] end
    if type(rr) ~= "table" then
      rr = { 2001 }   -- the script failed (an error reply): nothing of the entry applied
    end
    local cc = rr[1]
    local cust
    if cc == 1000 then
      cust = '{"id":' .. rr[2] .. ',"mobile":' .. jstr(rr[3]) .. ',"email":' .. jstr(rr[4]) ..
        ',"externalId":' .. jstr(rr[5]) .. ',"status":' .. status(1000) .. '}'
    else
      local parts = {}
      for _, kname in ipairs({ "id", "mobile", "email", "externalId" }) do
        if e.customer[kname] ~= nil then parts[#parts + 1] = '"' .. kname .. '":' .. cjson.encode(e.customer[kname]) end
      end
      parts[#parts + 1] = '"status":' .. status(cc, premsg[k] and jsonsafe(premsg[k]))
      cust = "{" .. table.concat(parts, ",") .. "}"
    end
    local its = {}
    local items = e[R.items]
    for j = 1, #items do
      local code = cc == 1000 and rr[5 + j] or cc
      counts[code] = (counts[code] or 0) + 1
      local it = items[j]
      local msg
      if cc == 1000 then
        msg = R.message(code, whys[k][j], it)
      else
        msg = premsg[k] and jsonsafe(premsg[k])
      end
      its[j] = '{"partnerProgramName":' .. (type(it.partnerProgramName) == "string" and jstr(it.partnerProgramName) or "null") ..
        (R.utype and (',"updateType":' .. (type(it.updateType) == "string" and jstr(it.updateType) or "null")) or "") ..
        ',"' .. R.status .. '":' .. status(code, msg) .. '}'
    end
    out[#out + 1] = (k > 1 and ',{"customer":' or '{"customer":') .. cust .. ',"' .. R.items .. '":[' ..
      table.concat(its, ",") .. ']}'
  end
  out[#out + 1] = '],"warnings":[]}'
  ngx.header["Content-Type"] = "application/json"
  ngx.print(out)
  -- item outcomes, shared by the workers (read by bench.py at /peer/metrics)
  local d = ngx.shared.peer
  for code, n in pairs(counts) do d:incr("items:" .. code, n, 0) end
  d:incr("requests", 1, 0)
end

function M.update() return serve(ROUTES.update) end
function M.link() return serve(ROUTES.link) end
function M.delink() return serve(ROUTES.delink) end

-- GET /peer/metrics: {"requests": N, "items": {"200": N, ...}, "retries": N} since the start
-- (retries: delink entries read again, their memberships changed between the two steps).
function M.metrics()
  local d = ngx.shared.peer
  local items = {}
  for _, k in ipairs(d:get_keys(0)) do
    local code = string.match(k, "^items:(%d+)$")
    if code then items[code] = d:get(k) end
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode({ requests = d:get("requests") or 0, items = items, retries = d:get("retries") or 0 }))
end

return M
