"""Failed logins cannot starve anyone (SPEC §2): a flood of wrong-password requests while a
client with a cached credential keeps working and /health is polled.

Own stacks (the flood exhausts 127.0.0.1's failed-login budget, which would turn the shared
stack's later 401 tests into 429s). The flood driver `flood()` is also what
bench/login_flood.py runs to measure the cached client's latency."""

import base64
import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time

import harness
import keys
from harness import ACME, HEALTH
from support_guarantee import add_front, add_partnerd

PROGRAMS = "/v2/partnerProgram/customerPartnerPrograms?identifierName=id&identifierValue=%d"
LIMIT_USER = 8
LIMIT_ADDR = 20
ARGS = ["--login-fail-limit", str(LIMIT_USER), "--login-fail-limit-addr", str(LIMIT_ADDR)]
WORKERS = 64        # >= nginx workers (2) x keepalive (16) + the clients' steady connections
# Flood usernames: three real ones (wrong passwords) and two that do not exist.
FLOOD_USERS = ["acme_api", "globex_api", "demo_api", "nobody_1", "nobody_2"]


def _auth(user, pw):
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


class Poller:
    """One keep-alive HTTP connection sending GET path in a loop until stopped; records
    (status, seconds, monotonic start) per request. A failed connection is status 0."""

    def __init__(self, port, path, auth=None):
        self.port, self.path, self.auth = port, path, auth
        self.results = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        conn = None
        headers = {"Authorization": self.auth} if self.auth else {}
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                if conn is not None:
                    conn.close()
                conn = None
            self.results.append((status, time.monotonic() - t0, t0))
            time.sleep(0.002)
        if conn is not None:
            conn.close()


def flood(port, n=500, users=FLOOD_USERS, seed=1):
    """n wrong-password requests at once, one thread each (started together, each sends
    one request). Returns [(user, status, headers (a dict), body, seconds)]."""
    rnd = random.Random(seed)
    plan = [(users[k % len(users)], "wrong-%d-%d" % (k, rnd.randrange(1 << 30))) for k in range(n)]
    out = [None] * n
    gate = threading.Barrier(n + 1)

    def one(k):
        user, pw = plan[k]
        try:
            gate.wait(30)
        except threading.BrokenBarrierError:
            pass
        t0 = time.monotonic()
        try:
            status, headers, body = harness.http_request(
                port, "GET", PROGRAMS % 1011, headers={"Authorization": _auth(user, pw)}, timeout=30)
            out[k] = (user, status, dict(headers), body, time.monotonic() - t0)
        except (OSError, http.client.HTTPException) as e:
            out[k] = (user, 0, {}, repr(e), time.monotonic() - t0)

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        gate.wait(30)
    except threading.BrokenBarrierError:
        pass
    for t in threads:
        t.join(60)
    return out


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100.0))] if xs else float("nan")


FLOOD = """
import json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, %r)
import test_login_flood as lf
print(json.dumps(lf.flood(%d, %d, seed=%d)))
"""


