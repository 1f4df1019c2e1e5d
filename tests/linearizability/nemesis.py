"""Faults during a recorded run (issue 15, slice 2): nemeses for recorder.run().

Each nemesis is a recorder.Nemesis: run(stack, stop, log) loops until `stop` is set, doing
its fault every few seconds, and logs every event (with the pid it acted on) into the
history through log(text). Before it returns it heals the stack (every stopped process
continued, every killed one restarted), so the run's last reads see a working stack.

Processes are acted on by their own pid (the harness's Popen children), never by name.
On a cluster every fault starts on a settled cluster (Faults.settled: every node ok, every
replica synced, the nodes' views of slots, epochs and replicas alike), at most 60 s after
the last one; a wait that runs out fails the run, saying what it waited for and each
node's view and log (Cluster.report; the directory is kept).

  kill-partnerd    SIGKILL of one partnerd process, restarted 0.5-2 s later (same socket).
                   Its requests in flight answer 502 (unknown); its locks stay until
                   --lock-ttl-ms runs out (other requests meanwhile answer 2010).
  pause-partnerd   SIGSTOP of one partnerd for longer than the lock TTL (LOCK_TTL_MS), then
                   SIGCONT: its requests between begin and commit resume with their lock
                   expired and must be fenced.
  pause-redis      SIGSTOP of redis-server for 0.5-2.5 s (past --redis-timeout-ms), then
                   SIGCONT: calls time out (503, or 2011 items for commits whose reply was
                   lost and could not be resolved in time).
  restart-redis    SHUTDOWN SAVE of redis-server, then the same binary started again on the
                   same port and data directory 0.3-1.5 s later. The test's Redis persists
                   nothing by itself (--save "" --appendonly no, harness.Stack); SHUTDOWN SAVE
                   writes the whole data set to dump.rdb after the last command it executed
                   and the new server loads it, so no acknowledged write is lost (what a
                   planned restart of a production Redis does). The script cache is empty
                   after it (partnerd's EVALSHA falls back on NOSCRIPT).
  all              a seeded random schedule of the four above, one at a time.

On a Redis Cluster (the stack's store is a 3+3 cluster: harness.Stack(cluster=True)):
  pause-master     SIGSTOP of one master for 0.3-1.2 s, then SIGCONT: shorter than the
                   cluster's node timeout (2 s, cluster.py), so no failover starts; calls to
                   its slots time out meanwhile (503, 2011), as pause-redis.
  failover         a master's crash and its replica's promotion: CLIENT PAUSE WRITE on the
                   master, a wait until its replica has received its whole replication
                   stream (the replica's offset equals the master's), then SIGKILL of the
                   master (still paused); its replica is promoted after the node timeout,
                   and the killed node is started again 0.5-2 s after every other node
                   has seen the promotion (Cluster.wait_taken_over), on its port and
                   directory (its dump.rdb removed: it comes back empty), rejoins as the
                   new master's replica and syncs (the next failover needs a replica).
                   The pause makes the failover lose no acknowledged write: Redis Cluster
                   replicates asynchronously, and a plain kill -9 may lose the writes
                   acknowledged in the last moment before it (docs/SCALING.md counts them)
                   - Redis's loss, not a partnerd bug, which the checker would report as a
                   violation. docs/CONSISTENCY.md, "On a
                   Redis Cluster", says why this run fences it off this way.
  reshard          `redis-cli --cluster reshard` of 100-600 slots from one master to another,
                   under the load (MIGRATE key by key: partnerd meets ASK and TRYAGAIN).
  cluster-all      a seeded random schedule of kill-partnerd, pause-partnerd, pause-master,
                   failover and reshard, one at a time.
  failover-unsafe  not in cluster-all: the failover with a plain kill -9 (no pause), which
                   may lose acknowledged writes. The recorder then has the checker count
                   them apart (lincheck.excuse_lost_acks: writes acknowledged in the second
                   before such a kill that the later reads contradict); every other
                   violation stays one.
Left out on a cluster: pause-redis and restart-redis act on the one redis-server (a cluster
has six; pause-master is the first's counterpart, and a restart of a node is what a failover
ends with).

A SIGKILL of Redis is not among them: with the harness's Redis (no persistence) it loses
everything, and with AOF everysec it may lose acknowledged writes (docs/CONSISTENCY.md,
"Redis durability is Redis's"), which the checker would rightly report.
"""

import os
import queue
import random
import signal
import subprocess
import threading
import time

import recorder               # (first: it puts tests/integration on the path)
import harness  # noqa: E402

