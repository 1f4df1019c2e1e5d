"""The Redis Cluster router (src/cluster.c) against a real 3+3 cluster (cluster.py), through
tests/cluster/router_probe: keys reach their masters, a batch is pipelined over all masters
in one round, MOVED, ASK and TRYAGAIN forced with CLUSTER SETSLOT are followed, NOSCRIPT on
one node, a reply lost after sending is in doubt and not resent, and a killed master's
replica serves again within 15 s.

One cluster for the whole module (started by the first test that needs it, stopped by the
last test or at exit); every test takes keys of its own. These tests drive the router
alone and take no stack; the store layer and partnerd on a cluster are
test_store_cluster.py's.
"""

import time

import cluster as clusterlib
import harness
from helpers import LineProbe, ModuleCluster

_cluster = ModuleCluster()      # started by the first test that needs it, stopped by the last


class Probe(LineProbe):
    """One router_probe process: a warm router kept across the commands of a test."""

    def __init__(self, c, *args):
        super().__init__("ROUTER_PROBE_BIN", "router_probe", list(args) + [c.seeds])

    def _line(self, timeout=30):
        return self.line(timeout)

    def send(self, text):
        self.send_lines([text])

    def __call__(self, line):
        """Runs one command line; returns its answer line ("OK :1", "UNAVAILABLE ...")."""
        self.send(line)
        return self._line()

    def batch(self, lines):
        self.send("\n".join(lines) + "\n")
        out = [self._line() for _ in lines]
        assert self._line() == "."
        return out

    def stats(self):
        self.send("!stats")
        line = self._line()
        assert line.startswith("STATS "), line
        return dict((k, int(v)) for k, v in (w.split("=") for w in line.split()[1:]))


def commandstats(c, port):
    """{command: calls} from INFO commandstats of one node."""
    out = {}
    for line in harness._s(c.call(port, "INFO", "commandstats")).splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            out[name] = int(rest.split(",")[0].split("=")[1])
    return out


def move_slot(c, slot, src, dst, keys=(), finish=True):
    """CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE keys, then (finish) SETSLOT NODE on every
    master, as redis-cli --cluster reshard and Redis's 04-resharding.tcl do it."""
    c.call(dst["port"], "CLUSTER", "SETSLOT", slot, "IMPORTING", src["id"])
    c.call(src["port"], "CLUSTER", "SETSLOT", slot, "MIGRATING", dst["id"])
    migrate(c, src, dst, keys)
    if finish:
        finish_slot(c, slot, dst)


def migrate(c, src, dst, keys):
    if keys:
        c.call(src["port"], "MIGRATE", "127.0.0.1", dst["port"], "", 0, 5000, "KEYS", *keys)


def finish_slot(c, slot, dst):
    masters = c.masters()
    order = [dst] + [m for m in masters if m["id"] != dst["id"]]
    for m in order:
        c.call(m["port"], "CLUSTER", "SETSLOT", slot, "NODE", dst["id"])


def tag_on(c, port, prefix):
    """A hash tag whose slot the master on port serves, and that slot."""
    k = c.key_on(port, prefix)
    return k, clusterlib.key_slot(k)


# ------------------------------------------------------------------------------- tests

def test_cluster_router_sends_each_key_to_the_master_of_its_slot():
    c = _cluster()
    masters = c.masters()
    assert len(masters) == 3, masters
    # the router's slots are Redis's (its CRC16 test vector and hash tags: test_cluster.c)
    for k in ("foo", "bar", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}"):
        assert c.call(masters[0]["port"], "CLUSTER", "KEYSLOT", k) == clusterlib.key_slot(k), k
    with Probe(c) as p:
        for m in masters:
            k = c.key_on(m["port"], "reach")
            assert p("%s SET %s at-%d" % (k, k, m["port"])) == "OK +OK"
            assert p("%s GET %s" % (k, k)) == "OK $at-%d" % m["port"]
            # stored on that master itself: it answers without a redirect
            assert harness._s(c.call(m["port"], "GET", k)) == "at-%d" % m["port"]
        s = p.stats()
    assert s["moved"] == 0 and s["ask"] == 0, s
    assert s["refreshes"] == 1, s


