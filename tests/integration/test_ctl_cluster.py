"""partnerctl on a real Redis Cluster of 3 masters + 3 replicas (cluster.py), given with
`--redis-cluster SEEDS`: load puts every key on the master of its slot and spreads an org's
customers over the masters; show finds a customer; check is clean after load and import and
reports violations planted on every master (each SCANned); import-customers of a few
thousand customers (re-importing writes nothing; an identifier change moves the index entry
between buckets on different masters; a run killed while one master holds its writes is
finished by --resume); a cluster that cannot be reached is exit 2; migrate finds nothing to
do on layout 2 and refuses layout 1 with the reason.

One cluster for the whole module (started by the first test, loaded with
data/orgs.json, stopped by the last test or at exit); no stack: partnerctl alone. The
tests read the cluster through `Nodes`, a small router (a key's slot -> its master).
"""

import json
import os
import re
import subprocess

import cluster as clusterlib
import harness
import keys
from helpers import killed_while_paused

_CLUSTER = None
_NODES = None
_BROKEN = None

ORG = "imports"             # data/orgs.json: customers 1 and 2 only
SUMMARY = re.compile(r"(\d+) line\(s\) read, (\d+) imported \((\d+) new, (\d+) changed, "
                     r"(\d+) unchanged\), (\d+) rejected")
WRITES = ("hset", "hdel", "hincrby", "del", "set", "eval", "evalsha", "expire", "sadd", "incr",
          "multi", "exec", "xadd", "rename", "renamenx")


