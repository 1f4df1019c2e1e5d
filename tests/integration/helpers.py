"""Request builders and assertions shared by the test modules (SPEC §4), and the processes
some of them drive (a module's cluster, the tests/cluster probes, a partnerctl run killed
while writes are held)."""

import contextlib
import datetime
import json
import os
import pty
import select
import signal
import subprocess
import time

import harness
import keys
from harness import ACME, LINK

FUTURE = "2030-12-31T23:59:59+05:30"
PAST = "2020-01-01T00:00:00Z"

CUSTOMER_OK = {"status": True, "message": "Customer successfully retrieved", "code": 1000}
SUCCESS = {"status": True, "message": "Success", "code": 200}


# A customer's lock is the field `lock` of its hash: TOKEN:EXPIRY, EXPIRY in ms on Redis's
# clock (src/lua/lock.lua; the tests' servers share this machine's clock).
LOCK_FIELD = "lock"


def take_lock(st, org, cid, token="0123456789abcdef0123456789abcdef", for_ms=30000):
    """Takes customer cid's lock for token for for_ms, as another request would."""
    st.redis("HSET", keys.cust(org, cid), LOCK_FIELD, "%s:%d" % (token, int(time.time() * 1000) + for_ms))


def lock_of(st, org, cid):
    """(token, ms left) of customer cid's lock field, or None when it has none (ms left <= 0:
    expired, free for the next request)."""
    v = st.redis("HGET", keys.cust(org, cid), LOCK_FIELD)
    if v is None:
        return None
    v = v.decode() if isinstance(v, bytes) else v
    token, _, exp = v.rpartition(":")
    return token, int(exp) - int(time.time() * 1000)


def locked(st, org, cid):
    """Whether customer cid's lock is taken (its field there and not expired)."""
    lk = lock_of(st, org, cid)
    return lk is not None and lk[1] > 0


def drop_lock(st, org, cid):
    st.redis("HDEL", keys.cust(org, cid), LOCK_FIELD)


def ms(iso):
    """Milliseconds since the epoch of an ISO date-time Python can read (test side)."""
    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def item(program, mid=None, tier=None, exp=None, start=None, ref=True, **extra):
    """One linkToPartnerPrograms item; None leaves a field out, ref=False leaves out
    customerPartnerReference, ref=<anything else> sends that value as it."""
    it = {}
    if program is not None:
        it["partnerProgramName"] = program
    if ref is True:
        r = {}
        for k, v in (("partnerMembershipId", mid), ("partnerTierName", tier),
                     ("partnerTierExpiryDate", exp), ("membershipStartDate", start)):
            if v is not None:
                r[k] = v
        r.update(extra)
        it["customerPartnerReference"] = r
    elif ref is not False:
        it["customerPartnerReference"] = ref
    return it


def entry(customer, *items):
    return {"customer": customer, "linkToPartnerPrograms": list(items)}


def by_mobile(c):
    return {"mobile": c["mobile"]}


def stored_view(c):
    """The customer object a successful response shows for fixture customer c."""
    return {"id": c["id"], "mobile": c.get("mobile", ""), "email": c.get("email", ""),
            "externalId": c.get("externalId", ""), "status": CUSTOMER_OK}