def test_cluster_router_pipelines_a_batch_over_all_masters_in_one_round():
    c = _cluster()
    masters = c.masters()
    per = 10
    keys = {m["port"]: [] for m in masters}
    for m in masters:
        i = 0
        while len(keys[m["port"]]) < per:
            k = c.key_on(m["port"], "batch", i)
            i = int(k[len("batch"):]) + 1
            keys[m["port"]].append(k)
    lines = []
    for k1, k2, k3 in zip(*keys.values()):      # interleaved: the caller's order is kept
        lines += ["%s SET %s v%s" % (k, k, k) for k in (k1, k2, k3)]
    with Probe(c, "--batch") as p:
        # warm: the map loaded and a connection to every master open
        assert p.batch(["%s GET %s" % (ks[0], ks[0]) for ks in keys.values()]) == ["OK nil"] * 3
        for m in masters:
            c.call(m["port"], "CONFIG", "RESETSTAT")
        before = p.stats()
        out = p.batch(lines + ["%s GET %s" % (k, k) for k in sum(keys.values(), [])])
        after = p.stats()
    assert out[:len(lines)] == ["OK +OK"] * len(lines), out
    assert out[len(lines):] == ["OK $v%s" % k for k in sum(keys.values(), [])], out
    # one round: every node written to before any reply was read, nothing redirected
    assert after["rounds"] - before["rounds"] == 1, (before, after)
    assert after["sends"] - before["sends"] == 2 * 3 * per
    for m in masters:
        st = commandstats(c, m["port"])
        assert st.get("set") == per and st.get("get") == per, (m["port"], st)


def test_cluster_router_follows_moved_when_a_slot_moved_to_another_master():
    c = _cluster()
    a, b = c.masters()[:2]
    k = c.key_on(a["port"], "moved")
    slot = clusterlib.key_slot(k)
    with Probe(c) as p:
        assert p("%s SET %s before" % (k, k)) == "OK +OK"
        move_slot(c, slot, a, b, [k])
        assert c.master_of_slot(slot)["id"] == b["id"]
        s0 = p.stats()
        assert p("%s GET %s" % (k, k)) == "OK $before"
        assert p("%s SET %s after" % (k, k)) == "OK +OK"
        s1 = p.stats()
    # the first command was answered MOVED and resent to b; the slot was updated, so the
    # second went to b at once (and the whole map was reloaded before it, unless the last
    # load was less than 100 ms before)
    assert s1["moved"] - s0["moved"] == 1, (s0, s1)
    assert s1["refreshes"] - s0["refreshes"] <= 1, (s0, s1)    # put off if < 100 ms ago
    assert harness._s(c.call(b["port"], "GET", k)) == "after"


def test_cluster_router_follows_ask_and_retries_tryagain_during_a_slot_migration():
    c = _cluster()
    a, b = c.masters()[:2]
    tag, slot = tag_on(c, a["port"], "ask")
    ka, kb, kc = "{%s}a" % tag, "{%s}b" % tag, "{%s}c" % tag
    with Probe(c) as p:
        assert p("%s SET %s va" % (ka, ka)) == "OK +OK"
        assert p("%s SET %s vb" % (kb, kb)) == "OK +OK"
        move_slot(c, slot, a, b, [kb], finish=False)       # kb on b, ka still on a
        s0 = p.stats()
        # a key already moved: a answers ASK, the router sends ASKING + GET to b
        assert p("%s GET %s" % (kb, kb)) == "OK $vb"
        s1 = p.stats()
        assert s1["ask"] - s0["ask"] == 1 and s1["moved"] == s0["moved"], (s0, s1)
        # a key still on a is served there; a new key goes to b (ASK: absent on a)
        assert p("%s GET %s" % (ka, ka)) == "OK $va"
        assert p("%s SET %s vc" % (kc, kc)) == "OK +OK"
        rb = c.redis(b["port"])
        try:
            assert rb("ASKING") == "OK" and rb("EXISTS", kc) == 1      # written on b
        finally:
            rb.close()
        s2 = p.stats()
        assert s2["ask"] - s1["ask"] == 1, (s1, s2)
        # the ASK did not change the map: ka still goes to a without a redirect
        assert p("%s GET %s" % (ka, ka)) == "OK $va"
        assert p.stats()["ask"] == s2["ask"]

        # MGET over both nodes of a migrating slot: TRYAGAIN, retried until the deadline
        p.send("!deadline 400")
        t0 = time.monotonic()
        ans = p("%s MGET %s %s" % (ka, ka, kb))
        took = time.monotonic() - t0
        s3 = p.stats()
        assert ans.startswith("UNAVAILABLE ") and "TRYAGAIN" in ans, ans
        assert 0.35 <= took < 2.0, took
        assert s3["tryagain"] - s2["tryagain"] >= 3, (s2, s3)   # retried, with back-off

        # ... and served when the migration ends within the deadline: MOVED to b once the
        # slot is handed over, or ASK to b when a retry comes after the last key moved but
        # before a hears of the hand-over (a loaded machine widens that window)
        p.send("!deadline 8000")
        p.send("%s MGET %s %s %s" % (ka, ka, kb, kc))
        time.sleep(0.5)
        migrate(c, a, b, [ka])
        finish_slot(c, slot, b)
        ans = p._line()
        s4 = p.stats()
    assert ans == "OK *[$va, $vb, $vc]", ans
    assert s4["tryagain"] > s3["tryagain"], (s3, s4)
    assert (s4["moved"] - s3["moved"]) + (s4["ask"] - s3["ask"]) == 1, (s3, s4)   # one redirect


