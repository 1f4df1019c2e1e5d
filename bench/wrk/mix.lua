-- The realistic mix over random customers of the whole range, one program
-- (BENCH_PROGRAMS[1]): 70 % RENEWAL, 20 % link, 10 % delink. A link of a linked customer
-- answers 2005 and an update or delink of an unlinked one 2004: normal 200 answers.
package.path = (os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local B = require "common"
B.install()
local prog = B.programs[1]

request = function()
  B.count()
  local cid = B.random_cid()
  local r = math.random()
  if r < 0.7 then
    return B.update({ B.update_entry(cid, prog, "Silver") })
  elseif r < 0.9 then
    return B.link({ B.link_entry(cid, prog, "Silver") })
  else
    return B.delink({ B.delink_entry(cid, prog) })
  end
end
