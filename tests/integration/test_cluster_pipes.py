"""--redis-pipes N on a Redis Cluster: each partnerd shares N connections to each node among
its workers (src/cluster.c's cluster_share, over src/store_pipe.c), each router sending a
round to every node's shared connection before it waits on any. One stack on a real 3+3
cluster (harness.Stack(cluster=True)) per test.

What must hold: concurrent batches over customers of every master all apply, each item to
its own customer (every router's replies reach it and no other, over connections whose
replies interleave several routers'); each master carries at most N connections of the
partnerd, named partnerd-pipe; shared connections closed by the server (a restart, a kill,
an idle timeout) are replaced without failing the requests that come after (SPEC §6).
"""

import threading

import cluster as clusterlib
import harness
import keys as layout
from helpers import by_mobile, entry, item, post_link
from support_guarantee import log_lines
from support_model import check_passes, programs_of, upd, update1

PIPES = 2
PIPE_NAME = "partnerd-pipe"


def _pipe_clients(s, port):
    """CLIENT LIST's lines of the shared connections on the node at port."""
    out = []
    for line in harness._s(s.cluster.call(port, "CLIENT", "LIST")).splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("name") == PIPE_NAME:
            out.append(f)
    return out


def _spread(s, n_per_master):
    """Fixture customers of acme, n_per_master on each master (by their hash's slot)."""
    by = {}
    while len(by) < 3 or min(len(v) for v in by.values()) < n_per_master:
        c = s.customer()
        m = s.cluster.master_of_slot(clusterlib.key_slot(layout.cust("acme", c["id"])))["port"]
        by.setdefault(m, []).append(c)
    return [v[:n_per_master] for v in by.values()]


def _batches(s, groups, tier):
    """Every group (one customer of each master) linked, or updated to tier, by concurrent
    threads; the codes of every item, by customer id."""
    codes, errors = {}, []

    def run(group):
        try:
            if tier is None:
                body = post_link(s, [entry(by_mobile(c), item("AcmeAir", "P-%s" % c["id"], "Silver"))
                                     for c in group])
                for c, e in zip(group, body["linkCustomers"]):
                    codes[c["id"]] = [i["partnerLinkStatus"]["code"] for i in e["linkToPartnerPrograms"]]
            else:
                for c in group:
                    _, st = update1(s, by_mobile(c), upd("AcmeAir", "UPGRADE", tier))
                    codes[c["id"]] = [x["code"] for x in st]
        except Exception as e:      # noqa: BLE001 (reported below, with the others)
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return codes


def test_cluster_pipes_carry_concurrent_batches_and_are_replaced_when_closed():
    # workers above nginx's kept FastCGI connections (up to 16, each pinning a worker) plus
    # the 8 concurrent clients
    s = harness.Stack(cluster=True, workers=32, partnerd_args=["--redis-pipes", str(PIPES)]).start()
    try:
        line = [l for l in log_lines(s, "partnerd-0") if " workers on " in l]
        assert line and line[-1].endswith(", %d shared Redis connections per node" % PIPES), line
        per_master = _spread(s, 8)
        groups = [list(g) for g in zip(*per_master)]        # 8 batches, each over every master
        ids = [c["id"] for g in groups for c in g]
        # one request first: its password check is then cached for the concurrent ones
        # (several at once would be refused 503: too many password checks at once)
        assert "AcmeAir" not in programs_of(s, ids[0])

        codes = _batches(s, groups, None)
        assert sorted(codes) == sorted(ids)
        for cid in ids:
            assert codes[cid] == [200], (cid, codes[cid])
            m = s.membership(cid, "AcmeAir")
            assert (m["tier"], m["mid"]) == ("Silver", "P-%s" % cid), (cid, m)

        masters = [m["port"] for m in s.cluster.masters()]
        # at most PIPES each (which of them a worker uses is its number mod PIPES, and
        # which worker nginx's connection reaches is not ours to choose)
        for port in masters:
            conns = _pipe_clients(s, port)
            assert 1 <= len(conns) <= PIPES, (port, conns)

        # the masters close every shared connection (as a restart or an idle timeout
        # would): they are made again, and the requests after it are served as before
        killed = {}
        for port in masters:
            killed[port] = {c["id"] for c in _pipe_clients(s, port)}
            for cid in killed[port]:
                s.cluster.call(port, "CLIENT", "KILL", "ID", cid)
        codes = _batches(s, groups, "Gold")
        for cid in ids:
            assert codes[cid] == [200], (cid, codes[cid])
            assert programs_of(s, cid)["AcmeAir"]["partnerTierName"] == "Gold", cid
        for port in masters:
            now = {c["id"] for c in _pipe_clients(s, port)}
            assert 1 <= len(now) <= PIPES and not now & killed[port], (port, killed[port], now)
        check_passes(s)
    finally:
        s.stop()
