-- RENEWAL (same tier, new expiry) of BENCH_BATCH random customers of the range, all
-- linked to BENCH_PROGRAMS[1] with tier Silver beforehand.
package.path = (os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local B = require "common"
B.install()
local prog = B.programs[1]

request = function()
  B.count()
  local entries = {}
  for k = 1, B.batch do
    entries[k] = B.update_entry(B.random_cid(), prog, "Silver")
  end
  return B.update(entries)
end
