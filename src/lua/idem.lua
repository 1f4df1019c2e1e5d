-- idem: claim an Idempotency-Key for a request, or find what an earlier request left.
-- KEYS: none. ARGV: key, fingerprint (route + body hash), running_ttl_ms
-- Returns {"NEW"} (claimed: the caller processes the request and stores its response),
-- {"MISMATCH"} (the key was used with another route or body: 422),
-- {"RUNNING"} (the first request with this key has not finished: 409),
-- {"DONE", status, body} (replay the stored response).
local key, fp, ttl = ARGV[1], ARGV[2], ARGV[3]
local cur = redis.call('HMGET', key, 'f', 's', 'st', 'b')
if not cur[1] then
  redis.call('HSET', key, 'f', fp, 's', 'running')
  redis.call('PEXPIRE', key, ttl)
  return {'NEW'}
end
if cur[1] ~= fp then return {'MISMATCH'} end
if cur[2] ~= 'done' then return {'RUNNING'} end
return {'DONE', cur[3], cur[4]}
