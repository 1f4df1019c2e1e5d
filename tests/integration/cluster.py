"""A real Redis Cluster for the tests: 3 masters + 3 replicas on loopback.

    with Cluster() as c:            # or c = Cluster().start() ... c.stop()
        c.seeds                     # "127.0.0.1:P1,127.0.0.1:P2,..." (every node)
        c.masters()                 # [{"port", "id", "slots": [(lo, hi), ...]}, ...]
        c.key_on(port)              # a key whose slot that master serves
        c.redis(port)("GET", "k")   # a harness.Redis client to one node

Each node is `redis-server --cluster-enabled yes` on a free port (its bus port, +10000,
free too) in a fresh temporary directory; `redis-cli --cluster create --cluster-replicas 1
--cluster-yes` joins them; start() returns once every node says `cluster_state:ok` and
knows all six. Processes are Popen children, stopped by their own pid (SIGTERM, then
SIGKILL), never by name; `kill9(port)` SIGKILLs one node (a failover test).

Environment: REDIS_SERVER, REDIS_CLI (default: looked up in PATH), PARTNERD_TEST_KEEP=1
keeps the directory (node logs redis-P.log, P/nodes-P.conf). When a wait for the cluster
fails (wait_ok), its message has every node's CLUSTER INFO, CLUSTER NODES and log tail
(report()), and the directory is kept (a Stack's cluster: copied at stop() to a
partnerd-cluster-kept-* directory in TMPDIR, named in the message).

Run `python3 tests/integration/cluster.py` to start one, print its seeds and the time it
took, and stop it (Ctrl-C) -- or `--once` to stop at once.
"""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

SLOTS = 16384


