-- Links fresh (customer, program) pairs: a walk through the customer range, one pass per
-- program of BENCH_PROGRAMS, starting at BENCH_OFFSET (bench.py carries the offset over
-- from one round to the next so that no pair is linked twice).
package.path = (os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local B = require "common"
B.install()
local i = B.offset

request = function()
  B.count()
  local cid, prog = B.walk(i)
  i = i + 1
  return B.link({ B.link_entry(cid, prog, "Silver") })
end
