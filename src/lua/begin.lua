-- begin: resolve, lock and read every customer entry of a request in one call.
-- ARGV: org, token, lock_ttl_ms, rate_key, rate_limit, n_entries, then per entry:
--   n_idents, (kind, value, tag)*   kind: id | mobile | email | externalId (values
--     normalised); tag: the partition tag of the value's index bucket (layout_bucket_of,
--     computed by store_write.c: Lua has no SipHash), '' for id
--   n_items, (program_name, membership_id_or_empty, its bucket's tag or '')*
-- Key layout 3 (keys.h): the index entry is in pp:{TAG}:ix:ORG:KIND, the customer's keys
-- carry the tag of its id (tags.lua), a membership-id claim is in pp:{TAG}:mid:ORG:PID, the
-- customer's lock is the field `lock` of its hash (lock.lua).
-- Returns one array per entry, then one more element: the definitions of the programs the
-- items named, once per call whatever the batch, {name, def or false, name, def or false,
-- ...} in the order first named (Redis converts every table of a reply: a definition per
-- item would convert the same text again and again). An entry is:
--   {"OK", cid, {hgetall of the customer hash}[, holders]}
--   holders: {membership-id holder or false per item}, only when some item of the entry
--   names a membership id (a holder other than the customer that no longer holds the id,
--   its relink having taken effect, is reported as false: the claim will take the id over;
--   holds.lua)
--   {"DUP", cid, first_entry_index[, holders]}   already locked by an earlier entry
--   {"BUSY", cid}                    another request holds the customer's lock
--   {"NOTFOUND"}                     no identifier names a customer, or the customer an
--                                    index entry names has no hash (8015)
--   {"MISMATCH"}                     the identifiers name different customers, or some none (8016)
--   {"ERROR", message}               this entry's stored data could not be read (a key of
--                                    the wrong type): nothing is locked for it
-- With rate_limit > 0 the request is first counted in the credential's window of the
-- current minute (Redis's clock): over the limit, the whole reply is {"LIMITED", seconds
-- until the window ends} and nothing else is done.
-- Every read of an entry happens before its lock is taken, and a failing entry does not
-- affect the others: a script error would otherwise leave earlier entries' locks behind.
local org, token, ttl = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[6])
local i = 7
local out = {}
local locked = {}
local prefix = 'pp:{' .. org .. '}:'
local now_ms = nil   -- Redis's clock, read at the first lock taken or holder checked
local lockval = nil  -- the lock's value: the same for every customer of the call (lock.lua)
--#include tags.lua
--#include lock.lua
--#include holds.lua
-- Program definitions read once per call: a batch names the same programs again and again.
-- deflist is the reply's last element: {name, def or false, ...} in the order first named.
local defcache, deflist = {}, {}

local function entry(e, at, ni, items_at, np)
  local cid, missing, differ = nil, false, false
  -- an id's customer hash, read whole to see whether it exists (one call instead of an
  -- EXISTS and then the HGETALL below: begin.lua on a cluster names customers by id)
  local byid, byid_snap = nil, nil
  for k = 0, ni - 1 do
    local kind, val, vtag = ARGV[at + 3 * k], ARGV[at + 3 * k + 1], ARGV[at + 3 * k + 2]
    local c
    if kind == 'id' then
      local h = redis.call('HGETALL', 'pp:{' .. tag_of_cid(val) .. '}:c:' .. org .. ':' .. val)
      if #h > 0 then c = val; byid, byid_snap = val, h end
    else
      c = redis.call('HGET', 'pp:{' .. vtag .. '}:ix:' .. org .. ':' .. kind, val)
    end
    if not c then
      missing = true
    elseif cid == nil then
      cid = c
    elseif cid ~= c then
      differ = true
    end
  end
  if cid == nil then return {'NOTFOUND'} end
  if missing or differ then return {'MISMATCH'} end
  local holders = nil   -- made at the first item naming a membership id
  for k = 0, np - 1 do
    local name, mid, mtag = ARGV[items_at + 3 * k], ARGV[items_at + 3 * k + 1], ARGV[items_at + 3 * k + 2]
    local def = defcache[name]
    if def == nil then
      def = redis.call('HGET', prefix .. 'progs', name)
      defcache[name] = def
      deflist[#deflist + 1] = name
      deflist[#deflist + 1] = def
    end
    if mid ~= '' and not holders then
      holders = {}
      for j = 1, k do holders[j] = false end
    end
    if holders then holders[k + 1] = false end
    if def and mid ~= '' then
      local pid = string.match(def, '^{"pid":(%d+)')
      local h = pid and redis.call('HGET', 'pp:{' .. mtag .. '}:mid:' .. org .. ':' .. pid, mid)
      if h and h ~= cid then
        now_ms = now_ms or lock_now()
        if not mid_holds(org, h, pid, mid, now_ms) then h = false end
      end
      holders[k + 1] = h or false
    end
  end
  if locked[cid] then
    if holders then return {'DUP', cid, locked[cid], holders} end
    return {'DUP', cid, locked[cid]}
  end
  local ck = 'pp:{' .. tag_of_cid(cid) .. '}:c:' .. org .. ':' .. cid
  local snapshot = byid == cid and byid_snap or redis.call('HGETALL', ck)
  -- an index entry naming a customer whose hash is gone: no customer (a lock field would
  -- make a hash of it, left behind for good if the request died)
  if #snapshot == 0 then return {'NOTFOUND'} end
  now_ms = now_ms or lock_now()
  lockval = lockval or token .. LOCK_SEP .. (now_ms + ttl)
  -- HSETNX answers 1 when there was no lock field: the usual case, nothing to look at. Else
  -- the snapshot has the field's value: one still taken makes the customer BUSY (nothing
  -- written), one that expired is overwritten.
  if redis.call('HSETNX', ck, LOCK_FIELD, lockval) == 0 then
    for k = 1, #snapshot, 2 do
      if snapshot[k] == LOCK_FIELD then
        if lock_taken(snapshot[k + 1], now_ms) then return {'BUSY', cid} end
        break
      end
    end
    redis.call('HSET', ck, LOCK_FIELD, lockval)
  end
  locked[cid] = e
  if holders then return {'OK', cid, snapshot, holders} end
  return {'OK', cid, snapshot}
end

local function over_limit(rk, limit)
  if limit <= 0 then return false end
  local now = tonumber(redis.call('TIME')[1])
  local key = rk .. ':' .. math.floor(now / 60)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, 120) end
  if count > limit then return 60 - now % 60 end
  return false
end

local wait = over_limit(ARGV[4], tonumber(ARGV[5]))
if wait then return {'LIMITED', tostring(wait)} end

for e = 1, n do
  local ni = tonumber(ARGV[i])
  local at = i + 1
  local np = tonumber(ARGV[at + 3 * ni])
  local items_at = at + 3 * ni + 1
  i = items_at + 3 * np
  local ok, res = pcall(entry, e, at, ni, items_at, np)
  if ok then
    out[e] = res
  else
    out[e] = {'ERROR', tostring(res)}
  end
end
out[n + 1] = deflist
return out