def flood_process(port, n=500, seed=1):
    """flood() in a process of its own, so that its n threads do not hold the GIL of the
    clients that measure. Returns what flood() returns."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", FLOOD % (here, port, n, seed)],
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode("utf-8", "replace")[-2000:]
    return [tuple(r) for r in json.loads(out.stdout)]


def run_flood(stack, n=500, seed=1):
    """The scenario: warm the cached client, start it and the health poller, flood, let
    them run 0.5 s more. Returns (flood results, cached results, health results, flood
    start, flood end) (the monotonic times bound the pollers' results during the flood)."""
    st, _, body = stack.get(PROGRAMS % 1011, auth=ACME)
    assert st == 200, ("the cached client's first request", st, body)
    cached = Poller(stack.http_port, PROGRAMS % 1011, auth=_auth(*ACME))
    health = Poller(stack.http_port, HEALTH)
    cached.thread.start()
    health.thread.start()
    time.sleep(0.3)
    try:
        t0 = time.monotonic()
        res = flood_process(stack.http_port, n, seed)
        t1 = time.monotonic()
        time.sleep(0.5)
    finally:
        cached.stop.set()
        health.stop.set()
        cached.thread.join(30)
        health.thread.join(30)
    return res, cached.results, health.results, t0, t1


def _addr_key(addr):
    return keys.login_fail_addr(hashlib.blake2b(addr.encode(), digest_size=16).hexdigest())


def _user_key(user):
    return keys.login_fail_user(hashlib.blake2b(user.encode(), digest_size=16).hexdigest())


def _retry_after(hdrs):
    v = hdrs.get("Retry-After")
    assert v is not None and v.isdigit() and 1 <= int(v) <= 60, "Retry-After %r" % v
    return int(v)


def _check_error(status, hdrs, body, code):
    assert isinstance(body, dict) and body.get("errors") and body["errors"][0]["code"] == code \
        and body["errors"][0]["status"] is False and body["errors"][0]["message"], (status, body)


def test_login_flood_does_not_starve_a_cached_client_or_health_and_is_limited_in_redis():
    with harness.Stack(partnerd_args=ARGS, workers=WORKERS) as stack:
        res, cached, health, t0, t1 = run_flood(stack)
        statuses = {}
        for _, s, _, _, _ in res:
            statuses[s] = statuses.get(s, 0) + 1
        lat = [t for _, t, start in cached if t0 <= start <= t1]
        hlat = [t for _, t, start in health if t0 <= start <= t1]
        print("    # flood of %d wrong-password requests in %.1f s: %s" % (len(res), t1 - t0, dict(sorted(statuses.items()))))
        print("    # during it, cached client: %d requests, p50 %.1f ms, p99 %.1f ms, max %.1f ms; health: %d polls, "
              "p99 %.1f ms, max %.1f ms" % (len(lat), percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3,
                                            max(lat or [0]) * 1e3, len(hlat), percentile(hlat, 99) * 1e3,
                                            max(hlat or [0]) * 1e3))

        # The cached client and health were served throughout, and never queued behind the
        # flood's password checks (before the fix, health waited until nginx gave up: 504
        # after 10 s; 5 s is far above a normal answer on a loaded machine).
        assert lat and hlat, (len(lat), len(hlat))
        bad = [r for r in cached if r[0] != 200] + [r for r in health if r[0] != 200]
        assert not bad, "cached client / health not 200 during the flood: %r" % bad[:10]
        slow = [t for _, t, _ in cached + health if t > 5.0]
        assert not slow, "cached client / health waited %d times over 5 s (max %.1f s)" % (len(slow), max(slow))

        # The flood: 401 until the limits, then 429 with Retry-After (503 with Retry-After
        # when password checks are at capacity); nothing else.
        assert set(statuses) <= {401, 429, 503}, statuses
        assert statuses.get(401, 0) >= 1 and statuses.get(429, 0) >= 1, statuses
        for user, s, hdrs, body, _ in res:
            if s == 401:
                assert hdrs.get("WWW-Authenticate") == 'Basic realm="partnerProgram"', dict(hdrs)
                _check_error(s, hdrs, body, 401)
            elif s in (429, 503):
                _retry_after(hdrs)
                _check_error(s, hdrs, body, s)
        msgs = {r[3]["errors"][0]["message"] for r in res if r[1] == 429}
        assert any("failed logins" in m for m in msgs), msgs

        # The counters live in Redis: the address is over its limit, and so is every
        # flooded username that had enough attempts.
        r = stack.redis
        addr = int(r("GET", _addr_key("127.0.0.1")) or 0)
        assert addr >= LIMIT_ADDR, "%s (127.0.0.1): %d" % (_addr_key("127.0.0.1"), addr)
        assert 0 < r("TTL", _addr_key("127.0.0.1")) <= 60
        per_user = {u: int(r("GET", _user_key(u)) or 0) for u in FLOOD_USERS}
        assert sum(per_user.values()) == addr == statuses.get(401), (per_user, addr, statuses)
        st, hdrs, body = stack.get(PROGRAMS % 1011, auth=("globex_api", "still-wrong"))
        assert st == 429, (st, body)
        _retry_after(hdrs)

        # A second partnerd on the same Redis, which saw none of it: acme_api with the
        # RIGHT password is refused there too (429, its password not even checked).
        sock = add_partnerd(stack, "partnerd-2", ARGS)
        port = add_front(stack, "nginx-2", [sock])
        st, hdrs, body = _get(port, PROGRAMS % 1011, ACME)
        assert st == 429, ("second partnerd, right password of a flooded username", st, body)
        _retry_after(hdrs)
        _check_error(st, hdrs, body, 429)
        assert "failed logins" in body["errors"][0]["message"], body
        st, _, text = _get(port, "/v2/partnerProgram/metrics", None)
        limited = [l for l in text.splitlines() if l.startswith("partnerd_login_limited_total{")]
        assert sum(int(l.split()[1]) for l in limited) == 1, limited
        # ... while the first one keeps serving the cached credential.
        st, _, body = stack.get(PROGRAMS % 1011, auth=ACME)
        assert st == 200, (st, body)
        st, _, text = _get(stack.http_port, "/v2/partnerProgram/metrics", None)
        fails = [l for l in text.splitlines() if l.startswith("partnerd_login_failures_total ")]
        assert fails and int(fails[0].split()[1]) == statuses.get(401, 0), (fails, statuses)


def _get(port, path, auth):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path, headers={"Authorization": _auth(*auth)} if auth else {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return resp.status, resp.headers, body
    finally:
        conn.close()


def test_login_limits_off_answer_401_and_count_nothing():
    """--login-fail-limit 0 and --login-fail-limit-addr 0: every wrong password is 401 and
    no counter is written."""
    with harness.Stack(partnerd_args=["--login-fail-limit", "0", "--login-fail-limit-addr", "0"]) as stack:
        for k in range(8):
            st, _, body = stack.get(PROGRAMS % 1011, auth=("acme_api", "wrong-%d" % k))
            assert st == 401, (k, st, body)
        assert stack.keys(keys.LOGIN_FAIL_PREFIX + "*") == [], stack.keys(keys.LOGIN_FAIL_PREFIX + "*")
        st, _, body = stack.get(PROGRAMS % 1011, auth=ACME)
        assert st == 200, (st, body)


def test_login_limit_per_username_refuses_even_the_right_password_until_the_window_ends():
    with harness.Stack(partnerd_args=["--login-fail-limit", "3", "--login-fail-limit-addr", "0"]) as stack:
        for k in range(3):
            st, _, body = stack.post(harness.LINK, {}, auth=("globex_api", "wrong-%d" % k))
            assert st == 401, (k, st, body)
        st, hdrs, body = stack.post(harness.LINK, {}, auth=harness.GLOBEX)
        assert st == 429, (st, body)
        assert 1 <= _retry_after(hdrs) <= 60
        _check_error(st, hdrs, body, 429)
        assert "username" in body["errors"][0]["message"], body
        # Another username from the same address is not affected (no address limit here).
        st, _, body = stack.get(PROGRAMS % 1011, auth=ACME)
        assert st == 200, (st, body)
        # The window ends with the counter's expiry: then the right password works again.
        stack.redis("PEXPIRE", _user_key("globex_api"), 1)
        time.sleep(0.05)
        st, _, body = stack.get(PROGRAMS % 5011, auth=harness.GLOBEX)
        assert st == 200, (st, body)
        rc, out, err = stack.ctl("check")
        assert keys.LOGIN_FAIL_PREFIX not in out + err, out + err


# ---------------------------------------------------------------- straight to partnerd's socket

def _fcgi_get(sock_path, path, params):
    """One FastCGI GET to partnerd's unix socket (what nginx would send, with any
    REMOTE_ADDR: the test stack's nginx listens on 127.0.0.1 only). Returns (status, body)."""
    import socket
    import struct

    def record(rtype, content):
        return struct.pack(">BBHHBx", 1, rtype, 1, len(content), 0) + content

    def pair(k, v):
        k, v = k.encode(), v.encode()
        return bytes([len(k)]) + (bytes([len(v)]) if len(v) < 128 else struct.pack(">I", len(v) | 1 << 31)) + k + v

    base = {"REQUEST_METHOD": "GET", "DOCUMENT_URI": path.split("?")[0],
            "QUERY_STRING": path.split("?")[1] if "?" in path else "", "CONTENT_LENGTH": ""}
    base.update(params)
    payload = b"".join(pair(k, v) for k, v in base.items())
    msg = (record(1, struct.pack(">HB5x", 1, 0)) + record(4, payload) + record(4, b"") + record(5, b""))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock_path)
    try:
        s.sendall(msg)
        buf = b""
        while True:                      # flags 0: partnerd closes the connection after the answer
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    out = b""
    while len(buf) >= 8:
        _, rtype, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
        if rtype == 6:                   # FCGI_STDOUT
            out += buf[8:8 + clen]
        buf = buf[8 + clen + plen:]
    head, _, body = out.partition(b"\r\n\r\n")
    status = int(head.split(b"Status: ")[1][:3]) if b"Status: " in head else 200
    return status, body


def test_login_limit_per_address_counts_ipv6_by_64_and_mapped_ipv4_as_ipv4():
    with harness.Stack(partnerd_args=["--login-fail-limit", "0", "--login-fail-limit-addr", "2"]) as stack:
        sock = stack.sock_path(0)

        def wrong(addr, k):
            return _fcgi_get(sock, PROGRAMS % 1011, {"REMOTE_ADDR": addr,
                                                     "HTTP_AUTHORIZATION": _auth("acme_api", "wrong-%d" % k)})[0]

        # Two addresses of one /64 share a budget; a third of another /64 has its own.
        assert wrong("2001:db8:1:2::5", 1) == 401
        assert wrong("2001:db8:1:2:ffff::9", 2) == 401
        assert wrong("2001:db8:1:2::77", 3) == 429
        assert wrong("2001:db8:1:3::5", 4) == 401
        assert int(stack.redis("GET", _addr_key("2001:db8:1:2::/64"))) == 2
        assert int(stack.redis("GET", _addr_key("2001:db8:1:3::/64"))) == 1
        # An IPv4-mapped address is its IPv4 address.
        assert wrong("::ffff:10.1.2.3", 5) == 401
        assert wrong("10.1.2.3", 6) == 401
        assert wrong("::ffff:10.1.2.3", 7) == 429
        assert int(stack.redis("GET", _addr_key("10.1.2.3"))) == 2
        # No address (or not an IP address): not counted by address, still 401.
        for k in range(3):
            st, _ = _fcgi_get(sock, PROGRAMS % 1011, {"HTTP_AUTHORIZATION": _auth("acme_api", "w%d" % k)})
            assert st == 401, st
        assert sorted(stack.keys(keys.LOGIN_FAIL_PREFIX + "*")) == sorted(
            [_addr_key("2001:db8:1:2::/64"), _addr_key("2001:db8:1:3::/64"), _addr_key("10.1.2.3")])
