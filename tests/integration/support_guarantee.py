"""Support for test_guarantee.py: the concurrency and failure tests of SPEC §4
"Atomicity and concurrency" and §6.

What harness.Stack does not have and these tests need:
  - HttpClient: raw HTTP to one nginx port, a unique X-Request-Id per request, latency
    and transport errors recorded instead of raised (many threads at once).
  - RedisProxy: a RESP-aware TCP proxy between one partnerd and Redis. It forwards
    byte for byte, but can be armed to HOLD the first command that matches a predicate
    (e.g. the fenced commit script call of one customer: its arguments name the
    customer's lock key, the begin script's do not) until release(). This stalls a
    partnerd deterministically between its begin and its commit, without any test hook.
  - add_partnerd / add_front / restart_partnerd / signal_proc: extra partnerd processes
    (optionally through a proxy) and extra nginx instances in front of chosen partnerd
    sockets, inside the Stack's directory, owned by the Stack (stopped by pid in stop()).
  - history / consistency checks over the `pp:{ORG:CID}:h` lists (docs/CHANGE-FEED.md).
All servers on 127.0.0.1 or unix sockets in the Stack's directory.
"""

import collections
import http.client
import itertools
import json
import os
import pwd
import grp
import random
import re
import select
import signal
import socket
import threading
import time

import activity
import harness
import keys

ORG = "stress"
AUTH = ("stress_api", "stress_secret")
LINK = "/v2/partnerProgram/linkCustomer"
UPDATE = "/v2/partnerProgram/customerPartnerProgramUpdate"
DELINK = "/v2/partnerProgram/deLinkCustomer"
HEALTH = "/v2/partnerProgram/health"
METRICS = "/v2/partnerProgram/metrics"
FUTURE = "2030-12-31T23:59:59Z"

# programs of the stress org (data/orgs.json)
TIERS = {"Tiered": ["Bronze", "Silver", "Gold"], "Plain": [], "Supp": ["Basic", "Premium"],
         "Race": []}
FENCED_MSG = "lock expired before the change was stored"

_rid_seq = itertools.count(1)
_rid_lock = threading.Lock()


def new_rid(prefix="g"):
    with _rid_lock:
        n = next(_rid_seq)
    return "%s-%d-%d-%s" % (prefix, os.getpid(), n, os.urandom(3).hex())


def stress_customers(stack, lo=7001, hi=7080):
    for o in stack.fixture()["orgs"]:
        if o["id"] == ORG:
            return [c for c in o["customers"] if lo <= c["id"] <= hi]
    raise AssertionError("org %r missing from %s" % (ORG, stack.fixtures))


# ---------------------------------------------------------------- HTTP

class Result:
    __slots__ = ("rid", "path", "body", "status", "headers", "resp", "error", "t0", "t1")

    @property
    def secs(self):
        return self.t1 - self.t0

    def __repr__(self):
        return "<%s %s rid=%s status=%s err=%s %.3fs resp=%s>" % (
            self.path, _short(self.body), self.rid, self.status, self.error, self.secs,
            _short(self.resp))


def _short(v, n=400):
    s = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else repr(v)
    return s if len(s) <= n else s[:n] + "..."


class HttpClient:
    """One nginx port; a new connection per request (thread-safe)."""

    def __init__(self, port, auth=AUTH, timeout=15.0):
        self.port = port
        self.auth = auth
        self.timeout = timeout

    def call(self, method, path, body=None, rid=None, timeout=None):
        r = Result()
        r.rid = rid or new_rid()
        r.path = path
        r.body = body
        r.status = None
        r.headers = None
        r.resp = None
        r.error = None
        h = {"X-Request-Id": r.rid}
        if self.auth:
            h["Authorization"] = harness.basic(*self.auth)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        r.t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            r.status = resp.status
            r.headers = resp.headers
            try:
                r.resp = json.loads(raw)
            except ValueError:
                r.resp = raw
        except (OSError, http.client.HTTPException) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            conn.close()
            r.t1 = time.monotonic()
        return r

    def post(self, path, body, rid=None, timeout=None):
        return self.call("POST", path, body, rid=rid, timeout=timeout)

    def get(self, path, timeout=None):
        return self.call("GET", path, timeout=timeout)


