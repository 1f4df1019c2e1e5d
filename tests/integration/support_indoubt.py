"""Support for test_indoubt.py (commits whose reply is lost, Redis restarts, a connection
after a timeout):
  - request(): a minimal FastCGI client that talks to one partnerd socket directly, one
    connection per request, without nginx. With `--workers 1` every request then reaches
    the same worker thread (and so the same Redis connection), which nginx's kept upstream
    connections would not allow: each pins a worker thread.
  - FaultProxy: a RESP-aware TCP proxy between one partnerd and Redis whose rules act on
    the next commands that match them, in order: "mute" forwards the command and throws
    away everything Redis answers on that connection from then on (the reply is lost
    after the command ran); "hold" keeps the command from Redis (it has not run), and
    forward_held() sends it later on a connection of its own (it reaches Redis late, as
    bytes in a dead connection's buffers could).
  - stack_with_proxy(): a started Stack plus one more partnerd whose Redis connection goes
    through a FaultProxy.
Python standard library only; everything on 127.0.0.1 or the Stack's unix sockets.
"""

import contextlib
import json
import re
import socket
import struct
import threading

import harness
import keys
from support_guarantee import AUTH, HEALTH, METRICS, TcpProxy, _client_commands, add_partnerd

FCGI_BEGIN_REQUEST, FCGI_END_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT = 1, 3, 4, 5, 6
FCGI_RESPONDER = 1


def _record(kind, content, rid=1):
    out = b""
    # records carry at most 65535 bytes; an empty one ends a stream
    chunks = [content[i:i + 65535] for i in range(0, len(content), 65535)] or [b""]
    for c in chunks:
        out += struct.pack(">BBHHBx", 1, kind, rid, len(c), 0) + c
    return out


def _pair(k, v):
    k, v = k.encode(), v.encode()

    def ln(n):
        return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)
    return ln(len(k)) + ln(len(v)) + k + v


def request(sock_path, method, uri, body=None, headers=None, timeout=10.0):
    """Sends one request to partnerd's FastCGI socket. Returns (status, headers, body) with
    the body decoded as JSON when it is JSON."""
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    path, _, query = uri.partition("?")
    params = {"REQUEST_METHOD": method, "REQUEST_URI": uri, "DOCUMENT_URI": path,
              "SCRIPT_NAME": path, "QUERY_STRING": query, "SERVER_PROTOCOL": "HTTP/1.1",
              "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(data)),
              "CONTENT_TYPE": "application/json" if body is not None else ""}
    for k, v in (headers or {}).items():
        params["HTTP_" + k.upper().replace("-", "_")] = v
    msg = _record(FCGI_BEGIN_REQUEST, struct.pack(">HB5x", FCGI_RESPONDER, 0))
    msg += _record(FCGI_PARAMS, b"".join(_pair(k, v) for k, v in params.items())) + _record(FCGI_PARAMS, b"")
    if data:
        msg += _record(FCGI_STDIN, data)
    msg += _record(FCGI_STDIN, b"")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        s.sendall(msg)
        buf, out = b"", b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
            while len(buf) >= 8:
                _, kind, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
                if len(buf) < 8 + clen + plen:
                    break
                content, buf = buf[8:8 + clen], buf[8 + clen + plen:]
                if kind == FCGI_STDOUT:
                    out += content
                elif kind == FCGI_END_REQUEST:
                    return _parse(out)
        return _parse(out)
    finally:
        s.close()


def metric(sock_path, name, headers=None):
    """One sample of partnerd's metrics route (over FastCGI), 0.0 when it is not there."""
    status, _, body = request(sock_path, "GET", METRICS, headers=headers)
    assert status == 200, status
    text = body.decode() if isinstance(body, bytes) else str(body)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    status, hdrs = 200, {}
    for line in head.decode("latin-1").split("\r\n"):
        k, _, v = line.partition(":")
        if k.lower() == "status":
            status = int(v.strip().split()[0])
        elif k:
            hdrs[k.strip().lower()] = v.strip()
    try:
        body = json.loads(body)
    except ValueError:
        pass
    return status, hdrs, body


# ---------------------------------------------------------------- a proxy that loses replies

