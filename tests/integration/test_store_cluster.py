"""The store layer (src/store.c) on a real 3+3 Redis Cluster (cluster.py), and partnerd and
partnerctl started on one (issue 14, slice 4): store_run sends a round over all masters in
one round trip, store_pipeline / store_command / store_queue route by key, store_masters and
store_command_on reach each master (keeping its number across a failover), an op whose
reply was lost is in doubt, transactions and KEYS-less scripts are refused with their
reason; partnerd with --redis-cluster (or a redis-cluster:// URL) answers health 200,
503 while every master is stopped (SIGSTOP by pid) and 200 again after SIGCONT, refuses
layout-1 data naming `partnerctl migrate`, and bad seed lists or --redis with
--redis-cluster are refused at start (exit 2).

One cluster for the whole module (started by the first test, stopped by the last or at
exit), apart from the shared stack; every test takes keys of its own. The store tests go
through tests/cluster/store_probe (STORE_PROBE_BIN).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import cluster as clusterlib
import harness
import keys
import support_indoubt
from helpers import LineProbe, ModuleCluster

HEALTH = "/v2/partnerProgram/health"
_cluster = ModuleCluster()      # started by the first test that needs it, stopped by the last


class Probe(LineProbe):
    """One store_probe process: a warm store kept across the commands of a test."""

    def __init__(self, target, *args):
        super().__init__("STORE_PROBE_BIN", "store_probe", list(args) + [target])

    def send(self, *lines):
        self.send_lines(lines)

    def __call__(self, line):
        self.send(line)
        return self.line()

    def until_dot(self):
        out = []
        while True:
            ln = self.line()
            if ln == "." or ln.startswith(". "):
                return out, ln
            out.append(ln)

    def trips(self):
        ans = self("!trips")
        assert ans.startswith("OK "), ans
        return int(ans.split()[1])


def _masters_in_slot_order(c):
    """The masters as store_masters numbers them: by their first slot."""
    return sorted(c.masters(), key=lambda m: min(lo for lo, _ in m["slots"]))


def _get(c, key):
    """key's value read on the master of its slot (the store did not put it elsewhere)."""
    m = c.master_of_slot(clusterlib.key_slot(key))
    return harness._s(c.call(m["port"], "GET", key))


# ------------------------------------------------------------------------------- the store

def test_store_on_one_redis_runs_a_round_in_one_round_trip_and_has_one_master():
    """store_run, store_masters and store_command_on on one Redis (a private redis-server:
    SCRIPT FLUSH must not touch the shared stack's)."""
    d = tempfile.mkdtemp(prefix="partnerd-sr-")
    port = harness.free_port()
    log = open(os.path.join(d, "redis.log"), "ab")
    try:
        rp = subprocess.Popen([harness._find_tool("REDIS_SERVER", "redis-server"), "--port",
                               str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                               "no", "--dir", d], stdin=subprocess.DEVNULL, stdout=log,
                              stderr=log, start_new_session=True,
                              preexec_fn=harness._die_with_parent)
    finally:
        log.close()
    try:
        with Probe("redis://127.0.0.1:%d" % port) as p:
            deadline = time.monotonic() + 10
            while p("!ping") != "OK 0":
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
            assert p("!cluster") == "OK 0" and p("!masters") == "OK 1"
            assert p("HSET h f 7") == "OK :1"
            t0 = p.trips()
            p.send(">a SET a 1", ">b INCR a", ">h @hdel_if 1 h f 8", ">x GET a", "!run")
            out, end = p.until_dot()
            assert out == ["OK +OK", "OK :2", "OK :0", "OK $2"], out
            assert end.startswith(". 0 0") and p.trips() == t0 + 1, (end, p.trips() - t0)
            # the script cache emptied: NOSCRIPT, then EVAL with the text (a second trip)
            assert p("SCRIPT FLUSH") == "OK +OK"
            t0 = p.trips()
            p.send(">h @hdel_if 1 h f 7", ">a GET a", "!run")
            out, end = p.until_dot()
            assert out == ["OK :1", "OK $2"] and p.trips() == t0 + 2, (out, p.trips() - t0)
            assert p("@0 DBSIZE") == "OK :1"
            ans = p("@1 DBSIZE")
            assert ans.startswith("FAIL 0 ") and "master 1 of 1" in ans, ans
            # Redis gone: the round did not run (nothing sent: the connect fails)
            harness._terminate(rp, 5)
            p.send(">a GET a", "!run")
            out, end = p.until_dot()
            assert out == ["UNAVAILABLE"] and end.startswith(". -1 0 redis:"), (out, end)
    finally:
        harness._terminate(rp, 5)
        shutil.rmtree(d, ignore_errors=True)