# ---------------------------------------------------------------- request bodies

def cust(cid):
    return {"id": cid}


def link_item(program, mid, tier=None, exp=None):
    ref = {"partnerMembershipId": mid}
    if tier is not None:
        ref["partnerTierName"] = tier
    if exp is not None:
        ref["partnerTierExpiryDate"] = exp
    return {"partnerProgramName": program, "customerPartnerReference": ref}


def update_item(program, utype, tier, exp=None):
    d = {"updatedTierName": tier}
    if exp is not None:
        d["updatedTierExpiryDate"] = exp
    return {"partnerProgramName": program, "updateType": utype, "updateDetails": d}


def delink_item(program):
    return {"partnerProgramName": program}


ROUTE_KEYS = {LINK: ("linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus", "LINK"),
              UPDATE: ("customersPartnerUpdates", "partnerProgramUpdates", "updateStatus", "UPDATE"),
              DELINK: ("deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus", "DELINK")}


def body_of(path, entries):
    """entries: [(cid, [item, ...]), ...]"""
    top, items, _, _ = ROUTE_KEYS[path]
    return {top: [{"customer": cust(c), items: its} for c, its in entries]}


def link_body(entries):
    return body_of(LINK, entries)


def items_of(res):
    """[(cid, program, code, message, activityType)] of a 200 write response, in order.
    Raises AssertionError when the response does not have the route's shape."""
    top, items, st, act = ROUTE_KEYS[res.path]
    assert isinstance(res.resp, dict) and top in res.resp, "bad 200 body: %r" % (res,)
    sent = res.body[top]
    got = res.resp[top]
    assert len(got) == len(sent), "entry count differs: %r" % (res,)
    out = []
    for s_e, g_e in zip(sent, got):
        cid = s_e["customer"]["id"]
        assert len(g_e[items]) == len(s_e[items]), "item count differs: %r" % (res,)
        for s_i, g_i in zip(s_e[items], g_e[items]):
            out.append((cid, s_i["partnerProgramName"], g_i[st]["code"], g_i[st]["message"], act))
    return out


# ---------------------------------------------------------------- a RESP-aware proxy

def _parse_command(buf, pos):
    """One RESP multibulk command at buf[pos:]: (args, end) or None when incomplete."""
    if pos >= len(buf):
        return None
    if buf[pos:pos + 1] != b"*":
        # inline command (not sent by hiredis): up to CRLF
        e = buf.find(b"\r\n", pos)
        return None if e < 0 else (buf[pos:e].split(), e + 2)
    e = buf.find(b"\r\n", pos)
    if e < 0:
        return None
    n = int(buf[pos + 1:e])
    p = e + 2
    args = []
    for _ in range(max(n, 0)):
        e = buf.find(b"\r\n", p)
        if e < 0:
            return None
        if buf[p:p + 1] != b"$":
            raise ValueError("unexpected RESP from client: %r" % buf[p:p + 20])
        ln = int(buf[p + 1:e])
        start = e + 2
        if len(buf) < start + ln + 2:
            return None
        args.append(buf[start:start + ln])
        p = start + ln + 2
    return args, p


def _client_commands(c):
    """The RESP commands client socket c sends, until it closes: for each recv, the list
    of (args, raw bytes) of the commands it completed (possibly empty). OSError is raised."""
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            return
        buf += d
        pos = 0
        cmds = []
        while True:
            got = _parse_command(buf, pos)
            if got is None:
                break
            args, end = got
            cmds.append((args, buf[pos:end]))
            pos = end
        buf = buf[pos:]
        yield cmds


