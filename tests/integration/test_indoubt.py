"""Commits whose reply is lost (SPEC §4: 2001 only when nothing applied, 200 when it did,
2011 when partnerd cannot find out in time) and Redis connections (SPEC §6: a connection
found dead before anything was sent on it is replaced, so a Redis restart does not turn
into 503s later; a connection that timed out is not reused).

Every test builds its own Stack and one more partnerd (`--workers 1` or a few) whose Redis
connection goes through support_indoubt.FaultProxy, talked to over FastCGI directly (no
nginx: its kept connections would pin the only worker). Org `stress` of data/orgs.json.
"""

import os
import signal
import threading
import time

import harness
import keys
from helpers import LOCK_FIELD, lock_of, locked
from support_guarantee import (AUTH, DELINK, HEALTH, LINK, ORG, UPDATE, HttpClient,
                               add_partnerd, body_of, delink_item, history, items_of, link_item,
                               memberships, update_item)
from support_indoubt import FaultProxy, commit_call, metric, ping_call, request, resolve_call, stack_with_proxy

ROUTE_PARTS = {LINK: ("linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus"),
               UPDATE: ("customersPartnerUpdates", "partnerProgramUpdates", "updateStatus"),
               DELINK: ("deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus")}
MSG_2011 = "could not find out in time whether the change applied"


def _fcgi(sock, method, path, body=None, rid=None, timeout=15.0):
    h = {"Authorization": harness.basic(*AUTH)}
    if rid:
        h["X-Request-Id"] = rid
    return request(sock, method, path, body, headers=h, timeout=timeout)


def _codes(path, body):
    """[(code, message)] of every item of a write response body, in order."""
    top, items, st = ROUTE_PARTS[path]
    return [(i[st]["code"], i[st]["message"]) for e in body[top] for i in e[items]]


def _write(sock, path, entries, rid=None, timeout=15.0):
    status, _, body = _fcgi(sock, "POST", path, body_of(path, entries), rid=rid, timeout=timeout)
    assert status == 200, "HTTP %s: %r" % (status, body)
    return _codes(path, body)


def _metric(sock, name):
    return metric(sock, name, headers={"Authorization": harness.basic(*AUTH)})


def _customer_state(st, cid):
    """The customer's keys, its hash without the lock field (the lock is not the customer's
    state: a request whose resolution never reached Redis leaves it until it expires)."""
    snap = st.snapshot(keys.of_customer(ORG, cid))
    return dict((k, (t, tuple(fv for fv in v if fv[0] != LOCK_FIELD) if t == "hash" else v))
                for k, (t, v) in snap.items())


def test_indoubt_commit_applied_but_reply_lost_answers_200_and_the_change_is_stored():
    with stack_with_proxy(["--redis-timeout-ms", "500"]) as (st, proxy, sock):
        c1, c2 = 7001, 7002
        # one commit for both customers; its reply never comes back (it ran in Redis)
        proxy.add_rule(commit_call(ORG, c1), "mute")
        rid = "indoubt-applied-1"
        t0 = time.monotonic()
        codes = _write(sock, LINK, [(c1, [link_item("Tiered", "IDA-1", "Bronze"), link_item("Nope", "IDA-x")]),
                                    (c2, [link_item("Plain", "IDA-2")])], rid=rid)
        secs = time.monotonic() - t0
        assert proxy.fired and proxy.fired[0][0] == "mute", "the commit was not the one muted: %r" % proxy.fired
        assert [c for c, _ in codes] == [200, 2006, 200], \
            "a commit that applied must answer 200 (2006 for the unknown program), got %r" % codes
        assert memberships(st, c1)["Tiered"]["mid"] == "IDA-1" and memberships(st, c2)["Plain"]["mid"] == "IDA-2"
        assert [ev["requestId"] for ev in history(st, c1)] == [rid]
        assert lock_of(st, ORG, c1) is None
        assert secs < 3.0, "answered after %.2f s" % secs
        assert _metric(sock, 'partnerd_commits_in_doubt_total{outcome="applied"}') == 2
        # the worker's connection works again
        assert _write(sock, UPDATE, [(c1, [update_item("Tiered", "UPGRADE", "Gold")])]) == [(200, "Success")]