def test_cluster_router_loads_the_script_again_on_a_node_that_answers_noscript():
    c = _cluster()
    m = c.masters()[2]
    k = c.key_on(m["port"], "script")
    with Probe(c) as p:
        assert p("%s @incrby 1 %s 5" % (k, k)) == "OK :5"
        c.call(m["port"], "SCRIPT", "FLUSH")
        c.call(m["port"], "CONFIG", "RESETSTAT")
        assert p("%s @incrby 1 %s 5" % (k, k)) == "OK :10"
        s = p.stats()
    assert s["noscript"] == 1, s
    st = commandstats(c, m["port"])
    # EVALSHA (NOSCRIPT), SCRIPT LOAD, EVALSHA: the script ran once
    assert st.get("evalsha") == 2 and st.get("script|load") == 1, st
    assert harness._s(c.call(m["port"], "GET", k)) == "10"


def test_cluster_router_reports_a_lost_reply_as_in_doubt_and_never_resends_it():
    c = _cluster()
    m = c.masters()[1]
    k = c.key_on(m["port"], "indoubt")
    with Probe(c, "--timeout-ms", "300") as p:
        assert p("%s GET %s" % (k, k)) == "OK nil"             # connected
        # INCR, then the node stays busy 1.5 s: the reply comes after the read timeout
        t0 = time.monotonic()
        ans = p("%s @slowincr 1 %s 1500" % (k, k))
        took = time.monotonic() - t0
        assert ans.startswith("INDOUBT ") and "may have run" in ans, ans
        assert took < 1.2, took                                 # one read timeout, no retry
        time.sleep(1.5)
        assert harness._s(c.call(m["port"], "GET", k)) == "1"  # it ran once: not resent
        # the router reconnects for the next command
        assert p("%s INCR %s" % (k, k)) == "OK :2"


def test_cluster_router_moved_updates_the_slot_at_once_so_the_next_command_needs_no_redirect():
    c = _cluster()
    a, b = c.masters()[:2]
    k = c.key_on(a["port"], "movednow")
    slot = clusterlib.key_slot(k)
    # map reloads put off for 10 min: only the MOVED itself can teach the router the move
    with Probe(c, "--refresh-ms", "600000") as p:
        assert p("%s SET %s before" % (k, k)) == "OK +OK"
        move_slot(c, slot, a, b, [k])
        s0 = p.stats()
        assert p("%s GET %s" % (k, k)) == "OK $before"         # MOVED, resent to b
        s1 = p.stats()
        assert p("%s SET %s after" % (k, k)) == "OK +OK"       # straight to b
        assert p("%s GET %s" % (k, k)) == "OK $after"
        s2 = p.stats()
    assert s1["moved"] - s0["moved"] == 1, (s0, s1)
    assert s2["moved"] == s1["moved"], (s1, s2)                 # no second redirect
    assert s2["refreshes"] == s0["refreshes"], (s0, s2)         # and no map reload
    assert s2["refresh_skips"] > s0["refresh_skips"], (s0, s2)  # one was due, put off
    assert harness._s(c.call(b["port"], "GET", k)) == "after"


def test_cluster_router_reloads_the_map_at_most_once_per_100ms_under_a_burst_of_moved():
    c = _cluster()
    a, b = c.masters()[:2]
    keys, i = [], 0
    while len(keys) < 30:       # 30 keys of 30 slots of a
        k = c.key_on(a["port"], "burst", i)
        i = int(k[len("burst"):]) + 1
        if clusterlib.key_slot(k) not in [clusterlib.key_slot(x) for x in keys]:
            keys.append(k)
    with Probe(c) as p:
        for k in keys:
            assert p("%s SET %s v" % (k, k)) == "OK +OK"
        s0 = p.stats()
        t0 = time.monotonic()
        for k in keys:          # each command of the burst meets a MOVED of its own
            move_slot(c, clusterlib.key_slot(k), a, b, [k])
            assert p("%s GET %s" % (k, k)) == "OK $v"
        ms = (time.monotonic() - t0) * 1000
        s1 = p.stats()
    moved, loads = s1["moved"] - s0["moved"], s1["refreshes"] - s0["refreshes"]
    print("    # %d MOVED in %.0f ms: %d map reloads, %d put off" % (
        moved, ms, loads, s1["refresh_skips"] - s0["refresh_skips"]))
    assert moved >= len(keys) - loads, (s0, s1)     # a reload may have seen a move first
    # without the limit: one reload per call after a MOVED (29 here)
    assert loads <= 1 + ms / 100, (loads, ms)


