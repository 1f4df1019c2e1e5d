-- commit: the fenced write of every locked customer of a request, in one call.
-- ARGV: token, n_customers, history_max, feed_max, keep_locks (the cluster protocol's, '0'
--   on one Redis: '1' or '3': a customer written keeps its lock, which the caller releases
--   later (unlock.lua): a delink, whose index releases come after the commit, under the
--   lock; '2' or '3': a customer refused for its version or a key's type keeps its lock too,
--   and the status says so ("FENCED_KEPT", "BROKEN_KEPT"): a claimant, whose claims made
--   before the commit are taken back under the lock), then per customer:
--   customer_key, version_read, cid, history_key, feed_key (the customer's
--   partition of the org's change feed: key layout 2 gives it the customer's tag),
--   n_set, (field, value)*, n_del, field*,
--   n_claim, (mid_index_key, membership_id)*, n_release, (mid_index_key, membership_id)*,
--   n_events, (activity_type, activity_record)*
-- and, always the last three: idem_key, idem_token, idem_ttl_ms (all '' when the request has
-- no Idempotency-Key).
-- Each event, the activity's compact record (src/activity.h, docs/CHANGE-FEED.md "History
-- entries"), is pushed on the customer's history (newest first, trimmed to history_max)
-- and appended to the customer's partition of the org's change feed (XADD, trimmed to
-- about feed_max entries: the per-partition bound store_write.c computes from
-- --feed-max), in the same atomic step as the change itself; the feed entry (format 3)
-- has the record's fields as stream fields, always the same ones in the same order (so
-- Redis stores their names once per stream node), with the customer's version after the
-- commit and the event's place among the customer's events of this commit
-- (customerVersion, seq: docs/CHANGE-FEED.md).
-- For each customer, atomically: the lock (the hash's field `lock`, lock.lua) must still
-- hold our token and not have expired, and the version must be the one read (else
-- "FENCED": nothing written); every key it writes must have the
-- expected type (else "BROKEN": nothing written, lock released; a write failing half-way
-- would break the customer's atomicity, as Redis does not undo a script's writes);
-- every claimed membership id must be free or already ours (else "CONFLICT": nothing
-- written, lock released, the caller retries); then the writes, the version bump (with our
-- token in the hash's `w`) and the lock release ("OK"). A claimed id whose index entry names
-- another customer that no longer holds it (its relink took effect: holds.lua) counts as
-- free, and the claim takes it over.
-- With an Idempotency-Key, first of all: its claim (idem.lua) must still be 'running' with
-- idem_token, else every customer is "IDEM_FENCED": nothing written, our locks released (the
-- claim expired or a repeat of the request took it over: that one applies the key). While
-- the claim holds, its expiry is set to idem_ttl_ms again (a request working across several
-- rounds keeps its claim).
local token = ARGV[1]
--#include tags.lua
--#include lock.lua
local mine = token .. LOCK_SEP      -- how a lock value of ours starts (lock.lua)
local alive = {}                     -- lock value of ours -> not expired (lock_taken)
local idem_key, idem_token = ARGV[#ARGV - 2], ARGV[#ARGV - 1]
local idem_fenced = false
if idem_key ~= '' then
  local cl = redis.pcall('HMGET', idem_key, 's', 't')
  if not cl.err and cl[1] == 'running' and cl[2] == idem_token then
    redis.call('PEXPIRE', idem_key, ARGV[#ARGV])
  else
    idem_fenced = true
  end
end
local n = tonumber(ARGV[2])
local hmax, fmax = tonumber(ARGV[3]), ARGV[4]
local keep = ARGV[5] == '1' or ARGV[5] == '3'
local keep_failed = ARGV[5] == '2' or ARGV[5] == '3'
local i = 6
local out = {}
-- A feed partition's type is checked once per call (customers of one call may share a
-- partition); the customer hash's type was checked by the HGETALL of begin.lua under the
-- same lock (and the HMGET of the lock and v below fails before any write).
local feed_ok = {}
local function feed_usable(fk)
  local ok = feed_ok[fk]
  if ok == nil then
    local t = redis.call('TYPE', fk).ok
    ok = t == 'none' or t == 'stream'
    feed_ok[fk] = ok
  end
  return ok
end
-- A claim bucket's type (the closure made once per call, not once per customer).
local function hash_usable(key)
  local t = redis.call('TYPE', key).ok
  return t == 'none' or t == 'hash'
end
--#include holds.lua
-- The record's fields (struct.unpack formats of its variants 1 and 2: one-byte and
-- four-byte lengths), read before anything is written: a record that does not read is
-- "BROKEN" like a key of the wrong type (partnerd never sends one).
-- (written out: string.rep would build them again on every call)
local rec_fmt = {['\1'] = '>Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0Bc0',
                 ['\2'] = '>I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0I4c0'}
local function rec_fields(ev)
  local fmt = rec_fmt[string.sub(ev, 1, 1)]
  if not fmt then return nil end
  local r = {pcall(struct.unpack, fmt, ev, 2)}
  if not r[1] or r[17] ~= #ev + 1 then return nil end
  return r
end
local now_ms = nil   -- Redis's clock, read at the first lock checked
local SEQ = {[0] = '0', '1', '2', '3'}   -- an event's seq as text (most commits have one)
for c = 1, n do
  local ck, ver, cid, hk, feed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  i = i + 5
  local nset = tonumber(ARGV[i]); local sset = i + 1; i = sset + 2 * nset
  local ndel = tonumber(ARGV[i]); local sdel = i + 1; i = sdel + ndel
  local ncl = tonumber(ARGV[i]); local scl = i + 1; i = scl + 2 * ncl
  local nrel = tonumber(ARGV[i]); local srel = i + 1; i = srel + 2 * nrel
  local nev = tonumber(ARGV[i]); local sev = i + 1; i = sev + 2 * nev
  -- the lock and the version in one call; a lock of ours past its expiry is no lock
  -- (SPEC §3: a stalled holder never writes after it), gone as if it had expired as a key
  local cur = redis.call('HMGET', ck, LOCK_FIELD, 'v')
  local ours = cur[1] and string.sub(cur[1], 1, #mine) == mine
  if ours then
    -- (a call's customers share one lock value, or a few: each is read once)
    local live = alive[cur[1]]
    if live == nil then
      now_ms = now_ms or lock_now()
      live = lock_taken(cur[1], now_ms)
      alive[cur[1]] = live
    end
    if not live then
      redis.call('HDEL', ck, LOCK_FIELD)
      ours = false
    end
  end
  if idem_fenced then
    if ours then redis.call('HDEL', ck, LOCK_FIELD) end
    out[c] = 'IDEM_FENCED'
  elseif not ours then
    out[c] = 'FENCED'
  elseif (cur[2] or '') ~= ver then
    if keep_failed then
      out[c] = 'FENCED_KEPT'
    else
      redis.call('HDEL', ck, LOCK_FIELD)
      out[c] = 'FENCED'
    end
  else
    local broken = false
    if nev > 0 and not feed_usable(feed) then broken = true end
    for j = 0, ncl - 1 do if not hash_usable(ARGV[scl + 2 * j]) then broken = true end end
    for j = 0, nrel - 1 do if not hash_usable(ARGV[srel + 2 * j]) then broken = true end end
    local free = true
    for j = 0, ncl - 1 do
      if broken then break end
      local key, mid = ARGV[scl + 2 * j], ARGV[scl + 2 * j + 1]
      local h = redis.call('HGET', key, mid)
      if h and h ~= cid then
        -- the org and the pid are in the claim bucket's name: pp:{TAG}:mid:ORG:PID (keys.h)
        local org, pid = string.match(key, '^pp:{[^}]*}:mid:([^:]*):(%d+)$')
        now_ms = now_ms or lock_now()
        if not org or mid_holds(org, h, pid, mid, now_ms) then free = false; break end
      end
    end
    -- The history key's type is checked by its first LPUSH, made before any other write:
    -- on a key of another type it fails and writes nothing (redis.pcall: no abort).
    local hlen = 0
    local recs = {}
    for j = 0, nev - 1 do
      if broken or not free then break end
      recs[j] = rec_fields(ARGV[sev + 2 * j + 1])
      if not recs[j] then broken = true end
    end
    if not broken and free and nev > 0 then
      hlen = redis.pcall('LPUSH', hk, ARGV[sev + 1])
      if type(hlen) == 'table' then broken = true; hlen = 0 end
    end
    if broken and keep_failed then
      out[c] = 'BROKEN_KEPT'
    elseif broken then
      redis.call('HDEL', ck, LOCK_FIELD)
      out[c] = 'BROKEN'
    elseif not free then
      redis.call('HDEL', ck, LOCK_FIELD)
      out[c] = 'CONFLICT'
    else
      for j = 0, nrel - 1 do
        local key, mid = ARGV[srel + 2 * j], ARGV[srel + 2 * j + 1]
        if redis.call('HGET', key, mid) == cid then redis.call('HDEL', key, mid) end
      end
      for j = 0, ncl - 1 do
        redis.call('HSET', ARGV[scl + 2 * j], ARGV[scl + 2 * j + 1], cid)
      end
      -- the fields deleted and, unless the caller keeps it, the lock: one HDEL
      if not keep then
        redis.call('HDEL', ck, LOCK_FIELD, unpack(ARGV, sdel, sdel + ndel - 1))
      elseif ndel > 0 then
        redis.call('HDEL', ck, unpack(ARGV, sdel, sdel + ndel - 1))
      end
      -- the customer's version after this commit: every commit that changes something or
      -- has an event bumps it (each success of rules.c sets or deletes a field anyway)
      -- (as text once: Redis would format a Lua number for each command that takes it)
      local nv = tostring((tonumber(ver) or 0) + 1)
      if nset + ndel + nev > 0 then
        -- one HSET for every field, the new version and the writer's token (`w`: how
        -- resolve.lua tells whether a commit whose reply was lost applied)
        redis.call('HSET', ck, 'v', nv, 'w', token, unpack(ARGV, sset, sset + 2 * nset - 1))
      end
      -- feed format 3: each entry carries the customer's version after the commit and its
      -- place among the commit's entries of the customer (seq 0, 1, ...): (customerVersion,
      -- seq) orders one customer's entries (docs/CHANGE-FEED.md); then the record's fields
      -- (r[2] is its type letter: the entry has the type's name)
      for j = 0, nev - 1 do
        local typ, r = ARGV[sev + 2 * j], recs[j]
        if j > 0 then hlen = redis.call('LPUSH', hk, ARGV[sev + 2 * j + 1]) end
        redis.call('XADD', feed, 'MAXLEN', '~', fmax, '*', 'v', '3', 'type', typ, 'customerId', cid,
                   'customerVersion', nv, 'seq', SEQ[j] or tostring(j), 'date', r[3], 'program', r[4],
                   'updateType', r[5], 'requestId', r[6],
                   'beforeMembershipId', r[7], 'beforeTierName', r[8], 'beforeTierExpiryDate', r[9],
                   'beforeStartDate', r[10], 'beforeEndDate', r[11],
                   'afterMembershipId', r[12], 'afterTierName', r[13], 'afterTierExpiryDate', r[14],
                   'afterStartDate', r[15], 'afterEndDate', r[16])
      end
      if hlen > hmax then redis.call('LTRIM', hk, 0, hmax - 1) end
      out[c] = 'OK'
    end
  end
end
return out
