#!/usr/bin/env python3
"""partnerctl migrate on a big layout-1 data set: how long key layout 1 -> 2 takes.

    bench/migrate.py [--customers N] [--batch N] [--verify] [--kill-at SECONDS]

Starts a private stack (tests/integration/harness.py: redis-server, partnerd, nginx on
free loopback ports, stopped by pid at the end), writes N customers of layout 1 with
test_migrate.py's generator (identifiers, a Tiered membership for even ids, a Supp one
for multiples of 3, their membership-id entries, a history and a feed entry per
membership, Idempotency-Keys, a rate window), then times `partnerctl migrate` (and,
with --kill-at, SIGKILLs a first run that many seconds in and times the run that
finishes it). --verify compares every key with what layout 2 must hold (test_migrate's
expect_v2) and runs `partnerctl check`. Binaries: $PARTNERCTL_BIN / $PARTNERD_BIN, by
default build/src/.
"""

import argparse
import os
import signal
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import test_migrate as tm  # noqa: E402  (the layout-1 generator, dump and expect_v2)
from harness import partnerctl_bin  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--kill-at", type=float, default=0)
    a = ap.parse_args()
    stack = tm._stack()
    try:
        tm.fresh_layout1(stack)
        t = time.monotonic()
        nfeed = tm.write_layout1(stack, "mig", range(1, a.customers + 1))
        print("layout-1 data: %d customers, %d feed entries, %d keys, written in %.1f s"
              % (a.customers, nfeed, stack.redis("DBSIZE"), time.monotonic() - t))
        mem0 = int(stack.redis("INFO", "memory").decode().split("used_memory:")[1].split()[0])
        before = tm.dump(stack) if a.verify else None
        argv = [partnerctl_bin(), "--redis", stack.redis_url, "migrate", "--batch", str(a.batch)]
        if a.kill_at > 0:
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(a.kill_at)
            p.send_signal(signal.SIGKILL)
            p.wait()
            print("first run SIGKILLed after %.1f s (exit %s)" % (a.kill_at, p.returncode))
        t = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True)
        secs = time.monotonic() - t
        print(p.stdout.strip())
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        mem1 = int(stack.redis("INFO", "memory").decode().split("used_memory:")[1].split()[0])
        print("migrate: %.2f s wall (%d customers, %.0f customers/s); Redis used_memory %.1f MB "
              "before, %.1f MB after" % (secs, a.customers, a.customers / secs, mem0 / 1e6,
                                         mem1 / 1e6))
        if a.verify:
            t = time.monotonic()
            tm.assert_dump(tm.dump(stack), tm.expect_v2(before))
            tm.check_passes(stack)
            print("verified: every key where layout 2 puts it, partnerctl check clean (%.1f s)"
                  % (time.monotonic() - t))
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
