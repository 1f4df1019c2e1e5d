-- idem: the claim of an Idempotency-Key (SPEC §6), fenced like a customer lock.
-- KEYS: none. ARGV[1] is the operation:
--
--   "claim", key, fingerprint (route + body hash), token, running_ttl_ms
--     Returns {"NEW"} (claimed for this token: the caller processes the request, its commits
--     check the claim, see commit.lua, and it then calls "finish"),
--     {"MISMATCH"} (the key was used with another route or body: 422),
--     {"RUNNING"} (the first request with this key has not finished: 409),
--     {"DONE", status, body} (replay the stored response).
--
--   "renew", key, token, running_ttl_ms
--     While the claim is still 'running' and holds this token, sets its expiry to
--     running_ttl_ms again and returns "OK"; else "FENCED". On a Redis Cluster the claim is
--     in another slot than the customers, so the commits cannot check it in their script:
--     the cluster protocol renews it after it took its locks and before it commits
--     (store_write.c, docs/CONSISTENCY.md "On a Redis Cluster").
--
--   "finish", key, token, status, body, done_ttl_ms
--     Only while the claim is still 'running' and holds this token: status 200 stores the
--     response (s = done, kept done_ttl_ms), any other status deletes the claim (a repeat is
--     processed anew). Returns "OK", or "FENCED" when the claim expired or was taken over
--     by a repeat of the request: then nothing is written, the other request owns the key.
local op, key = ARGV[1], ARGV[2]
if op == 'finish' then
  local cur = redis.call('HMGET', key, 's', 't')
  if cur[1] ~= 'running' or cur[2] ~= ARGV[3] then return 'FENCED' end
  if ARGV[4] == '200' then
    redis.call('HSET', key, 's', 'done', 'st', ARGV[4], 'b', ARGV[5])
    redis.call('PEXPIRE', key, ARGV[6])
  else
    redis.call('DEL', key)
  end
  return 'OK'
end
if op == 'renew' then
  local cur = redis.call('HMGET', key, 's', 't')
  if cur[1] ~= 'running' or cur[2] ~= ARGV[3] then return 'FENCED' end
  redis.call('PEXPIRE', key, ARGV[4])
  return 'OK'
end
if op ~= 'claim' then return redis.error_reply('idem: unknown operation') end
local fp, token, ttl = ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('HMGET', key, 'f', 's', 'st', 'b')
if not cur[1] then
  redis.call('HSET', key, 'f', fp, 's', 'running', 't', token)
  redis.call('PEXPIRE', key, ttl)
  return {'NEW'}
end
if cur[1] ~= fp then return {'MISMATCH'} end
if cur[2] ~= 'done' then return {'RUNNING'} end
return {'DONE', cur[3], cur[4]}