def post_link(stack, entries, auth=ACME, **kw):
    """POSTs linkCustomer and checks the 200 response's shape; returns the body."""
    st, hdrs, body = stack.post(LINK, {"linkCustomers": entries}, auth=auth, **kw)
    assert st == 200, "HTTP %s, body %r" % (st, body)
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")
    assert isinstance(body, dict), "body is not JSON: %r" % (body,)
    assert set(body) == {"linkCustomers", "warnings"}, "top-level keys %r" % sorted(body)
    assert body["warnings"] == [], body["warnings"]
    out = body["linkCustomers"]
    assert isinstance(out, list) and len(out) == len(entries), \
        "%d entries sent, %r answered" % (len(entries), out)
    for sent, got in zip(entries, out):
        assert set(got) == {"customer", "linkToPartnerPrograms"}, "entry keys %r" % sorted(got)
        assert isinstance(got["customer"], dict) and "status" in got["customer"], got["customer"]
        assert_status(got["customer"]["status"])
        items = got["linkToPartnerPrograms"]
        assert isinstance(items, list) and len(items) == len(sent["linkToPartnerPrograms"]), \
            "%d items sent, answered %r" % (len(sent["linkToPartnerPrograms"]), items)
        for s_it, g_it in zip(sent["linkToPartnerPrograms"], items):
            assert set(g_it) == {"partnerProgramName", "partnerLinkStatus"}, "item keys %r" % sorted(g_it)
            # SPEC shows the name echoed; what stands in for a missing or empty one is open
            if isinstance(s_it, dict) and isinstance(s_it.get("partnerProgramName"), str) \
                    and s_it["partnerProgramName"]:
                assert g_it["partnerProgramName"] == s_it["partnerProgramName"], \
                    "partnerProgramName %r echoed as %r" % (s_it["partnerProgramName"], g_it["partnerProgramName"])
            assert_status(g_it["partnerLinkStatus"])
    return body


def link1(stack, customer, *items, auth=ACME):
    """One entry; returns (customer object, [partnerLinkStatus...])."""
    body = post_link(stack, [entry(customer, *items)], auth=auth)
    e = body["linkCustomers"][0]
    return e["customer"], [i["partnerLinkStatus"] for i in e["linkToPartnerPrograms"]]


def assert_status(s):
    assert isinstance(s, dict) and set(s) == {"status", "message", "code"}, "status object %r" % (s,)
    assert isinstance(s["status"], bool), s
    assert isinstance(s["code"], int) and not isinstance(s["code"], bool), s
    assert isinstance(s["message"], str) and s["message"].strip(), "empty message in %r" % (s,)
    assert s["status"] == (s["code"] in (200, 1000)), "status flag disagrees with code: %r" % (s,)


def assert_code(s, code, what=""):
    assert_status(s)
    assert s["code"] == code, "%sexpected code %d, got %r" % (what + ": " if what else "", code, s)
    if code == 200:
        assert s == SUCCESS, "success status must be exactly %r, got %r" % (SUCCESS, s)
    if code == 1000:
        assert s == CUSTOMER_OK, "found-customer status must be exactly %r, got %r" % (CUSTOMER_OK, s)


def assert_codes(statuses, codes):
    got = [s.get("code") for s in statuses]
    assert got == list(codes), "item codes %r, expected %r (statuses %r)" % (got, list(codes), statuses)
    for s, c in zip(statuses, codes):
        assert_code(s, c)


def assert_error(resp, http_status, code=None):
    """A whole-request error: HTTP status, JSON content type and the error envelope."""
    st, hdrs, body = resp
    code = http_status if code is None else code
    assert st == http_status, "HTTP %s (expected %s), body %r" % (st, http_status, body)
    ctype = hdrs.get("Content-Type") or ""
    assert ctype.split(";")[0].strip().lower() == "application/json", "Content-Type %r" % ctype
    assert isinstance(body, dict), "error body is not JSON: %r" % (body,)
    assert set(body) == {"errors", "warnings"}, "envelope keys %r in %r" % (sorted(body), body)
    assert body["warnings"] == [], body
    errs = body["errors"]
    assert isinstance(errs, list) and len(errs) >= 1, body
    e = errs[0]
    assert set(e) == {"status", "code", "message"}, "error keys %r" % sorted(e)
    assert e["status"] is False, e
    assert e["code"] == code, "error code %r (expected %d): %r" % (e["code"], code, body)
    assert isinstance(e["message"], str) and e["message"].strip(), "empty message: %r" % body
    return body


# The failed-login counters (docs/DATA-MODEL.md): a refused login counts there by design
# (SPEC §2), so unchanged() leaves them out; test_login_flood.py checks them.
LOGIN_COUNTERS = keys.LOGIN_FAIL_PREFIX


