#!/usr/bin/env python3
"""partnerd's own cost per update request (docs/PERFORMANCE.md "partnerd's instructions per
request"): callgrind instructions and strace syscall counts of one partnerd, the rest of the
stack as scripts/bench builds it (bench.Stack: Redis, nginx, the bench org and data, fewer
customers). Not a test; deterministic enough for A/B decisions on a loaded machine.

Usage: python3 bench/pd_profile.py BUILDDIR [--outdir DIR] [--customers N] [--x1 A,B] [--x50 A,B]
                                   [--strace N] [--no-callgrind]
  instructions per request = (Ir after B requests - Ir after A requests) / (B - A), for single
  updates (--x1, default 300,900) and 50-customer updates (--x50, default 10,30; 0 to skip);
  the two profiles of each are kept in DIR (callgrind.partnerd.x1.A.out, ...) for
  `callgrind_annotate`. --strace N: N single and N/10 x50 requests under `strace -f -c`,
  the counts in DIR/strace.x1.txt and strace.x50.txt (the start-up's calls included).
"""
import argparse
import http.client
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


class Args:
    processes = 1
    workers = 8
    keepalive = True
    peer = False
    keep = True
    aof = False


def body(i, batch):
    cids = [bench.UPD[0] + ((i * batch + j) * 7919) % (bench.UPD[1] - bench.UPD[0] + 1)
            for j in range(batch)]
    return {"customersPartnerUpdates": [{"customer": {"mobile": bench.mobile(c)}, "partnerProgramUpdates": [
        {"partnerProgramName": "UpdProg", "updateType": "RENEWAL", "updateDetails": {
            "updatedTierName": "Silver", "updatedTierExpiryDate": "2034-02-%02dT10:00:00Z" % (1 + i % 28)}}]}
        for c in cids]}


def strace(st, outdir, n):
    for batch, count in ((1, n), (50, max(1, n // 10))):
        out = os.path.join(outdir, "strace.x%d.txt" % batch)
        st.start_partnerd("cg", valgrind=["strace", "-f", "-c", "-o", out])
        c = http.client.HTTPConnection("127.0.0.1", st.http_port, timeout=60)
        for i in range(count):
            s, d = st.http("POST", "/pd/cg/v2/partnerProgram/customerPartnerProgramUpdate", body(i, batch), conn=c)
            if s != 200:
                raise SystemExit("pd_profile: %d %r" % (s, d[:200]))
        c.close()
        # SIGTERM to partnerd itself (strace's child), so that strace writes its summary
        p = st.procs.pop("partnerd-cg")
        with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
            os.kill(int(f.read().split()[0]), 15)
        p.wait(120)
        print("strace -f -c, %d requests of %d customer(s): %s" % (count, batch, out), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builddir")
    ap.add_argument("--outdir", default=None)
    ap.add_argument("--customers", type=int, default=10000)
    ap.add_argument("--x1", default="300,900")
    ap.add_argument("--x50", default="10,30")
    ap.add_argument("--strace", type=int, default=0)
    ap.add_argument("--no-callgrind", dest="callgrind", action="store_false")
    a = ap.parse_args()
    builddir = os.path.abspath(a.builddir)
    args = Args()
    args.outdir = os.path.abspath(a.outdir or os.path.join(bench.TOP, "bench-out", "pd-profile"))
    os.makedirs(args.outdir, exist_ok=True)
    bench.set_customers(a.customers)
    st = bench.Stack(args, builddir)
    try:
        st.start_redis()
        bench.load_data(st, os.path.join(builddir, "src", "partnerctl"))
        st.start_partnerds()
        st.start_nginx()
        bench.prelink(st)
        if a.callgrind:
            for what, counts, batch in (("x1", a.x1, 1), ("x50", a.x50, 50)):
                if counts == "0":
                    continue
                r = bench.callgrind(st, counts=tuple(int(x) for x in counts.split(",")), batch=batch)
                if r is None:
                    raise SystemExit("pd_profile: no callgrind figure")
                print("instructions per %s update request: %.0f (totals %r)" % (what, r[0], r[1]), flush=True)
        if a.strace:
            strace(st, args.outdir, a.strace)
    finally:
        st.stop_all()
        for f in os.listdir(st.dir):
            if f.startswith("callgrind.") and f.endswith(".out"):
                shutil.copy(os.path.join(st.dir, f), args.outdir)
        shutil.rmtree(st.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
