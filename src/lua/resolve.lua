-- resolve: find out whether a commit (commit.lua) whose reply was lost applied, customer
-- by customer, and make sure that one which did not apply never will.
-- ARGV: token, n_customers, then per customer: customer_key, version_read
-- Returns one status per customer:
--   "APPLIED"      the commit wrote this customer: its hash's `w` holds our token (only a
--                  commit of ours writes our token there, and `w` changes only with `v`)
--   "NOT_APPLIED"  it did not, and never will: either the lock still holds our token
--                  (the commit has not run: the lock, the hash's field `lock` (lock.lua), is
--                  deleted here, in the same atomic
--                  step, so the commit, if it still reaches Redis, is FENCED), or the lock
--                  is gone and at most one write not ours happened since the version read
--                  (ours would have been that write)
--   "UNKNOWN"      the lock is gone and two or more writes happened since: ours may have
--                  been one of them, overwritten by later ones
-- A commit that is still to reach Redis when the lock is not ours any more is FENCED by
-- its token check, so no answer here can be made false by it later.
local token = ARGV[1]
--#include lock.lua
local n = tonumber(ARGV[2])
local out = {}
for c = 1, n do
  local ck, ver = ARGV[2 * c + 1], ARGV[2 * c + 2]
  local cur = redis.call('HMGET', ck, 'v', 'w', LOCK_FIELD)
  if cur[2] == token then
    out[c] = 'APPLIED'
  elseif cur[3] and string.sub(cur[3], 1, #token + 1) == token .. LOCK_SEP then
    redis.call('HDEL', ck, LOCK_FIELD)
    out[c] = 'NOT_APPLIED'
  else
    local v, base = tonumber(cur[1] or ''), tonumber(ver) or 0
    if v == base or v == base + 1 then
      out[c] = 'NOT_APPLIED'
    else
      out[c] = 'UNKNOWN'
    end
  end
end
return out