def test_cluster_router_loads_the_map_by_cluster_shards_and_by_slots_where_shards_is_refused():
    c = _cluster()
    masters = c.masters()
    for n in c.nodes():
        c.call(n["port"], "CONFIG", "RESETSTAT")
    with Probe(c) as p:
        for m in masters:
            k = c.key_on(m["port"], "shards")
            assert p("%s SET %s 1" % (k, k)) == "OK +OK"
        assert p.stats()["moved"] == 0
    stats = [commandstats(c, n["port"]) for n in c.nodes()]
    assert sum(st.get("cluster|shards", 0) for st in stats) == 1, stats
    assert sum(st.get("cluster|slots", 0) for st in stats) == 0, stats
    # an ACL that denies CLUSTER SHARDS (as a Redis before 7 refuses it): CLUSTER SLOTS
    ports = [n["port"] for n in c.nodes()]
    for port in ports:
        c.call(port, "ACL", "SETUSER", "default", "-cluster|shards")
        c.call(port, "CONFIG", "RESETSTAT")
    try:
        with Probe(c) as p:
            for m in masters:
                k = c.key_on(m["port"], "shards")
                assert p("%s GET %s" % (k, k)) == "OK $1"
            s = p.stats()
        assert s["moved"] == 0 and s["refreshes"] == 1, s
        stats = [commandstats(c, port) for port in ports]
        assert sum(st.get("cluster|slots", 0) for st in stats) == 1, stats
    finally:
        for port in ports:
            c.call(port, "ACL", "SETUSER", "default", "+cluster|shards")


def test_cluster_router_retries_a_write_refused_readonly_by_a_master_demoted_by_a_failover():
    c = _cluster()
    m = c.masters()[1]
    r = c.replica_of(m["id"])
    k = c.key_on(m["port"], "readonly")

    def role(port):
        return harness._s(c.call(port, "ROLE")[0])

    def everyone_sees(new, old):
        for port in c.alive():
            ids = dict((n["port"], n) for n in c.nodes(port))
            if "master" not in ids[new]["flags"] or ids[old]["master_id"] != ids[new]["id"]:
                return False
        return True

    def failover_to(new, old):
        c.call(new, "CLUSTER", "FAILOVER")
        deadline = time.monotonic() + 15
        while not (role(new) == "master" and role(old) == "slave" and
                   "master_link_status:up" in harness._s(c.call(old, "INFO", "replication")) and
                   everyone_sees(new, old)):
            assert time.monotonic() < deadline, "manual failover to %d not done in 15 s: %s" % (
                new, harness._s(c.call(new, "CLUSTER", "NODES")))
            time.sleep(0.05)

    with Probe(c) as p:
        assert p("%s SET %s v1" % (k, k)) == "OK +OK"
        # m becomes a replica of r (the roles stay swapped: a manual failover back right
        # after often times out, and the tests after this one look the masters up anew)
        failover_to(r["port"], m["port"])
        s0 = p.stats()
        # a write that no key routes (an undeclared key in a script) reaches m, which runs
        # it and refuses the write: READONLY; the map is reloaded and the write resent to r
        p.send("!deadline 5000")
        assert p("%s @setundeclared 0 %s v2" % (k, k)) == "OK +OK"
        s1 = p.stats()
        assert harness._s(c.call(r["port"], "GET", k)) == "v2"
        assert s1["readonly"] - s0["readonly"] >= 1, (s0, s1)
        assert s1["refreshes"] > s0["refreshes"], (s0, s1)
        assert p("%s GET %s" % (k, k)) == "OK $v2"


def test_cluster_router_serves_again_within_15s_after_a_master_is_killed():
    c = _cluster()
    try:
        m = c.masters()[0]
        replica = c.replica_of(m["id"])
        k = c.key_on(m["port"], "failover")
        with Probe(c) as p:
            assert p("%s SET %s before" % (k, k)) == "OK +OK"
            c.kill9(m["port"])
            t0 = time.monotonic()
            p.send("!deadline 15000")
            ans = p("%s SET %s after" % (k, k))
            took = time.monotonic() - t0
            s = p.stats()
            print("    # master killed (kill -9): served again after %.2f s (%s)" % (took, s))
            assert ans == "OK +OK", ans
            assert took < 15, took
            # its replica was promoted and holds the write
            now = [n for n in c.nodes(replica["port"]) if n["id"] == replica["id"]][0]
            assert "master" in now["flags"], now
            assert harness._s(c.call(replica["port"], "GET", k)) == "after"
            assert p("%s GET %s" % (k, k)) == "OK $after"
    finally:
        _cluster.stop()