class FaultProxy(TcpProxy):
    def __init__(self, upstream_port):
        self.rules = []           # [(pred, action)], the first one is matched next
        self.fired = []           # (action, args) of each rule that matched, in order
        self.held = []            # raw RESP of held commands
        self.event = threading.Event()      # set whenever a rule fires
        super().__init__(upstream_port, backlog=64)

    def add_rule(self, pred, action, before=None):
        """The next command matching pred (after the earlier rules fired) is muted or held;
        before(), when given, runs just before (e.g. to SIGSTOP Redis)."""
        assert action in ("mute", "hold")
        with self.lock:
            self.rules.append((pred, action, before))

    def forward_held(self, k=0, timeout=5.0):
        """Sends held command k to Redis on a new connection; returns Redis's raw reply."""
        s = socket.create_connection(("127.0.0.1", self.upstream), timeout=timeout)
        try:
            s.sendall(self.held[k])
            data = b""
            while not data.endswith(b"\r\n"):
                d = s.recv(65536)
                if not d:
                    break
                data += d
            return data
        finally:
            s.close()

    def _conn_state(self):
        return ({"mute": False, "hold": False},)

    def _reply(self, s, d, state):
        return not state["mute"]

    def _rule(self, args):
        with self.lock:
            if self.rules and self.rules[0][0](args):
                _, action, before = self.rules.pop(0)
                self.fired.append((action, args))
                if before is not None:
                    before()
                return action
        return None

    def _up(self, c, s, state):
        try:
            for cmds in _client_commands(c):
                for args, raw in cmds:
                    if state["hold"]:
                        continue             # nothing after a held command reaches Redis
                    action = self._rule(args)
                    if action == "hold":
                        state["hold"] = True
                        self.held.append(raw)
                    else:
                        if action == "mute":
                            state["mute"] = True
                        s.sendall(raw)
                    if action:
                        self.event.set()
        except OSError:
            pass
        self._close_pair(c, s)


def script_call_naming(key):
    """Predicate: an EVALSHA/EVAL call one of whose arguments is exactly `key`."""
    k = key.encode()
    return lambda args: bool(args) and args[0].upper() in (b"EVALSHA", b"EVAL") and k in args


def commit_call(org, cid):
    """Predicate: the commit script call of customer cid (it names the customer's history
    key; the resolve script's call names its hash but not its history)."""
    return script_call_naming(keys.hist(org, cid))


def _resolve_shaped(args):
    """Whether a script call's arguments hold resolve.lua's head: a lock token (32 hex
    digits), the number of customers, then a customer hash's name (src/lua/resolve.lua)."""
    for i in range(len(args) - 2):
        if (re.fullmatch(rb"[0-9a-f]{32}", args[i]) and args[i + 1].isdigit()
                and keys.match("CUST", args[i + 2]) is not None):
            return True
    return False


def resolve_call(org, cid):
    """Predicate: the resolve script call of customer cid (it names the customer's hash, and
    not its history as the commit does)."""
    cust = keys.cust(org, cid).encode()
    hist = keys.hist(org, cid).encode()
    return lambda args: (bool(args) and args[0].upper() in (b"EVALSHA", b"EVAL") and
                         cust in args and hist not in args and _resolve_shaped(args))


def ping_call(args):
    return bool(args) and args[0].upper() == b"PING"


@contextlib.contextmanager
def stack_with_proxy(args, workers=1):
    """A started one-Redis Stack plus partnerd-px (its args, answering /health) whose Redis
    connection goes through a FaultProxy: yields (stack, proxy, partnerd-px's FastCGI
    socket). After the with block the proxy is closed and the stack stopped."""
    st = harness.Stack(partnerds=1, cluster=False)
    st.start()
    proxy = FaultProxy(st.redis_port)
    try:
        sock = add_partnerd(st, "partnerd-px", args, redis_url=proxy.url, workers=workers)
        status, _, body = request(sock, "GET", HEALTH, headers={"Authorization": harness.basic(*AUTH)})
        assert status == 200, (status, body)
        yield st, proxy, sock
    finally:
        proxy.close()
        st.stop()
