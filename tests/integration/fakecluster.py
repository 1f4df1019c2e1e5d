"""A scripted fake Redis Cluster on loopback, for the router's tests of exact replies
(test_cluster_fake.py): the replies a real cluster gives only at a moment a test cannot
pick (LOADING, MASTERDOWN, a Redis without CLUSTER SHARDS, MOVED without a host) are
sent word for word, and each node records every command it received. Real clusters
(cluster.py, test_cluster.py) stay the main proof; this checks the router's reading of the
protocol where a real one cannot be made to speak on cue.

FakeCluster(n) starts n nodes (threads, 127.0.0.1, free ports). `owner[slot]` says which
node serves a slot (all on node 0 at first); CLUSTER SHARDS and CLUSTER SLOTS answer from
it (`shards = False`: SHARDS is refused as Redis 6 refuses it). A node answers a command
by its first scripted rule that matches (`node.script(match, reply)`; a rule is used once),
else as a tiny Redis would: GET, SET, ASKING, PING, SCRIPT LOAD; anything else is an error.
Keys live in one dict for the whole fake cluster.
"""

import hashlib
import socket
import threading


class Err(str):
    """An error reply: the text after '-'."""


class Status(str):
    """A status reply: the text after '+'."""


def enc(v):
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, Err):
        return b"-" + v.encode() + b"\r\n"
    if isinstance(v, Status):
        return b"+" + v.encode() + b"\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    return b"*%d\r\n" % len(v) + b"".join(enc(x) for x in v)


class FakeNode:
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.id = ("%040x" % (index + 1))
        self.log = []           # every command received, as lists of str
        self.rules = []         # [match, reply]: match(cmd) -> bool; used once
        self.lock = threading.Lock()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def script(self, match, reply):
        """The next command for which match(cmd) holds (cmd: a list of str; or a tuple:
        the command's first words) gets reply (an Err, a Status, a str (bulk), an int, a
        list, None)."""
        if isinstance(match, tuple):
            words = [w.upper() for w in match]
            match = (lambda ws: lambda cmd: [c.upper() for c in cmd[:len(ws)]] == ws)(words)
        with self.lock:
            self.rules.append([match, reply])

    def commands(self, name):
        with self.lock:
            return [c for c in self.log if c[0].upper() == name.upper()]

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                assert line[:1] == b"*", line
                cmd = []
                for _ in range(int(line[1:])):
                    n = int(f.readline()[1:])
                    cmd.append(f.read(n + 2)[:-2].decode("utf-8", "replace"))
                conn.sendall(enc(self._answer(cmd)))
        except (OSError, ValueError):
            return
        finally:
            conn.close()

    def _answer(self, cmd):
        with self.lock:
            self.log.append(cmd)
            for rule in self.rules:
                if rule[0](cmd):
                    self.rules.remove(rule)
                    return rule[1]
        c = self.cluster
        name = cmd[0].upper()
        sub = cmd[1].upper() if len(cmd) > 1 else ""
        if name == "CLUSTER" and sub == "SHARDS":
            if not c.shards:
                return Err("ERR unknown subcommand 'shards'. Try CLUSTER HELP.")
            return c.shards_reply()
        if name == "CLUSTER" and sub == "SLOTS":
            return c.slots_reply()
        if name == "SCRIPT" and sub == "LOAD":
            return hashlib.sha1(cmd[2].encode()).hexdigest()
        if name in ("ASKING", "PING"):
            return Status("OK" if name == "ASKING" else "PONG")
        if name == "GET":
            return c.data.get(cmd[1])
        if name == "SET":
            c.data[cmd[1]] = cmd[2]
            return Status("OK")
        return Err("ERR unknown command '%s' (fake node)" % cmd[0])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        for conn in self.conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass


class FakeCluster:
    def __init__(self, n=2):
        self.nodes = [FakeNode(self, i) for i in range(n)]
        self.owner = [0] * 16384
        self.shards = True
        self.data = {}

    @property
    def seeds(self):
        return "127.0.0.1:%d" % self.nodes[0].port

    def ranges(self, i):
        out, lo = [], None
        for s in range(16385):
            mine = s < 16384 and self.owner[s] == i
            if mine and lo is None:
                lo = s
            if not mine and lo is not None:
                out.append((lo, s - 1))
                lo = None
        return out

    def shards_reply(self):
        out = []
        for i, nd in enumerate(self.nodes):
            slots = sum(([lo, hi] for lo, hi in self.ranges(i)), [])
            node = ["id", nd.id, "port", nd.port, "ip", "127.0.0.1", "endpoint", "127.0.0.1",
                    "role", "master", "replication-offset", 0, "health", "online"]
            out.append(["slots", slots, "nodes", [node]])
        return out

    def slots_reply(self):
        out = []
        for i, nd in enumerate(self.nodes):
            for lo, hi in self.ranges(i):
                out.append([lo, hi, ["127.0.0.1", nd.port, nd.id]])
        return out

    def close(self):
        for nd in self.nodes:
            nd.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
