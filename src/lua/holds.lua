-- holds: does a customer still hold a membership id? Shared by begin.lua and commit.lua
-- (scripts/embed-lua puts this file where a script says "--#include holds.lua").
--
-- (It uses tag_of_cid: a script includes tags.lua before it; callers pass now_ms from
-- lock_now, lock.lua.)
--
-- An entry of pp:{TAG}:mid:ORG:PID (membership id -> customer) can outlive the holding: a
-- pending relink that took effect at its start (docs/DATA-MODEL.md) leaves the old id there
-- until the customer is next read or written. A claim that meets another customer's entry
-- asks mid_holds whether that customer's stored membership m:PID still has the id:
--   - as its pending relink's id (pending or due: a due relink is the current membership);
--   - as its current id, unless a relink is due (start <= now_ms, Redis's clock).
-- A value it cannot read (neither format, or the hash of the wrong type) counts as holding:
-- when in doubt the claim is refused (2101), never taken over.

-- Whether customer cid of org holds membership id mid in program pid at now_ms.
-- (The decoding helpers are made inside it: a script that includes this file pays for
-- their closures only when it meets another holder, which is rare; made at the top level,
-- the seven closures cost every call of begin.lua and commit.lua, bench/scripts_micro.py
-- --profile.)
local function mid_holds(org, cid, pid, mid, now_ms)
  -- Base-36 time (DATA-MODEL.md): number, or nil when empty or malformed.
  local function holds_b36(s)
    local neg = string.sub(s, 1, 1) == '-'
    if neg then s = string.sub(s, 2) end
    if not string.find(s, '^[0-9a-z]+$') then return nil end
    local n = tonumber(s, 36)
    if n and neg then n = -n end
    return n
  end

  -- LEN ":" bytes at p: the bytes and the position after them, or nil.
  local function holds_str(v, p)
    local _, e, len = string.find(v, '^(%d+):', p)
    if not e then return nil end
    len = tonumber(len)
    if e + len > #v then return nil end
    return string.sub(v, e + 1, e + len), e + len + 1
  end

  -- The bytes up to the next ',' and the position after it (#v + 2 when there is none).
  local function holds_field(v, p)
    local c = string.find(v, ',', p, true)
    if c then return string.sub(v, p, c - 1), c + 1 end
    return string.sub(v, p), #v + 2
  end

  -- values = LEN:MID "," TIER "," EXP "," START "," END at p: mid, START text, next position.
  local function holds_values(v, p)
    local mid, start, _
    mid, p = holds_str(v, p)
    if not mid or string.sub(v, p, p) ~= ',' then return nil end
    p = p + 1
    if string.sub(v, p, p) == '-' then
      p = p + 1
    else
      _, p = holds_str(v, p)
      if not p then return nil end
    end
    if string.sub(v, p, p) ~= ',' then return nil end
    _, p = holds_field(v, p + 1)        -- EXP
    start, p = holds_field(v, p)        -- START
    _, p = holds_field(v, p)            -- END
    return mid, start, p
  end

  -- A stored membership value: current mid, then the relink's mid and start (or nil);
  -- nothing when the value is not readable.
  local function holds_decode(v)
    if string.sub(v, 1, 1) == '{' then
      local ok, t = pcall(cjson.decode, v)
      if not ok or type(t) ~= 'table' or type(t.mid) ~= 'string' then return nil end
      if type(t.rl) == 'table' then
        if type(t.rl.mid) ~= 'string' or type(t.rl.start) ~= 'number' then return nil end
        return t.mid, t.rl.mid, t.rl.start
      end
      return t.mid
    end
    local mid, _, p = holds_values(v, 1)
    if not mid then return nil end
    _, p = holds_field(v, p)            -- LK
    _, p = holds_field(v, p)            -- UP
    if p > #v + 1 then return mid end   -- no relink
    local rmid, rstart = holds_values(v, p)
    rstart = rmid and holds_b36(rstart)
    if not rstart then return nil end
    return mid, rmid, rstart
  end

  local v = redis.pcall('HGET', 'pp:{' .. tag_of_cid(cid) .. '}:c:' .. org .. ':' .. cid, 'm:' .. pid)
  if type(v) == 'table' then return true end  -- not a hash: in doubt
  if not v then return false end
  local cur, rmid, rstart = holds_decode(v)
  if cur == nil then return true end
  if rmid ~= nil and rmid == mid then return true end
  return cur == mid and not (rmid ~= nil and rstart <= now_ms)
end