def test_store_on_a_cluster_runs_a_round_over_every_master_in_one_round_trip():
    c = _cluster()
    ks = [c.key_on(m["port"], "sr.run.") for m in c.masters()]
    assert len(set(c.master_of_slot(clusterlib.key_slot(k))["port"] for k in ks)) == 3
    with Probe(c.seeds) as p:
        assert p("!cluster") == "OK 1"
        assert p("!ping") == "OK 0"
        t0 = p.trips()
        p.send(*([">%s SET %s v-%s" % (k, k, k) for k in ks] + ["!run"]))
        out, end = p.until_dot()
        assert out == ["OK +OK"] * 3 and end.startswith(". 0 0"), (out, end)
        assert p.trips() == t0 + 1, "a round over 3 masters took %d round trips" % (p.trips() - t0)
        for k in ks:
            assert _get(c, k) == "v-" + k
        # an error reply is the op's own reply (status OK), the round still succeeds
        p.send(">%s INCR %s" % (ks[0], ks[0]), ">%s GET %s" % (ks[1], ks[1]), "!run")
        out, end = p.until_dot()
        assert out[0].startswith("OK -ERR") and out[1] == "OK $v-" + ks[1], out
        assert end.startswith(". 0 0"), end


def test_store_on_a_cluster_reports_an_op_whose_reply_was_lost_as_in_doubt():
    """A master stopped (SIGSTOP) after the store connected: its op of a round is sent and
    its reply never comes within the timeout: INDOUBT (it may have run: it did, once the
    master went on), store_maybe_ran 1; the other masters' ops are OK; the next round is
    served again."""
    c = _cluster()
    ms = c.masters()
    ks = [c.key_on(m["port"], "sr.doubt.") for m in ms]
    with Probe(c.seeds, "--timeout-ms", "200") as p:
        assert p("!warm") == "OK 0"
        stopped = ms[1]["port"]
        c.procs[stopped].send_signal(signal.SIGSTOP)
        try:
            p.send(*([">%s SET %s d-%s" % (k, k, k) for k in ks] + ["!run"]))
            out, end = p.until_dot()
        finally:
            c.procs[stopped].send_signal(signal.SIGCONT)
        assert out == ["OK +OK", "INDOUBT", "OK +OK"], out
        assert end.startswith(". -1 1 redis cluster: ") and "may have run" in end, end
        deadline = time.monotonic() + 5
        while _get(c, ks[1]) != "d-" + ks[1]:
            assert time.monotonic() < deadline, "the in-doubt SET never ran"
            time.sleep(0.05)
        p.send(*([">%s GET %s" % (k, k) for k in ks] + ["!run"]))
        out, end = p.until_dot()
        assert out == ["OK $d-" + k for k in ks] and end.startswith(". 0 0"), (out, end)


def test_store_on_a_cluster_runs_a_script_with_its_keys_on_their_master_and_refuses_one_without():
    c = _cluster()
    m = c.masters()[1]
    h = "{%s}.h" % c.key_on(m["port"], "sr.script.")
    with Probe(c.seeds) as p:
        assert p("HSET %s f 7" % h) == "OK :1"
        # hdel_if.lua by EVALSHA, routed by its KEYS[1]: removes the field while it is 7
        p.send(">%s @hdel_if 1 %s f 8" % (h, h), "!run")
        assert p.until_dot()[0] == ["OK :0"]
        p.send(">%s @hdel_if 1 %s f 7" % (h, h), "!run")
        assert p.until_dot()[0] == ["OK :1"]
        assert c.call(m["port"], "HEXISTS", h, "f") == 0
        # the same script after SCRIPT FLUSH on that master: NOSCRIPT, loaded, run once
        c.call(m["port"], "SCRIPT", "FLUSH")
        assert p("HSET %s f 7" % h) == "OK :1"
        p.send(">%s @hdel_if 1 %s f 7" % (h, h), "!run")
        assert p.until_dot()[0] == ["OK :1"]
        # a script with no KEYS has no node: refused with the reason, nothing sent
        ans = p("!eval")
        assert ans.startswith("FAIL 0 ") and "needs its keys on a cluster" in ans, ans


