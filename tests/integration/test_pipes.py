"""--redis-pipes N: the workers' Redis calls share N connections per process (src/store_pipe.c),
concurrent callers' commands written and read together. On one Redis here; on a cluster (N to
each node): test_cluster_pipes.py.

What must hold: every caller gets its own replies (never another's, also after a caller gave
up at its deadline), a lost reply is resolved as on a worker's own connection (SPEC §4), a
Redis restart or a connection that stops answering is replaced without failing the requests
that come after (SPEC §6). Org `stress` of data/orgs.json; partnerd talked to over FastCGI
directly where a test needs its own partnerd.
"""

import os
import shutil
import subprocess
import tempfile
import threading
import time

import harness
from helpers import probe_bin
from support_guarantee import (AUTH, HEALTH, LINK, ORG, UPDATE, HttpClient, add_partnerd, body_of,
                               check_ctl, history, items_of, link_item, log_lines, memberships,
                               update_item)
from support_indoubt import commit_call, metric, ping_call, request, stack_with_proxy

PIPE_NAME = "partnerd-pipe"
READ = "/v2/partnerProgram/customerPartnerPrograms"


def _fcgi(sock, method, path, body=None, timeout=15.0):
    return request(sock, method, path, body, headers={"Authorization": harness.basic(*AUTH)},
                   timeout=timeout)


def _codes(sock, path, entries):
    status, _, body = _fcgi(sock, "POST", path, body_of(path, entries))
    assert status == 200, "HTTP %s: %r" % (status, body)
    top, items, st = {LINK: ("linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus"),
                      UPDATE: ("customersPartnerUpdates", "partnerProgramUpdates", "updateStatus")}[path]
    return [i[st]["code"] for e in body[top] for i in e[items]]


def _clients(st, field, value):
    """CLIENT LIST's lines whose `field` is `value`, as dicts."""
    out = []
    for line in st.redis("CLIENT", "LIST").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get(field) == value:
            out.append(f)
    return out


def _pipe_clients(st):
    """CLIENT LIST's lines of the shared connections, as dicts."""
    return _clients(st, "name", PIPE_NAME)