class TcpProxy:
    """The plumbing of a TCP proxy 127.0.0.1:port -> Redis at 127.0.0.1:upstream_port:
    each accepted connection gets its own upstream connection and two threads,
    _up(c, s, *extra) for client -> Redis, which a subclass defines, and _down(s, c,
    *extra) for Redis -> client, which passes on what _reply() lets through (extra: what
    _conn_state() returns for that connection).
    A subclass sets up its own state before calling TcpProxy.__init__, which starts
    accepting."""

    def __init__(self, upstream_port, backlog):
        self.upstream = upstream_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.closed = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def close(self):
        self.closed = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            socks, self.socks = self.socks, []
        for x in socks:
            try:
                x.close()
            except OSError:
                pass

    def _conn_state(self):
        """Extra arguments of _up and _down for one new connection."""
        return ()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                s = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            extra = self._conn_state()
            with self.lock:
                self.socks += [c, s]
            threading.Thread(target=self._down, args=(s, c) + extra, daemon=True).start()
            threading.Thread(target=self._up, args=(c, s) + extra, daemon=True).start()

    def _reply(self, s, d, *extra):
        """Called with each chunk d that Redis sends on upstream socket s: whether to pass
        it on to the client."""
        return True

    def _down(self, s, c, *extra):
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                if self._reply(s, d, *extra):
                    c.sendall(d)
        except OSError:
            pass
        self._close_pair(c, s)

    @staticmethod
    def _close_pair(c, s):
        for x in (c, s):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class RedisProxy(TcpProxy):
    """TCP proxy 127.0.0.1:port -> Redis. arm(pred) makes the first later command for
    which pred(args) is true wait (with everything after it on that connection) until
    release(); `held` is set once it waits. If the client closes the connection while
    its command is held, the command is dropped (on_close="drop": the worker died before
    its commit reached Redis) or forwarded anyway (on_close="forward": it reaches Redis
    late, as bytes already in a socket buffer would)."""

    def __init__(self, upstream_port):
        self.pred = None
        self.held = threading.Event()
        self.released = threading.Event()
        self.on_close = "drop"
        self.held_args = None
        self.outcome = None           # "released", "dropped", "forwarded-after-close"
        self.forwarded_reply = None
        self.forwarded_conn = None    # the upstream socket the held command went out on
        self.commands = 0
        super().__init__(upstream_port, backlog=256)

    def arm(self, pred, on_close="drop"):
        with self.lock:
            self.pred = pred
            self.on_close = on_close
            self.held.clear()
            self.released.clear()
            self.held_args = None
            self.outcome = None
            self.forwarded_reply = None
            self.forwarded_conn = None

    def release(self):
        self.released.set()

    def close(self):
        self.closed = True
        self.released.set()
        super().close()

    def _reply(self, s, d):
        # only the held command's own connection: the client may have opened
        # another one meanwhile (partnerd resolves a lost commit on a new one)
        if (self.outcome == "forwarded-after-close" and self.forwarded_reply is None
                and self.forwarded_conn is s):
            self.forwarded_reply = d
        return True

    def _take(self, args):
        with self.lock:
            if self.pred is not None and self.pred(args):
                self.pred = None
                self.held_args = args
                return True
        return False

    def _client_gone(self, c):
        r, _, _ = select.select([c], [], [], 0)
        if not r:
            return False
        try:
            return c.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _up(self, c, s):
        try:
            for cmds in _client_commands(c):
                out = []
                for args, raw in cmds:
                    self.commands += 1
                    if self._take(args):
                        if out:
                            s.sendall(b"".join(out))
                            out = []
                        self.held.set()
                        while not self.released.wait(0.01):
                            if self._client_gone(c):
                                break
                        if not self.released.is_set():
                            # the client went away while its command was held
                            if self.on_close == "forward":
                                # the outcome first: _down records the reply only under
                                # it, and Redis may answer before sendall returns here
                                self.forwarded_conn = s
                                self.outcome = "forwarded-after-close"
                                s.settimeout(5)
                                s.sendall(raw)
                            else:
                                self.outcome = "dropped"
                            raise _Gone()
                        self.outcome = "released"
                    out.append(raw)
                if out:
                    s.sendall(b"".join(out))
        except _Gone:
            if self.outcome == "forwarded-after-close":
                # let the reply come back (read by _down) so that the command surely ran
                deadline = time.monotonic() + 5
                while self.forwarded_reply is None and time.monotonic() < deadline:
                    time.sleep(0.005)
        except OSError:
            pass
        self._close_pair(c, s)


class _Gone(Exception):
    pass


def commit_of(org, cid):
    """Predicate: the commit script call of customer cid (the only script call that names
    the customer's history key)."""
    key = keys.hist(org, cid).encode()
    return lambda args: args and args[0].upper() in (b"EVALSHA", b"EVAL") and key in args