def test_store_on_a_cluster_routes_commands_and_pipelines_by_their_first_key():
    c = _cluster()
    ks = [c.key_on(m["port"], "sr.pipe.") for m in c.masters()]
    with Probe(c.seeds) as p:
        assert p("!warm") == "OK 0"        # the map loaded, every master connected
        t0 = p.trips()
        p.send(*(["|SET %s p-%s" % (k, k) for k in ks] + ["|GET %s" % ks[0], "|PING", "!pipe"]))
        out, _ = p.until_dot()
        assert out == ["OK +OK"] * 3 + ["OK $p-" + ks[0], "OK +PONG"], out
        assert p.trips() == t0 + 1, "a pipeline over 3 masters took %d round trips" % (
            p.trips() - t0)
        for k in ks:
            assert _get(c, k) == "p-" + k
            assert p("GET %s" % k) == "OK $p-" + k
        # EVAL routes by its first KEY; a command whose first key is not argv[1] reaches
        # it through MOVED
        assert p("EVAL return(redis.call('GET',KEYS[1])) 1 %s" % ks[2]) == "OK $p-" + ks[2]
        assert p("OBJECT ENCODING %s" % ks[1]) == "OK $embstr"
        # an error of the command's own is its reply, with the reason in store_error
        ans = p("HGET %s f" % ks[0])
        assert ans.startswith("OK -WRONGTYPE"), ans


def test_store_on_a_cluster_counts_masters_and_runs_a_command_on_each():
    c = _cluster()
    ms = _masters_in_slot_order(c)
    with Probe(c.seeds) as p:
        assert p("!masters") == "OK 3"
        for i, m in enumerate(ms):
            want = c.call(m["port"], "DBSIZE")
            assert p("@%d DBSIZE" % i) == "OK :%d" % want, (i, m["port"])
            # the master it reached is that one: its own id
            assert p("@%d CLUSTER MYID" % i) == "OK $" + m["id"]
        # a keyed command on a master that does not serve its key: that master's MOVED
        k = c.key_on(ms[2]["port"], "sr.on.")
        ans = p("@0 GET %s" % k)
        assert ans.startswith("OK -MOVED %d " % clusterlib.key_slot(k)), ans
        ans = p("@3 DBSIZE")
        assert ans.startswith("FAIL 0 ") and "master 3 asked for, the cluster has 3" in ans, ans


def test_store_on_a_cluster_queues_over_every_master_and_refuses_a_transaction():
    c = _cluster()
    ks = [c.key_on(m["port"], "sr.queue.") for m in c.masters()]
    h = "{%s}.qh" % ks[0]
    with Probe(c.seeds) as p:
        assert p("!warm") == "OK 0"
        assert p("HSET %s f 1" % h) == "OK :1"
        for k in ks:
            assert p("+SET %s q-%s" % (k, k)) == "OK 0"
        assert p("+INCR %s" % ks[1]) == "OK 0"
        assert p("+@hdel_if 1 %s f 1" % h) == "OK 0"
        assert p("!send") == "OK 0"
        t0 = p.trips()
        p.send("!flush")
        got = [p.line() for _ in range(6)]
        assert got == ["Q +OK"] * 3 + ["Q -ERR value is not an integer or out of range",
                                       "Q :1"] + [got[5]], got
        # the INCR's callback failed the queue: flush says so (-1), and took one round trip
        assert got[5].startswith("FAIL 0 -1"), got[5]
        assert p.trips() == t0 + 1
        for k in ks:
            assert _get(c, k) == "q-" + k
        ans = p("+MULTI")
        assert ans.startswith("FAIL 0 -1") and "transaction cannot span" in ans, ans
        ans = p("!flush")
        assert ans.startswith("FAIL 0 -1") and "MULTI refused" in ans, ans
        assert p("!flush") == "OK 0"
        ans = p("EXEC")
        assert ans.startswith("FAIL 0 ") and "EXEC refused" in ans, ans


