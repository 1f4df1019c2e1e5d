-- begin: resolve, lock and read every customer entry of a request in one call.
-- ARGV: org, token, lock_ttl_ms, n_entries, then per entry:
--   n_idents, (kind, value)*   kind: id | mobile | email | externalId (values normalised)
--   n_items, (program_name, membership_id_or_empty)*
-- Returns one array per entry:
--   {"OK", cid, {hgetall of the customer hash}, {program def or false per item},
--    {membership-id holder or false per item}}
--   {"DUP", cid, first_entry_index, defs, holders}   already locked by an earlier entry
--   {"BUSY", cid}                    another request holds the customer's lock
--   {"NOTFOUND"}                     no identifier names a customer (8015)
--   {"MISMATCH"}                     the identifiers name different customers, or some none (8016)
local org, token, ttl = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local i = 5
local out = {}
local locked = {}
local prefix = 'pp:{' .. org .. '}:'
for e = 1, n do
  local ni = tonumber(ARGV[i]); i = i + 1
  local cid, found, missing, differ = nil, false, false, false
  for _ = 1, ni do
    local kind, val = ARGV[i], ARGV[i + 1]; i = i + 2
    local c
    if kind == 'id' then
      if redis.call('EXISTS', 'pp:{' .. org .. ':' .. val .. '}:c') == 1 then c = val end
    else
      c = redis.call('HGET', prefix .. 'ix:' .. kind, val)
    end
    if not c then
      missing = true
    elseif cid == nil then
      cid = c
    elseif cid ~= c then
      differ = true
    end
  end
  local np = tonumber(ARGV[i]); i = i + 1
  local items_at = i
  i = i + 2 * np
  if cid == nil then
    out[e] = {'NOTFOUND'}
  elseif missing or differ then
    out[e] = {'MISMATCH'}
  else
    local defs, holders = {}, {}
    for k = 0, np - 1 do
      local name, mid = ARGV[items_at + 2 * k], ARGV[items_at + 2 * k + 1]
      local def = redis.call('HGET', prefix .. 'progs', name)
      defs[k + 1] = def
      holders[k + 1] = false
      if def and mid ~= '' then
        local pid = string.match(def, '^{"pid":(%d+)')
        if pid then holders[k + 1] = redis.call('HGET', prefix .. 'mid:' .. pid, mid) end
      end
    end
    local tag = 'pp:{' .. org .. ':' .. cid .. '}:'
    if locked[cid] then
      out[e] = {'DUP', cid, locked[cid], defs, holders}
    elseif not redis.call('SET', tag .. 'lock', token, 'NX', 'PX', ttl) then
      out[e] = {'BUSY', cid}
    else
      locked[cid] = e
      out[e] = {'OK', cid, redis.call('HGETALL', tag .. 'c'), defs, holders}
    end
  end
end
return out
