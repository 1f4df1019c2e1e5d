"""Black-box test harness: a private redis-server + partnerd(s) + nginx stack.

A Stack lives in a fresh temporary directory and owns every process it starts
(as Popen children, stopped by their own pid, never by name). Servers listen on
127.0.0.1 (or unix sockets inside the directory) on free ports.

Environment (all optional; `make check` sets them):
  PARTNERD_BIN, PARTNERCTL_BIN   the binaries under test
                                 (default: build/src/X, then src/X, from the repo top)
  PARTNERD_SRCDIR                the repo top (default: two directories above this file)
  REDIS_SERVER, NGINX            server binaries (default: looked up in PATH, /usr/sbin)
  PARTNERD_NGINX_TEMPLATE        an nginx.conf.in to use instead of the repo's
  PARTNERD_API_HTML              the API reference page nginx serves at /v2/partnerProgram/docs
                                 (default: docs/api.html next to PARTNERD_BIN's src/; `make api-docs`)
  PARTNERD_TEST_KEEP=1           keep the temporary directory after stop()
  PARTNERD_TEST_CLUSTER=1        every Stack runs on a Redis Cluster of 3 masters + 3 replicas
                                 (cluster.py) instead of one redis-server: partnerd and
                                 partnerctl get --redis-cluster SEEDS, stack.redis(...) routes
                                 by key (cluster.ClusterClient), redis_url is a
                                 redis-cluster:// URL; REDIS_CLI as REDIS_SERVER

Run `python3 tests/integration/harness.py --hold` to start a stack with the fixture
data and keep it up until Ctrl-C (prints the port and credentials), for poking at by hand.
"""

import atexit
import base64
import ctypes
import grp
import hashlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import keys as layout     # the key names of src/keys.h ("keys" is a Stack method here)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data")
FIXTURES = os.path.join(DATA_DIR, "orgs.json")

ACME = ("acme_api", "acme_secret")
GLOBEX = ("globex_api", "globex_secret")
DEMO = ("demo_api", "demo_secret")

LINK = "/v2/partnerProgram/linkCustomer"

# Customer ids of data/orgs.json that Stack.customers() hands out, one test each.
# acme 1001-1010 and their globex twins (4001-4010: same mobiles and emails) are kept
# for the org-scoping tests; acme 1998 (email only) and 1999 (mobile only) are special.
POOLS = {"acme": (1011, 1600), "globex": (5011, 5060)}
HEALTH = "/v2/partnerProgram/health"


def cluster_mode():
    """True when the tests run on a Redis Cluster (PARTNERD_TEST_CLUSTER=1)."""
    return os.environ.get("PARTNERD_TEST_CLUSTER", "") not in ("", "0")


class StackError(Exception):
    pass


class RedisError(Exception):
    pass


# ---------------------------------------------------------------- locating things

def srcdir():
    return os.environ.get("PARTNERD_SRCDIR") or os.path.dirname(os.path.dirname(HERE))


def _find_built(envname, name):
    v = os.environ.get(envname)
    if v:
        return v
    top = srcdir()
    for cand in (os.path.join(top, "build", "src", name), os.path.join(top, "src", name)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return os.path.join(top, "src", name)


def partnerd_bin():
    return _find_built("PARTNERD_BIN", "partnerd")


def partnerctl_bin():
    return _find_built("PARTNERCTL_BIN", "partnerctl")


def api_html():
    """The API reference page the stacks' nginx serves (`make api-docs` builds it)."""
    v = os.environ.get("PARTNERD_API_HTML")
    if v:
        return os.path.abspath(v)
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(partnerd_bin()))), "docs", "api.html")


