"""Broken builds, proven caught (issue 15): tests/faults/partnerd-faulty is partnerd with
the test-fault hooks of src/testfault.h compiled in (check_PROGRAMS; the installed partnerd
has none). PARTNERD_TEST_FAULT=NAME at start breaks it on purpose:

  ack-before-commit  one commit in 4 is not sent, its items answered as if it applied
  lost-ack           one applied commit in 4 answers its items 2001 (nothing applied)
  stale-read         the read routes answer from a copy kept in the process for a second

(A fourth fault, die-after-claim, SIGKILLs a partnerd on a Redis Cluster between a
commit's membership-id claims and its commit: test_cluster_writes.py, not the checker.)

A short recorded run (tests/linearizability/recorder.py: 3 partnerd on one Redis, 12
client threads) against each must be reported as a violation by the linearizability
checker; the same binary with no fault set must give 0 violations (the hooks are inert
when off, so a caught fault is the fault's doing). Own stacks.

PARTNERD_FAULTY_BIN names the binary (make check sets it; default
build/tests/faults/partnerd-faulty next to PARTNERD_BIN's build tree). LINZ_FAULT_SECONDS
(default 5) and LINZ_FAULT_OPS (default 1000) bound each run.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "linearizability"))

import harness  # noqa: E402
import recorder  # noqa: E402


def faulty_bin():
    v = os.environ.get("PARTNERD_FAULTY_BIN")
    if v:
        return v
    build = os.path.dirname(os.path.dirname(os.path.abspath(harness.partnerd_bin())))
    return os.path.join(build, "tests", "faults", "partnerd-faulty")


def say(text):
    sys.stdout.write("    # " + text + "\n")
    sys.stdout.flush()


def run(fault):
    binary = faulty_bin()
    assert os.access(binary, os.X_OK), "%s not built (make check builds it)" % binary
    seconds = float(os.environ.get("LINZ_FAULT_SECONDS", "5"))
    env = {"PARTNERD_TEST_FAULT": fault} if fault else {"PARTNERD_TEST_FAULT": ""}
    ops = int(os.environ.get("LINZ_FAULT_OPS", "1000"))
    # paced (each thread waits 0-40 ms between requests): fewer requests in flight at once,
    # so that proving there is no serial order (the whole search of a part) takes seconds
    return recorder.record_and_check(ops=ops, seconds=seconds, pace=0.02, say=lambda text: None, shrink_seconds=3,
                                     keep_on_violation=False, partnerd_binary=binary, partnerd_env=env)


def test_faulty_binary_without_a_fault_is_linearizable():
    rep, counts = run(None)
    say("no fault: %d requests, %d operations checked in %.2f s: %s"
        % (counts["requests"], rep.ops, rep.seconds, "0 violations" if rep.ok else "NOT OK"))
    assert rep.ok, "the test-fault binary with no fault set gave a violation"
    assert counts["partnerctl_check"] == 0


def caught(fault):
    rep, counts = run(fault)
    assert not rep.inconclusive, "the check gave up on %s" % [c for c, _ in rep.inconclusive]
    assert rep.violations, "the broken build %s passed the linearizability check (%d requests)" % (
        fault, counts["requests"])
    cids, r, (kept, ghosts), total = rep.violations[0]
    say("%s caught: %d requests, %d violating parts; customers %s: smallest failing sub-history %d "
        "operations (+%d in doubt) of %d; check %.2f s" % (fault, counts["requests"], len(rep.violations), cids,
                                                          len(kept), len(ghosts), total, rep.seconds))


def test_broken_build_ack_before_commit_is_caught_by_the_linearizability_check():
    caught("ack-before-commit")


def test_broken_build_lost_ack_is_caught_by_the_linearizability_check():
    caught("lost-ack")


def test_broken_build_stale_read_is_caught_by_the_linearizability_check():
    caught("stale-read")
