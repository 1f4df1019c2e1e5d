-- The ceilings: POST to BENCH_PATH (/ceil/nginx, /ceil/fcgi, /ceil/rt1, /ceil/floor,
-- /ceil/contract) the same body a partnerd update of BENCH_BATCH random customers sends,
-- with the customer ids in the query string (c=ID,...) so that the responders need no
-- JSON parser.
package.path = (os.getenv("BENCH_WRK_DIR") or "bench/wrk") .. "/?.lua;" .. package.path
local B = require "common"
B.install()
local path = os.getenv("BENCH_PATH") or "/ceil/nginx"

request = function()
  B.count()
  local ids, entries = {}, {}
  for k = 1, B.batch do
    local cid = B.random_cid()
    ids[k] = cid
    entries[k] = B.update_entry(cid, "UpdProg", "Silver")
  end
  return wrk.format("POST", path .. "?c=" .. table.concat(ids, ","), B.headers,
    '{"customersPartnerUpdates":[' .. table.concat(entries, ",") .. ']}')
end