def test_pipes_carry_the_workers_calls_and_concurrent_writes_all_apply():
    # workers above the clients: nginx keeps up to 16 FastCGI connections open, each pinning a worker
    st = harness.Stack(partnerds=1, workers=40, partnerd_args=["--redis-pipes", "2"], cluster=False)
    st.start()
    try:
        n, rounds = 20, 6
        tiers = ["Bronze", "Silver", "Gold"]
        errors = []

        def customer(k):
            cid = 7040 + k
            c = HttpClient(st.http_port)
            try:
                r = c.post(LINK, body_of(LINK, [(cid, [link_item("Tiered", "PIPE-%d" % k, "Bronze"),
                                                       link_item("Plain", "PIPEP-%d" % k)])]))
                if r.status != 200 or [i[2] for i in items_of(r)] != [200, 200]:
                    errors.append((cid, "link", r.status, items_of(r) if r.status == 200 else r.resp))
                    return
                for j in range(rounds):
                    tier = tiers[(j + 1) % 3]
                    r = c.post(UPDATE, body_of(UPDATE, [(cid, [update_item(
                        "Tiered", "UPGRADE" if tier != "Bronze" else "DOWNGRADE", tier)])]))
                    if r.status != 200 or [i[2] for i in items_of(r)] != [200]:
                        errors.append((cid, "update %d" % j, r.status, items_of(r) if r.status == 200 else r.resp))
                        return
            except Exception as e:         # noqa: BLE001 (reported below, with the customer)
                errors.append((cid, "exception", repr(e)))

        # one request first: the credential is verified once (argon2id), then cached
        r = HttpClient(st.http_port).get(READ + "?identifierName=id&identifierValue=7040")
        assert r.status == 200, r.resp
        ths = [threading.Thread(target=customer, args=(k,)) for k in range(n)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(120)
        assert not errors, errors[:5]
        for k in range(n):
            cid = 7040 + k
            m = memberships(st, cid)
            # each customer's own answers: its own ids and the tier of its last update
            assert m["Tiered"]["mid"] == "PIPE-%d" % k and m["Plain"]["mid"] == "PIPEP-%d" % k, m
            assert m["Tiered"]["tier"] == tiers[rounds % 3], (cid, m)
            assert len(history(st, cid)) == 2 + rounds, (cid, history(st, cid))
        pipes = _pipe_clients(st)
        assert len(pipes) == 2, "want 2 shared connections, CLIENT LIST has %r" % pipes
        # the requests' scripts ran on them (the last command of each: a script call)
        assert all(p["cmd"] in ("evalsha", "eval") for p in pipes), pipes
        rc, report = check_ctl(st)
        assert rc == 0, report
    finally:
        st.stop()


def _load(sock, threads=8, each=6):
    """Concurrent reads over FastCGI straight to one partnerd's socket; all must be 200."""
    # one request first: the credential is verified once (argon2id, a few at a time), then cached
    assert _fcgi(sock, "GET", READ + "?identifierName=id&identifierValue=7040")[0] == 200
    statuses = []

    def one():
        for _ in range(each):
            statuses.append(_fcgi(sock, "GET", READ + "?identifierName=id&identifierValue=7040")[0])

    ths = [threading.Thread(target=one) for _ in range(threads)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
    assert statuses == [200] * (threads * each), statuses


def _shared_line(st, name):
    """What partnerd's start line says of its shared connections ("4 shared Redis connections");
    it is written just after the socket accepts."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in log_lines(st, name):
            if " workers on " in line:
                return line.rsplit(", ", 1)[-1]
        time.sleep(0.05)
    raise AssertionError("no start line in %s.log" % name)


def _wait_pipe_clients(st, want, timeout=10.0):
    """CLIENT LIST's shared connections once there are `want` of them (or the last count seen)."""
    deadline = time.monotonic() + timeout
    while True:
        n = len(_pipe_clients(st))
        if n == want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def test_pipes_default_is_4_per_process_at_most_one_per_worker_and_0_turns_them_off():
    # the stack's own partnerd makes none, so CLIENT LIST's shared connections are the ones below
    st = harness.Stack(partnerds=1, cluster=False, partnerd_args=["--redis-pipes", "0"])
    st.start()
    try:
        assert _pipe_clients(st) == []
        st.partnerd_args = []   # the partnerds below: no flag of the stack's or the environment's
        sock = add_partnerd(st, "partnerd-default", workers=8)
        assert _shared_line(st, "partnerd-default") == "4 shared Redis connections"
        _load(sock)
        # each worker's start-up check goes over its shared connection: all four are open
        assert _wait_pipe_clients(st, 4) == 4, _pipe_clients(st)
        sock = add_partnerd(st, "partnerd-own", ["--redis-pipes", "0"], workers=8)
        assert _shared_line(st, "partnerd-own") == "0 shared Redis connections"
        _load(sock)
        assert len(_pipe_clients(st)) == 4, "--redis-pipes 0 made shared connections"
        sock = add_partnerd(st, "partnerd-capped", ["--redis-pipes", "8"], workers=2)
        assert _shared_line(st, "partnerd-capped") == "2 shared Redis connections"
        _load(sock, threads=4)
        assert _wait_pipe_clients(st, 6) == 6, _pipe_clients(st)
    finally:
        st.stop()


def test_pipes_a_connection_killed_while_idle_is_replaced_and_counted():
    # the stack's own partnerd makes none: the one shared connection is this test's partnerd's
    st = harness.Stack(partnerds=1, cluster=False, partnerd_args=["--redis-pipes", "0"])
    st.start()
    try:
        sock = add_partnerd(st, "partnerd-kill", ["--redis-pipes", "1"], workers=4)
        auth = {"Authorization": harness.basic(*AUTH)}
        _load(sock, threads=2, each=2)
        pipes = _pipe_clients(st)
        assert len(pipes) == 1, pipes
        before = metric(sock, "partnerd_redis_reconnects_total", headers=auth)
        st.redis("CLIENT", "KILL", "ID", pipes[0]["id"])
        assert _fcgi(sock, "GET", READ + "?identifierName=id&identifierValue=7040")[0] == 200
        # found closed before the next write and replaced, and counted once (the workers'
        # own connections were not touched)
        assert metric(sock, "partnerd_redis_reconnects_total", headers=auth) - before == 1
        now = _pipe_clients(st)
        assert len(now) == 1 and now[0]["id"] != pipes[0]["id"], (pipes, now)
    finally:
        st.stop()


def test_pipes_a_reply_that_never_comes_fails_its_call_then_the_pipe_is_replaced():
    with stack_with_proxy(["--redis-pipes", "1", "--redis-timeout-ms", "300"], workers=2) as (st, proxy, sock):
        proxy.add_rule(ping_call, "hold")           # the health check's PING: no reply, ever
        status, _, body = _fcgi(sock, "GET", HEALTH)
        assert status == 503, (status, body)
        # the stuck connection is not reused: the next calls get their own replies
        status, _, body = _fcgi(sock, "GET", HEALTH)
        assert status == 200, "health after a timeout on the pipe: %s %r" % (status, body)
        assert _codes(sock, LINK, [(7064, [link_item("Plain", "PT-1")])]) == [200]
        assert _codes(sock, LINK, [(7065, [link_item("Plain", "PT-1")])]) == [2101]
        assert memberships(st, 7064)["Plain"]["mid"] == "PT-1" and "Plain" not in memberships(st, 7065)


def test_pipes_a_commit_whose_reply_is_lost_is_resolved_as_applied():
    with stack_with_proxy(["--redis-pipes", "1", "--redis-timeout-ms", "500"], workers=2) as (st, proxy, sock):
        cid = 7066
        proxy.add_rule(commit_call(ORG, cid), "mute")   # it runs in Redis; its reply is lost
        assert _codes(sock, LINK, [(cid, [link_item("Tiered", "PL-1", "Bronze")])]) == [200]
        assert proxy.fired and proxy.fired[0][0] == "mute", proxy.fired
        assert memberships(st, cid)["Tiered"]["mid"] == "PL-1"
        # and the pipe serves again
        assert _codes(sock, UPDATE, [(cid, [update_item("Tiered", "UPGRADE", "Silver")])]) == [200]
        assert memberships(st, cid)["Tiered"]["tier"] == "Silver"


def test_pipes_redis_restart_does_not_fail_the_requests_after_it():
    st = harness.Stack(partnerds=1, cluster=False)
    st.start()
    try:
        sock = add_partnerd(st, "partnerd-rs", ["--redis-pipes", "1", "--redis-timeout-ms", "1000"],
                            workers=4)
        cid = 7067
        assert _codes(sock, LINK, [(cid, [link_item("Plain", "PR-0")])]) == [200]
        try:
            st.redis("SHUTDOWN", "SAVE")
        except (OSError, harness.RedisError):
            pass
        st.stop_proc("redis-server")
        st.restart_redis()
        time.sleep(0.2)
        statuses = []
        for k in range(12):
            status, _, body = _fcgi(sock, "GET", HEALTH if k % 2 else
                                    READ + "?identifierName=id&identifierValue=%d" % cid)
            statuses.append(status)
        assert set(statuses) == {200}, "answers after the restart, one request at a time: %r" % statuses
        assert _codes(sock, LINK, [(cid, [link_item("Tiered", "PR-1", "Bronze")])]) == [200]
    finally:
        st.stop()


def test_a_password_and_acl_users_reach_the_shared_connections_and_the_workers_own():
    """--redis with a password (the default user's, or an ACL user's) and a db: every
    connection authenticates, the shared ones too; a user not allowed CLIENT still works
    (the shared connections are then unnamed); a wrong password serves 503, not data."""
    st = harness.Stack(partnerds=1, cluster=False, partnerd_args=["--redis-pipes", "0"])
    st.start()
    try:
        st.partnerd_args = []
        st.redis("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all")
        st.redis("ACL", "SETUSER", "nocl", "on", ">nocl-pw", "~*", "&*", "+@all", "-client")
        st.redis("CONFIG", "SET", "requirepass", "s3cret")   # st.redis's connection stays in
        port = st.redis_port

        for who, url in (("default", "redis://:s3cret@127.0.0.1:%d/0" % port),
                         ("app", "redis://app:app-pw@127.0.0.1:%d" % port),
                         ("nocl", "redis://nocl:nocl-pw@127.0.0.1:%d/0" % port)):
            sock = add_partnerd(st, "partnerd-" + who, redis_url=url, workers=4)
            _load(sock, threads=4, each=3)
            cid = {"default": 7051, "app": 7052, "nocl": 7053}[who]
            assert _codes(sock, LINK, [(cid, [link_item("Plain", "AUTH-%d" % cid)])]) == [200], who
            assert memberships(st, cid)["Plain"]["mid"] == "AUTH-%d" % cid
            if who != "default":
                conns = _clients(st, "user", who)
                named = [c for c in conns if c.get("name") == PIPE_NAME]
                # 4 workers' own connections and their 4 shared ones (capped at the workers)
                assert len(conns) == 8, (who, conns)
                assert len(named) == (4 if who == "app" else 0), (who, conns)
        sock = add_partnerd(st, "partnerd-wrong", redis_url="redis://:wrong@127.0.0.1:%d" % port, workers=2)
        status, _, body = _fcgi(sock, "GET", HEALTH)
        assert status == 503, (status, body)
        status, _, body = _fcgi(sock, "GET", READ + "?identifierName=id&identifierValue=7040")
        assert status == 503, (status, body)
    finally:
        st.stop()


def _private_redis(d, name):
    """A redis-server of its own on a free loopback port (stopped by the caller by its pid)."""
    port = harness.free_port()
    log = open(os.path.join(d, "%s.log" % name), "ab")
    try:
        rp = subprocess.Popen([harness._find_tool("REDIS_SERVER", "redis-server"), "--port", str(port),
                               "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                              preexec_fn=harness._die_with_parent)
    finally:
        log.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            r = harness.Redis(port)
            r("PING")
            r.close()
            return rp, port
        except OSError:
            assert time.monotonic() < deadline, "redis-server on %d did not answer" % port
            time.sleep(0.05)


def _probe(*args):
    """tests/cluster/pipe_probe's lines, {name: (rc, ms, err)}."""
    p = subprocess.run([probe_bin("PIPE_PROBE_BIN", "pipe_probe")] + [str(a) for a in args],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    out = {}
    for line in p.stdout.splitlines():
        name, rc, ms, err = (line.split(" ", 3) + [""])[:4]
        out[name] = (int(rc[3:]), int(ms[3:]), err)
    return out


def test_pipes_callers_that_wait_late_neither_stall_the_others_nor_lose_replies_that_came():
    """store_pipe_send then store_pipe_wait later, as the cluster router does (a round sent to
    every node's shared connection, then waited on node by node): tests/cluster/pipe_probe
    on two private redis-servers. A caller queued on a connection but not waiting yet (busy
    on another) must not keep the callers behind it asleep once the reader leaves; a caller
    that comes to wait after its deadline (spent on another node) still gets the replies that
    have come, rather than taking the connection for stuck and failing the others on it."""
    d = tempfile.mkdtemp(prefix="partnerd-pp-")
    servers = []
    try:
        servers = [_private_redis(d, "a"), _private_redis(d, "b")]
        a, b = servers[0][1], servers[1][1]
        got = _probe("late-waiter", a)
        assert set(got) == {"first", "late", "third"}, got
        # first: BLPOP 0.5 s, answered (nil); third: PING behind it, deadline 2 s; late: 2.5 s late
        assert got["first"][0] == 0 and got["late"][0] == 0, got
        assert got["third"][0] == 0, "the caller behind a late one slept to its deadline: %r" % (got,)
        got = _probe("late-node", a, b)
        # x's BLPOP of 1.5 s on A outlives its 1 s deadline (it fails there); its PING on B
        # came at once and is read although x waits on B after its deadline; y, behind it
        # on B, is served
        assert got["x-on-a"][0] == -1 and "no reply in time" in got["x-on-a"][2], got
        assert got["x-on-b"][0] == 0, "a reply that had come was not read after the deadline: %r" % (got,)
        assert got["y-on-b"][0] == 0, "another caller failed with the late one: %r" % (got,)
    finally:
        for rp, _ in servers:
            harness._terminate(rp, 5)
        shutil.rmtree(d, ignore_errors=True)
