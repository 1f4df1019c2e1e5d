-- Delinks linked (customer, program) pairs: the same walk as link.lua over customers
-- linked to every program of BENCH_PROGRAMS beforehand, starting at BENCH_OFFSET.
package.path = (os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local B = require "common"
B.install()
local i = B.offset

request = function()
  B.count()
  local cid, prog = B.walk(i)
  i = i + 1
  return B.delink({ B.delink_entry(cid, prog) })
end
