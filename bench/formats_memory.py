#!/usr/bin/env python3
"""Redis memory per applied change, everything included (membership, membership-id index,
history entry, feed entry), and the commit's argument bytes (docs/PERFORMANCE.md "Stored
formats").

Starts a stack (redis-server, partnerd, nginx: tests/integration/harness.py) with the
test fixtures, writes N customer hashes of org acme straight into Redis (id and mobile,
version 1: the customers' own memory is not counted), then links each of them through the
API to AcmeAir (membership id P1-<cid>, tier Silver, a partnerd-generated X-Request-Id),
50 customers a request, and prints used_memory's growth per link, MEMORY USAGE of the
feed partitions and of a sample of history keys, the size of a history entry and of the
bytes Redis received per link (total_net_input_bytes: every call partnerd makes for it, the
commit's arguments the largest) and the append-only file's growth per link (appendonly
switched on after the warm-up, without automatic rewrites: the effects of the link's
calls, as Redis logs them), and Redis's CPU
time per link (INFO cpu, rough: one run, not interleaved).

    python3 bench/formats_memory.py [--n 100000] [--partnerd BUILD/src/partnerd]
"""
import argparse
import json
import os
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import keys  # noqa: E402  (partnerd's key names, read from src/keys.h)
from harness import Stack  # noqa: E402

LINK = "/v2/partnerProgram/linkCustomer"
BASE = 50_000_000


def used(st):
    info = st.redis("INFO", "memory")
    info = info.decode() if isinstance(info, bytes) else info
    for line in info.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])


def info(st, section):
    text = st.redis("INFO", section)
    text = text.decode() if isinstance(text, bytes) else text
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def link_batch(st, lo, hi):
    body = {"linkCustomers": [
        {"customer": {"id": c}, "linkToPartnerPrograms": [
            {"partnerProgramName": "AcmeAir",
             "customerPartnerReference": {"partnerMembershipId": "P1-%d" % c, "partnerTierName": "Silver",
                                          "partnerTierExpiryDate": "2031-12-29T18:29:59.000Z"}}]}
        for c in range(lo, hi)]}
    status, _, resp = st.post(LINK, body)
    assert status == 200, resp
    codes = [e["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] for e in resp["linkCustomers"]]
    assert codes == [200] * (hi - lo), codes[:5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--warm", type=int, default=2000, help="links before the measurement starts")
    ap.add_argument("--partnerd", default=None, help="the partnerd binary (default: the build's)")
    args = ap.parse_args()
    total = args.warm + args.n
    st = Stack(partnerd_binary=args.partnerd, cluster=False).start()
    try:
        st.redis("PING")                     # (connects)
        r = st._redis
        for lo in range(0, total, 5000):
            r.pipeline([("HSET", keys.cust("acme", BASE + c), "id", BASE + c, "mobile", "91%010d" % (BASE + c), "v", 1)
                        for c in range(lo, min(total, lo + 5000))])
        for lo in range(0, args.warm, 50):
            link_batch(st, BASE + lo, BASE + min(args.warm, lo + 50))
        st.redis("CONFIG", "SET", "auto-aof-rewrite-percentage", 0)   # no rewrite mid-run
        st.redis("CONFIG", "SET", "appendonly", "yes")
        for _ in range(600):                    # the rewrite that starts the AOF
            if info(st, "persistence").get("aof_rewrite_in_progress") == "0" and \
                    info(st, "persistence").get("aof_rewrite_scheduled") == "0":
                break
            time.sleep(0.1)
        p0 = info(st, "persistence")
        aof0 = int(p0["aof_current_size"]) - int(p0["aof_base_size"])
        in0 = int(info(st, "stats")["total_net_input_bytes"])
        cpu0 = info(st, "cpu")
        t0 = time.monotonic()
        before = used(st)
        for lo in range(args.warm + 1, total, 50):
            link_batch(st, BASE + lo, BASE + min(total, lo + 50))
        secs = time.monotonic() - t0
        n = total - args.warm - 1
        after = used(st)
        p1 = info(st, "persistence")
        aof1 = int(p1["aof_current_size"]) - int(p1["aof_base_size"])
        if os.environ.get("FORMATS_MEMORY_DEBUG"):
            print({k: (p0[k], p1[k]) for k in p0 if k.startswith("aof")}, file=sys.stderr)
        in1 = int(info(st, "stats")["total_net_input_bytes"])
        cpu1 = info(st, "cpu")
        cpu = sum(float(cpu1[k]) - float(cpu0[k]) for k in ("used_cpu_sys", "used_cpu_user"))
        feed = sum(int(st.redis("MEMORY", "USAGE", k, "SAMPLES", "0") or 0) for k in keys.feeds("acme"))
        sample = range(args.warm + 1, total, max(1, n // 1000))
        hist = [int(st.redis("MEMORY", "USAGE", keys.hist("acme", BASE + c), "SAMPLES", "0")) for c in sample]
        entry = st.redis("LINDEX", keys.hist("acme", BASE + total - 1), 0)
        (_, fields), = st.redis("XREVRANGE", keys.feed_of("acme", BASE + total - 1), "+", "-", "COUNT", 1)
        out = {
            "links": n, "seconds": round(secs, 1),
            "bytes_per_change": round((after - before) / n, 1),
            "feed_bytes_per_entry": round(feed / (total), 1),
            "history_key_bytes": round(sum(hist) / len(hist), 1),
            "history_entry_bytes": len(entry),
            "history_entry_format": "record" if entry[:1] in (b"\x01", b"\x02") else "json",
            "feed_entry_value_bytes": sum(len(x) for x in fields[1::2]),
            "feed_entry_fields": len(fields) // 2,
            "redis_input_bytes_per_change": round((in1 - in0) / n, 1),
            "aof_bytes_per_change": round((aof1 - aof0) / n, 1),
            # every call of a link (begin, commit), with the AOF's writes: a rough figure
            # (scripts/bench measures Redis CPU per entry properly, in one run per row)
            "redis_cpu_us_per_change": round(cpu * 1e6 / n, 1),
        }
        print(json.dumps(out, indent=1))
    finally:
        st.stop()


if __name__ == "__main__":
    main()