# partnerd's lock TTL in a nemesis run: short, so that a pause beyond it costs seconds, not
# tens of seconds (must still exceed a request's begin-to-commit time: --redis-timeout-ms
# stays 1000)
LOCK_TTL_MS = 2000
PARTNERD_ARGS = ("--lock-ttl-ms", str(LOCK_TTL_MS))


class _Spawner:
    """Starts processes from one thread that lives as long as the test process. The
    harness's children get SIGTERM when the thread that started them exits
    (PR_SET_PDEATHSIG follows the creating thread), so a nemesis thread, which ends with
    the run, must not start them itself."""

    def __init__(self):
        self.q = queue.Queue()
        self.t = None
        self.lock = threading.Lock()

    def _loop(self):
        while True:
            fn, box, done = self.q.get()
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed to the caller
                box.append((False, e))
            done.set()

    def __call__(self, fn):
        with self.lock:
            if self.t is None:
                self.t = threading.Thread(target=self._loop, name="nemesis-spawner", daemon=True)
                self.t.start()
        box, done = [], threading.Event()
        self.q.put((fn, box, done))
        done.wait()
        ok, v = box[0]
        if not ok:
            raise v
        return v


spawn = _Spawner()


def _partnerds(stack):
    return sorted(n for n, p in stack.procs if n.startswith("partnerd-"))


