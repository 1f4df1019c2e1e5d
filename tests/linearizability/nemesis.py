"""Faults during a recorded run (issue 15, slice 2): nemeses for recorder.run().

Each nemesis is a recorder.Nemesis: run(stack, stop, log) loops until `stop` is set, doing
its fault every few seconds, and logs every event (with the pid it acted on) into the
history through log(text). Before it returns it heals the stack (every stopped process
continued, every killed one restarted), so the run's last reads see a working stack.

Processes are acted on by their own pid (the harness's Popen children), never by name.

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

A SIGKILL of Redis is not among them: with the harness's Redis (no persistence) it loses
everything, and with AOF everysec it may lose acknowledged writes (docs/CONSISTENCY.md,
"Redis durability is Redis's"), which the checker would rightly report.
"""

import os
import queue
import random
import signal
import threading

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
    """Base of the nemeses: a loop of `fault()` calls with a random quiet gap in between."""
    name = "faults"
    partnerd_args = PARTNERD_ARGS
    gap = (1.0, 3.0)            # seconds of quiet between two faults

    def __init__(self, seed=None):
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.events = {}        # kind -> count of faults done
        self.stopped = []       # (name, Popen) SIGSTOPped and not yet continued
        self.killed = []        # partnerd indexes killed and not yet restarted

    def run(self, stack, stop, log):
        self.stack, self.stop, self.log = stack, stop, log
        log("nemesis %s seed %d" % (self.name, self.seed))
        try:
            while not stop.wait(self.rng.uniform(*self.gap)):
                kind = self.pick()
                self.events[kind] = self.events.get(kind, 0) + 1
                getattr(self, kind.replace("-", "_"))()
        finally:
            self.heal()

    def pick(self):
        return self.name

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

    # -- the end ----------------------------------------------------------------

    def heal(self):
        for name, p in list(self.stopped):
            self._cont(name, p)
        for k in list(self.killed):
            self.restart_partnerd(k)
        if not any(n == "redis-server" for n, p in self.stack.procs):
            spawn(self.stack.restart_redis)
            self.log("started redis-server pid %d" % self.stack.proc("redis-server").pid)


class KillPartnerd(Faults):
    name = "kill-partnerd"


class PausePartnerd(Faults):
    name = "pause-partnerd"


class PauseRedis(Faults):
    name = "pause-redis"


class RestartRedis(Faults):
    name = "restart-redis"


class All(Faults):
    """A seeded random schedule of every single-Redis fault, one at a time."""
    name = "all"
    kinds = ("kill-partnerd", "pause-partnerd", "pause-redis", "restart-redis")

    def pick(self):
        return self.rng.choice(self.kinds)


NEMESES = {c.name: c for c in (KillPartnerd, PausePartnerd, PauseRedis, RestartRedis, All)}


def make(name, seed=None):
    """The nemesis called `name` (NEMESES, or "none": None)."""
    if name in (None, "none"):
        return None
    if name not in NEMESES:
        raise ValueError("unknown nemesis %r (one of: none, %s)" % (name, ", ".join(sorted(NEMESES))))
    return NEMESES[name](seed)