def test_indoubt_commit_that_never_ran_answers_2001_and_is_fenced_when_it_reaches_redis_late():
    with stack_with_proxy(["--redis-timeout-ms", "500"]) as (st, proxy, sock):
        cid = 7003
        before = _customer_state(st, cid)
        # the commit stays in the proxy (as in a dead connection's buffers); the resolution passes
        proxy.add_rule(commit_call(ORG, cid), "hold")
        codes = _write(sock, LINK, [(cid, [link_item("Tiered", "IDN-1", "Bronze"), link_item("Plain", "IDN-2")])])
        assert [c for c, _ in codes] == [2001, 2001], "want 2001 (nothing applied), got %r" % codes
        assert "nothing of it was applied" in codes[0][1], codes
        # nothing stored, and the lock is gone: the resolution deleted it (not left to expire)
        assert _customer_state(st, cid) == before, "the customer changed"
        # the held commit reaches Redis now, well within the lock's 5 s: it must be FENCED
        late = proxy.forward_held()
        assert b"FENCED" in late, "the late commit was not fenced: %r" % late
        assert _customer_state(st, cid) == before, "the late commit changed the customer"
        assert _metric(sock, 'partnerd_commits_in_doubt_total{outcome="not_applied"}') == 1
        assert _write(sock, LINK, [(cid, [link_item("Tiered", "IDN-1", "Bronze")])]) == [(200, "Success")]


def test_indoubt_commit_whose_resolution_cannot_reach_redis_in_time_answers_2011():
    with stack_with_proxy(["--redis-timeout-ms", "500"]) as (st, proxy, sock):
        cid = 7004
        before = _customer_state(st, cid)
        proxy.add_rule(commit_call(ORG, cid), "hold")
        proxy.add_rule(resolve_call(ORG, cid), "hold")
        t0 = time.monotonic()
        codes = _write(sock, LINK, [(cid, [link_item("Tiered", "IDU-1", "Bronze"), link_item("Nope", "IDU-x")])])
        secs = time.monotonic() - t0
        assert [a for a, _ in proxy.fired] == ["hold", "hold"], "commit and resolution not both held: %r" % proxy.fired
        assert [c for c, _ in codes] == [2011, 2006], "want 2011 (cannot tell), got %r" % codes
        assert MSG_2011 in codes[0][1] and "Idempotency-Key" in codes[0][1], codes
        assert secs < 2.5, "the resolution is bounded by one --redis-timeout-ms: answered after %.2f s" % secs
        assert _customer_state(st, cid)[keys.cust(ORG, cid)] == before[keys.cust(ORG, cid)]
        assert _metric(sock, 'partnerd_commits_in_doubt_total{outcome="failed"}') == 1


def test_indoubt_redis_stopped_while_a_commit_is_in_flight_answers_what_happened():
    # The case: Redis is SIGSTOPped with the commit in its socket buffer; partnerd's
    # read times out; Redis resumes while partnerd resolves, and runs the old commit and the
    # resolution in some order. Whatever the order, the answer must be true: 200 only when
    # stored, 2001 only when not (and never later), 2011 either way.
    with stack_with_proxy(["--redis-timeout-ms", "500"]) as (st, proxy, sock):
        redis_pid = st.proc("redis-server").pid
        try:
            seen = []
            for k, cid in enumerate((7007, 7008, 7009)):
                before = memberships(st, cid)
                proxy.event.clear()
                proxy.add_rule(commit_call(ORG, cid), "mute", before=lambda: os.kill(redis_pid, signal.SIGSTOP))
                out = {}
                t = threading.Thread(target=lambda: out.update(codes=_write(
                    sock, LINK, [(cid, [link_item("Tiered", "IDS-%d" % cid, "Bronze")])])))
                t.start()
                try:
                    assert proxy.event.wait(10), "the commit was not seen"
                    time.sleep(0.5 + 0.15 * k)   # past the read timeout, while partnerd resolves
                finally:
                    os.kill(redis_pid, signal.SIGCONT)
                t.join(15)
                time.sleep(0.3)                  # anything still queued in Redis has run
                codes = out.get("codes")
                assert codes is not None and len(codes) == 1, codes
                stored = "Tiered" in memberships(st, cid)
                seen.append((codes[0][0], stored))
                assert "Tiered" not in before
                if codes[0][0] == 200:
                    assert stored, "answered 200 but nothing is stored"
                elif codes[0][0] == 2001:
                    assert not stored, "answered 2001 but the membership is stored: %r" % memberships(st, cid)
                else:
                    assert codes[0][0] == 2011, codes
            print("    # SIGSTOP while the commit was in flight: (code, stored) %r" % seen)
        finally:
            os.kill(redis_pid, signal.SIGCONT)