@contextlib.contextmanager
def unchanged(stack, pattern=keys.ALL):
    """Asserts that the block leaves every key matching pattern exactly as it was
    (the failed-login counters aside)."""
    _, before = stack.digest(pattern)
    yield
    _, after = stack.digest(pattern)
    before = {k: v for k, v in before.items() if not k.startswith(LOGIN_COUNTERS)}
    after = {k: v for k, v in after.items() if not k.startswith(LOGIN_COUNTERS)}
    if before != after:
        diff = []
        for k in sorted(set(before) | set(after)):
            if before.get(k) != after.get(k):
                diff.append("%s:\n      before %s\n      after  %s"
                            % (k, _short(before.get(k)), _short(after.get(k))))
        raise AssertionError("Redis changed under %s (%d keys):\n    %s"
                             % (pattern, len(diff), "\n    ".join(diff[:10])))


def _short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def dumps(obj):
    return json.dumps(obj).encode()


# ---------------------------------------------------------------- processes the tests drive

class ModuleCluster:
    """A Redis Cluster of 3 masters + 3 replicas (cluster.Cluster) shared by the tests of
    one module: started by the first call, stopped (its nodes by their pids) by stop(),
    which the module's last test calls."""

    def __init__(self):
        self.cluster = None

    def __call__(self):
        if self.cluster is None:
            import cluster as clusterlib     # (it imports harness)
            self.cluster = clusterlib.Cluster().start()
            print("    # cluster of 3 masters + 3 replicas up in %.2f s" % self.cluster.start_secs)
        return self.cluster

    def stop(self):
        """Stops the cluster if it runs; returns it (or None)."""
        c, self.cluster = self.cluster, None
        if c is not None:
            c.stop()
        return c


def probe_bin(envname, name):
    """A test program of build/tests/cluster (router_probe, store_probe): $envname (make
    check sets it), else the repo's build tree."""
    return os.environ.get(envname) or os.path.join(
        harness.srcdir(), "build", "tests", "cluster", name)


class LineProbe:
    """One probe process of tests/cluster (a warm router or store kept across the commands
    of a test) speaking lines: commands on its stdin, one answer line each on its stdout."""

    def __init__(self, envname, name, argv):
        binary = probe_bin(envname, name)
        assert os.access(binary, os.X_OK), \
            "%s not built: make -C build tests/cluster/%s (make check builds it)" % (binary, name)
        self.name = name
        self.p = subprocess.Popen([binary] + list(argv), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  preexec_fn=harness._die_with_parent)
        self.buf = b""

    def line(self, timeout=30):
        """The next answer line (without its newline); fails after timeout seconds or when
        the probe exited."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, "%s gave no answer in %d s" % (self.name, timeout)
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                assert chunk, "%s exited (%s): %s" % (
                    self.name, self.p.poll(), self.p.stderr.read().decode("utf-8", "replace"))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def send_lines(self, lines):
        self.p.stdin.write(("\n".join(lines) + "\n").encode())
        self.p.stdin.flush()

    def close(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
        self.p.stdout.close()
        self.p.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def killed_while_paused(argv, until, what, pause, unpause, timeout=30, poll_s=0.0, settle_s=0.0):
    """Runs argv (a partnerctl run: import-customers, migrate) until until() holds (what:
    how that reads in a message), calls pause() (the store holds writes: CLIENT PAUSE
    WRITE, so the run's next write waits), SIGKILLs the run there, then unpause(). Asserts
    it died by that SIGKILL."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not until():
            assert p.poll() is None, "%s ended before %s: %s" % (argv, what, p.communicate())
            assert time.monotonic() < deadline, "not %s within %d s" % (what, timeout)
            time.sleep(poll_s)
        pause()
        try:
            time.sleep(settle_s)
            assert p.poll() is None, "%s finished before it could be killed %s" % (argv, what)
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        finally:
            unpause()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL, "%s exited with %s" % (argv, p.returncode)


def run_on_a_tty(argv, timeout):
    """Runs argv with its stderr on a pseudo-terminal (stdout a pipe): (CompletedProcess,
    bytes the terminal got), for a progress bar drawn only on a terminal."""
    master, slave = pty.openpty()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, timeout=timeout)
        os.close(slave)
        slave = -1
        tty = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            tty += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    return p, tty
