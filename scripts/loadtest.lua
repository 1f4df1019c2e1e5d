-- The wrk script of scripts/loadtest (docs/LOADTEST.md): builds each request of the chosen
-- workload, paces it when a target rate or a ramp-up is set, and writes one line per answer
-- to a file of its thread. Not meant to be run by hand: scripts/loadtest sets everything
-- through the environment and runs `wrk -t C -c C` (one connection per thread, so that
-- a thread's request() and response() alternate and a request's times are exact).
--
-- Environment (all set by scripts/loadtest):
--   LT_DIR        directory of the per-thread files thread-K.tsv
--   LT_AUTH       the Authorization header value
--   LT_WORKLOAD   link | update | delink | reads | mix
--   LT_N          kit customers 0 .. N-1; LT_PREFIX their externalId prefix (externalId and
--                 membership id are PREFIX .. i)
--   LT_BATCH      customer entries per write request (1..50)
--   LT_PROGRAM, LT_TIER   the program linked, updated (RENEWAL to LT_TIER) and delinked
--   LT_RATE       target requests/s of the whole run (0: closed loop, no pacing)
--   LT_RAMP       ramp-up seconds (rate: the rate rises linearly from 0; closed loop: the
--                 connections start one after another over this time)
--   LT_QUOTA      answers per run (0: no quota; wrk's -d ends the run)
--   LT_THREADS    wrk's thread count (= connections)
--   LT_T0_US      CLOCK_MONOTONIC of the run's start in microseconds (times are relative)
--   LT_SEED       random seed (each thread adds its number)
--
-- A line of thread-K.tsv: end_us  service_us  scheduled_us  status  kind  entries  codes
--   end_us        when the answer was complete, from LT_T0_US
--   service_us    from sending the request to the complete answer (what wrk measures)
--   scheduled_us  from the request's scheduled send time to the complete answer (rate mode:
--                 the latency without coordinated omission; closed loop: = service_us)
--   status        HTTP status; kind: L U D R H (link, update, delink, customerPartnerPrograms,
--                 customerActivityHistory); entries: customer entries of the request
--   codes         item codes of the answer as code:count,... ("-" when none)

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } lt_timespec;
  int clock_gettime(int clk, lt_timespec *ts);
]]
local ts = ffi.new("lt_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC, as Python's time.monotonic()
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local env = os.getenv
local DIR = env("LT_DIR") or "."
local AUTH = env("LT_AUTH") or ""
local WORKLOAD = env("LT_WORKLOAD") or "update"
local N = tonumber(env("LT_N") or "1")
local PREFIX = env("LT_PREFIX") or "lt-"
local BATCH = tonumber(env("LT_BATCH") or "1")
local PROGRAM = env("LT_PROGRAM") or ""
local TIER = env("LT_TIER") or ""
local RATE = tonumber(env("LT_RATE") or "0")
local RAMP = tonumber(env("LT_RAMP") or "0")
local QUOTA = tonumber(env("LT_QUOTA") or "0")
local THREADS = tonumber(env("LT_THREADS") or "1")
local T0 = tonumber(env("LT_T0_US") or "0")
local SEED = tonumber(env("LT_SEED") or "1")

local BASE = "/v2/partnerProgram/"
local WHEADERS = { ["Content-Type"] = "application/json", ["Authorization"] = AUTH }
local RHEADERS = { ["Authorization"] = AUTH }

-- ---- the main state: numbers the threads, collects their counts ----------------------

local threads = {}

function setup(thread)
  local k = #threads
  threads[k + 1] = thread
  thread:set("lt_id", k)
  local q = 0
  if QUOTA > 0 then
    q = math.floor(QUOTA / THREADS)
    if k < QUOTA % THREADS then q = q + 1 end
  end
  thread:set("lt_quota", q)
end

function done(summary, latency, requests)
  local sent, answered = 0, 0
  for _, t in ipairs(threads) do
    sent = sent + (t:get("lt_sent") or 0)
    answered = answered + (t:get("lt_answered") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'LOADTEST {"duration_us":%d,"requests":%d,"bytes":%d,"sent":%d,"answered":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes, sent, answered,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end

-- ---- each thread's state ---------------------------------------------------------------

local out            -- this thread's file, opened at its first request
local id = 0         -- lt_id, set by setup() before the thread runs
local start_us       -- this thread's first scheduled send
local nsched = 0     -- requests scheduled so far (rate mode)
local rate_t = 0     -- this thread's share of the rate, requests per microsecond
local sched_us = 0   -- the scheduled send time of the request in flight
local sent_us = 0    -- when it was sent
local kind = "U"     -- its kind and customer entries
local entries = 0
local walk = 0       -- link/delink: position in this thread's walk
lt_sent = 0
lt_answered = 0

local function open()
  id = lt_id or 0
  math.randomseed(SEED + id)
  out = assert(io.open(string.format("%s/thread-%d.tsv", DIR, id), "w"))
  out:setvbuf("full", 65536)
  walk = id
  if RATE > 0 then rate_t = RATE / THREADS / 1e6 end
end

-- The scheduled send time of the n-th request (n from 0) of this thread, from start_us:
-- a rate rising linearly from 0 to rate_t over the ramp, then constant. Thread K is offset
-- by K/THREADS of its interval, so that the threads' sends interleave evenly.
local function schedule(n)
  local k = n + id / THREADS
  local ramp_us = RAMP * 1e6
  if ramp_us <= 0 then return k / rate_t end
  local k_ramp = rate_t * ramp_us / 2
  if k < k_ramp then return math.sqrt(2 * ramp_us * k / rate_t) end
  return ramp_us + (k - k_ramp) / rate_t
end

-- Only defined when needed: wrk pays a timer per request for a script with delay().
if RATE > 0 or RAMP > 0 then
  function delay()
    if lt_id == nil then return 0 end
    if not out then open() end
    local t = now_us()
    if not start_us then
      start_us = t
      if RATE <= 0 then -- closed loop with a ramp-up: connection K starts at K/THREADS of it
        sched_us = t + RAMP * 1e6 * id / THREADS
        return math.ceil((sched_us - t) / 1000)
      end
    end
    if RATE <= 0 then
      sched_us = t
      return 0
    end
    sched_us = start_us + schedule(nsched)
    nsched = nsched + 1
    if sched_us <= t then return 0 end
    return math.ceil((sched_us - t) / 1000) -- wrk counts in ms: never send early
  end
end

local function customer(i)
  return '{"externalId":"' .. PREFIX .. i .. '"}'
end

local function expiry()
  return string.format("%04d-%02d-%02dT23:59:59Z", math.random(2031, 2039), math.random(1, 12),
    math.random(1, 28))
end

local function link_entry(i)
  return '{"customer":' .. customer(i) .. ',"linkToPartnerPrograms":[{"partnerProgramName":"'
    .. PROGRAM .. '","customerPartnerReference":{"partnerMembershipId":"' .. PREFIX .. i .. '"'
    .. (TIER ~= "" and (',"partnerTierName":"' .. TIER .. '","partnerTierExpiryDate":"' .. expiry() .. '"') or "")
    .. '}}]}'
end

local function update_entry(i)
  return '{"customer":' .. customer(i) .. ',"partnerProgramUpdates":[{"partnerProgramName":"'
    .. PROGRAM .. '","updateType":"RENEWAL","updateDetails":{"updatedTierName":"' .. TIER
    .. '","updatedTierExpiryDate":"' .. expiry() .. '"}}]}'
end

local function delink_entry(i)
  return '{"customer":' .. customer(i) .. ',"deLinkFromPartnerPrograms":[{"partnerProgramName":"'
    .. PROGRAM .. '"}]}'
end

-- link and delink walk the customers: thread K takes K, K+T, K+2T... (mod N), so that no
-- two connections write one customer at the same time; update and reads pick at random.
local function next_walk()
  local i = walk % N
  walk = walk + THREADS
  return i
end

local function writes(k, make, pick)
  local e = {}
  for j = 1, BATCH do e[j] = make(pick()) end
  kind, entries = k, BATCH
  if k == "L" then
    return wrk.format("POST", BASE .. "linkCustomer", WHEADERS,
      '{"linkCustomers":[' .. table.concat(e, ",") .. ']}')
  elseif k == "U" then
    return wrk.format("POST", BASE .. "customerPartnerProgramUpdate", WHEADERS,
      '{"customersPartnerUpdates":[' .. table.concat(e, ",") .. ']}')
  end
  return wrk.format("POST", BASE .. "deLinkCustomer", WHEADERS,
    '{"deLinkCustomers":[' .. table.concat(e, ",") .. ']}')
end

local function random_customer()
  return math.random(0, N - 1)
end

local function read()
  local i = random_customer()
  entries = 1
  if math.random() < 0.8 then
    kind = "R"
    return wrk.format("GET", BASE .. "customerPartnerPrograms?identifierName=externalId&identifierValue="
      .. PREFIX .. i, RHEADERS)
  end
  kind = "H"
  return wrk.format("GET", BASE .. "customerActivityHistory?identifierName=externalId&identifierValue="
    .. PREFIX .. i .. "&limit=10", RHEADERS)
end

-- mix: half reads, 30 % updates, 10 % links, 10 % delinks (links and delinks at random
-- customers: a linked one answers 2005, an unlinked one 2004, both counted as item codes).
local function build()
  if WORKLOAD == "link" then return writes("L", link_entry, next_walk) end
  if WORKLOAD == "delink" then return writes("D", delink_entry, next_walk) end
  if WORKLOAD == "update" then return writes("U", update_entry, random_customer) end
  if WORKLOAD == "reads" then return read() end
  local r = math.random()
  if r < 0.5 then return read() end
  if r < 0.8 then return writes("U", update_entry, random_customer) end
  if r < 0.9 then return writes("L", link_entry, random_customer) end
  return writes("D", delink_entry, random_customer)
end

function request()
  if lt_id == nil then return build() end -- wrk's check of the script in its main state
  if not out then open() end
  local req = build()
  sent_us = now_us()
  if RATE <= 0 and RAMP <= 0 then sched_us = sent_us end
  if sched_us > sent_us then sched_us = sent_us end -- never credit a request sent early
  lt_sent = lt_sent + 1
  return req
end

-- The item codes of a write answer: each item's status object is the value of a key
-- ending in "Status" (partnerLinkStatus, updateStatus, partnerDeLinkStatus) and ends with
-- its code; a literal "code": cannot occur inside a JSON string (its quotes are escaped).
local function codes(body)
  if kind == "R" or kind == "H" or not body then return "-" end
  local count, order = {}, {}
  local at = 1
  while true do
    local s, e = string.find(body, 'Status":{', at, true)
    if not s then break end
    local _, ce, code = string.find(body, '"code":(%d+)', e)
    if not ce then break end
    if not count[code] then order[#order + 1] = code; count[code] = 0 end
    count[code] = count[code] + 1
    at = ce + 1
  end
  if #order == 0 then return "-" end
  local parts = {}
  for j, c in ipairs(order) do parts[j] = c .. ":" .. count[c] end
  return table.concat(parts, ",")
end

function response(status, headers, body)
  local t = now_us()
  lt_answered = lt_answered + 1
  out:write(string.format("%d\t%d\t%d\t%d\t%s\t%d\t%s\n", t - T0, t - sent_us, t - sched_us,
    status, kind, entries, codes(body)))
  if lt_quota and lt_quota > 0 and lt_answered >= lt_quota then
    out:flush()
    -- wrk's main thread sleeps for -d whatever its threads do: scripts/loadtest sends it
    -- SIGINT (which ends the run as at -d) once every thread has left its done-K file.
    io.open(string.format("%s/done-%d", DIR, id), "w"):close()
    wrk.thread:stop()
  elseif lt_answered % 1000 == 0 then
    out:flush()
  end
end