def crc16(data):
    """CRC16-XMODEM, as Redis Cluster's key slots (the Python twin of cluster_crc16)."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def key_slot(key):
    k = key.encode() if isinstance(key, str) else key
    i = k.find(b"{")
    if i >= 0:
        j = k.find(b"}", i + 1)
        if j > i + 1:
            k = k[i + 1:j]
    return crc16(k) % SLOTS


def _port_pair_free():
    """A port P on 127.0.0.1 with P and P + 10000 (the cluster bus) free a moment ago."""
    for _ in range(200):
        p = harness.free_port()
        if p + 10000 > 65535:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise harness.StackError("no free port pair (P, P+10000) found")


class Cluster:
    """3 masters + 3 replicas (n_masters and replicas can be changed)."""

    def __init__(self, n_masters=3, replicas=1, node_timeout_ms=2000, parent=None):
        self.n_masters = n_masters
        self.parent = parent     # a directory to make ours in (a Stack's), else a fresh one
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = []
        self.procs = {}          # port -> Popen
        self.dir = None
        self.keep = os.environ.get("PARTNERD_TEST_KEEP") == "1"
        self.start_secs = None
        self.kept_dir = None     # set by report(): the directory kept for a failure
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30):
        t0 = time.monotonic()
        atexit.register(self.stop)
        if self.parent:
            self.dir = os.path.join(self.parent, "cluster")
            os.mkdir(self.dir)
        else:
            self.dir = tempfile.mkdtemp(prefix="partnerd-cluster-")
        try:
            n = self.n_masters * (1 + self.replicas)
            for _ in range(n):
                # a port picked is free only until its node binds it: the node started just
                # before may not have yet, so never take one of ours twice
                port = _port_pair_free()
                while port in self.ports or port + 10000 in self.ports or port - 10000 in self.ports:
                    port = _port_pair_free()
                self._start_node(port)
            for port in self.ports:
                self._wait_ping(port, t0 + timeout)
            cli = harness._find_tool("REDIS_CLI", "redis-cli")
            argv = [cli, "--cluster", "create"] + ["127.0.0.1:%d" % p for p in self.ports] + \
                   ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=timeout)
            if out.returncode != 0:
                raise harness.StackError("redis-cli --cluster create failed (%d):\n%s"
                                         % (out.returncode, out.stdout.decode("utf-8", "replace")))
            self.wait_ok(t0 + timeout)
        except BaseException:
            self.keep = self.keep or os.environ.get("PARTNERD_TEST_KEEP") == "1"
            self.stop()
            raise
        self.start_secs = time.monotonic() - t0
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _start_node(self, port, again=False):
        d = os.path.join(self.dir, str(port))
        if not again:
            os.mkdir(d)
        argv = [harness._find_tool("REDIS_SERVER", "redis-server"),
                "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes-%d.conf" % port,
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "", "--appendonly", "no", "--dir", d, "--logfile", "",
                "--protected-mode", "yes",
                # DEBUG DIGEST-VALUE (Stack.digest), from loopback only
                "--enable-debug-command", "local",
                # a replica's first sync at once (diskless sync waits 5 s by default for more
                # replicas): a replica that never synced cannot be promoted
                "--repl-diskless-sync-delay", "0",
                # any replica may be promoted, however long since it heard from its master
                # (the default, 10, refuses a replica whose link was down longer than
                # node timeout x 10 + 10 s: a loaded machine's restarted replica can be one)
                "--cluster-replica-validity-factor", "0"]
        log = open(os.path.join(self.dir, "redis-%d.log" % port), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=d,
                                 start_new_session=True, preexec_fn=harness._die_with_parent)
        finally:
            log.close()
        if not again:
            self.ports.append(port)
        self.procs[port] = p

    def _wait_ping(self, port, deadline):
        while True:
            p = self.procs[port]
            if p.poll() is not None:
                raise harness.StackError("redis-server %d exited (%s):\n%s" % (
                    port, p.returncode, harness.tail(os.path.join(self.dir, "redis-%d.log" % port))))
            try:
                r = harness.Redis(port, timeout=1)
                try:
                    if r("PING") == "PONG":
                        return
                finally:
                    r.close()
            except (OSError, harness.RedisError):
                pass
            if time.monotonic() > deadline:
                raise harness.StackError("redis-server %d did not answer PING" % port)
            time.sleep(0.02)

    def wait_ok(self, deadline, waited=None):
        """Until every running node says cluster_state:ok, knows every node and sees every
        master with its replicas, every replica has synced with its master (only a replica
        that synced can be promoted), and the nodes agree (_view): which master serves which
        slot with which config epoch, which replica follows which master, no running node
        marked failed. A fault started before the views agree acts on a cluster still
        settling from the last one (a replica promoted with a stale view of its master's
        slots claims only the slots of that view: Redis's failover takes over the slots the
        replica believes its master has). waited: a list that gets what was not so yet
        the last time it was looked at (empty when all was at once)."""
        while True:
            bad = []
            views = {}
            for port in self.alive():
                try:
                    info = self.cluster_info(port)
                    nodes = self.nodes(port)
                    repl = harness._s(self.call(port, "INFO", "replication"))
                except (OSError, harness.RedisError) as e:
                    bad.append("%d: %s" % (port, e))
                    continue
                if info.get("cluster_state") != "ok" or \
                        int(info.get("cluster_known_nodes", 0)) != len(self.ports):
                    bad.append("%d: %s" % (port, info.get("cluster_state")))
                elif sum(1 for n in nodes if "slave" in n["flags"]) != self.n_masters * self.replicas:
                    bad.append("%d: not every replica known as one yet" % port)
                elif "role:slave" in repl and "master_link_status:up" not in repl:
                    bad.append("%d: replica not synced yet" % port)
                else:
                    views[port] = self._view(nodes)
            if not bad:
                first = None
                for port, v in views.items():
                    if first is None:
                        first = (port, v)
                    elif v != first[1]:
                        bad.append("%d and %d: their views of the slots, epochs and replicas "
                                   "differ" % (first[0], port))
                        break
            if not bad:
                return
            if waited is not None:
                waited[:] = bad
            if time.monotonic() > deadline:
                raise harness.StackError("cluster not ok in time (waited for every running node "
                                         "to say cluster_state:ok, know all %d nodes, see %d "
                                         "replicas, every replica to have synced, and the "
                                         "nodes' views to agree): %s\n%s"
                                         % (len(self.ports), self.n_masters * self.replicas,
                                            ", ".join(bad), self.report()))
            time.sleep(0.05)

    def _view(self, nodes):
        """What every node of a settled cluster says alike: the masters serving slots (id,
        config epoch, slots), the replicas (id, master id), the running nodes marked
        failed (fail, not the passing fail?)."""
        alive = set(self.alive())
        return (sorted((n["id"], n["epoch"], tuple(n["slots"])) for n in nodes
                       if "master" in n["flags"] and n["slots"]),
                sorted((n["id"], n["master_id"]) for n in nodes if "slave" in n["flags"]),
                sorted(n["id"] for n in nodes if "fail" in n["flags"] and n["port"] in alive))

    def report(self, lines=40):
        """Every node's view, for a failure message: its CLUSTER INFO (cluster_state,
        epochs, known nodes, slot states), CLUSTER NODES and the last `lines` lines of its
        log; the cluster's directory is kept (self.keep, and self.kept_dir says where: a
        Stack keeps its own directory when it sees kept_dir set)."""
        if self.kept_dir is None:
            self.keep = True
            # a Stack's cluster lives in the Stack's directory, which its stop() removes:
            # stop() moves it to a directory of its own first
            self.kept_dir = tempfile.mkdtemp(prefix="partnerd-cluster-kept-") if self.parent else self.dir
        out = ["cluster directory kept: %s (redis-PORT.log, PORT/nodes-PORT.conf; copied there "
               "when the cluster stops)" % self.kept_dir if self.parent else
               "cluster directory kept: %s (redis-PORT.log, PORT/nodes-PORT.conf)" % self.kept_dir]
        for port in self.ports:
            p = self.procs.get(port)
            state = "not started" if p is None else (
                "running pid %d" % p.pid if p.poll() is None else "exited %s" % p.returncode)
            out.append("---- node %d (%s)" % (port, state))
            if p is not None and p.poll() is None:
                try:
                    info = self.cluster_info(port)
                    out.append("CLUSTER INFO: " + " ".join(
                        "%s:%s" % (k, info.get(k)) for k in (
                            "cluster_state", "cluster_current_epoch", "cluster_my_epoch",
                            "cluster_known_nodes", "cluster_size", "cluster_slots_assigned",
                            "cluster_slots_ok", "cluster_slots_pfail", "cluster_slots_fail")))
                    out.append("CLUSTER NODES:\n" + harness._s(
                        self.call(port, "CLUSTER", "NODES")).rstrip())
                except (OSError, harness.RedisError) as e:
                    out.append("(no answer: %s)" % e)
            out.append("log (last %d lines):\n%s" % (
                lines, harness.tail(os.path.join(self.dir, "redis-%d.log" % port), lines)))
        return "\n".join(out)

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def kill9(self, port):
        """SIGKILL one node by its pid (a crash)."""
        p = self.procs[port]
        p.kill()
        p.wait(5)

    def restart_node(self, port):
        """Start a node that exited (kill9) again, on its port and directory: its
        nodes-PORT.conf makes it rejoin the cluster; a master whose replica was promoted
        meanwhile comes back as that replica's replica and syncs from it. It comes back
        empty: the dump.rdb a replica's sync left in its directory is removed first, so
        that it never serves old keys as the master it was. It is not waited for
        (wait_ok)."""
        if self.procs[port].poll() is None:
            raise harness.StackError("redis-server %d is still running" % port)
        try:
            os.unlink(os.path.join(self.dir, str(port), "dump.rdb"))
        except FileNotFoundError:
            pass
        self._start_node(port, again=True)

    def wait_taken_over(self, port, deadline):
        """Until every running node has marked the exited node on port failed and none
        has it serve a slot (its slots are its promoted replica's everywhere), and the
        running nodes agree on which master serves which slot: a node restarted before
        then meets nodes that still see it as its slots' master, and its nodes-PORT.conf's
        claim on them races the promoted replica's. Returns the node's id."""
        node_id = None
        while True:
            bad = []
            maps = {}
            for p in self.alive():
                try:
                    nodes = self.nodes(p)
                except (OSError, harness.RedisError) as e:
                    bad.append("%d: %s" % (p, e))
                    continue
                me = [n for n in nodes if n["port"] == port]
                if not me:
                    bad.append("%d: does not know %d" % (p, port))
                    continue
                node_id = me[0]["id"]
                if "fail" not in me[0]["flags"]:
                    bad.append("%d: %d not marked failed (%s)" % (p, port, ",".join(me[0]["flags"])))
                elif me[0]["slots"]:
                    bad.append("%d: %d still serves %s" % (p, port, me[0]["slots"]))
                maps[p] = sorted((n["id"], tuple(n["slots"])) for n in nodes
                                 if "master" in n["flags"] and n["slots"])
            if not bad and len(set(map(repr, maps.values()))) > 1:
                bad.append("the running nodes disagree on the slots' masters")
            if not bad:
                return node_id
            if time.monotonic() > deadline:
                raise harness.StackError("node %d not taken over in time (waited for every running "
                                         "node to mark it failed, give its slots to another master "
                                         "and agree on the slots' masters): %s\n%s"
                                         % (port, ", ".join(bad), self.report()))
            time.sleep(0.05)

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        for port in self.ports:             # all at once: each may take a moment
            if self.procs[port].poll() is None:
                try:
                    self.procs[port].terminate()
                except ProcessLookupError:
                    pass
        for port in self.ports:
            harness._terminate(self.procs[port], 5.0)
        if self.dir and self.parent and self.kept_dir and self.kept_dir != self.dir:
            shutil.copytree(self.dir, self.kept_dir, dirs_exist_ok=True, symlinks=True)
            sys.stderr.write("cluster directory kept: %s\n" % self.kept_dir)
        if self.dir and not self.keep and not self.parent:
            shutil.rmtree(self.dir, ignore_errors=True)

    def dead(self):
        """(port, returncode, log tail) of the nodes that exited although stop() was not
        called (kill9 included: a test that kills a node runs on a cluster of its own)."""
        if self._stopped:
            return []
        return [(p, self.procs[p].returncode,
                 harness.tail(os.path.join(self.dir, "redis-%d.log" % p), 20))
                for p in self.ports if self.procs[p].poll() is not None]

    # -- looking at it -----------------------------------------------------

    @property
    def seeds(self):
        return ",".join("127.0.0.1:%d" % p for p in self.ports)

    def redis(self, port, timeout=5.0):
        return harness.Redis(port, timeout=timeout)

    def call(self, port, *args):
        r = self.redis(port)
        try:
            return r(*args)
        finally:
            r.close()

    def cluster_info(self, port):
        text = harness._s(self.call(port, "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)

    def nodes(self, port=None):
        """CLUSTER NODES as seen by one running node: dicts with port, id, master, flags, slots."""
        port = port or self.alive()[0]
        out = []
        for line in harness._s(self.call(port, "CLUSTER", "NODES")).splitlines():
            f = line.split()
            slots = []
            for s in f[8:]:
                if s.startswith("["):
                    continue        # a migrating/importing marker
                lo, _, hi = s.partition("-")
                slots.append((int(lo), int(hi or lo)))
            out.append({"id": f[0], "port": int(f[1].split(":")[1].split("@")[0]),
                        "flags": f[2].split(","), "master_id": f[3], "epoch": int(f[6]),
                        "slots": slots})
        return out

    def masters(self, port=None):
        return [n for n in self.nodes(port) if "master" in n["flags"] and "fail" not in n["flags"]
                and n["slots"]]

    def master_of_slot(self, slot, port=None):
        for n in self.masters(port):
            if any(lo <= slot <= hi for lo, hi in n["slots"]):
                return n
        raise KeyError(slot)

    def replica_of(self, master_id, port=None):
        for n in self.nodes(port):
            if n["master_id"] == master_id:
                return n
        raise KeyError(master_id)

    def key_on(self, port, prefix="k", start=0):
        """A key (prefix + a number) whose slot the master on port serves."""
        m = [n for n in self.masters() if n["port"] == port][0]
        for i in range(start, start + 100000):
            k = "%s%d" % (prefix, i)
            s = key_slot(k)
            if any(lo <= s <= hi for lo, hi in m["slots"]):
                return k
        raise KeyError(port)


# ---------------------------------------------------------------- a cluster-aware client

# Commands that act on the whole key space or the server: run on every master, replies
# merged (_merge). The first word, or the first two for a container command.
_FAN_OUT = {"FLUSHALL", "FLUSHDB", "DBSIZE", "KEYS", "INFO", "SCRIPT FLUSH", "SCRIPT LOAD",
            "SCRIPT EXISTS", "CONFIG SET", "CONFIG RESETSTAT", "CLIENT PAUSE", "CLIENT UNPAUSE",
            "CLIENT KILL", "PING", "FUNCTION FLUSH", "MEMORY PURGE"}
# Commands whose key is argv[2] (a subcommand first).
_KEY_AT_2 = {"DEBUG", "OBJECT", "MEMORY", "XINFO"}
# Commands with no key that one master answers as well as any.
_ANY = {"TIME", "ECHO", "CONFIG", "CLIENT", "CLUSTER", "COMMAND", "SCRIPT", "LASTSAVE"}
# Commands refused: they stop or restart "the Redis", which a cluster has six of.
_REFUSED = {"SHUTDOWN", "DEBUG RESTART", "DEBUG SLEEP", "SAVE", "BGSAVE", "BGREWRITEAOF",
            "REPLICAOF", "SLAVEOF", "FAILOVER"}


def _word(a):
    return (a.decode() if isinstance(a, bytes) else str(a)).upper()


def _sum_info(texts):
    """INFO of several masters as one: a numeric field summed (`keys=`/`calls=` pairs of
    keyspace and commandstats lines too), any other field as the first master says it."""
    order, vals = [], {}
    for text in texts:
        for line in harness._s(text).split("\r\n"):
            if ":" not in line or line.startswith("#"):
                if line.startswith("#") and line not in vals:
                    order.append(line)
                    vals[line] = None
                continue
            name, value = line.split(":", 1)
            if name not in vals:
                order.append(name)
                vals[name] = value
                continue
            old = vals[name]
            if old.lstrip("-").isdigit() and value.lstrip("-").isdigit():
                vals[name] = str(int(old) + int(value))
            elif "=" in old and "=" in value:
                a = [kv.split("=", 1) for kv in old.split(",")]
                b = dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)
                out = []
                for k, v in a:
                    w = b.get(k)
                    if w is not None and v.lstrip("-").isdigit() and w.lstrip("-").isdigit():
                        v = str(int(v) + int(w))
                    elif w is not None and k.endswith("_per_call"):
                        v = "%.2f" % max(float(v), float(w))
                    out.append("%s=%s" % (k, v))
                vals[name] = ",".join(out)
    lines = [n if vals[n] is None else "%s:%s" % (n, vals[n]) for n in order]
    return ("\r\n".join(lines) + "\r\n").encode()


class ClusterClient:
    """stack.redis(...) on a cluster: a command goes to the master of its key's slot
    (argv[1]; argv[2] after DEBUG/OBJECT/MEMORY/XINFO; EVAL/EVALSHA's first key), following
    MOVED (the map reloaded) and ASK; key-space and server commands (_FAN_OUT) go to every
    master and their replies are merged: DBSIZE and CLIENT KILL summed, KEYS joined, INFO's
    numeric fields summed, SCAN walks master after master under one cursor (the master's
    index in its low digits). RENAME/RENAMENX between slots is DUMP, RESTORE, DEL. SHUTDOWN and the like are refused: a test that stops "the
    Redis" is single-Redis only (run_tests.py's CLUSTER_INCOMPATIBLE). pipeline() sends each
    master its commands in one write, then reads them all, as harness.Redis.pipeline does."""

    def __init__(self, cluster, timeout=5.0):
        self.cluster = cluster
        self.timeout = timeout
        self.conns = {}          # port -> harness.Redis
        self.owner = None        # [port] * SLOTS
        self.master_ports = []

    def close(self):
        for r in self.conns.values():
            r.close()
        self.conns = {}

    def _conn(self, port):
        r = self.conns.get(port)
        if r is None:
            r = self.conns[port] = harness.Redis(port, timeout=self.timeout)
        return r

    def _drop(self, port):
        r = self.conns.pop(port, None)
        if r is not None:
            r.close()

    def refresh(self):
        last = None
        for port in self.cluster.alive():
            try:
                slots = self._conn(port)("CLUSTER", "SLOTS")
            except (OSError, harness.RedisError) as e:
                self._drop(port)
                last = e
                continue
            owner = [None] * SLOTS
            masters = []
            for lo, hi, master, *_ in slots:
                mport = int(master[1])
                for s in range(lo, hi + 1):
                    owner[s] = mport
                if mport not in masters:
                    masters.append(mport)
            self.owner, self.master_ports = owner, sorted(masters)
            return
        raise harness.RedisError("no cluster node answers CLUSTER SLOTS (%s)" % last)

    def masters(self):
        if self.owner is None:
            self.refresh()
        return list(self.master_ports)

    @staticmethod
    def route_key(args):
        """The key that routes args, or None for a command with no key."""
        w = _word(args[0])
        if w in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL"):
            return args[3] if len(args) > 3 and int(args[2]) > 0 else None
        if w in _KEY_AT_2:
            return args[2] if len(args) > 2 else None
        if w in _ANY or w in ("PING", "MULTI", "EXEC"):
            return None
        return args[1] if len(args) > 1 else None

    def _port_of(self, key):
        if self.owner is None:
            self.refresh()
        port = self.owner[key_slot(key if isinstance(key, (bytes, str)) else str(key))]
        if port is None:
            raise harness.RedisError("CLUSTERDOWN no master serves the slot of %r" % (key,))
        return port

    def _on(self, port, args, asking=False):
        """One command on one node; error replies returned, not raised; a dropped
        connection raised once it has been retried on a new one."""
        for attempt in (0, 1):
            try:
                r = self._conn(port)
                if asking:
                    return r.pipeline([("ASKING",), args])[1]
                return r.pipeline([args])[0]
            except (OSError, harness.RedisError) as e:
                self._drop(port)
                if attempt:
                    raise harness.RedisError("node %d: %s" % (port, e)) from e

    def _redirect(self, reply):
        """(port, ask) when reply is a MOVED/ASK error, else None."""
        if isinstance(reply, harness.RedisError):
            f = str(reply).split()
            if len(f) == 3 and f[0] in ("MOVED", "ASK"):
                return int(f[2].rsplit(":", 1)[1]), f[0] == "ASK"
        return None

    def _keyed(self, key, args, first=None):
        port, asking = self._port_of(key), False
        reply = first
        for _ in range(16):
            if reply is None:
                reply = self._on(port, args, asking)
            red = self._redirect(reply)
            if red is None:
                if isinstance(reply, harness.RedisError) and \
                        str(reply).split(" ", 1)[0] in ("TRYAGAIN", "CLUSTERDOWN"):
                    time.sleep(0.05)
                    reply = None
                    continue
                return reply
            port, asking = red
            if not asking:
                self.refresh()
            reply = None
        return reply

    def _fan_out(self, args):
        w = _word(args[0])
        w2 = w + " " + _word(args[1]) if len(args) > 1 else w
        replies = [self._on(p, args) for p in self.masters()]
        for r in replies:
            if isinstance(r, harness.RedisError):
                return r
        if w in ("DBSIZE",) or w2 == "CLIENT KILL" and isinstance(replies[0], int):
            return sum(replies)
        if w == "KEYS":
            return [k for r in replies for k in r]
        if w == "INFO":
            return _sum_info(replies)
        if w2 == "SCRIPT EXISTS":
            return [int(all(col)) for col in zip(*replies)]
        return replies[0]

    def _scan(self, args):
        masters = self.masters()
        n = len(masters)
        cur = int(harness._s(args[1]))
        idx, node_cur = cur % n, cur // n
        nxt, batch = self._on(masters[idx], (args[0], str(node_cur)) + tuple(args[2:]))
        nxt = int(harness._s(nxt))
        if nxt == 0:
            idx += 1
            return (b"0" if idx == n else str(idx).encode()), batch
        return str(nxt * n + idx).encode(), batch

    def _move(self, w, src, dst):
        """RENAME/RENAMENX between two slots, which a cluster refuses (CROSSSLOT), done as
        a test means it: DUMP, RESTORE with the same PTTL, DEL (not atomic; a test's own
        keys)."""
        if w == "RENAMENX" and self._keyed(dst, ("EXISTS", dst)) == 1:
            return 0
        value = self._keyed(src, ("DUMP", src))
        if value is None:
            return harness.RedisError("ERR no such key")
        ttl = self._keyed(src, ("PTTL", src))
        restore = ("RESTORE", dst, max(int(ttl), 0), value) + (("REPLACE",) if w == "RENAME" else ())
        r = self._keyed(dst, restore)
        if isinstance(r, harness.RedisError):
            return r
        self._keyed(src, ("DEL", src))
        return 1 if w == "RENAMENX" else "OK"

    def execute(self, args):
        """The reply of one command (an error reply returned as a RedisError)."""
        w = _word(args[0])
        w2 = w + " " + _word(args[1]) if len(args) > 1 else w
        if w in _REFUSED or w2 in _REFUSED:
            raise harness.RedisError("%s: not on a Redis Cluster (the test is single-Redis only)" % w2)
        if w == "SCAN":
            return self._scan(args)
        if w in ("RENAME", "RENAMENX") and len(args) == 3 and key_slot(args[1]) != key_slot(args[2]):
            return self._move(w, args[1], args[2])
        if w in _FAN_OUT or w2 in _FAN_OUT:
            return self._fan_out(args)
        key = self.route_key(args)
        if key is None:
            return self._on(self.masters()[0], args)
        return self._keyed(key, args)

    def __call__(self, *args):
        r = self.execute(args)
        if isinstance(r, harness.RedisError):
            raise r
        return r

    def pipeline(self, commands):
        """Every command's reply, in order (error replies as RedisError objects): the keyed
        commands grouped by master, each group written in one go, then all read; a
        redirected one, and every other command, run one by one afterwards."""
        replies = [None] * len(commands)
        by_port = {}
        rest = []
        for i, args in enumerate(commands):
            w = _word(args[0])
            key = self.route_key(args) if w not in _FAN_OUT and w != "SCAN" else None
            if key is None or w in _REFUSED:
                rest.append(i)
            else:
                by_port.setdefault(self._port_of(key), []).append(i)
        sent = {}
        for port, idxs in by_port.items():
            try:
                r = self._conn(port)
                r.sock.sendall(b"".join(r._encode(commands[i]) for i in idxs))
                sent[port] = idxs
            except OSError:
                self._drop(port)
                rest.extend(idxs)
        for port, idxs in sent.items():
            r = self.conns[port]
            try:
                for i in idxs:
                    replies[i] = r._reply()
            except (OSError, harness.RedisError):
                self._drop(port)
                rest.extend(i for i in idxs if replies[i] is None)
        for i in sorted(rest):
            try:
                replies[i] = self.execute(commands[i])
            except harness.RedisError as e:
                replies[i] = e
        for i, reply in enumerate(replies):
            if self._redirect(reply) is not None:
                replies[i] = self._keyed(self.route_key(commands[i]), commands[i], reply)
        return replies


def main(argv):
    c = Cluster()
    c.start()
    print("cluster up in %.2f s: %s (dir %s)" % (c.start_secs, c.seeds, c.dir))
    sys.stdout.flush()
    try:
        if "--once" not in argv:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        t_stop = time.monotonic()
        c.stop()
        print("stopped in %.2f s" % (time.monotonic() - t_stop))


if __name__ == "__main__":
    main(sys.argv[1:])
