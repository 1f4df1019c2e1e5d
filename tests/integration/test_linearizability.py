"""SPEC §4 "Atomicity and concurrency", checked the Jepsen way (issue 15, slice 1): a
history of link / update / relink / cancel / delink requests and both read routes from 12
client threads over 3 partnerd processes sharing one Redis, recorded with invocation and
completion times and checked for linearizability (tests/linearizability/: recorder.py drives
and records, lincheck.py models the org and searches for a serial order that respects real
time). Own stacks. A second run does it under faults (tests/linearizability/nemesis.py,
"all": SIGKILL and restart of partnerd, SIGSTOP of partnerd beyond the lock TTL, SIGSTOP of
Redis, Redis SHUTDOWN SAVE and restart, in a seeded random schedule; on a Redis Cluster,
PARTNERD_TEST_CLUSTER=1, "cluster-all": the partnerd faults, SIGSTOP of a master, a
failover and a reshard). Every test runs on a cluster too (each its own).

LINZ_SECONDS (default 20) bounds the run, LINZ_OPS (default 30000) the requests;
LINZ_SEED=N repeats a workload (timing differs). The run must make >= 2000 requests.
The run with faults: LINZ_NEMESIS_SECONDS (default 90, on a cluster 60) of load, paced (each client thread
waits 0-200 ms between requests), >= 2000 requests; LINZ_NEMESIS_SEED=N repeats its fault
schedule.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "linearizability"))

import nemesis  # noqa: E402
import recorder  # noqa: E402
import harness  # noqa: E402  (recorder put tests/integration on the path)


def say(text):
    sys.stdout.write("    # " + text + "\n")
    sys.stdout.flush()


def test_linearizable_history_over_three_partnerds_on_one_redis():
    # 10 s unpaced (~15 000 requests). The search had a long tail on the busiest windows
    # (one CI pass in eight gave up after 2 000 000 steps on one customer pair of a 20 s
    # run with no unknown at all); it now branches only on writes that applied something,
    # cuts hopeless states and forgets unobservable activity order, and is bounded by time
    # (300 s for the whole check) rather than steps. scripts/linearizability runs long ones.
    seconds = float(os.environ.get("LINZ_SECONDS", "10"))
    ops = int(os.environ.get("LINZ_OPS", "15000"))
    seed = os.environ.get("LINZ_SEED")
    rep, counts = recorder.record_and_check(ops=ops, seconds=seconds, seed=int(seed) if seed else None,
                                            say=say)
    assert rep.ok, "the history is not linearizable (see the VIOLATION or INCONCLUSIVE above)"
    assert counts["requests"] >= 2000, "only %d requests in %.0f s" % (counts["requests"], seconds)
    assert counts["partnerctl_check"] == 0, "partnerctl check failed after the run"
    # a healthy stack: every request answered
    assert set(counts["http"]) == {"200"}, "requests without HTTP 200: %r" % counts["http"]


def test_linearizable_history_under_faults_of_partnerd_and_of_the_store():
    """One Redis: nemesis "all" for 90 s. On a cluster (PARTNERD_TEST_CLUSTER=1): nemesis
    "cluster-all" (SIGKILL and SIGSTOP of partnerd, SIGSTOP of a master, a failover with
    the killed master back as a replica, a reshard) for 60 s, a failover and a reshard
    first, then the seeded random schedule; stale claim entries of refused commits are counted apart from partnerctl
    check's other violations, which fail the test."""
    cl = harness.cluster_mode()
    seconds = float(os.environ.get("LINZ_NEMESIS_SECONDS", "60" if cl else "90"))
    nseed = os.environ.get("LINZ_NEMESIS_SEED")
    seed = os.environ.get("LINZ_SEED")
    nem = nemesis.make("cluster-all" if cl else "all", int(nseed) if nseed else None)
    if cl:
        nem.must = ("failover", "reshard")
    say("nemesis %s, seed %d (LINZ_NEMESIS_SEED=%d repeats the schedule)" % (nem.name, nem.seed, nem.seed))
    rep, counts = recorder.record_and_check(ops=100000, seconds=seconds, seed=int(seed) if seed else None,
                                            pace=0.1, nemesis=nem, say=say)
    say("faults done: %s" % ", ".join("%s %d" % kv for kv in sorted(nem.events.items())))
    assert nem.error is None, "the nemesis failed: %s" % nem.error
    assert rep.ok, "the history under faults is not linearizable (see the VIOLATION or INCONCLUSIVE above)"
    assert counts["requests"] >= 2000, "only %d requests in %.0f s" % (counts["requests"], seconds)
    assert counts["partnerctl_check_other"] == 0, "partnerctl check failed after the run"
    if not cl:
        assert counts["partnerctl_check"] == 0, "partnerctl check failed after the run"
    assert sum(nem.events.values()) >= 5, "only %r faults in %.0f s" % (nem.events, seconds)
    for kind in getattr(nem, "must", ()):
        assert nem.events.get(kind), "no %s among the faults %r" % (kind, nem.events)


def test_linearizability_check_catches_memberships_lost_behind_partnerds_back():
    """The whole pipeline on a real stack reports a violation: half a second into the run,
    customer 7001's memberships are deleted in Redis (HDEL, not through partnerd), so later
    answers (a 2004 for a delink of a program it was linked to, a read without it) match no
    serial order. Retried up to 3 times in case 7001 happened to hold nothing then."""
    for attempt in range(3):
        rep, counts = recorder.record_and_check(ops=3000, seconds=20, nemesis=recorder.LoseMemberships(after=0.5),
                                                say=lambda text: None, shrink_seconds=3,
                                                keep_on_violation=False)
        if rep.violations:
            cids, r, (kept, ghosts), total = rep.violations[0]
            say("caught: customers %s, %d operations, smallest failing sub-history %d (+%d in doubt), "
                "check %.2f s" % (cids, total, len(kept), len(ghosts), rep.seconds))
            assert 7001 in cids, cids
            return
    raise AssertionError("three runs that lost 7001's memberships passed the check")
