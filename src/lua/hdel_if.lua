-- hdel_if: removes an identifier index entry only while it still names the customer
-- (partnerctl load and import-customers take an old identifier out this way: a later
-- line or another customer of the file may already hold it).
-- KEYS[1] pp:{TAG}:ix:ORG:KIND, the value's bucket (docs/DATA-MODEL.md); ARGV[1] the
-- identifier value,
-- ARGV[2] the customer id. Returns 1 when the entry was removed, else 0.
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
	return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
