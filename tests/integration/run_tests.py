"""Runs the black-box integration tests against one shared stack.

Usage: run_tests.py [SUBSTRING]

Discovers `def test_<behaviour>(stack)` functions in tests/integration/test_*.py (in
file order, then source order), starts one Stack (harness.py) for the whole run, runs
each test with it, then runs `partnerctl check` on what the suite left in Redis as the
last test. Tests share the fixture data and keep out of each other's way by taking
their own customers (stack.customers()) and membership ids (stack.uid()).

Prints `PASS: name` or `FAIL: name` plus the assertion and traceback for each test,
and as its last line exactly `N passed, M failed`.

With PARTNERD_TEST_CLUSTER=1 every Stack runs on a Redis Cluster of 3 masters + 3
replicas (harness.py, cluster.py). The tests of CLUSTER_INCOMPATIBLE below are not run
then: each is printed as `SKIP (cluster): name: reason`, and the line before the last
says `K not run on a cluster`; they count neither as passed nor as failed. Exit status 1 when a test failed
or when no test ran. With a failure, the stack's directory (logs, nginx.conf) is kept
and its path printed.
"""

import glob
import importlib.util
import inspect
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True      # keep the source tree clean (and distcheck's read-only)

import harness  # noqa: E402

CHECK_TEST = "test_stored_data_invariants_hold_after_suite"

# Tests that cannot run on a Redis Cluster, each with its reason (the one place that says
# so: a name here that no test has fails the run). They stop, restart, pause or proxy "the
# Redis" (one redis-server; a cluster has six and fails over instead), or need data a
# cluster cannot hold.
_ONE_REDIS = "stops/restarts the one redis-server (stop_proc, restart_redis, SHUTDOWN)"
_PROXY = "puts a RESP proxy between partnerd and the one redis-server (a cluster node answers MOVED through it)"
_NO_STACK = "takes no stack: it starts its own cluster (or fake) in the single-Redis pass already"
CLUSTER_INCOMPATIBLE = {
    # test_errors.py
    "test_redis_unreachable_answers_503_with_retry_after_then_recovers": _ONE_REDIS,
    # test_openapi.py
    "test_openapi_rate_limit_and_unavailable_match_spec": _ONE_REDIS,
    # test_guarantee.py
    "test_guarantee_redis_stopped_shut_down_flushed_and_paused_answers_fast_and_recovers": _ONE_REDIS,
    "test_guarantee_stalled_lock_holder_cannot_commit_after_its_lock_expired": _PROXY,
    "test_guarantee_writer_stalled_across_a_relinks_start_never_leaves_the_old_id_held_twice": _PROXY,
    "test_guarantee_a_later_entry_is_not_2101_for_an_id_whose_earlier_claimant_was_fenced": _PROXY,
    "test_guarantee_an_item_is_2010_beside_applied_ones_when_the_claim_it_leaned_on_did_not_commit": _PROXY,
    "test_guarantee_sigkilled_worker_leaves_no_partial_customer_and_locks_clear_within_ttl": _PROXY,
    "test_guarantee_contended_customer_gets_200_or_2010_within_lock_wait_and_others_are_not_slowed": _PROXY,
    "test_guarantee_sigterm_lets_a_request_held_between_begin_and_commit_finish_then_exits_0": _PROXY,
    # test_indoubt.py
    "test_indoubt_commit_applied_but_reply_lost_answers_200_and_the_change_is_stored": _PROXY,
    "test_indoubt_commit_that_never_ran_answers_2001_and_is_fenced_when_it_reaches_redis_late": _PROXY,
    "test_indoubt_commit_whose_resolution_cannot_reach_redis_in_time_answers_2011": _PROXY,
    "test_indoubt_redis_stopped_while_a_commit_is_in_flight_answers_what_happened": _PROXY,
    "test_indoubt_lock_expired_and_others_wrote_is_2001_after_one_write_and_2011_after_two_never_200": _PROXY,
    "test_redis_restart_does_not_fail_the_first_request_of_each_worker_with_503": _ONE_REDIS,
    "test_connection_that_timed_out_is_replaced_and_the_next_request_succeeds": _PROXY,
    # test_operations.py
    "test_idempotency_key_while_the_first_request_runs_is_409": _PROXY,
    "test_idempotency_key_response_of_a_request_stalled_after_its_commit_is_not_stored_over_the_repeat": _PROXY,
    # test_edges.py
    "test_store_out_of_memory_is_said_on_writes_and_reads": _PROXY,
    # test_layout.py
    "test_a_new_connection_to_layout_1_data_answers_503_naming_partnerctl_migrate":
        "a cluster store checks the key layout once, at its first call, not on each node's new "
        "connection (docs/CLUSTER.md)",
    # test_migrate.py: every test
    "@test_migrate": "partnerctl migrate is for one Redis: layout 1 never ran on a cluster, and its "
                     "untagged keys cannot be renamed into layout 2's slots (docs/OPERATIONS.md)",
    # test_cluster.py, test_cluster_fake.py, test_store_cluster.py, test_ctl_cluster.py,
    # test_cluster_writes.py: every test
    "@test_cluster": _NO_STACK,
    "@test_cluster_fake": _NO_STACK,
    "@test_store_cluster": _NO_STACK,
    "@test_ctl_cluster": _NO_STACK,
    "@test_cluster_writes": _NO_STACK,
    "@test_cluster_faults": _NO_STACK,
    "@test_cluster_pipes": _NO_STACK,
    # test_pipes.py: every test
    "@test_pipes": "its stacks are one Redis (on a cluster: test_cluster_pipes.py, and the whole "
                   "suite with PARTNERD_TEST_REDIS_PIPES=N)",
}


