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
keeps the directory (node logs, nodes-P.conf).

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

    def __init__(self, n_masters=3, replicas=1, node_timeout_ms=2000):
        self.n_masters = n_masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.ports = []
        self.procs = {}          # port -> Popen
        self.dir = None
        self.keep = os.environ.get("PARTNERD_TEST_KEEP") == "1"
        self.start_secs = None
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout=30):
        t0 = time.monotonic()
        atexit.register(self.stop)
        self.dir = tempfile.mkdtemp(prefix="partnerd-cluster-")
        try:
            n = self.n_masters * (1 + self.replicas)
            for _ in range(n):
                self._start_node(_port_pair_free())
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

    def _start_node(self, port):
        d = os.path.join(self.dir, str(port))
        os.mkdir(d)
        argv = [harness._find_tool("REDIS_SERVER", "redis-server"),
                "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes-%d.conf" % port,
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--save", "", "--appendonly", "no", "--dir", d, "--logfile", "",
                "--protected-mode", "yes",
                # a replica's first sync at once (diskless sync waits 5 s by default for more
                # replicas): a replica that never synced cannot be promoted
                "--repl-diskless-sync-delay", "0"]
        log = open(os.path.join(self.dir, "redis-%d.log" % port), "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=d,
                                 start_new_session=True, preexec_fn=harness._die_with_parent)
        finally:
            log.close()
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

    def wait_ok(self, deadline):
        """Until every running node says cluster_state:ok, knows every node and sees every
        master with its replicas, and every replica has synced with its master (only a
        replica that synced can be promoted)."""
        while True:
            bad = []
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
            if not bad:
                return
            if time.monotonic() > deadline:
                raise harness.StackError("cluster not ok in time: %s" % ", ".join(bad))
            time.sleep(0.05)

    def alive(self):
        return [p for p in self.ports if self.procs[p].poll() is None]

    def kill9(self, port):
        """SIGKILL one node by its pid (a crash)."""
        p = self.procs[port]
        p.kill()
        p.wait(5)

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
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

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
                        "flags": f[2].split(","), "master_id": f[3], "slots": slots})
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
