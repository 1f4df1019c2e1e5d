-- Shared by the wrk scripts of scripts/bench. Settings come from the environment
-- (bench/bench.py sets them): BENCH_AUTH (the Authorization header value),
-- BENCH_LO/BENCH_N (customer id range lo .. lo+n-1), BENCH_OFFSET (start of a sequence),
-- BENCH_BATCH (customers per request), BENCH_PROGRAMS (comma-separated program names).
-- Customer CID (integer id) has mobile "7" .. %09d (10 digits: partnerd prefixes the
-- org's country code 91), so requests exercise mobile normalisation and the index lookup.
local M = {}

M.auth = os.getenv("BENCH_AUTH") or ""
M.lo = tonumber(os.getenv("BENCH_LO") or "1")
M.n = tonumber(os.getenv("BENCH_N") or "1000")
M.offset = tonumber(os.getenv("BENCH_OFFSET") or "0")
M.batch = tonumber(os.getenv("BENCH_BATCH") or "1")
M.programs = {}
for p in string.gmatch(os.getenv("BENCH_PROGRAMS") or "", "[^,]+") do
  M.programs[#M.programs + 1] = p
end

M.headers = { ["Content-Type"] = "application/json", ["Authorization"] = M.auth }

function M.mobile(cid)
  return string.format("7%09d", cid)
end

function M.random_cid()
  return M.lo + math.random(0, M.n - 1)
end

-- A pseudo-random walk through every customer of the range exactly once per pass
-- (7919 is prime and does not divide n): pass k of the walk uses program k+1.
function M.walk(i)
  local k = math.floor(i / M.n)
  local cid = M.lo + (i * 7919) % M.n
  return cid, M.programs[k + 1] or M.programs[#M.programs]
end

-- A tier expiry between 2030 and 2035, with an offset: a RENEWAL always changes it.
function M.expiry()
  return string.format("%04d-%02d-%02dT23:59:59+05:30",
    math.random(2030, 2035), math.random(1, 12), math.random(1, 28))
end

function M.customer(cid)
  return '{"mobile":"' .. M.mobile(cid) .. '"}'
end

function M.update_entry(cid, program, tier)
  return '{"customer":' .. M.customer(cid) .. ',"partnerProgramUpdates":[{"partnerProgramName":"'
    .. program .. '","updateType":"RENEWAL","updateDetails":{"updatedTierName":"' .. tier
    .. '","updatedTierExpiryDate":"' .. M.expiry() .. '"}}]}'
end

function M.link_entry(cid, program, tier)
  return '{"customer":' .. M.customer(cid) .. ',"linkToPartnerPrograms":[{"partnerProgramName":"'
    .. program .. '","customerPartnerReference":{"partnerMembershipId":"' .. program .. '-' .. cid
    .. '","partnerTierName":"' .. tier .. '","partnerTierExpiryDate":"' .. M.expiry() .. '"}}]}'
end

function M.delink_entry(cid, program)
  return '{"customer":' .. M.customer(cid) .. ',"deLinkFromPartnerPrograms":[{"partnerProgramName":"'
    .. program .. '"}]}'
end

M.base = "/v2/partnerProgram/"

function M.update(entries)
  return wrk.format("POST", M.base .. "customerPartnerProgramUpdate", M.headers,
    '{"customersPartnerUpdates":[' .. table.concat(entries, ",") .. ']}')
end

function M.link(entries)
  return wrk.format("POST", M.base .. "linkCustomer", M.headers,
    '{"linkCustomers":[' .. table.concat(entries, ",") .. ']}')
end

function M.delink(entries)
  return wrk.format("POST", M.base .. "deLinkCustomer", M.headers,
    '{"deLinkCustomers":[' .. table.concat(entries, ",") .. ']}')
end

-- Requests sent and (with BENCH_COUNT=1) answers holding code 2010, reported by done()
-- as one line "BENCH {...}" that bench.py parses. The per-item counts of a run come
-- from partnerd's metrics (cheaper than parsing here); the count below is a cross-check.
M.sent = 0
M.c2010 = 0
M.non200 = 0
local threads = {}

function M.install()
  setup = function(thread)
    threads[#threads + 1] = thread
  end
  -- BENCH_DELAY_MS (a fraction allowed): each connection waits that long before its next
  -- request, so a run can be held to a request rate (bench/cluster_bench.py: the one Redis
  -- at a master's load). wrk takes whole milliseconds: the fraction is drawn at random.
  local d = tonumber(os.getenv("BENCH_DELAY_MS") or "")
  if d and d > 0 then
    local whole, frac = math.floor(d), d - math.floor(d)
    delay = function()
      if math.random() < frac then return whole + 1 end
      return whole
    end
  end
  if os.getenv("BENCH_COUNT") == "1" then
    response = function(status, headers, body)
      if status ~= 200 then M.non200 = M.non200 + 1 end
      local at = 1
      while true do
        local s = string.find(body, '"code":2010', at, true)
        if not s then break end
        M.c2010 = M.c2010 + 1
        at = s + 11
      end
    end
  end
  done = function(summary, latency, requests)
    local sent, c2010, non200 = 0, 0, 0
    for _, t in ipairs(threads) do
      sent = sent + (t:get("bench_sent") or 0)
      c2010 = c2010 + (t:get("bench_c2010") or 0)
      non200 = non200 + (t:get("bench_non200") or 0)
    end
    io.write(string.format('BENCH {"sent":%d,"c2010":%d,"non200":%d}\n', sent, c2010, non200))
  end
end

-- Called by each script's request(): publishes the counters to the thread table.
function M.count()
  M.sent = M.sent + 1
  bench_sent = M.sent
  bench_c2010 = M.c2010
  bench_non200 = M.non200
end

math.randomseed(os.time() + math.floor(os.clock() * 1e6))
return M
