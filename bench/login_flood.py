#!/usr/bin/env python3
"""A flood of wrong-password requests against a cached client: the latency it keeps.

Run by hand, from the repo top, after scripts/build:

    python3 bench/login_flood.py [--requests 500] [--rounds 3] [--workers 64]

Starts a private stack (tests/integration/harness.py: redis-server, one partnerd with
--workers N, nginx, on free loopback ports; every process stopped by its own pid at the
end). Each round: a client whose credential is cached loops GET customerPartnerPrograms on
one keep-alive connection and another polls /health, while a separate process sends
--requests wrong-password requests at once (one thread each: several usernames, two of
them unknown, all from 127.0.0.1). Between rounds the failed-login counters are deleted, so
that every round starts with the limits unspent. Prints, per round and over all rounds, the
flood's statuses and the cached client's and health's p50/p99/max during the flood.

PARTNERD_BIN / PARTNERCTL_BIN pick the binaries (default build/src/); --no-login-flags for a
partnerd from before the failed-login limits. Extra partnerd flags after `--` (e.g.
`-- --login-fail-limit 0 --login-fail-limit-addr 0` to see the bounds on password checks
alone).
"""

import argparse
import os
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IT = os.path.join(TOP, "tests", "integration")
sys.path.insert(0, IT)
sys.dont_write_bytecode = True
import harness  # noqa: E402
import keys  # noqa: E402  (partnerd's key names, read from src/keys.h)
import test_login_flood as lf  # noqa: E402


def pct(xs, p):
    return lf.percentile(xs, p) * 1e3


def summary(name, rows):
    lat = [t for _, t, _ in rows]
    bad = sum(1 for s, _, _ in rows if s != 200)
    if not lat:
        return "%s: no requests" % name
    return "%s: n=%d non-200=%d p50=%.1f ms p99=%.1f ms max=%.1f ms" % (
        name, len(lat), bad, pct(lat, 50), pct(lat, 99), max(lat) * 1e3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=lf.WORKERS)
    ap.add_argument("--no-login-flags", action="store_true",
                    help="pass no --login-fail-limit* flags (a partnerd from before them)")
    ap.add_argument("extra", nargs="*", help="extra partnerd flags (after --)")
    a = ap.parse_args()
    args = [] if a.no_login_flags else ["--login-fail-limit", "20", "--login-fail-limit-addr", "100"]
    args += a.extra
    all_cached, all_health, statuses = [], [], {}
    with harness.Stack(partnerd_args=args, workers=a.workers) as stack:
        print("partnerd %s, --workers %d %s" % (harness.partnerd_bin(), a.workers, " ".join(args)))
        for rnd in range(a.rounds):
            for k in stack.keys(keys.LOGIN_FAIL_PREFIX + "*"):
                stack.redis("DEL", k)
            res, cached, health, t0, t1 = lf.run_flood(stack, a.requests, seed=rnd + 1)
            st = {}
            for _, s, _, _, _ in res:
                st[s] = st.get(s, 0) + 1
                statuses[s] = statuses.get(s, 0) + 1
            c = [r for r in cached if t0 <= r[2] <= t1]
            h = [r for r in health if t0 <= r[2] <= t1]
            all_cached += c
            all_health += h
            print("round %d: flood %d requests in %.2f s, statuses %s" % (rnd + 1, len(res), t1 - t0, dict(sorted(st.items()))))
            print("  " + summary("cached client during the flood", c))
            print("  " + summary("health during the flood", h))
        print("all rounds: flood statuses %s" % dict(sorted(statuses.items())))
        print("  " + summary("cached client during the flood", all_cached))
        print("  " + summary("health during the flood", all_health))


if __name__ == "__main__":
    main()
