"""scripts/linearizability: a longer run of the linearizability check (issue 15).

    scripts/linearizability [--ops N] [--seconds S] [--seed N] [--threads T] [--partnerds P] [--keep]
                            [--nemesis none|kill-partnerd|pause-partnerd|pause-redis|restart-redis|all]
                            [--nemesis-seed N]
    scripts/linearizability --cluster [...]
                            [--nemesis none|kill-partnerd|pause-partnerd|pause-master|failover|reshard|cluster-all]
    scripts/linearizability --check FILE [--stretch S] [--check-seconds S]
                                             # check a recorded history (history.jsonl) again

Starts one Redis, P partnerd (default 3) behind nginx (tests/integration/harness.py; the
binaries as the integration tests find them: $PARTNERD_BIN, $PARTNERCTL_BIN or build/src/),
drives T client threads until N requests were made or S seconds passed, checks the history
and prints the counts, the check's time and any violation. --nemesis runs faults during the
load (nemesis.py; "all": a seeded random schedule of every single-Redis fault). --cluster: a 3+3
Redis Cluster (tests/integration/cluster.py) instead of one Redis ("cluster-all": every
cluster fault, failover and reshard included). The history is written to
history.jsonl in the stack's directory (kept with --keep or on a violation).
Exit status: 0 with no violation, 1 otherwise.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lincheck  # noqa: E402
import nemesis  # noqa: E402
import recorder  # noqa: E402


def main(argv):
    ap = argparse.ArgumentParser(prog="scripts/linearizability",
                                 description="Record a history against partnerd and check it is linearizable.")
    ap.add_argument("--ops", type=int, default=10000, help="requests to make (default 10000)")
    ap.add_argument("--seconds", type=float, default=300.0, help="at most this long (default 300)")
    ap.add_argument("--seed", type=int, default=None, help="the workload's seed (default: random, printed)")
    ap.add_argument("--threads", type=int, default=12, help="client threads (default 12)")
    ap.add_argument("--partnerds", type=int, default=3, help="partnerd processes (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the stack's directory (logs, history.jsonl)")
    ap.add_argument("--pace", type=float, default=0.0,
                    help="each client thread waits 0 to 2 x PACE seconds between requests (default 0)")
    ap.add_argument("--nemesis", default="none", choices=["none"] + sorted(nemesis.NEMESES),
                    help="faults during the load (default none)")
    ap.add_argument("--cluster", action="store_true",
                    help="a 3+3 Redis Cluster instead of one Redis (default: one Redis, or "
                    "PARTNERD_TEST_CLUSTER=1's cluster)")
    ap.add_argument("--nemesis-seed", type=int, default=None, help="the fault schedule's seed (default: random, printed)")
    ap.add_argument("--out", metavar="FILE", help="write the history there too (default: only the stack's directory)")
    ap.add_argument("--check", metavar="FILE", help="only check a recorded history.jsonl")
    ap.add_argument("--stretch", type=float, default=0.0, metavar="S",
                    help="with --check: every answered operation's completion S seconds later (a "
                    "history as a slower machine would record it: still linearizable if it was, and "
                    "harder to search); prints each part's steps and time")
    ap.add_argument("--check-seconds", type=float, default=300.0, metavar="S",
                    help="the search gives up (INCONCLUSIVE) after S seconds (default 300)")
    a = ap.parse_args(argv)
    if a.check:
        records, t0, seed = recorder.load(a.check)
        ops, counts = recorder.to_ops(records)
        for line in recorder.format_counts(counts):
            print(line)
        if a.stretch:
            ops = [o if o.ret == lincheck.INF else o.copy(ret=o.ret + a.stretch) for o in ops]
        rep = lincheck.check(recorder.model(), ops, max_seconds=a.check_seconds)
        kills = recorder.unsafe_kills(records)
        if kills:
            print("failovers without the writes paused: %d; acknowledged writes lost (counted apart): %d"
                  % (len(kills), lincheck.excuse_lost_acks(recorder.model(), ops, rep, kills)))
        for cids, n, steps, secs in rep.parts:
            print("part %s: %d operations, %d search steps, %.2f s" % (cids, n, steps, secs))
        print(lincheck.format_report(rep, t0))
        return 0 if rep.ok else 1
    t = time.monotonic()
    nem = nemesis.make(a.nemesis, a.nemesis_seed)
    need = getattr(nem, "cluster", None)
    if need and not a.cluster:
        ap.error("--nemesis %s needs --cluster" % a.nemesis)
    if need is False and a.cluster:
        ap.error("--nemesis %s acts on the one redis-server: not with --cluster" % a.nemesis)
    if nem is not None:
        print("nemesis %s, seed %d (--nemesis-seed %d repeats the schedule; timing differs)"
              % (nem.name, nem.seed, nem.seed))
    rep, counts = recorder.record_and_check(ops=a.ops, seconds=a.seconds, seed=a.seed, threads=a.threads,
                                            partnerds=a.partnerds, keep=a.keep, nemesis=nem,
                                            pace=a.pace, out=a.out, max_seconds=a.check_seconds,
                                            cluster=True if a.cluster else None)
    if nem is not None:
        print("faults done: %s" % ", ".join("%s %d" % kv for kv in sorted(nem.events.items())))
        if nem.error:
            print("the nemesis failed: %s" % nem.error)
            return 1
    print("total %.1f s" % (time.monotonic() - t))
    return 0 if rep.ok and counts.get("partnerctl_check_other") == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