def any_commit(org):
    def hist_of_org(a):
        m = keys.match("HIST", a)
        return m is not None and m["org"] == org
    return lambda args: (args and args[0].upper() in (b"EVALSHA", b"EVAL") and
                         any(hist_of_org(a) for a in args))


# ---------------------------------------------------------------- extra processes

def add_partnerd(stack, name, args=(), redis_url=None, workers=None):
    """Starts one more partnerd on its own socket STACKDIR/NAME.sock with the stack's
    partnerd arguments followed by `args` (a later flag wins); returns the socket path."""
    sock = os.path.join(stack.dir, "%s.sock" % name)
    argv = [harness.partnerd_bin(), "--socket", sock, "--socket-mode", "0666",
            "--workers", str(workers or stack.workers), "--redis", redis_url or stack.redis_url]
    argv += list(stack.partnerd_args) + list(args)
    env = dict(os.environ)
    env.update(stack.partnerd_env)
    p = stack._spawn(name, argv, "%s.log" % name, env=env)
    _wait_socket(stack, name, p, sock)
    return sock


def _started(stack, name):
    return sum(1 for l in log_lines(stack, name) if " workers on " in l)


def _wait_socket(stack, name, p, sock, since=None):
    """Until the socket accepts; with since=N, also until the log shows more than N start lines."""
    deadline = time.monotonic() + 10
    while True:
        if p.poll() is not None:
            raise harness.StackError("%s exited with %s:\n%s" % (name, p.returncode,
                                     harness.tail(os.path.join(stack.dir, "%s.log" % name))))
        if os.path.exists(sock) and (since is None or _started(stack, name) > since):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(sock)
                s.close()
                return
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise harness.StackError("%s: no socket %s within 10 s" % (name, sock))
        time.sleep(0.02)


def proc_log(stack, name):
    n = name if name.startswith("partnerd") else name
    return os.path.join(stack.dir, "%s.log" % n)


def restart_partnerd(stack, name):
    """Starts a new process with the same argv, env and log as the (dead or killed) one.
    Returns the new Popen."""
    for i, (n, p) in enumerate(stack.procs):
        if n == name:
            break
    else:
        raise KeyError(name)
    if p.poll() is None:
        raise AssertionError("%s (pid %d) is still running" % (name, p.pid))
    argv = list(p.args)
    sock = argv[argv.index("--socket") + 1]
    starts = _started(stack, name)
    del stack.procs[i]
    env = dict(os.environ)
    env.update(stack.partnerd_env)
    q = stack._spawn(name, argv, "%s.log" % name, env=env)
    _wait_socket(stack, name, q, sock, since=starts)
    return q


def signal_proc(stack, name, sig):
    p = stack.proc(name)
    os.kill(p.pid, sig)
    return p


