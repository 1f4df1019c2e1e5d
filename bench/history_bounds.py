#!/usr/bin/env python3
"""History and change-feed sizes with maximal fields, and the history read time
(docs/CHANGE-FEED.md "Sizes").

Starts a stack (redis-server, partnerd, nginx: tests/integration/harness.py) with one org
whose names are as long as partnerd accepts: a SUPPLEMENTARY program with tiers (so every
value of a membership is set) named with 128 bytes, tier names of 128 bytes, a customer
with a 19-digit id, a 254-byte email and a 128-byte externalId. It links that customer with
a 128-byte membership id, then sends UPGRADE/DOWNGRADE updates (each event carries before
and after) with a 128-byte X-Request-Id until the history is at --history-max, and prints:
the largest history entry, MEMORY USAGE of the history and the feed, and the client-side
time of customerActivityHistory with limit=1, limit=100 and limit=100 with a program filter
(median and 95th percentile of N reads).

With --escape the names and the membership id are made of control bytes, which JSON
writes as \\u00XX (6 bytes each): the worst case of the entry's size. With --legacy N,
N activities of ~20 KB are then appended to the history in Redis (as a partnerd without
field limits could leave it, beyond the trim) before the reads are timed.

    python3 bench/history_bounds.py [--history-max 100] [--reads 200] [--escape] [--legacy N]
"""
import argparse
import json
import os
import statistics
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import keys  # noqa: E402  (partnerd's key names, read from src/keys.h)
from harness import Stack  # noqa: E402

HISTORY = "/v2/partnerProgram/customerActivityHistory"
AUTH = ("max_api", "max_secret")
CID = 9223372036854775806


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history-max", type=int, default=100)
    ap.add_argument("--reads", type=int, default=200)
    ap.add_argument("--escape", action="store_true")
    ap.add_argument("--legacy", type=int, default=0)
    ap.add_argument("--cid", type=int, default=CID, help="the customer's id (an older partnerd "
                    "reads at most 18 digits)")
    a = ap.parse_args()
    cid = a.cid

    ch = "\x01" if a.escape else None
    name = lambda c: (ch or c) * 128          # noqa: E731
    prog, t1, t2, mid = name("P"), name("A"), (ch or "B") * 127 + "B", name("M")
    doc = {"orgs": [{"id": "max", "defaultCountryCode": "91", "nationalNumberLength": 10,
                     "credentials": [{"username": AUTH[0], "password": AUTH[1]}],
                     "programs": [{"name": prog, "type": "SUPPLEMENTARY", "tiers": [t1, t2],
                                   "membershipCycle": {"type": "MONTHS", "value": 12}}],
                     "customers": [{"id": cid, "mobile": "919999999999",
                                    "email": "e" * 240 + "@max.example.x", "externalId": "X" * 128}]}]}
    rid = {"X-Request-Id": "r" * 128}
    with Stack(fixtures=None, load=False,
               partnerd_args=["--history-max", str(a.history_max), "--rate-limit", "0"]) as st:
        path = os.path.join(st.dir, "max.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        st.load(path)
        cust = {"id": cid}
        s, _, body = st.post("/v2/partnerProgram/linkCustomer", {"linkCustomers": [{
            "customer": cust, "linkToPartnerPrograms": [{"partnerProgramName": prog,
                "customerPartnerReference": {"partnerMembershipId": mid, "partnerTierName": t1,
                                             "partnerTierExpiryDate": "2099-12-31T23:59:59.999Z",
                                             "membershipStartDate": "2026-01-01T00:00:00.000Z"}}]}]},
            auth=AUTH, headers=rid)
        assert s == 200 and body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, body
        for k in range(a.history_max + 5):
            up = k % 2 == 0
            s, _, body = st.post("/v2/partnerProgram/customerPartnerProgramUpdate", {"customersPartnerUpdates": [{
                "customer": cust, "partnerProgramUpdates": [{"partnerProgramName": prog,
                    "updateType": "UPGRADE" if up else "DOWNGRADE",
                    "updateDetails": {"updatedTierName": t2 if up else t1,
                                      "updatedTierExpiryDate": "2099-12-31T23:59:59.%03dZ" % k}}]}]},
                auth=AUTH, headers=rid)
            code = body["customersPartnerUpdates"][0]["partnerProgramUpdates"][0]["updateStatus"]["code"]
            assert s == 200 and code == 200, body
        hk, fk = keys.hist("max", cid), keys.feed_of("max", cid)   # its feed partition
        entries = st.redis("LRANGE", hk, 0, -1)
        sizes = [len(e) for e in entries]
        print("history-max %d, escape %s" % (a.history_max, a.escape))
        print("history: %d entries, largest %d bytes, total %d bytes of entries"
              % (len(entries), max(sizes), sum(sizes)))
        print("history MEMORY USAGE: %d bytes" % st.redis("MEMORY", "USAGE", hk, "SAMPLES", "0"))
        xlen = st.redis("XLEN", fk)
        fm = st.redis("MEMORY", "USAGE", fk, "SAMPLES", "0")
        print("feed: %d entries, MEMORY USAGE %d bytes (%.0f bytes per entry)" % (xlen, fm, fm / xlen))
        print("used_memory: %s" % [l for l in st.redis("INFO", "memory").decode().splitlines()
                                   if l.startswith("used_memory:")][0])

        if a.legacy:
            big = json.loads(entries[-1])
            big["after"]["partnerMembershipId"] = "m" * 20000
            big = json.dumps(big, separators=(",", ":"))
            for k in range(0, a.legacy, 100):
                st.redis("RPUSH", hk, *([big] * min(100, a.legacy - k)))
            print("legacy: %d entries of %d bytes appended; history MEMORY USAGE %d bytes"
                  % (a.legacy, len(big), st.redis("MEMORY", "USAGE", hk, "SAMPLES", "0")))

        def timed(params):
            q = "&".join("%s=%s" % kv for kv in params.items())
            ts, statuses, ok = [], {}, None
            for _ in range(a.reads):
                t0 = time.perf_counter()
                s, _, body = st.get(HISTORY + "?identifierName=id&identifierValue=%d&" % cid + q, auth=AUTH)
                ts.append((time.perf_counter() - t0) * 1000)
                statuses[s] = statuses.get(s, 0) + 1
                if s == 200:
                    ok = body
            ts.sort()
            return (len(ok["activities"]) if ok else 0, ok["total"] if ok else None,
                    statistics.median(ts), ts[int(len(ts) * 0.95)], statuses)

        import urllib.parse
        for label, params in (("limit=1", {"limit": 1}), ("limit=100", {"limit": 100}),
                              ("limit=100 + program filter",
                               {"limit": 100, "partnerProgramName": urllib.parse.quote(prog)})):
            n, total, med, p95, statuses = timed(params)
            print("read %-27s %3d activities (total %s): median %.2f ms, p95 %.2f ms, HTTP %s"
                  % (label, n, total, med, p95, statuses))


if __name__ == "__main__":
    main()