def _find_tool(envname, name):
    v = os.environ.get(envname)
    if v and v != "no":
        return v
    found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/sbin")
    if not found:
        raise StackError("%s not found (set %s)" % (name, envname))
    return found


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _die_with_parent():
    """preexec_fn: the child gets SIGTERM if the test runner dies without cleaning up."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return "(%s: %s)" % (path, e)
    return "\n".join(lines[-n:]) if lines else "(empty)"


def basic(user, pw):
    raw = ("%s:%s" % (user, pw)).encode()
    return "Basic " + base64.b64encode(raw).decode()


def http_request(port, method, path, body=None, headers=None, timeout=15):
    """One request on a new connection to 127.0.0.1:port, sent as given (body: bytes or
    None). Returns (status, headers, body): body is parsed JSON when it parses, else bytes;
    headers is an http.client.HTTPMessage. Transport errors are raised."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
        return resp.status, resp.headers, parsed
    finally:
        conn.close()


# ---------------------------------------------------------------- a minimal RESP client

class Redis:
    """Enough of RESP2 to drive a test: one connection, one command at a time."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(max(65536, n + 2 - len(self.buf)))
            if not chunk:
                raise RedisError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("bad reply type %r" % line)

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def __call__(self, *args):
        self.sock.sendall(self._encode(args))
        r = self._reply()
        if isinstance(r, RedisError):
            raise r
        return r

    def pipeline(self, commands):
        """Sends every command, then reads every reply; error replies come back as
        RedisError objects in the list instead of being raised."""
        if not commands:
            return []
        self.sock.sendall(b"".join(self._encode(c) for c in commands))
        return [self._reply() for _ in commands]


def _s(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


# ---------------------------------------------------------------- stored memberships

# The stored membership value (docs/DATA-MODEL.md "Membership value"): compact text
#     LEN:MID,TIER,EXP,START,END,LK,UP[,LEN:MID,TIER,EXP,START,END]
# or, written by an older partnerd, a JSON object. Both decode to the dict
# {"mid","tier","exp","start","end","lk","up","rl"} (rl: None or {"mid","tier","exp","start","end"}).

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def b36(n):
    """Base-36 text of an integer (lowercase, '-' for negatives); '' for None."""
    if n is None:
        return ""
    if n < 0:
        return "-" + b36(-n)
    out = ""
    while True:
        n, d = divmod(n, 36)
        out = _B36[d] + out
        if n == 0:
            return out


def _enc_str(s):
    b = s.encode("utf-8", "surrogateescape") if isinstance(s, str) else bytes(s)
    return str(len(b)).encode() + b":" + b


def _enc_values(v, omit_start):
    tier = b"-" if v["tier"] is None else _enc_str(v["tier"])
    start = b"" if omit_start else b36(v["start"]).encode()
    return b",".join([_enc_str(v["mid"]), tier, b36(v["exp"]).encode(), start,
                      b36(v["end"]).encode()])


def encode_membership(m):
    """The compact stored value (bytes) of a membership dict, as partnerd writes it."""
    lk = m["lk"]
    out = b",".join([_enc_values(m, lk is not None and m["start"] == lk),
                     b36(lk).encode(), b36(m["up"]).encode()])
    if m.get("rl") is not None:
        out += b"," + _enc_values(m["rl"], False)
    return out


def decode_membership(raw):
    """The membership dict of a stored value (compact, or legacy JSON when it starts
    with '{'). Raises ValueError when it is neither."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    if raw[:1] == b"{":
        return json.loads(raw)
    pos = 0

    def text(b):
        return b.decode("utf-8", "surrogateescape")

    def lenstr():
        nonlocal pos
        colon = raw.index(b":", pos)
        digits = raw[pos:colon]
        if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
            raise ValueError("bad length %r" % digits)
        n = int(digits)
        if colon + 1 + n > len(raw):
            raise ValueError("length runs past the end")
        pos = colon + 1 + n
        return text(raw[colon + 1:pos])

    def sep():
        nonlocal pos
        if raw[pos:pos + 1] != b",":
            raise ValueError("expected ',' at %d in %r" % (pos, raw))
        pos += 1

    def num():
        nonlocal pos
        end = raw.find(b",", pos)
        end = len(raw) if end < 0 else end
        s = text(raw[pos:end])
        pos = end
        return None if s == "" else int(s, 36)

    def values(top):
        nonlocal pos
        mid = lenstr()
        sep()
        if raw[pos:pos + 1] == b"-":
            pos += 1
            tier = None
        else:
            tier = lenstr()
        sep()
        exp = num()
        sep()
        start = num()
        sep()
        end = num()
        if not mid or (start is None and not top):
            raise ValueError("empty mid or start in %r" % raw)
        return {"mid": mid, "tier": tier, "exp": exp, "start": start, "end": end}

    m = values(True)
    sep()
    m["lk"] = num()
    sep()
    m["up"] = num()
    if m["start"] is None:
        if m["lk"] is None:
            raise ValueError("no start in %r" % raw)
        m["start"] = m["lk"]
    m["rl"] = None
    if pos < len(raw):
        sep()
        m["rl"] = values(False)
    if pos != len(raw):
        raise ValueError("trailing bytes in %r" % raw)
    return m


# ---------------------------------------------------------------- the stack

class Stack:
    """redis-server + N partnerd + nginx in a private temporary directory."""

    def __init__(self, partnerds=1, partnerd_args=(), partnerd_env=None, fixtures=FIXTURES,
                 workers=8, require_partnerd=True, load=True, partnerd_binary=None,
                 cluster=None):
        self.partnerd_binary = partnerd_binary   # default: partnerd_bin()
        self.n_partnerd = partnerds
        self.partnerd_args = list(partnerd_args)
        self.partnerd_env = dict(partnerd_env or {})
        self.fixtures = fixtures
        self.workers = workers
        self.require_partnerd = require_partnerd
        self.load_fixtures = load
        self.procs = []          # (name, Popen) in start order
        self.dir = None
        self.redis_port = None   # on a cluster: its first node's (a seed)
        # A Redis Cluster (cluster.Cluster) instead of one redis-server; None: the
        # environment's choice (cluster_mode()).
        self.use_cluster = cluster_mode() if cluster is None else bool(cluster)
        # PARTNERD_TEST_REDIS_PIPES=N: every partnerd of the stack shares N Redis
        # connections (on a cluster, N to each node) among its workers (--redis-pipes; a
        # test's own flags come after it); 0: each worker calls over its own connection.
        # Unset: partnerd's default (4 on one Redis, 2 to each node of a cluster).
        pipes = os.environ.get("PARTNERD_TEST_REDIS_PIPES", "")
        if pipes != "":
            self.partnerd_args = ["--redis-pipes", pipes] + self.partnerd_args
        self.cluster = None
        self.http_port = None
        self._redis = None
        self._uid = 0
        self._pool = None
        self.keep = os.environ.get("PARTNERD_TEST_KEEP") == "1"
        self._stopped = False
        self.exit_status = {}    # name -> (returncode, seconds to exit), filled by stop()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        atexit.register(self.stop)
        self.dir = tempfile.mkdtemp(prefix="partnerd-it-")
        os.chmod(self.dir, 0o755)
        try:
            self._start_redis()
            for k in range(self.n_partnerd):
                self._start_partnerd(k)
            self._start_nginx()
            if self.load_fixtures and self.fixtures:
                self.load(self.fixtures)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def redis_url(self):
        """What a program's --redis takes: redis://127.0.0.1:PORT, or on a cluster
        redis-cluster://SEEDS (which selects cluster mode in partnerd and partnerctl)."""
        if self.cluster is not None:
            return "redis-cluster://" + self.cluster.seeds
        return "redis://127.0.0.1:%d" % self.redis_port

    def redis_args(self):
        """partnerd's and partnerctl's arguments naming the store."""
        if self.cluster is not None:
            return ["--redis-cluster", self.cluster.seeds]
        return ["--redis", self.redis_url]

    def _spawn(self, name, argv, logname, env=None):
        log = open(os.path.join(self.dir, logname), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 cwd=self.dir, env=env, start_new_session=True,
                                 preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.procs.append((name, p))
        return p

    def _check_alive(self, name, p, logname):
        if p.poll() is not None:
            raise StackError("%s exited with status %s during start-up; %s:\n%s"
                             % (name, p.returncode, logname, tail(os.path.join(self.dir, logname))))

    def _start_redis(self, port=None):
        if self.use_cluster:
            if port is not None:
                raise StackError("restart_redis: a Redis Cluster stack has no one Redis to restart")
            import cluster as clusterlib     # (it imports this module)
            self.cluster = clusterlib.Cluster(parent=self.dir)
            self.cluster.keep = True         # the Stack's directory holds it: stop() removes it
            self.cluster.start()
            self.redis_port = self.cluster.ports[0]
            return
        self.redis_port = port or free_port()
        argv = [_find_tool("REDIS_SERVER", "redis-server"),
                "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.dir, "--logfile", "", "--protected-mode", "yes",
                # DEBUG DIGEST-VALUE (digest() below), from loopback only
                "--enable-debug-command", "local"]
        p = self._spawn("redis-server", argv, "redis.log")
        deadline = time.monotonic() + 10
        while True:
            self._check_alive("redis-server", p, "redis.log")
            try:
                r = Redis(self.redis_port, timeout=1)
                try:
                    if r("PING") == "PONG":
                        return
                finally:
                    r.close()
            except (OSError, RedisError):
                pass
            if time.monotonic() > deadline:
                raise StackError("redis-server did not answer PING within 10 s:\n"
                                 + tail(os.path.join(self.dir, "redis.log")))
            time.sleep(0.05)

    def sock_path(self, k):
        return os.path.join(self.dir, "partnerd-%d.sock" % k)

    def _start_partnerd(self, k):
        binary = self.partnerd_binary or partnerd_bin()
        if not os.access(binary, os.X_OK):
            if self.require_partnerd:
                raise StackError("partnerd binary not found: %s" % binary)
            return
        argv = [binary, "--socket", self.sock_path(k), "--socket-mode", "0666",
                "--workers", str(self.workers)] + self.redis_args() + self.partnerd_args
        env = dict(os.environ)
        env.update(self.partnerd_env)
        logname = "partnerd-%d.log" % k
        p = self._spawn("partnerd-%d" % k, argv, logname, env=env)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock_path(k)):
            self._check_alive("partnerd-%d" % k, p, logname)
            if time.monotonic() > deadline:
                raise StackError("partnerd-%d did not create its socket within 10 s:\n%s"
                                 % (k, tail(os.path.join(self.dir, logname))))
            time.sleep(0.02)

    def _nginx_template(self):
        t = os.environ.get("PARTNERD_NGINX_TEMPLATE") or os.path.join(srcdir(), "nginx", "nginx.conf.in")
        if not os.path.exists(t):
            raise StackError("nginx template not found: %s" % t)
        return t

    def _start_nginx(self):
        self.http_port = free_port()
        with open(self._nginx_template()) as f:
            conf = f.read()
        # One line: the template also names its placeholders in comments.
        upstreams = " ".join("server unix:%s;" % self.sock_path(k) for k in range(self.n_partnerd))
        if os.geteuid() == 0:
            user_line = "user %s %s;" % (pwd.getpwuid(os.geteuid()).pw_name,
                                         grp.getgrgid(os.getegid()).gr_name)
        else:
            user_line = ""
        snippet_dir = os.path.join(srcdir(), "nginx")
        if os.environ.get("PARTNERD_NGINX_TEMPLATE"):
            snippet_dir = os.path.dirname(os.path.abspath(os.environ["PARTNERD_NGINX_TEMPLATE"]))
        for k, v in (("@HTTP_PORT@", str(self.http_port)), ("@STATE_DIR@", self.dir),
                     ("@UPSTREAM_SERVERS@", upstreams), ("@SNIPPET_DIR@", snippet_dir),
                     ("@USER_LINE@", user_line), ("@API_HTML@", api_html())):
            conf = conf.replace(k, v)
        if "@" in conf:
            import re
            left = sorted(set(re.findall(r"@[A-Z_]+@", conf)))
            if left:
                raise StackError("nginx template has unknown placeholders: %s" % ", ".join(left))
        conf_path = os.path.join(self.dir, "nginx.conf")
        with open(conf_path, "w") as f:
            f.write(conf)
        argv = [_find_tool("NGINX", "nginx"), "-c", conf_path, "-p", self.dir + "/",
                "-e", os.path.join(self.dir, "nginx-error.log"), "-g", "daemon off;"]
        p = self._spawn("nginx", argv, "nginx-stderr.log")
        deadline = time.monotonic() + 10
        while True:
            if p.poll() is not None:
                raise StackError("nginx exited with status %s during start-up:\n%s\n%s"
                                 % (p.returncode, tail(os.path.join(self.dir, "nginx-stderr.log")),
                                    tail(os.path.join(self.dir, "nginx-error.log"))))
            try:
                socket.create_connection(("127.0.0.1", self.http_port), timeout=1).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise StackError("nginx did not accept on port %d within 10 s:\n%s"
                                 % (self.http_port, tail(os.path.join(self.dir, "nginx-error.log"))))
            time.sleep(0.05)

    def _wait_ready(self):
        want = 200 if self.n_partnerd and self.require_partnerd else None
        deadline = time.monotonic() + 10
        last = None
        while True:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise StackError("%s exited (status %s) before the stack was ready\n%s"
                                     % (name, p.returncode, self.logs()))
            try:
                st, _, body = self.get(HEALTH, auth=None)
                last = (st, body)
                if want is None or st == want:
                    return
            except OSError as e:
                last = e
            if time.monotonic() > deadline:
                raise StackError("GET %s did not answer 200 within 10 s (last: %r)\n%s"
                                 % (HEALTH, last, self.logs()))
            time.sleep(0.05)

    def logs(self, n=15):
        out = []
        for d in (self.dir, self.cluster and self.cluster.dir):
            for name in sorted(os.listdir(d)) if d and os.path.isdir(d) else []:
                if name.endswith(".log") and name != "nginx-access.log":
                    out.append("--- %s (last %d lines) ---\n%s"
                               % (os.path.relpath(os.path.join(d, name), self.dir), n,
                                  tail(os.path.join(d, name), n)))
        return "\n".join(out)

    def proc(self, name):
        for n, p in self.procs:
            if n == name:
                return p
        raise KeyError(name)

    def stop_proc(self, name, timeout=5.0):
        """SIGTERM one child by its pid, wait (bounded), then SIGKILL. Returns its status."""
        for i, (n, p) in enumerate(self.procs):
            if n == name:
                rc = _terminate(p, timeout)
                del self.procs[i]
                return rc
        raise KeyError(name)

    def dead(self):
        """Names (and log tails) of children that exited although nobody stopped them."""
        out = []
        for name, p in self.procs:
            if p.poll() is not None:
                log = "%s.log" % name if name.startswith("partnerd") else \
                      ("redis.log" if name == "redis-server" else "nginx-error.log")
                out.append("%s exited with status %s:\n%s" % (name, p.returncode, tail(os.path.join(self.dir, log), 20)))
        if self.cluster is not None:
            for port, rc, log in self.cluster.dead():
                out.append("cluster node redis-server %d exited with status %s:\n%s" % (port, rc, log))
        return out

    def restart_redis(self):
        """Start a fresh (empty) redis-server on the same port after stop_proc('redis-server')."""
        self._start_redis(port=self.redis_port)
        if self._redis:
            self._redis.close()
            self._redis = None

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        if self._redis:
            self._redis.close()
            self._redis = None
        self.exit_status = {}
        for name, p in reversed(self.procs):
            t0 = time.monotonic()
            rc = _terminate(p, 5.0)
            self.exit_status[name] = (rc, time.monotonic() - t0)
        self.procs = []
        if self.cluster is not None:
            self.cluster.stop()
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- data --------------------------------------------------------------

    def load(self, path):
        rc, out, err = self.ctl("load", path)
        if rc != 0:
            raise StackError("partnerctl load %s failed (rc %d):\n%s%s" % (path, rc, out, err))

    def reset(self):
        """FLUSHALL and reload the fixtures (slow-ish: hashes passwords again)."""
        self.redis("FLUSHALL")
        self.load(self.fixtures)
        self._pool = None

    def fixture(self):
        with open(self.fixtures) as f:
            return json.load(f)

    def customers(self, n=1, org="acme"):
        """n customers of the fixture org that no other test of this stack has been given."""
        if self._pool is None:
            self._pool = {}
            for o in self.fixture()["orgs"]:
                lo, hi = POOLS.get(o["id"], (1, 0))
                self._pool[o["id"]] = [c for c in o["customers"] if lo <= c["id"] <= hi]
        pool = self._pool.get(org, [])
        if len(pool) < n:
            raise StackError("fixture customer pool of %s exhausted: add customers to %s" % (org, self.fixtures))
        got, self._pool[org] = pool[:n], pool[n:]
        return [dict(c) for c in got]

    def customer(self, org="acme"):
        return self.customers(1, org)[0]

    def uid(self, prefix="M"):
        """A string no other call of this stack returns: for membership ids."""
        self._uid += 1
        return "%s-%d-%d" % (prefix, os.getpid(), self._uid)

    def ctl(self, *args, timeout=120):
        argv = [partnerctl_bin()] + self.redis_args() + [str(a) for a in args]
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    # -- redis -------------------------------------------------------------

    def redis_client(self):
        """A new client of the store: harness.Redis, or on a cluster cluster.ClusterClient
        (same calls: client(*args), pipeline(commands), close())."""
        if self.cluster is not None:
            import cluster as clusterlib
            return clusterlib.ClusterClient(self.cluster)
        return Redis(self.redis_port)

    def redis(self, *args):
        """One command to the store (on a cluster: routed by its key, or to every master
        for key-space commands: cluster.ClusterClient)."""
        if self._redis is None:
            self._redis = self.redis_client()
        try:
            return self._redis(*args)
        except (OSError, RedisError) as e:
            if isinstance(e, RedisError) and "connection closed" not in str(e):
                raise
            self._redis.close()
            self._redis = None
            raise

    def keys(self, pattern=layout.ALL):
        """The key names matching pattern: a glob, or a keys.Select (keys.of_org,
        keys.of_customer: a glob and a filter)."""
        out, cursor = set(), b"0"
        while True:
            cursor, batch = self.redis("SCAN", cursor, "MATCH", str(pattern), "COUNT", 1000)
            out.update(_s(k) for k in batch)
            if cursor in (b"0", "0"):
                return sorted(k for k in out if layout.wanted(pattern, k))

    _READERS = {"string": ("GET",), "hash": ("HGETALL",), "set": ("SMEMBERS",),
                "list": ("LRANGE", 0, -1), "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
                "stream": ("XRANGE", "-", "+")}

    def snapshot(self, pattern=layout.ALL):
        """{key: (type, content)} for every key matching pattern (pipelined: a digest of
        the whole fixture key space costs a few round trips)."""
        keys = self.keys(pattern)
        self.redis("PING")                      # (re)connects if needed
        r = self._redis
        types = r.pipeline([("TYPE", k) for k in keys])
        cmds = [(self._READERS.get(t, ("DUMP",))[0], k) + self._READERS.get(t, ("DUMP",))[1:]
                for k, t in zip(keys, types)]
        values = r.pipeline(cmds)
        snap = {}
        for k, t, v in zip(keys, types, values):
            if t == "none":
                continue                        # gone between SCAN and TYPE
            if t == "hash":
                v = tuple(sorted((_s(v[i]), _s(v[i + 1])) for i in range(0, len(v), 2)))
            elif t in ("set",):
                v = tuple(sorted(_s(m) for m in v))
            elif t in ("list", "zset"):
                v = tuple(_s(m) for m in v)
            elif t == "string":
                v = _s(v)
            else:
                v = repr(v)
            snap[k] = (t, v)
        return snap

    def digest(self, pattern=layout.ALL):
        """(digest of the key space, {key: digest of its value}). Redis computes the value
        digests (DEBUG DIGEST-VALUE), so that a key space with long histories and feeds
        costs little to compare: a test compares it around every refused request."""
        keys = self.keys(pattern)
        self.redis("PING")                      # (re)connects if needed
        replies = self._redis.pipeline([("DEBUG", "DIGEST-VALUE", k) for k in keys])
        per_key = {}
        for k, v in zip(keys, replies):
            if isinstance(v, RedisError):
                raise AssertionError("DEBUG DIGEST-VALUE %s: %s" % (k, v))
            d = _s(v[0]) if isinstance(v, list) and v else _s(v)
            if d.strip("0"):                    # all zeros: gone between SCAN and DEBUG
                per_key[k] = d
        return hashlib.sha256(repr(sorted(per_key.items())).encode()).hexdigest(), per_key

    def hashes(self, names):
        """{field: value} (str) of the hashes named, merged (pipelined HGETALL): a whole
        index from its buckets, keys.mids(org, pid) or keys.ixs(org, kind)."""
        self.redis("PING")                      # (re)connects if needed
        out = {}
        for v in self._redis.pipeline([("HGETALL", k) for k in names]):
            if isinstance(v, RedisError):
                raise v
            out.update((_s(v[i]), _s(v[i + 1])) for i in range(0, len(v or []), 2))
        return out

    def pid(self, program, org="acme"):
        raw = self.redis("HGET", layout.progs(org), program)
        if raw is None:
            raise AssertionError("program %r not in %s" % (program, layout.progs(org)))
        return json.loads(raw)["pid"]

    def membership(self, cid, program, org="acme"):
        """The stored membership of customer cid in program as a dict (decode_membership),
        or None."""
        raw = self.redis("HGET", layout.cust(org, cid), layout.membership_field(self.pid(program, org)))
        return None if raw is None else decode_membership(raw)

    def set_membership(self, cid, program, m, org="acme"):
        """Writes membership dict m (compact, encode_membership) as customer cid's value."""
        self.redis("HSET", layout.cust(org, cid), layout.membership_field(self.pid(program, org)),
                   encode_membership(m))

    def mid_holder(self, program, mid, org="acme"):
        """The customer id that the membership-id claims of program (keys.mid: the bucket
        of mid) map membership id mid to, or None."""
        raw = self.redis("HGET", layout.mid(org, self.pid(program, org), mid), mid)
        return None if raw is None else int(raw)

    # -- http --------------------------------------------------------------

    def request(self, method, path, body=None, auth=ACME, headers=None,
                content_type="application/json", timeout=15):
        """Returns (status, headers, body): body is parsed JSON when it parses, else bytes.
        headers is an http.client.HTTPMessage (case-insensitive .get)."""
        h = {}
        if auth is not None:
            h["Authorization"] = basic(*auth)
        if body is not None and not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        if body is not None and content_type is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        return http_request(self.http_port, method, path, body, h, timeout)

    def post(self, path, body, auth=ACME, headers=None, content_type="application/json", **kw):
        return self.request("POST", path, body, auth=auth, headers=headers,
                            content_type=content_type, **kw)

    def get(self, path, auth=ACME, headers=None, **kw):
        return self.request("GET", path, None, auth=auth, headers=headers, content_type=None, **kw)

    def raw(self, data, timeout=10):
        """Sends raw bytes on a fresh connection; returns (status, HTTPMessage headers, body bytes)."""
        s = socket.create_connection(("127.0.0.1", self.http_port), timeout=timeout)
        try:
            s.sendall(data)
            resp = http.client.HTTPResponse(s, method="POST")
            resp.begin()
            body = resp.read()
            return resp.status, resp.headers, body
        finally:
            s.close()


def _terminate(p, timeout):
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                p.kill()
            except ProcessLookupError:
                pass
            p.wait(5)
    return p.returncode


# ---------------------------------------------------------------- by hand

def main(argv):
    hold = "--hold" in argv
    no_partnerd = "--no-partnerd" in argv
    st = Stack(require_partnerd=not no_partnerd, load=not no_partnerd)
    st.keep = st.keep or hold
    try:
        st.start()
        print("stack up in %s: http://127.0.0.1:%d  redis %s" % (st.dir, st.http_port, st.redis_url))
        print("health:", st.get(HEALTH, auth=None)[::2])
        if hold:
            print("credentials acme_api:acme_secret globex_api:globex_secret demo_api:demo_secret; Ctrl-C stops")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        st.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