def test_indoubt_lock_expired_and_others_wrote_is_2001_after_one_write_and_2011_after_two_never_200():
    # The version alone cannot tell: one write by another request after our lock expired
    # bumps it to exactly what our commit would have written. The writer token `w` can.
    with stack_with_proxy(["--redis-timeout-ms", "1500", "--lock-ttl-ms", "300"]) as (st, proxy, sock):
        other = HttpClient(st.http_port)
        for cid, writes, want in ((7005, 1, 2001), (7006, 2, 2011)):
            r = other.post(LINK, body_of(LINK, [(cid, [link_item("Tiered", "IDE-%d" % cid, "Bronze")])]))
            assert r.status == 200 and items_of(r)[0][2] == 200, r
            proxy.event.clear()
            proxy.add_rule(commit_call(ORG, cid), "hold")
            out = {}
            t = threading.Thread(target=lambda: out.update(codes=_write(
                sock, UPDATE, [(cid, [update_item("Tiered", "UPGRADE", "Gold")])])))
            t.start()
            assert proxy.event.wait(10), "the commit was not held"
            deadline = time.monotonic() + 5
            while locked(st, ORG, cid):
                assert time.monotonic() < deadline, "the lock did not expire"
                time.sleep(0.01)
            for tier in ["Silver", "Bronze"][:writes]:
                r = other.post(UPDATE, body_of(UPDATE, [(cid, [update_item("Tiered", "DOWNGRADE" if tier == "Bronze" else "UPGRADE", tier)])]))
                assert r.status == 200 and items_of(r)[0][2] == 200, r
            t.join(15)
            codes = out.get("codes")
            assert codes is not None and [c for c, _ in codes] == [want], \
                "customer %d, %d other write(s): want %d, got %r" % (cid, writes, want, codes)
            assert memberships(st, cid)["Tiered"]["tier"] == ["Silver", "Bronze"][writes - 1]
            late = proxy.forward_held(len(proxy.held) - 1)
            assert b"FENCED" in late, "the late commit was not fenced: %r" % late


def test_redis_restart_does_not_fail_the_first_request_of_each_worker_with_503():
    workers = 4
    st = harness.Stack(partnerds=1)
    st.start()
    try:
        sock = add_partnerd(st, "partnerd-rs", ["--redis-timeout-ms", "1000"], workers=workers)
        cid = 7010
        # every worker connected at start; use them all a few times
        ths = [threading.Thread(target=lambda: [_fcgi(sock, "GET", HEALTH) for _ in range(5)]) for _ in range(workers)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(30)
        assert _write(sock, LINK, [(cid, [link_item("Plain", "RS-0")])]) == [(200, "Success")]
        try:
            st.redis("SHUTDOWN", "SAVE")
        except (OSError, harness.RedisError):
            pass
        st.stop_proc("redis-server")
        st.restart_redis()                  # same port, loads dump.rdb from the stack directory
        time.sleep(0.2)
        statuses = []
        for k in range(6 * workers):
            if k % 3 == 0:
                status, _, body = _fcgi(sock, "GET", HEALTH)
            elif k % 3 == 1:
                path = DELINK if k % 2 else LINK
                item = delink_item("Plain") if path == DELINK else link_item("Plain", "RS-%d" % k)
                status, _, body = _fcgi(sock, "POST", path, body_of(path, [(cid, [item])]))
                if status == 200:
                    assert [c for c, _ in _codes(path, body)] in ([200], [2004], [2005]), body
            else:
                status, _, body = _fcgi(sock, "GET", "/v2/partnerProgram/customerPartnerPrograms"
                                        "?identifierName=id&identifierValue=%d" % cid)
            statuses.append(status)
        assert statuses.count(503) == 0, "503s after the restart (one request at a time): %r" % statuses
        assert set(statuses) == {200}, statuses
        assert _metric(sock, "partnerd_redis_reconnects_total") >= 1
    finally:
        st.stop()


def test_connection_that_timed_out_is_replaced_and_the_next_request_succeeds():
    with stack_with_proxy(["--redis-timeout-ms", "300"]) as (st, proxy, sock):
        proxy.add_rule(ping_call, "hold")          # a reply that never comes: a read timeout
        status, _, body = _fcgi(sock, "GET", HEALTH)
        assert status == 503, (status, body)
        # the same worker (--workers 1), at once: a new connection, not a failed one
        status, _, body = _fcgi(sock, "GET", HEALTH)
        assert status == 200, "health after a timeout: %s %r" % (status, body)
        assert _write(sock, LINK, [(7011, [link_item("Plain", "TO-1")])]) == [(200, "Success")]