def add_front(stack, name, socks):
    """One more nginx (the repo's template) whose upstream is exactly `socks`; its state
    lives in STACKDIR/NAME/. Returns the HTTP port."""
    sdir = os.path.join(stack.dir, name)
    os.makedirs(sdir, exist_ok=True)
    os.chmod(sdir, 0o755)
    port = harness.free_port()
    with open(stack._nginx_template()) as f:
        conf = f.read()
    upstreams = " ".join("server unix:%s;" % s for s in socks)
    user_line = ""
    if os.geteuid() == 0:
        user_line = "user %s %s;" % (pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name)
    snippet_dir = os.path.join(harness.srcdir(), "nginx")
    if os.environ.get("PARTNERD_NGINX_TEMPLATE"):
        snippet_dir = os.path.dirname(os.path.abspath(os.environ["PARTNERD_NGINX_TEMPLATE"]))
    for k, v in (("@HTTP_PORT@", str(port)), ("@STATE_DIR@", sdir), ("@UPSTREAM_SERVERS@", upstreams),
                 ("@SNIPPET_DIR@", snippet_dir), ("@USER_LINE@", user_line),
                 ("@API_HTML@", harness.api_html())):
        conf = conf.replace(k, v)
    path = os.path.join(sdir, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    argv = [harness._find_tool("NGINX", "nginx"), "-c", path, "-p", sdir + "/",
            "-e", os.path.join(sdir, "nginx-error.log"), "-g", "daemon off;"]
    p = stack._spawn(name, argv, "%s.log" % name)
    deadline = time.monotonic() + 10
    while True:
        if p.poll() is not None:
            raise harness.StackError("%s exited: %s" % (name, harness.tail(os.path.join(sdir, "nginx-error.log"))))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise harness.StackError("%s did not listen" % name)
        time.sleep(0.05)


def wait_health(client, secs=10.0):
    deadline = time.monotonic() + secs
    last = None
    while time.monotonic() < deadline:
        last = client.get(HEALTH, timeout=3)
        if last.status == 200:
            return last
        time.sleep(0.05)
    raise AssertionError("health did not answer 200 within %.0f s: %r" % (secs, last))


# ---------------------------------------------------------------- stored state

def history(stack, cid, org=ORG):
    """The customer's activities, OLDEST first."""
    raw = stack.redis("LRANGE", keys.hist(org, cid), 0, -1)
    return [activity.load(x, cid) for x in reversed(raw)]


def memberships(stack, cid, org=ORG):
    """{program name: membership dict} of the stored customer."""
    progs = stack.redis("HGETALL", keys.progs(org))
    by_pid = {}
    for i in range(0, len(progs), 2):
        by_pid[json.loads(progs[i + 1])["pid"]] = progs[i].decode()
    h = stack.redis("HGETALL", keys.cust(org, cid))
    out = {}
    for i in range(0, len(h), 2):
        f = keys.match("MEMBERSHIP_FIELD", h[i])
        if f is not None:
            out[by_pid[int(f["pid"])]] = harness.decode_membership(h[i + 1])
    return out


def check_history_chains(stack, cids, org=ORG):
    """For every customer and program: each activity's `before` equals the previous
    activity's `after` (a serial order exists), and the stored membership equals the newest
    `after` (membership id and tier). Returns a list of violations."""
    bad = []
    for cid in cids:
        hist = history(stack, cid, org)
        mem = memberships(stack, cid, org)
        last = {}
        for i, ev in enumerate(hist):
            p = ev["partnerProgramName"]
            prev = last.get(p)
            if ev["activityType"] in ("LINK", "UPDATE", "DELINK"):
                if ev["before"] != prev:
                    bad.append("customer %d %s: activity #%d (%s, rid %s) has before=%s but the previous "
                               "after was %s" % (cid, p, i, ev["activityType"], ev["requestId"],
                                                 _short(ev["before"], 200), _short(prev, 200)))
            last[p] = ev["after"]
        for p in set(last) | set(mem):
            a = last.get(p)
            m = mem.get(p)
            if a is None and m is None:
                continue
            if (a is None) != (m is None) or a["partnerMembershipId"] != m["mid"] or a["partnerTierName"] != m["tier"]:
                bad.append("customer %d %s: stored %s but newest history after=%s" % (cid, p, _short(m, 200), _short(a, 200)))
    return bad


def check_ctl(stack):
    """partnerctl check -> (rc, report)."""
    rc, out, err = stack.ctl("check")
    return rc, (out + err).strip()


def metrics(client):
    r = client.get(METRICS)
    if r.status != 200 or not isinstance(r.resp, (bytes, str)):
        return {}
    text = r.resp.decode() if isinstance(r.resp, bytes) else r.resp
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def pick_metrics(m, *needles):
    return dict((k, v) for k, v in sorted(m.items()) if any(n in k for n in needles))


def run_threads(n, fn, secs, *args):
    """n threads each calling fn(k, stop_event, *args) until stop is set after secs."""
    stop = threading.Event()
    ths = [threading.Thread(target=fn, args=(k, stop) + args, daemon=True) for k in range(n)]
    for t in ths:
        t.start()
    time.sleep(secs)
    stop.set()
    for t in ths:
        t.join(60)
    return stop


def log_lines(stack, name):
    try:
        with open(os.path.join(stack.dir, "%s.log" % name), "rb") as f:
            return f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


_LOGRE = re.compile(r"\brid=(\S+).*\bstatus=(\d+)")


def logged_rids(stack, name):
    """{rid: status} from a partnerd's request log."""
    out = {}
    for line in log_lines(stack, name):
        m = _LOGRE.search(line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