class Nodes:
    """The cluster as the tests read it: a command goes to the master of its key's slot
    (argv[1]); one connection per master."""

    def __init__(self, c):
        self.c = c
        self.conns = {}
        self.refresh()

    def refresh(self):
        self.masters = self.c.masters()
        self.ports = sorted(m["port"] for m in self.masters)

    def port_of(self, key):
        slot = keys.key_slot(key)
        for m in self.masters:
            if any(lo <= slot <= hi for lo, hi in m["slots"]):
                return m["port"]
        raise KeyError(key)

    def on(self, port, *args):
        if port not in self.conns:
            self.conns[port] = harness.Redis(port, timeout=30)
        return self.conns[port](*args)

    def __call__(self, *args):
        return self.on(self.port_of(args[1]), *args)

    def keys_by_master(self, pattern=keys.ALL):
        """{port: [key, ...]}: every key of each master (SCAN)."""
        out = {}
        for port in self.ports:
            got, cursor = set(), b"0"
            while True:
                cursor, batch = self.on(port, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
                got.update(harness._s(k) for k in batch)
                if cursor in (b"0", "0"):
                    break
            out[port] = sorted(got)
        return out

    def writes(self):
        """Write commands run so far, summed over the masters (INFO commandstats)."""
        n = 0
        for port in self.ports:
            for line in harness._s(self.on(port, "INFO", "commandstats")).split():
                m = re.match(r"cmdstat_([a-z|]+):calls=(\d+)", line)
                if m and m.group(1) in WRITES:
                    n += int(m.group(2))
        return n

    def close(self):
        for r in self.conns.values():
            r.close()
        self.conns = {}


def _cluster():
    """The module's cluster, loaded with data/orgs.json by partnerctl load (a load that
    failed fails every test of the module, without a new cluster each)."""
    global _CLUSTER, _NODES, _BROKEN
    assert _BROKEN is None, "the module's cluster could not be set up: %s" % _BROKEN
    if _CLUSTER is None:
        try:
            _CLUSTER = clusterlib.Cluster().start()
            print("    # cluster of 3 masters + 3 replicas up in %.2f s" % _CLUSTER.start_secs)
            _NODES = Nodes(_CLUSTER)
            rc, out, err = ctl("load", harness.FIXTURES)
            assert rc == 0 and "loaded 7 org(s)" in out, "partnerctl load: %s" % (out + err)
        except BaseException as e:
            _BROKEN = str(e) or repr(e)
            _stop_cluster()
            raise
    return _CLUSTER, _NODES


def _stop_cluster():
    global _CLUSTER, _NODES
    if _NODES is not None:
        _NODES.close()
        _NODES = None
    if _CLUSTER is not None:
        _CLUSTER.stop()
        _CLUSTER = None


def ctl_argv(*args):
    return [harness.partnerctl_bin(), "--redis-cluster", _CLUSTER.seeds] + [str(a) for a in args]


def ctl(*args, stdin=None, timeout=300):
    p = subprocess.run(ctl_argv(*args), stdin=stdin or subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(*args):
    """(exit status, [VIOLATION lines], whole output)."""
    rc, out, err = ctl("check", *args)
    return rc, [l for l in out.splitlines() if l.startswith("VIOLATION: ")], out + err


def expect_clean(*args):
    rc, viol, text = check(*args)
    assert rc == 0 and not viol, "partnerctl check exited %d, expected 0:\n%s" % (rc, text)
    return text


def fixtures():
    with open(harness.FIXTURES) as f:
        return json.load(f)["orgs"]


def chash(n, org, cid):
    r = n("HGETALL", keys.cust(org, cid))
    return {harness._s(r[i]): harness._s(r[i + 1]) for i in range(0, len(r), 2)}


def holder(n, org, kind, value):
    v = n("HGET", keys.ix(org, kind, value), value)
    return None if v is None else int(v)


def cust(cid, **over):
    """An import line (org imports: national mobiles get 91)."""
    c = {"id": cid, "mobile": "95%08d" % (cid % 10 ** 8), "email": "c%d@cimp.example" % cid,
         "externalId": "CIMP-%d" % cid}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def write(c, name, lines):
    path = os.path.join(c.dir, name)
    with open(path, "w") as f:
        for l in lines:
            f.write(json.dumps(l) + "\n")
    return path


def run_import(path, *args, stdin=None):
    """(exit status, summary counts or None, stdout + stderr)."""
    rc, out, err = ctl("import-customers", "--org", ORG, *(list(args) + [path]), stdin=stdin)
    m = SUMMARY.search(out)
    return rc, (tuple(int(x) for x in m.groups()) if m else None), out + err


def value_on(n, port, make):
    """The first make(i) whose key (make returns (key, value)) is on the master of port."""
    for i in range(100000):
        k, v = make(i)
        if n.port_of(k) == port:
            return k, v
    raise KeyError(port)


def assert_imported(n, lines):
    for c in lines:
        h = chash(n, ORG, c["id"])
        assert h.get("email") == c["email"] and h.get("externalId") == c["externalId"], (c, h)
        for kind in ("email", "externalId"):
            assert holder(n, ORG, kind, c[kind]) == c["id"], (kind, c)


# ------------------------------------------------------------------------------- load, show

def test_ctl_cluster_load_puts_each_key_on_the_master_of_its_slot_and_spreads_an_org():
    c, n = _cluster()
    assert len(n.masters) == 3, n.masters
    by = n.keys_by_master()
    slots = {m["port"]: m["slots"] for m in n.masters}
    for port, ks in by.items():
        assert ks, "master %d holds no key" % port
        for k in ks:
            s = keys.key_slot(k)
            assert any(lo <= s <= hi for lo, hi in slots[port]), (port, k, s)
    where = {k: port for port, ks in by.items() for k in ks}
    assert harness._s(n("GET", keys.LAYOUT)) == keys.LAYOUT_VERSION
    for org in fixtures():
        members = n("SISMEMBER", keys.ORGS, org["id"])
        assert members == 1, org["id"]
        for cu in org["customers"]:
            k = keys.cust(org["id"], cu["id"])
            assert where.get(k) == n.port_of(k), (k, where.get(k))
            h = chash(n, org["id"], cu["id"])
            assert h["id"] == str(cu["id"]) and h["v"] == "0", h
            if cu.get("email"):
                assert holder(n, org["id"], "email", cu["email"]) == cu["id"], cu
    # an org's customers (and its index buckets) spread over the three masters
    acme = [cu["id"] for cu in fixtures()[0]["customers"]]
    per = {}
    for cid in acme:
        p = where[keys.cust("acme", cid)]
        per[p] = per.get(p, 0) + 1
    assert len(per) == 3 and min(per.values()) >= len(acme) // 5, per
    buckets = [k for k in where if k.endswith(":ix:acme:email")]
    assert len({where[k] for k in buckets}) == 3, buckets[:5]
    # loading the same file again changes nothing
    before = n.writes()
    rc, out, err = ctl("load", harness.FIXTURES)
    assert rc == 0 and "(0 new, 0 changed)" in out, out + err
    # what load always writes: pp:layout (SET NX), and each org's SADD and settings
    assert n.writes() - before == 1 + 2 * len(fixtures()), n.writes() - before


def test_ctl_cluster_show_finds_a_customer_through_its_index_bucket():
    c, n = _cluster()
    cu = fixtures()[0]["customers"][5]
    for opt, val in (("--id", cu["id"]), ("--email", cu["email"]),
                     ("--external-id", cu["externalId"])):
        rc, out, err = ctl("show", "--org", "acme", opt, val)
        assert rc == 0, out + err
        got = json.loads(out)
        assert got["id"] == cu["id"] and got["email"] == cu["email"], got
        assert got["externalId"] == cu["externalId"], got
    rc, out, err = ctl("show", "--org", "acme", "--email", "nobody@acme.example")
    assert rc != 0 and "nobody@acme.example" in err, (rc, out, err)


# ------------------------------------------------------------------------------- check

def test_ctl_cluster_check_is_clean_after_load():
    _cluster()
    total = sum(len(o["customers"]) for o in fixtures())
    text = expect_clean()
    assert "checked %d customers" % total in text, text


def test_ctl_cluster_check_reports_violations_planted_on_every_master():
    c, n = _cluster()
    planted, want = [], []
    for i, port in enumerate(n.ports):
        # a key outside the documented key space
        stray, _ = value_on(n, port, lambda j: (keys.PREFIX + "stray%d:%d" % (i, j), None))
        n("SET", stray, "x")
        planted.append(stray)
        want.append("stray key \"%s\" outside the documented key space" % stray)
        # an index entry naming a customer that does not exist
        bucket, email = value_on(n, port, lambda j: (keys.ix("acme", "email", "ghost%d-%d@x.example" % (i, j)),
                                                     "ghost%d-%d@x.example" % (i, j)))
        n("HSET", bucket, email, 7770000 + i)
        planted.append((bucket, email))
        want.append("org acme: %s maps \"%s\" to customer %d, which does not exist"
                    % (bucket, email, 7770000 + i))
        # a customer's hash in another partition than its id's
        cid = 7780000 + i
        home = keys.part_of_cid(cid)
        moved, wrong = value_on(n, port, lambda j: (keys.build("CUST", keys.tag((home + 1 + j) % keys.LAYOUT_PARTS),
                                                               "acme", cid), (home + 1 + j) % keys.LAYOUT_PARTS))
        n("HSET", moved, "id", cid, "v", 0)
        planted.append(moved)
        want.append("org acme: customer %d: key %s is in partition %d, not in its customer id's "
                    "partition %d: expected %s" % (cid, moved, wrong, home, keys.cust("acme", cid)))
    try:
        for port, k in zip(n.ports, planted[::3]):
            assert n.port_of(k) == port
        rc, viol, text = check()
        assert rc == 1, text
        for w in want:
            assert any(w in l for l in viol), "no VIOLATION with %r in:\n%s" % (w, text)
        assert len(viol) == len(want), text
        # another org's check: only the stray keys (they belong to no org)
        rc, viol, text = check("--org", "globex")
        assert rc == 1 and len(viol) == 3 and all("stray key" in l for l in viol), text
    finally:
        for p in planted:
            if isinstance(p, tuple):
                n("HDEL", p[0], p[1])
            else:
                n("DEL", p)
    expect_clean()


# ------------------------------------------------------------------------------- import

def test_ctl_cluster_import_spreads_customers_and_reimport_writes_nothing():
    c, n = _cluster()
    lines = [cust(100000 + i) for i in range(1, 3001)]
    path = write(c, "ci1.jsonl", lines)
    rc, counts, text = run_import(path, "--batch", "500")
    assert rc == 0 and counts == (3000, 3000, 3000, 0, 0, 0), text
    assert_imported(n, lines)
    per = {}
    for l in lines:
        p = n.port_of(keys.cust(ORG, l["id"]))
        per[p] = per.get(p, 0) + 1
    assert len(per) == 3 and min(per.values()) > 600, per
    assert chash(n, ORG, 100001)["v"] == "0" and chash(n, ORG, 100001)["mobile"] == "919500100001"
    # the checkpoint is gone once the file is done
    assert not [k for ks in n.keys_by_master(keys.import_(ORG, "*")).values() for k in ks]
    expect_clean("--org", ORG)
    # the same customers again (stdin: no checkpoint either): every one unchanged, no write
    before = n.writes()
    with open(path) as f:
        rc, counts, text = run_import("-", "--batch", "700", stdin=f)
    assert rc == 0 and counts == (3000, 3000, 0, 0, 3000, 0), text
    assert n.writes() == before, "a re-import wrote %d command(s)" % (n.writes() - before)


def test_ctl_cluster_import_moves_an_index_entry_to_a_bucket_on_another_master():
    c, n = _cluster()
    cid = 100007
    old = cust(cid)
    assert chash(n, ORG, cid).get("email") == old["email"]
    src = n.port_of(keys.ix(ORG, "email", old["email"]))
    dst = [p for p in n.ports if p != src][0]
    bucket, email = value_on(n, dst, lambda j: (keys.ix(ORG, "email", "moved%d@cimp.example" % j),
                                                "moved%d@cimp.example" % j))
    path = write(c, "ci2.jsonl", [dict(old, email=email)])
    rc, counts, text = run_import(path)
    assert rc == 0 and counts == (1, 1, 0, 1, 0, 0), text
    assert holder(n, ORG, "email", old["email"]) is None
    assert holder(n, ORG, "email", email) == cid
    h = chash(n, ORG, cid)
    assert h["email"] == email and h["v"] == "1", h
    expect_clean("--org", ORG)


def test_ctl_cluster_import_killed_while_a_master_holds_its_writes_is_finished_by_resume():
    c, n = _cluster()
    lines = [cust(200000 + i) for i in range(1, 1001)]
    assert run_import(write(c, "ci3.jsonl", lines))[0] == 0
    # every customer changes its email: old entries leave their buckets, new ones arrive
    moved = [dict(l, email="m-%d@cimp.example" % l["id"]) for l in lines]
    path = write(c, "ci4.jsonl", moved)
    ckpt = lambda: [k for ks in n.keys_by_master(keys.import_(ORG, "*")).values() for k in ks]
    pause = n.ports[1]
    # Once it checkpointed, one master holds every write: the import waits on it part way
    # through a batch (the other masters have what it sent them), and is killed there.
    killed_while_paused(ctl_argv("import-customers", "--org", ORG, "--batch", "10", path), ckpt,
                        "its first checkpoint", lambda: n.on(pause, "CLIENT", "PAUSE", 10000, "WRITE"),
                        lambda: n.on(pause, "CLIENT", "UNPAUSE"), poll_s=0.01, settle_s=0.3)
    key = ckpt()[0]
    at = int(n("HGET", key, "line"))
    assert 0 < at < 1000, at
    rc, counts, text = run_import(path, "--resume", "--batch", "10")
    assert rc == 0, text
    assert "resumed after line %d" % at in text, text
    read, imported, new, changed, unchanged, rejected = counts
    assert (read, imported, new, rejected) == (1000, 1000, 0, 0), counts
    # the lines of the batch the kill stopped in (at most one) may be found applied
    assert changed + unchanged == 1000 and changed >= 990, counts
    assert_imported(n, moved)
    stale = [l["id"] for l in lines if holder(n, ORG, "email", l["email"]) is not None]
    assert not stale, "old email index entries left for customers %r" % stale[:10]
    assert all(chash(n, ORG, l["id"])["v"] == "1" for l in lines)
    assert not ckpt()
    expect_clean("--org", ORG)


# ------------------------------------------------------------------------------- failures

def test_ctl_cluster_that_cannot_be_reached_exits_2_naming_the_seed():
    port = harness.free_port()
    for verb in (["check"], ["show", "--org", "acme", "--id", "1001"], ["load", harness.FIXTURES]):
        p = subprocess.run([harness.partnerctl_bin(), "--redis-cluster", "127.0.0.1:%d" % port] + verb,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode == 2, (verb, p.returncode, err)
        assert "127.0.0.1:%d" % port in err and "refused" in err, (verb, err)


# ------------------------------------------------------------------------------- migrate

def test_ctl_cluster_migrate_is_refused_with_the_reason():
    try:
        c, n = _cluster()
        # the current layout already: nothing to do, as on one Redis
        rc, out, err = ctl("migrate")
        assert rc == 0 and "nothing to do" in out, (rc, out, err)
        # layout 1 (pp:orgs without pp:layout) on a cluster: refused, nothing changed
        n("DEL", keys.LAYOUT)
        try:
            before = n.writes()
            rc, out, err = ctl("migrate")
            assert rc == 1, (rc, out, err)
            assert "key layout 1, on a Redis Cluster: migrate works on one Redis only" in err, err
            assert "Migrate the data on one Redis first" in err and "nothing was changed" in err, err
            assert n.writes() == before
        finally:
            n("SET", keys.LAYOUT, keys.LAYOUT_VERSION)
        expect_clean()
        # layout 2 (the same keys, the locks as keys of their own): refused while a layout-2
        # lock is left on any master, naming it; then layout 3 recorded, nothing else written
        n("SET", keys.LAYOUT, "2")
        lock = keys.lock("acme", 1001)
        n("SET", lock, "ab" * 16, "PX", 60000)
        try:
            before = n.writes()
            rc, out, err = ctl("migrate")
            assert rc == 1 and "key layout 2" in err and lock in err and "nothing was changed" in err, (rc, out, err)
            assert n.writes() == before
        finally:
            n("DEL", lock)
        rc, out, err = ctl("migrate")
        assert rc == 0 and "key layout %s recorded (from key layout 2" % keys.LAYOUT_VERSION in out, (rc, out, err)
        assert harness._s(n("GET", keys.LAYOUT)) == keys.LAYOUT_VERSION
        expect_clean()
    finally:
        _stop_cluster()