class Faults(recorder.Nemesis):
    """Base of the nemeses: a loop of `fault()` calls with a random quiet gap in between.
    cluster: True for the nemeses that need a Redis Cluster, False for those that need one
    Redis, None for those that run on either (the partnerd faults)."""
    name = "faults"
    cluster = None
    partnerd_args = PARTNERD_ARGS
    gap = (1.0, 3.0)            # seconds of quiet between two faults
    must = ()                   # kinds done first (next_kind)

    def __init__(self, seed=None):
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.events = {}        # kind -> count of faults done
        self.stopped = []       # (name, Popen) SIGSTOPped and not yet continued
        self.killed = []        # partnerd indexes killed and not yet restarted
        self.nodes_down = []    # cluster node ports killed and not yet started again

    def run(self, stack, stop, log):
        self.stack, self.stop, self.log = stack, stop, log
        log("nemesis %s seed %d" % (self.name, self.seed))
        try:
            while not stop.wait(self.rng.uniform(*self.gap)):
                kind = self.next_kind()
                self.events[kind] = self.events.get(kind, 0) + 1
                getattr(self, kind.replace("-", "_"))()
        finally:
            self.heal()

    def pick(self):
        return self.name

    def next_kind(self):
        """The next fault: the kinds of `must` (each a run must see at least once) first,
        in order, then the seeded random schedule (pick)."""
        for kind in self.must:
            if not self.events.get(kind):
                return kind
        return self.pick()

    def sleep(self, lo, hi):
        """Sleeps for a random time; returns early (False) when the run ends."""
        return not self.stop.wait(self.rng.uniform(lo, hi))

    # -- the faults -----------------------------------------------------------

    def kill_partnerd(self):
        name = self.rng.choice(_partnerds(self.stack))
        k = int(name.split("-")[1])
        for i, (n, p) in enumerate(self.stack.procs):
            if n == name:
                p.kill()                        # SIGKILL, by its pid
                p.wait(10)
                del self.stack.procs[i]
                break
        self.killed.append(k)
        self.log("SIGKILL %s pid %d" % (name, p.pid))
        try:
            os.unlink(self.stack.sock_path(k))  # so that the restart's wait for the socket means something
        except OSError:
            pass
        self.sleep(0.5, 2.0)
        self.restart_partnerd(k)

    def restart_partnerd(self, k):
        spawn(lambda: self.stack._start_partnerd(k))
        self.killed.remove(k)
        self.log("started partnerd-%d pid %d" % (k, self.stack.proc("partnerd-%d" % k).pid))

    def pause_partnerd(self):
        name = self.rng.choice(_partnerds(self.stack))
        self._pause(name, LOCK_TTL_MS / 1000.0 + 0.3, LOCK_TTL_MS / 1000.0 + 1.5)

    def pause_redis(self):
        self._pause("redis-server", 0.5, 2.5)

    def _pause(self, name, lo, hi):
        p = self.stack.proc(name)
        os.kill(p.pid, signal.SIGSTOP)
        self.stopped.append((name, p))
        self.log("SIGSTOP %s pid %d" % (name, p.pid))
        self.sleep(lo, hi)
        self._cont(name, p)

    def _cont(self, name, p):
        os.kill(p.pid, signal.SIGCONT)
        self.stopped.remove((name, p))
        self.log("SIGCONT %s pid %d" % (name, p.pid))

    def restart_redis(self):
        p = self.stack.proc("redis-server")
        try:
            self.stack.redis("SHUTDOWN", "SAVE")
        except (OSError, harness.RedisError):
            pass                                # the connection closes as it exits
        self.stack.stop_proc("redis-server", timeout=10)
        self.log("SHUTDOWN SAVE redis-server pid %d (exit %s)" % (p.pid, p.returncode))
        self.sleep(0.3, 1.5)
        spawn(self.stack.restart_redis)         # same port and --dir: loads dump.rdb
        self.log("started redis-server pid %d (dump.rdb loaded, %s keys)"
                 % (self.stack.proc("redis-server").pid, self.stack.redis("DBSIZE")))

    # -- on a Redis Cluster -------------------------------------------------------

    def settled(self, what):
        """Before a fault on the cluster: waits (60 s at most) until it has settled from
        the last one (Cluster.wait_ok: every node ok, every replica synced, the nodes'
        views of slots, epochs and replicas alike). Under load the views take a while to
        agree after a reshard or a failover, and a replica promoted with a stale view of
        its master claims only the slots that view has."""
        t = time.monotonic()
        waited = []
        try:
            self.stack.cluster.wait_ok(t + 60, waited)
        except harness.StackError as e:
            raise harness.StackError("before %s: %s" % (what, e)) from None
        if time.monotonic() - t > 1.0:
            self.log("cluster settled after %.1f s before %s (last unsettled: %s)"
                     % (time.monotonic() - t, what, "; ".join(waited)))

    def pause_master(self):
        cl = self.stack.cluster
        self.settled("pause-master")
        m = self.rng.choice(sorted(cl.masters(), key=lambda n: n["port"]))
        p = cl.procs[m["port"]]
        name = "redis-server-%d" % m["port"]
        os.kill(p.pid, signal.SIGSTOP)
        self.stopped.append((name, p))
        self.log("SIGSTOP master %s pid %d" % (name, p.pid))
        self.sleep(0.3, 1.2)                    # < the node timeout (2 s): no failover
        self._cont(name, p)

    def failover_unsafe(self):
        self.failover(paused=False)

    def failover(self, paused=True):
        cl = self.stack.cluster
        self.settled("failover")
        victim = self.rng.choice(sorted(cl.masters(), key=lambda n: n["port"]))
        rep = cl.replica_of(victim["id"])
        port, rport = victim["port"], rep["port"]
        if not paused:
            pid = cl.procs[port].pid
            cl.kill9(port)
            self.nodes_down.append(port)
            self.log("%s redis-server-%d pid %d (writes not paused)" % (recorder.UNSAFE_KILL, port, pid))
            self._promoted(rport, port)
            return
        cl.call(port, "CLIENT", "PAUSE", 20000, "WRITE")
        t = time.monotonic()
        while True:
            mo = _info_int(cl.call(port, "INFO", "replication"), "master_repl_offset")
            ro = _info_int(cl.call(rport, "INFO", "replication"), "slave_repl_offset")
            if ro is not None and mo is not None and ro >= mo:
                break
            if time.monotonic() - t > 10:
                raise harness.StackError("replica %d did not catch up with master %d (%s < %s)"
                                         % (rport, port, ro, mo))
            time.sleep(0.01)
        pid = cl.procs[port].pid
        cl.kill9(port)
        self.nodes_down.append(port)
        self.log("SIGKILL master redis-server-%d pid %d (writes paused, replica %d at offset %d = master's)"
                 % (port, pid, rport, mo))
        self._promoted(rport, port)

    def _promoted(self, rport, port):
        """Waits for replica rport's promotion, then starts the killed node again."""
        cl = self.stack.cluster
        tk = time.monotonic()
        while "master" not in _myself(cl, rport)["flags"]:
            if time.monotonic() - tk > 30:
                raise harness.StackError("replica %d not promoted within 30 s after master %d's "
                                         "kill:\n%s" % (rport, port, cl.report()))
            time.sleep(0.05)
        self.log("promoted redis-server-%d to master after %.1f s" % (rport, time.monotonic() - tk))
        # the node comes back only once every other node knows of the promotion: restarted
        # earlier, its nodes-PORT.conf's claim on its old slots meets nodes that still agree
        # with it (a race the views must settle, slower the more loaded the machine)
        tw = time.monotonic()
        cl.wait_taken_over(port, tw + 30)
        if time.monotonic() - tw > 1.0:
            self.log("every node saw the promotion %.1f s later" % (time.monotonic() - tw))
        self.sleep(0.5, 2.0)
        self.restart_node(port)

    def restart_node(self, port):
        cl = self.stack.cluster
        spawn(lambda: cl.restart_node(port))
        self.nodes_down.remove(port)
        t = time.monotonic()
        cl.wait_ok(t + 60)
        self.log("started redis-server-%d pid %d again: a replica, synced, cluster ok after %.1f s"
                 % (port, cl.procs[port].pid, time.monotonic() - t))

    def reshard(self):
        cl = self.stack.cluster
        self.settled("reshard")
        ms = sorted(cl.masters(), key=lambda n: n["port"])
        big = [m for m in ms if sum(hi - lo + 1 for lo, hi in m["slots"]) > 1000]
        src = self.rng.choice(big)
        dst = self.rng.choice([m for m in ms if m["id"] != src["id"]])
        n = self.rng.randint(100, 600)
        cli = harness._find_tool("REDIS_CLI", "redis-cli")
        for attempt in range(5):
            t = time.monotonic()
            out = subprocess.run([cli, "--cluster", "reshard", "127.0.0.1:%d" % src["port"],
                                  "--cluster-from", src["id"], "--cluster-to", dst["id"],
                                  "--cluster-slots", str(n), "--cluster-yes"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=300)
            if out.returncode == 0:
                self.log("resharded %d slots from redis-server-%d to redis-server-%d in %.1f s"
                         % (n, src["port"], dst["port"], time.monotonic() - t))
                return
            # its own check refuses while the nodes' views still differ (just after a
            # failover): once more a moment later
            self.log("reshard refused (attempt %d): %s" % (attempt + 1, out.stdout.decode(
                "utf-8", "replace").strip().splitlines()[-1:]))
            time.sleep(1.0)
        raise harness.StackError("redis-cli --cluster reshard failed 5 times:\n%s"
                                 % out.stdout.decode("utf-8", "replace")[-2000:])

    # -- the end ----------------------------------------------------------------

    def heal(self):
        for name, p in list(self.stopped):
            self._cont(name, p)
        for k in list(self.killed):
            self.restart_partnerd(k)
        for port in list(self.nodes_down):
            self.restart_node(port)
        if self.stack.cluster is None and not any(n == "redis-server" for n, p in self.stack.procs):
            spawn(self.stack.restart_redis)
            self.log("started redis-server pid %d" % self.stack.proc("redis-server").pid)


class KillPartnerd(Faults):
    name = "kill-partnerd"


class PausePartnerd(Faults):
    name = "pause-partnerd"


class PauseRedis(Faults):
    name = "pause-redis"
    cluster = False


class RestartRedis(Faults):
    name = "restart-redis"
    cluster = False


class Schedule(Faults):
    """A seeded random schedule of the faults of `kinds`, one at a time."""
    kinds = ()

    def pick(self):
        return self.rng.choice(self.kinds)


class All(Schedule):
    """Every single-Redis fault."""
    name = "all"
    cluster = False
    kinds = ("kill-partnerd", "pause-partnerd", "pause-redis", "restart-redis")


class PauseMaster(Faults):
    name = "pause-master"
    cluster = True


class Failover(Faults):
    name = "failover"
    cluster = True
    gap = (2.0, 5.0)


class FailoverUnsafe(Faults):
    """Not in cluster-all: a plain kill -9 of a master (no pause), which may lose writes it
    acknowledged (lincheck.excuse_lost_acks counts them apart)."""
    name = "failover-unsafe"
    cluster = True
    gap = (2.0, 5.0)


class Reshard(Faults):
    name = "reshard"
    cluster = True


class ClusterAll(Schedule):
    """Every fault on a Redis Cluster (but failover-unsafe)."""
    name = "cluster-all"
    cluster = True
    kinds = ("kill-partnerd", "pause-partnerd", "pause-master", "failover", "reshard")


NEMESES = {c.name: c for c in (KillPartnerd, PausePartnerd, PauseRedis, RestartRedis, All,
                                PauseMaster, Failover, FailoverUnsafe, Reshard, ClusterAll)}


def _info_int(text, field):
    for line in harness._s(text).splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    return None


def _myself(cl, port):
    return [n for n in cl.nodes(port) if "myself" in n["flags"]][0]


def make(name, seed=None):
    """The nemesis called `name` (NEMESES, or "none": None)."""
    if name in (None, "none"):
        return None
    if name not in NEMESES:
        raise ValueError("unknown nemesis %r (one of: none, %s)" % (name, ", ".join(sorted(NEMESES))))
    return NEMESES[name](seed)
