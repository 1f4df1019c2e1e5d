"""Runs the black-box integration tests against one shared stack.

Usage: run_tests.py [SUBSTRING]

Discovers `def test_<behaviour>(stack)` functions in tests/integration/test_*.py (in
file order, then source order), starts one Stack (harness.py) for the whole run, runs
each test with it, then runs `partnerctl check` on what the suite left in Redis as the
last test. Tests share the fixture data and keep out of each other's way by taking
their own customers (stack.customers()) and membership ids (stack.uid()).

Prints `PASS: name` or `FAIL: name` plus the assertion and traceback for each test,
and as its last line exactly `N passed, M failed`. Exit status 1 when a test failed
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
    tests = [f for f in discover() if pattern in f.__name__]
    run_check = pattern in CHECK_TEST
    results = []
    stack = None
    say("partnerd: %s" % harness.partnerd_bin())
    say("partnerctl: %s" % harness.partnerctl_bin())
    if tests or run_check:
        stack = harness.Stack()
        try:
            stack.start()
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
    say("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