def cluster_incompatible(fn):
    """The reason fn cannot run on a cluster, or None."""
    return CLUSTER_INCOMPATIBLE.get(fn.__name__) or CLUSTER_INCOMPATIBLE.get("@" + fn.__module__)
SIGTERM_TEST = "test_partnerd_exits_0_on_sigterm_after_suite"


def discover():
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        fns = [f for n, f in vars(mod).items()
               if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == name]
        fns.sort(key=lambda f: f.__code__.co_firstlineno)
        tests.extend(fns)
    return tests


def say(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run_one(name, fn, stack, results):
    """Runs one test; raises StackDied when a server of the shared stack died meanwhile."""
    t0 = time.monotonic()
    err = None
    try:
        if inspect.signature(fn).parameters:
            fn(stack)
        else:
            fn()
    except Exception as e:  # AssertionError and anything unexpected alike
        err = (str(e) or type(e).__name__, traceback.format_exc())
    dead = stack.dead() if stack is not None else []
    if err is None and not dead:
        results.append(True)
        took = time.monotonic() - t0
        say("PASS: %s" % name + (" (%.1f s)" % took if took >= 2 else ""))
        return
    results.append(False)
    say("FAIL: %s" % name)
    if err is not None:
        say("    %s (after %.2f s)" % (err[0].splitlines()[0], time.monotonic() - t0))
        for line in err[1].rstrip().splitlines():
            say("    " + line)
    if dead:
        say("    a server of the shared stack died during the test:")
        for line in "\n".join(dead).splitlines():
            say("    " + line)
        raise StackDied()


class StackDied(Exception):
    """A server of the shared stack died: the remaining tests cannot run."""


def check_invariants(stack):
    rc, out, err = stack.ctl("check")
    assert rc == 0, "partnerctl check exited %d:\n%s%s" % (rc, out, err)


def main(argv):
    pattern = argv[0] if argv else ""
    found = discover()
    tests = [f for f in found if pattern in f.__name__]
    run_check = pattern in CHECK_TEST
    results = []
    stack = None
    not_run = []
    say("partnerd: %s" % harness.partnerd_bin())
    say("partnerctl: %s" % harness.partnerctl_bin())
    if harness.cluster_mode():
        say("store: a Redis Cluster of 3 masters + 3 replicas for every stack (PARTNERD_TEST_CLUSTER=1)")
        names = set(f.__name__ for f in found) | set("@" + f.__module__ for f in found)
        stale = sorted(set(CLUSTER_INCOMPATIBLE) - names)
        if stale:
            results.append(False)
            say("FAIL: cluster_incompatible_list_names_existing_tests: no such test(s) %s "
                "(run_tests.py's CLUSTER_INCOMPATIBLE)" % ", ".join(stale))
        for fn in tests:
            why = cluster_incompatible(fn)
            if why:
                not_run.append(fn)
                say("SKIP (cluster): %s: %s" % (fn.__name__, why))
        tests = [f for f in tests if f not in not_run]
    if tests or run_check:
        stack = harness.Stack()
        try:
            stack.start()
            if stack.cluster is not None:
                say("stack: %s (http %d, redis cluster %s)" % (stack.dir, stack.http_port, stack.cluster.seeds))
            else:
                say("stack: %s (http %d, redis %d)" % (stack.dir, stack.http_port, stack.redis_port))
        except Exception as e:
            results.append(False)
            say("FAIL: stack_starts_and_answers_health: %s" % e)
            stack = None
    try:
        if stack is not None:
            try:
                for fn in tests:
                    run_one(fn.__name__, fn, stack, results)
                if run_check:
                    run_one(CHECK_TEST, check_invariants, stack, results)
            except StackDied:
                say("FAIL: the shared stack lost a server; %d test(s) not run"
                    % (len(tests) + run_check - len(results)))
                results.append(False)
            if not all(results):
                stack.keep = True
    finally:
        if stack is not None:
            stack.stop()
            bad = dict((n, st) for n, st in stack.exit_status.items()
                       if n.startswith("partnerd") and st[0] != 0)
            if tests or run_check:
                if bad:
                    results.append(False)
                    stack.keep = True
                    say("FAIL: %s" % SIGTERM_TEST)
                    for n, (rc, secs) in sorted(bad.items()):
                        say("    %s: exit status %s after %.1f s on SIGTERM (expected 0: finish and exit)"
                            % (n, rc, secs))
                else:
                    results.append(True)
                    say("PASS: %s" % SIGTERM_TEST)
            if stack.keep:
                say("stack directory kept: %s" % stack.dir)
    passed = sum(1 for r in results if r)
    failed = len(results) - passed
    if harness.cluster_mode():
        say("%d not run on a cluster" % len(not_run))
    say("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