def test_store_on_a_cluster_runs_the_connect_check_once_and_refuses_layout_1_data():
    c = _cluster()
    ms = _masters_in_slot_order(c)
    layout_master = c.master_of_slot(clusterlib.key_slot(keys.LAYOUT))
    before = c.call(layout_master["port"], "INFO", "commandstats")
    with Probe(c.seeds, "--layout-check") as p:
        for _ in range(3):
            assert p("!ping") == "OK 0"
            assert p("@0 DBSIZE").startswith("OK :")
    after = c.call(layout_master["port"], "INFO", "commandstats")

    def gets(text):
        for line in harness._s(text).splitlines():
            if line.startswith("cmdstat_get:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0
    assert gets(after) - gets(before) == 1, "the check read %s %d times" % (
        keys.LAYOUT, gets(after) - gets(before))
    orgs_port = c.master_of_slot(clusterlib.key_slot(keys.ORGS))["port"]
    c.call(orgs_port, "SADD", keys.ORGS, "sr-layout-1")
    try:
        with Probe(c.seeds, "--layout-check") as p:
            ans = p("!ping")
            assert ans.startswith("FAIL") and "key layout 1" in ans and \
                "partnerctl migrate" in ans, ans
            assert p("!refused") == "OK 1"
    finally:
        c.call(orgs_port, "DEL", keys.ORGS)
    assert ms


# ------------------------------------------------------------------ partnerd on a cluster

class Partnerd:
    """partnerd alone on a unix socket (no nginx), requests by FastCGI."""

    def __init__(self, *args, env=None):
        self.dir = tempfile.mkdtemp(prefix="partnerd-cl-")
        self.sock = os.path.join(self.dir, "p.sock")
        self.log = os.path.join(self.dir, "p.log")
        e = dict(os.environ)
        for k in ("PARTNERD_REDIS_URL", "PARTNERD_REDIS_CLUSTER", "PARTNERD_CONFIG"):
            e.pop(k, None)
        e.update(env or {})
        with open(self.log, "ab") as f:
            self.p = subprocess.Popen([harness.partnerd_bin(), "--socket", self.sock,
                                       "--workers", "2"] + list(args),
                                      stdin=subprocess.DEVNULL, stdout=f, stderr=f, env=e,
                                      start_new_session=True,
                                      preexec_fn=harness._die_with_parent)

    def wait_exit(self, timeout=10):
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_socket(self, timeout=10):
        """Until the socket accepts (it exists from its bind, before its listen: a connect
        in between is refused)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.p.poll() is None, "partnerd exited %s:\n%s" % (
                self.p.returncode, harness.tail(self.log))
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock)
                    return self
                except OSError:
                    pass
                finally:
                    s.close()
            assert time.monotonic() < deadline, "no socket in %d s:\n%s" % (
                timeout, harness.tail(self.log))
            time.sleep(0.02)

    def health(self):
        t0 = time.monotonic()
        status, _, body = support_indoubt.request(self.sock, "GET", HEALTH, timeout=15)
        return status, body, time.monotonic() - t0

    def logtext(self):
        return harness.tail(self.log, 100)

    def stop(self):
        rc = harness._terminate(self.p, 10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def test_partnerd_on_a_cluster_answers_health_and_503_while_every_master_is_stopped():
    c = _cluster()
    masters = [m["port"] for m in c.masters()]
    with Partnerd("--redis-cluster", c.seeds, "--redis-timeout-ms", "300") as pd:
        pd.wait_socket()
        status, body, _ = pd.health()
        assert (status, body) == (200, {"status": "ok", "redis": "ok"}), (status, body)
        assert "redis cluster 127.0.0.1:" in pd.logtext()
        stopped = []
        try:
            for port in masters:
                c.procs[port].send_signal(signal.SIGSTOP)
                stopped.append(port)
            status, body, took = pd.health()
            assert status == 503 and body.get("redis") == "unreachable", (status, body)
            assert took < 2.5, "health took %.2f s with every master stopped" % took
        finally:
            for port in stopped:
                c.procs[port].send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while True:
            status, body, _ = pd.health()
            if status == 200:
                break
            assert time.monotonic() < deadline, "still %d 10 s after SIGCONT" % status
            time.sleep(0.1)
        assert pd.stop() == 0


def test_partnerd_on_a_cluster_by_a_redis_cluster_url_answers_health():
    c = _cluster()
    url = "redis-cluster://" + c.seeds
    with Partnerd("--redis", url) as pd:
        pd.wait_socket()
        assert pd.health()[:2] == (200, {"status": "ok", "redis": "ok"})
    with Partnerd(env={"PARTNERD_REDIS_CLUSTER": c.seeds.split(",")[0]}) as pd:
        pd.wait_socket()
        assert pd.health()[:2] == (200, {"status": "ok", "redis": "ok"})


def test_partnerd_refuses_to_start_on_a_cluster_holding_layout_1_data():
    c = _cluster()
    port = c.master_of_slot(clusterlib.key_slot(keys.ORGS))["port"]
    c.call(port, "SADD", keys.ORGS, "sr-layout-1")
    try:
        with Partnerd("--redis-cluster", c.seeds) as pd:
            rc = pd.wait_exit()
            log = pd.logtext()
            assert rc == 1, "partnerd on layout-1 data: exit %r, expected 1\n%s" % (rc, log)
            assert "key layout 1" in log and "partnerctl migrate" in log, log
        assert [harness._s(v) for v in c.call(port, "SMEMBERS", keys.ORGS)] == ["sr-layout-1"]
    finally:
        c.call(port, "DEL", keys.ORGS)


def test_partnerd_and_partnerctl_refuse_bad_seed_lists_and_redis_with_redis_cluster():
    bad = [
        ("h1", '"h1" has no port'),
        ("127.0.0.1:7000,,127.0.0.1:7001", "an empty seed"),
        ("redis-cluster://127.0.0.1:7000/3", "no database but 0"),
        ("redis://127.0.0.1:7000", "the only URL scheme for a cluster is redis-cluster://"),
        ("127.0.0.1:99999", "bad port"),
    ]
    for seeds, msg in bad:
        with Partnerd("--redis-cluster", seeds) as pd:
            rc = pd.wait_exit()
            log = pd.logtext()
            assert rc == 2 and "--redis-cluster" in log and msg in log, (seeds, rc, log)
        r = subprocess.run([harness.partnerctl_bin(), "--redis-cluster", seeds, "check"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        assert r.returncode == 2 and msg in r.stderr, (seeds, r.returncode, r.stderr)
    with Partnerd("--redis", "redis://127.0.0.1:1", "--redis-cluster", "127.0.0.1:7000") as pd:
        rc = pd.wait_exit()
        log = pd.logtext()
        assert rc == 2 and "--redis and --redis-cluster both given" in log, (rc, log)
    with Partnerd(env={"PARTNERD_REDIS_URL": "redis://127.0.0.1:1",
                       "PARTNERD_REDIS_CLUSTER": "127.0.0.1:7000"}) as pd:
        rc = pd.wait_exit()
        assert rc == 2 and "both given" in pd.logtext(), (rc, pd.logtext())
    r = subprocess.run([harness.partnerctl_bin(), "--redis", "redis://127.0.0.1:1",
                        "--redis-cluster", "127.0.0.1:7000", "check"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "both given" in r.stderr, (r.returncode, r.stderr)
    bad_url = "redis-cluster://127.0.0.1"
    with Partnerd("--redis", bad_url) as pd:
        rc = pd.wait_exit()
        assert rc == 2 and "has no port" in pd.logtext(), (rc, pd.logtext())


def test_store_on_a_cluster_keeps_a_masters_number_across_a_failover():
    """A master killed (kill -9): store_ping fails until its replica is promoted, then
    answers again (within 15 s), and store_command_on with the killed master's number
    reaches the promoted replica (the same slots: the same number)."""
    c = _cluster()
    ms = _masters_in_slot_order(c)
    victim = 1
    m = ms[victim]
    replica = c.replica_of(m["id"])
    with Probe(c.seeds, "--timeout-ms", "300") as p:
        assert p("@%d CLUSTER MYID" % victim) == "OK $" + m["id"]
        c.kill9(m["port"])
        t0 = time.monotonic()
        while p("!ping") != "OK 0":
            assert time.monotonic() - t0 < 15, "no master of those slots after 15 s"
            time.sleep(0.1)
        print("    # master killed (kill -9): store_ping answered again after %.2f s"
              % (time.monotonic() - t0))
        assert p("!masters") == "OK 3"
        assert p("@%d CLUSTER MYID" % victim) == "OK $" + replica["id"]


def test_store_cluster_tests_stop_their_cluster():
    """The last test of the module: the cluster's nodes are stopped by their pids."""
    c = _cluster.stop()
    if c is not None:
        assert not c.alive(), "nodes still running: %s" % c.alive()
