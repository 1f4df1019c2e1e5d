"""SPEC §4 "Atomicity and concurrency" and the failure behaviour of §6, under load and
under faults: concurrent conflicting writers over several partnerd processes, membership-id
races, a stalled lock holder (fenced commit), a SIGKILLed worker, Redis going away
(stopped, shut down, script cache flushed, paused), lock contention on one customer, and
SIGTERM during load.

Every test builds its own Stack (they disturb it) and uses the `stress` org of
data/orgs.json (customers 7001-7080; programs Tiered, Plain, Supp, Race, B1-B8).
Support code (HTTP client with X-Request-Id, the RESP proxy that stalls one partnerd
between its begin and its commit, extra partnerd/nginx processes, history checks) is in
support_guarantee.py. Each test prints its figures on lines starting with "    #".
"""

import collections
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time

import harness
import keys
from support_guarantee import (DELINK, FENCED_MSG, HEALTH, LINK, ORG, TIERS, UPDATE, FUTURE,
                               HttpClient, RedisProxy, add_front, add_partnerd, any_commit,
                               body_of, check_ctl, check_history_chains, commit_of, delink_item,
                               history, items_of, link_item, logged_rids, memberships, metrics,
                               new_rid, pick_metrics, restart_partnerd, run_threads,
                               update_item, wait_health)
from helpers import LOCK_FIELD, lock_of, locked

WORKERS = int(os.environ.get("GUARANTEE_WORKERS", "40"))       # >= nginx workers (2) x keepalive (16) + client threads: no pinned-thread starvation


def say(fmt, *a):
    sys.stdout.write("    # " + (fmt % a if a else fmt) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def own_stack(partnerds=1, args=(), workers=WORKERS):
    # the history checks need every activity: no trimming
    st = harness.Stack(partnerds=partnerds, partnerd_args=["--history-max", "100000"] + list(args),
                       workers=workers)
    st.start()
    try:
        yield st
    except BaseException:
        st.keep = True
        say("stack directory kept: %s", st.dir)
        raise
    finally:
        st.stop()


def ctl_check(st, problems):
    """partnerctl check: prints its outcome, adds a problem when it fails."""
    rc, txt = check_ctl(st)
    say("partnerctl check: rc %d%s", rc, (": " + txt.splitlines()[-1][:300]) if txt else "")
    if rc != 0:
        problems.append("partnerctl check exited %d:\n%s" % (rc, txt[:3000]))


def counts(results):
    by_status = collections.Counter()
    by_code = collections.Counter()
    fenced = 0
    for r in results:
        by_status[r.status if r.error is None else "transport"] += 1
        if r.status == 200 and r.path in (LINK, UPDATE, DELINK):
            for _, _, code, msg, _ in items_of(r):
                by_code[code] += 1
                if code == 2010 and FENCED_MSG in msg:
                    fenced += 1
    return by_status, by_code, fenced


def latency(results):
    xs = sorted(r.secs for r in results)
    if not xs:
        return "n=0"
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))] * 1000
    return "n=%d p50=%.1fms p95=%.1fms p99=%.1fms max=%.1fms" % (len(xs), q(.5), q(.95), q(.99), xs[-1] * 1000)


def ok_items(results):
    """Counter of (rid, cid, program, activityType) over the 200 items of 200 responses."""
    c = collections.Counter()
    for r in results:
        if r.status == 200 and r.error is None:
            for cid, prog, code, _, act in items_of(r):
                if code == 200:
                    c[(r.rid, cid, prog, act)] += 1
    return c


def history_items(stack, cids):
    c = collections.Counter()
    for cid in cids:
        for ev in history(stack, cid):
            c[(ev["requestId"], ev["customerId"], ev["partnerProgramName"], ev["activityType"])] += 1
    return c


# ---------------------------------------------------------------- random writes

PROGS = ["Tiered", "Plain", "Supp"]


def random_item(route, rnd, p=None):
    p = p or rnd.choice(PROGS)
    if route == LINK:
        return link_item(p, new_rid("m"), rnd.choice(TIERS[p]) if TIERS[p] else None,
                         FUTURE if rnd.random() < 0.3 else None)
    if route == UPDATE:
        if not TIERS[p]:
            p = rnd.choice(["Tiered", "Supp"])
        return update_item(p, rnd.choice(["UPGRADE", "DOWNGRADE", "RENEWAL"]), rnd.choice(TIERS[p]),
                           FUTURE if rnd.random() < 0.3 else None)
    return delink_item(p)


def random_request(rnd, cids):
    route = rnd.choice([LINK, LINK, LINK, LINK, UPDATE, UPDATE, UPDATE, DELINK, DELINK, DELINK])
    shape = rnd.random()
    if shape < 0.5:
        entries = [(rnd.choice(cids), [random_item(route, rnd)])]
    elif shape < 0.7:
        progs = rnd.sample(PROGS, rnd.randint(2, 3))
        if rnd.random() < 0.1:
            progs.append(progs[0])          # the same program twice in one entry: 2102
        entries = [(rnd.choice(cids), [random_item(route, rnd, p) for p in progs])]
    else:
        n = rnd.randint(2, 4)
        pick = [rnd.choice(cids) for _ in range(n)]
        if rnd.random() < 0.5:
            pick[-1] = pick[0]              # the same customer twice in one request
        entries = [(c, [random_item(route, rnd, p) for p in rnd.sample(PROGS, rnd.randint(1, 2))]) for c in pick]
    return route, body_of(route, entries)


def load_loop(client, cids, results, stop, seed, pause=0.0, timeout=15.0):
    rnd = random.Random(seed)
    while not stop.is_set():
        route, body = random_request(rnd, cids)
        results.append(client.post(route, body, timeout=timeout))
        if pause:
            time.sleep(pause)


# ---------------------------------------------------------------- 1. conflicting writers

def test_guarantee_concurrent_conflicting_writers_over_three_partnerds_stay_serializable():
    secs = float(os.environ.get("GUARANTEE_LOAD_SECS", "20"))
    nthreads = 16
    cids = list(range(7001, 7007))
    with own_stack(partnerds=3) as st:
        cl = HttpClient(st.http_port)
        results = []
        run_threads(nthreads, lambda k, stop: load_loop(cl, cids, results, stop, seed=1000 + k), secs)
        by_status, by_code, fenced = counts(results)
        say("conflicting writers: %d requests in %.0f s from %d threads over 3 partnerd, %d customers",
            len(results), secs, nthreads, len(cids))
        say("HTTP statuses %s; items by code %s; 2010: %d (fenced commits: %d)", dict(by_status),
            dict(sorted(by_code.items())), by_code.get(2010, 0), fenced)
        say("latency %s", latency(results))
        m = cl.get("/v2/partnerProgram/metrics")
        if m.status == 200:
            say("metrics: %s", pick_metrics(metrics(cl), "lock", "redis", "conflict", "fence"))
        else:
            say("metrics route answered HTTP %s (not available)", m.status)
        problems = []
        bad = [r for r in results if r.error is not None or r.status != 200]
        if bad:
            problems.append("%d requests without HTTP 200, e.g. %r" % (len(bad), bad[:3]))
        if by_code.get(2001):
            problems.append("%d items answered 2001 (store failure) with a healthy Redis" % by_code[2001])

        want = ok_items(results)
        have = history_items(st, cids)
        missing = want - have
        extra = have - want
        if missing:
            problems.append("%d 200 items have no history entry, e.g. %s" % (sum(missing.values()), list(missing)[:5]))
        if extra:
            problems.append("%d history entries match no 200 item, e.g. %s" % (sum(extra.values()), list(extra)[:5]))

        net = collections.Counter()
        for (rid, cid, prog, act), n in want.items():
            if act == "LINK":
                net[(cid, prog)] += n
            elif act == "DELINK":
                net[(cid, prog)] -= n
        for cid in cids:
            mem = memberships(st, cid)
            for prog in PROGS:
                d = net[(cid, prog)]
                if d not in (0, 1):
                    problems.append("customer %d %s: successful links minus delinks = %d" % (cid, prog, d))
                elif (prog in mem) != (d == 1):
                    problems.append("customer %d %s: links-delinks=%d but stored %r" % (cid, prog, d, mem.get(prog)))
        problems += check_history_chains(st, cids)
        ctl_check(st, problems)
        say("invariant violations: %d", len(problems))
        assert not problems, "\n".join(problems[:30])


# ---------------------------------------------------------------- 2. membership-id races

def test_guarantee_two_customers_racing_for_one_membership_id_exactly_one_wins():
    rounds = 100
    with own_stack(partnerds=2) as st:
        fronts = [HttpClient(add_front(st, "nginx-p%d" % k, [st.sock_path(k)])) for k in range(2)]
        for f in fronts:
            wait_health(f)
        a, b = 7011, 7012
        pid = st.pid("Race", org=ORG)
        problems = []
        wins = collections.Counter()
        for rnd in range(rounds):
            mid = "RACE-%d-%s" % (rnd, os.urandom(3).hex())
            order = [(a, fronts[rnd % 2]), (b, fronts[(rnd + 1) % 2])]
            bar = threading.Barrier(2)
            res = {}

            def go(cid, cl):
                bar.wait(5)
                res[cid] = cl.post(LINK, body_of(LINK, [(cid, [link_item("Race", mid)])]))

            ths = [threading.Thread(target=go, args=o) for o in order]
            for t in ths:
                t.start()
            for t in ths:
                t.join(20)
            codes = {}
            for cid in (a, b):
                r = res.get(cid)
                if r is None or r.status != 200:
                    problems.append("round %d customer %d: %r" % (rnd, cid, r))
                    continue
                codes[cid] = items_of(r)[0][2]
            if len(codes) != 2:
                continue
            if sorted(codes.values()) != [200, 2101]:
                problems.append("round %d: codes %r (want one 200 and one 2101)" % (rnd, codes))
                continue
            winner = a if codes[a] == 200 else b
            wins[winner] += 1
            holder = st.redis("HGET", keys.mid(ORG, pid, mid), mid)
            if holder is None or int(holder) != winner:
                problems.append("round %d: index maps %s to %r, winner %d" % (rnd, mid, holder, winner))
            loser = b if winner == a else a
            if "Race" in memberships(st, loser):
                problems.append("round %d: loser %d holds a Race membership" % (rnd, loser))
            d = fronts[0].post(DELINK, body_of(DELINK, [(winner, [delink_item("Race")])]))
            if d.status != 200 or items_of(d)[0][2] != 200:
                problems.append("round %d: delink of the winner: %r" % (rnd, d))
        say("membership-id races: %d rounds through 2 partnerd; wins %s", rounds, dict(wins))
        ctl_check(st, problems)
        assert not problems, "\n".join(problems[:20])


# ---------------------------------------------------------------- 3. stale lock holder

def _held_post(proxy, client, cid, path, entries, on_close="drop"):
    """Posts the entries [(cid, items)] to path via `client` with the commit naming customer
    `cid` held by the proxy. Returns (thread, result dict); the commit is held when this
    returns."""
    proxy.arm(commit_of(ORG, cid), on_close=on_close)
    out = {}

    def go():
        out["r"] = client.post(path, body_of(path, entries))

    t = threading.Thread(target=go, daemon=True)
    t.start()
    assert proxy.held.wait(10), "the commit of customer %d never reached the proxy: %r" % (cid, out)
    return t, out


def _stalled_update(proxy, client, cid, items, on_close="drop"):
    """An update of customer cid via `client`, its commit held by the proxy (_held_post)."""
    return _held_post(proxy, client, cid, UPDATE, [(cid, items)], on_close)


def _wait_lock_gone(st, cid, secs=5.0):
    """Until customer cid's lock has expired (or is gone)."""
    deadline = time.monotonic() + secs
    while locked(st, ORG, cid):
        assert time.monotonic() < deadline, "customer %d still locked after %.1f s: %r" % (
            cid, secs, lock_of(st, ORG, cid))
        time.sleep(0.01)


def test_guarantee_stalled_lock_holder_cannot_commit_after_its_lock_expired():
    ttl = 500
    with own_stack(partnerds=1, args=["--lock-ttl-ms", str(ttl)]) as st:
        direct = HttpClient(st.http_port)
        proxy = RedisProxy(st.redis_port)
        try:
            slow = add_partnerd(st, "partnerd-stall", ["--lock-ttl-ms", str(ttl), "--redis-timeout-ms", "5000"],
                                redis_url=proxy.url)
            slow2 = add_partnerd(st, "partnerd-stall2", ["--lock-ttl-ms", str(ttl), "--redis-timeout-ms", "1000"],
                                 redis_url=proxy.url)
            A = HttpClient(add_front(st, "nginx-stall", [slow]))
            A2 = HttpClient(add_front(st, "nginx-stall2", [slow2]))
            wait_health(A)
            wait_health(A2)
            c1, c2, c3 = 7021, 7022, 7023
            for c in (c1, c2, c3):
                r = direct.post(LINK, body_of(LINK, [(c, [link_item("Tiered", "T-%d" % c, "Bronze"),
                                                           link_item("Supp", "S-%d" % c, "Basic")])]))
                assert r.status == 200 and [i[2] for i in items_of(r)] == [200, 200], r
            a_items = [update_item("Tiered", "UPGRADE", "Gold"), update_item("Supp", "UPGRADE", "Premium")]
            problems = []

            # (a) A stalls between begin and commit; its lock expires; B upgrades to Silver; A resumes.
            t, out = _stalled_update(proxy, A, c1, a_items)
            lock = lock_of(st, ORG, c1)
            assert lock is not None and 0 < lock[1] <= ttl, "A should hold the lock now: %r" % (lock,)
            _wait_lock_gone(st, c1)
            rb = direct.post(UPDATE, body_of(UPDATE, [(c1, [update_item("Tiered", "UPGRADE", "Silver")])]))
            assert rb.status == 200 and items_of(rb)[0][2] == 200, "B's upgrade: %r" % rb
            proxy.release()
            t.join(10)
            ra = out.get("r")
            codes = [i[2] for i in items_of(ra)] if ra and ra.status == 200 else None
            say("stale holder (a): A answered %s %r; B answered %r", ra and ra.status,
                ra and [(i[2], i[3]) for i in items_of(ra)], [i[2] for i in items_of(rb)])
            if codes is None or any(c not in (2010, 2001) for c in codes):
                problems.append("(a) stalled request: want every item 2010 or 2001, got %r" % ra)
            m = memberships(st, c1)
            if m["Tiered"]["tier"] != "Silver" or m["Supp"]["tier"] != "Basic":
                problems.append("(a) stored state is not B's: %r" % m)
            if any(ev["requestId"] == ra.rid for ev in history(st, c1)):
                problems.append("(a) history holds an entry of the fenced request %s" % ra.rid)

            # (b) A stalls, its lock expires, nobody else writes; A resumes: still refused.
            before = st.snapshot(keys.of_customer(ORG, c2))
            t, out = _stalled_update(proxy, A, c2, a_items)
            _wait_lock_gone(st, c2)
            proxy.release()
            t.join(10)
            ra = out.get("r")
            codes = [i[2] for i in items_of(ra)] if ra and ra.status == 200 else None
            say("stale holder (b, nobody else wrote): A answered %r", ra and [(i[2], i[3]) for i in items_of(ra)])
            if codes is None or any(c not in (2010, 2001) for c in codes):
                problems.append("(b) stalled request: want every item 2010 or 2001, got %r" % ra)
            if st.snapshot(keys.of_customer(ORG, c2)) != before:
                problems.append("(b) customer %d changed although its only writer was fenced" % c2)

            # (c) A2 stalls longer than its --redis-timeout-ms (1000): it gives up; the commit
            # reaches Redis late (after B's write) and must be refused by the fence.
            t, out = _stalled_update(proxy, A2, c3, a_items, on_close="forward")
            _wait_lock_gone(st, c3)
            rb = direct.post(UPDATE, body_of(UPDATE, [(c3, [update_item("Tiered", "UPGRADE", "Silver")])]))
            assert rb.status == 200 and items_of(rb)[0][2] == 200, "B's upgrade: %r" % rb
            t.join(10)
            deadline = time.monotonic() + 5
            # the proxy records its outcome before Redis's reply to the late commit arrives
            while (proxy.outcome is None or (proxy.outcome == "forwarded-after-close" and
                                             proxy.forwarded_reply is None)) \
                    and time.monotonic() < deadline:
                time.sleep(0.02)
            ra = out.get("r")
            say("stale holder (c, timed out, commit delivered late): A2 answered %s %r; proxy %s, Redis replied %r",
                ra and ra.status, ra and ra.status == 200 and [(i[2], i[3]) for i in items_of(ra)],
                proxy.outcome, proxy.forwarded_reply)
            if ra is None or ra.status != 200 or any(i[2] not in (2010, 2001) for i in items_of(ra)):
                problems.append("(c) stalled request: want 200 with items 2010/2001, got %r" % ra)
            m = memberships(st, c3)
            if m["Tiered"]["tier"] != "Silver" or m["Supp"]["tier"] != "Basic":
                problems.append("(c) stored state is not B's: %r" % m)
            if any(ev["requestId"] == ra.rid for ev in history(st, c3)):
                problems.append("(c) history holds an entry of the fenced request")
            if proxy.outcome == "forwarded-after-close" and b"FENCED" not in (proxy.forwarded_reply or b""):
                problems.append("(c) the late commit was not answered FENCED: %r" % proxy.forwarded_reply)
            problems += check_history_chains(st, [c1, c2, c3])
            ctl_check(st, problems)
            assert not problems, "\n".join(problems)
        finally:
            proxy.close()


def _front_through(st, proxy, ttl_ms, wait_ms, timeout_ms):
    """A partnerd whose Redis traffic goes through proxy (--lock-ttl-ms, --lock-wait-ms and
    --redis-timeout-ms as given) behind an nginx of its own: a client for it, once healthy."""
    slow = add_partnerd(st, "partnerd-stall", ["--lock-ttl-ms", str(ttl_ms), "--lock-wait-ms", str(wait_ms),
                                               "--redis-timeout-ms", str(timeout_ms)],
                        redis_url=proxy.url)
    A = HttpClient(add_front(st, "nginx-stall", [slow]))
    wait_health(A)
    return A


def test_guarantee_a_later_entry_is_not_2101_for_an_id_whose_earlier_claimant_was_fenced():
    """One request: customer X links Tiered id M, then customer Y links Tiered M. Y is
    decided 2101 on the strength of X's claim, before X's commit runs; here that commit is
    held past the locks' expiry and refused (FENCED), so nobody holds M. Y must then not be
    told 2101 (held by another customer), which no serial order explains (seen in the
    cluster nemesis: Y 2101 while X answered 2001), but 2010: nothing applied, retry."""
    ttl = 500
    with own_stack(partnerds=1, args=["--lock-ttl-ms", str(ttl)]) as st:
        proxy = RedisProxy(st.redis_port)
        try:
            A = _front_through(st, proxy, ttl, 8000, 5000)
            x, y = 7026, 7027
            mid = "DEP-%d" % os.getpid()
            before = {c: st.snapshot(keys.of_customer(ORG, c)) for c in (x, y)}
            t, out = _held_post(proxy, A, x, LINK, [(x, [link_item("Tiered", mid, "Bronze")]),
                                                    (y, [link_item("Tiered", mid, "Silver")])])
            _wait_lock_gone(st, x)
            proxy.release()
            t.join(15)
            r = out.get("r")
            assert r is not None and r.status == 200, "the request: %r" % r
            got = [(cid, code, msg) for cid, _, code, msg, *_ in items_of(r)]
            say("earlier claimant fenced: %r", got)
            problems = []
            if got[0][1] not in (2010, 2001):
                problems.append("X's commit was held past its lock: want 2010 or 2001, got %r" % (got[0],))
            if got[1][1] != 2010 or "claims this membership id" not in got[1][2]:
                problems.append("Y: want 2010 saying the earlier claim did not apply (M is free), got %r"
                                % (got[1],))
            for c in (x, y):
                if st.snapshot(keys.of_customer(ORG, c)) != before[c]:
                    problems.append("customer %d changed although nothing of the request applied" % c)
            ctl_check(st, problems)
            assert not problems, "\n".join(problems)
        finally:
            proxy.close()


def test_guarantee_an_item_is_2010_beside_applied_ones_when_the_claim_it_leaned_on_did_not_commit():
    """One request: X links Tiered M; Y links Tiered M and Plain P. While the request's commit
    is held, customer Z takes M (through another partnerd). X's commit meets Z's claim
    (CONFLICT) and runs again: 2101. Y's Tiered was decided 2101 on X's claim, which did not
    commit: it answers 2010 (nothing of that item applied), beside Plain's 200, which applied:
    an entry whose 200 items applied next to a 2010 item (the linearizability checker's
    convention, docs/CONSISTENCY.md)."""
    with own_stack(partnerds=1, args=["--lock-ttl-ms", "10000"]) as st:
        direct = HttpClient(st.http_port)
        proxy = RedisProxy(st.redis_port)
        try:
            A = _front_through(st, proxy, 10000, 10000, 8000)
            x, y, z = 7028, 7029, 7030
            mid, plain = "MIX-%d" % os.getpid(), "MIX-%d-P" % os.getpid()
            t, out = _held_post(proxy, A, x, LINK, [(x, [link_item("Tiered", mid, "Bronze")]),
                                                    (y, [link_item("Tiered", mid, "Silver"),
                                                         link_item("Plain", plain)])])
            rz = direct.post(LINK, body_of(LINK, [(z, [link_item("Tiered", mid, "Gold")])]))
            assert rz.status == 200 and [i[2] for i in items_of(rz)] == [200], "Z's link: %r" % rz
            proxy.release()
            t.join(15)
            r = out.get("r")
            assert r is not None and r.status == 200, "the request: %r" % r
            got = [(cid, prog, code) for cid, prog, code, *_ in items_of(r)]
            say("claim taken meanwhile: %r", got)
            problems = []
            if [c for _, _, c in got] != [2101, 2010, 200]:
                problems.append("want X 2101 (Z holds M), Y [2010, 200], got %r" % (got,))
            mx, my, mz = memberships(st, x), memberships(st, y), memberships(st, z)
            if "Tiered" in mx or "Tiered" in my or mz.get("Tiered", {}).get("mid") != mid:
                problems.append("M must be Z's alone: X %r, Y %r, Z %r" % (mx, my, mz))
            if my.get("Plain", {}).get("mid") != plain:
                problems.append("Y's Plain answered 200 but is not stored: %r" % my)
            ctl_check(st, problems)
            assert not problems, "\n".join(problems)
        finally:
            proxy.close()


def test_guarantee_writer_stalled_across_a_relinks_start_never_leaves_the_old_id_held_twice():
    """A writer reads customer X while its relink (id A -> B) is pending and stalls (its
    commit held) until after the relink's start; meanwhile customer Y claims A, which the
    claim finds X no longer holds (the relink is due by Redis's clock). The stalled writer
    cancels the relink: committed as read, X would hold A again, as Y does. Its commit must
    find A taken (CONFLICT) and run again on the settled membership: 2105."""
    with own_stack(partnerds=1, args=["--lock-ttl-ms", "10000"]) as st:
        direct = HttpClient(st.http_port)
        proxy = RedisProxy(st.redis_port)
        try:
            A = _front_through(st, proxy, 10000, 10000, 8000)
            x, y = 7031, 7032
            a, b = "RS-%d-A" % os.getpid(), "RS-%d-B" % os.getpid()
            r = direct.post(LINK, body_of(LINK, [(x, [link_item("Supp", a, "Basic")])]))
            assert r.status == 200 and [i[2] for i in items_of(r)] == [200], r
            start_ms = (int(time.time() * 1000) // 1000 + 3) * 1000
            start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_ms // 1000))
            rl = link_item("Supp", b, "Basic")
            rl["customerPartnerReference"]["membershipStartDate"] = start
            r = direct.post(LINK, body_of(LINK, [(x, [rl])]))
            assert r.status == 200 and [i[2] for i in items_of(r)] == [200], r
            cancel = {"partnerProgramName": "Supp", "updateType": "MEMBERSHIP_RELINKING_CANCELLED"}
            t, out = _stalled_update(proxy, A, x, [cancel])
            assert time.time() * 1000 < start_ms, "the cancel was not read before the relink's start"
            while time.time() * 1000 < start_ms + 300:
                time.sleep(0.05)
            r = direct.post(LINK, body_of(LINK, [(y, [link_item("Supp", a, "Basic")])]))
            assert r.status == 200 and [i[2] for i in items_of(r)] == [200], "Y's claim on A: %r" % r
            proxy.release()
            t.join(15)
            ra = out.get("r")
            problems = []
            codes = [i[2] for i in items_of(ra)] if ra and ra.status == 200 else None
            say("stalled cancel across the relink's start: answered %r", ra and ra.status == 200 and
                [(i[2], i[3]) for i in items_of(ra)])
            if codes != [2105]:
                problems.append("stalled cancel: want 2105 (the relink had taken effect), got %r" % ra)
            m = memberships(st, x)["Supp"]
            if m["mid"] != b or m["rl"] is not None:
                problems.append("X should hold B with no relink pending: %r" % m)
            supp = json.loads(st.redis("HGET", keys.progs(ORG), "Supp"))["pid"]
            holders = [st.redis("HGET", keys.mid(ORG, supp, mid), mid) for mid in (a, b)]
            if holders != [str(y).encode(), str(x).encode()]:
                problems.append("index of A, B: want Y, X, got %r" % holders)
            ctl_check(st, problems)
            assert not problems, "\n".join(problems)
        finally:
            proxy.close()


# ---------------------------------------------------------------- 4. killed worker

def _pair_loop(client, t, cids, results, stop):
    """Thread t alternates link and delink batches of programs B(2t+1), B(2t+2) for all cids."""
    p1, p2 = "B%d" % (2 * t + 1), "B%d" % (2 * t + 2)
    n = 0
    while not stop.is_set():
        rid = new_rid("k%d" % t)
        if n % 2 == 0:
            body = body_of(LINK, [(c, [link_item(p1, "%s/%d/1" % (rid, c)), link_item(p2, "%s/%d/2" % (rid, c))])
                                  for c in cids])
            results.append(client.post(LINK, body, rid=rid))
        else:
            results.append(client.post(DELINK, body_of(DELINK, [(c, [delink_item(p1), delink_item(p2)]) for c in cids]),
                                       rid=rid))
        n += 1


def _pairs_whole(st, cids, nthreads):
    bad = []
    for cid in cids:
        m = memberships(st, cid)
        for t in range(nthreads):
            a, b = m.get("B%d" % (2 * t + 1)), m.get("B%d" % (2 * t + 2))
            if (a is None) != (b is None):
                bad.append("customer %d: half of a batch entry applied: B%d=%r B%d=%r" % (cid, 2 * t + 1, a, 2 * t + 2, b))
            elif a is not None and a["mid"].rsplit("/", 1)[0] != b["mid"].rsplit("/", 1)[0]:
                bad.append("customer %d: B%d and B%d linked by different requests: %r %r" % (cid, 2 * t + 1, 2 * t + 2, a, b))
    return bad


def _locks(st):
    """The customers of ORG whose lock is taken (not expired): their hashes' lock fields."""
    cks = st.keys(keys.cust(ORG, "*"))
    if not cks:
        return []
    st.redis("PING")                            # (re)connects if needed
    now = int(time.time() * 1000)
    out = []
    for k, v in zip(cks, st._redis.pipeline([("HGET", k, LOCK_FIELD) for k in cks])):
        v = v.decode() if isinstance(v, bytes) else v
        if isinstance(v, str) and int(v.rpartition(":")[2] or 0) > now:
            out.append(k)
    return out


def _without_lock(snap):
    """A customer's snapshot without its hash's lock field (a killed request leaves it)."""
    out = {}
    for k, (t, v) in snap.items():
        if t == "hash":
            v = tuple((f, x) for f, x in v if f != LOCK_FIELD)
        out[k] = (t, v)
    return out


def _until_writable(client, cids, program, deadline_s, t0=None):
    """Links `program` for every cid, retrying the ones refused, until all got 200.
    Returns ({cid: seconds from t0 (default: now) until its 200}, first response)."""
    t0 = t0 or time.monotonic()
    todo = list(cids)
    when = {}
    first = None
    while todo and time.monotonic() - t0 < deadline_s:
        r = client.post(LINK, body_of(LINK, [(c, [link_item(program, new_rid("w"))]) for c in todo]))
        first = first or r
        if r.status == 200:
            for cid, _, code, _, _ in items_of(r):
                if code == 200:
                    when[cid] = time.monotonic() - t0
            todo = [c for c in todo if c not in when]
        if todo:
            time.sleep(0.05)
    return when, first


def test_guarantee_sigkilled_worker_leaves_no_partial_customer_and_locks_clear_within_ttl():
    ttl = 2000
    args = ["--lock-ttl-ms", str(ttl), "--lock-wait-ms", "500"]
    with own_stack(partnerds=1, args=args, workers=16) as st:
        cl = HttpClient(st.http_port)
        problems = []

        # (B, deterministic) a 30-customer batch whose commit is held; the worker is killed.
        proxy = RedisProxy(st.redis_port)
        try:
            sock = add_partnerd(st, "partnerd-px", args, redis_url=proxy.url, workers=4)
            px = HttpClient(add_front(st, "nginx-px", [sock]))
            wait_health(px)
            held = list(range(7051, 7081))
            before = dict((c, st.snapshot(keys.of_customer(ORG, c))) for c in held)
            proxy.arm(any_commit(ORG), on_close="drop")
            out = {}
            th = threading.Thread(target=lambda: out.update(r=px.post(LINK, body_of(
                LINK, [(c, [link_item("B1", "H-%d-1" % c), link_item("B2", "H-%d-2" % c)]) for c in held]))),
                daemon=True)
            th.start()
            assert proxy.held.wait(10), "the batch's commit never reached the proxy"
            locked = _locks(st)
            os.kill(st.proc("partnerd-px").pid, signal.SIGKILL)
            t_kill = time.monotonic()
            th.join(15)
            while proxy.outcome is None and time.monotonic() - t_kill < 5:
                time.sleep(0.01)
            after = dict((c, st.snapshot(keys.of_customer(ORG, c))) for c in held)
            changed = [c for c in held if _without_lock(after[c]) != _without_lock(before[c])]
            when, first = _until_writable(cl, held, "Plain", ttl / 1000.0 + 5, t0=t_kill)
            first_codes = dict(collections.Counter(i[2] for i in items_of(first))) \
                if first and first.status == 200 else first
            say("killed between begin and commit: %d locks held at the kill, proxy %s, client got %s; "
                "customers changed: %d; first write after the kill: items %s; all %d writable %.2f s after "
                "the kill (lock ttl %.1f s)", len(locked), proxy.outcome,
                out.get("r") and (out["r"].status, out["r"].error), len(changed), first_codes, len(when),
                max(when.values()) if when else -1, ttl / 1000.0)
            if len(locked) != len(held):
                problems.append("(B) %d locks held while the commit was stalled, want %d" % (len(locked), len(held)))
            if changed:
                problems.append("(B) customers changed by a request whose commit never ran: %s" % changed[:10])
            if len(when) != len(held):
                problems.append("(B) customers still not writable %.1f s after the kill: %s"
                                % (ttl / 1000.0 + 5, sorted(set(held) - set(when))))
            elif max(when.values()) > ttl / 1000.0 + 1.5:
                problems.append("(B) a customer became writable only %.2f s after the kill (lock ttl %.1f s)"
                                % (max(when.values()), ttl / 1000.0))
        finally:
            proxy.close()

        # (A) random SIGKILLs of the only partnerd behind nginx during 50-customer batches.
        cids = list(range(7001, 7051))
        nthreads = 4
        results = []
        stop = threading.Event()
        ths = [threading.Thread(target=_pair_loop, args=(cl, t, cids, results, stop), daemon=True)
               for t in range(nthreads)]
        for t in ths:
            t.start()
        kills = []
        try:
            for k in range(3):
                time.sleep(1.2)
                inflight_before = len(results)
                os.kill(st.proc("partnerd-0").pid, signal.SIGKILL)
                t_kill = time.monotonic()
                st.proc("partnerd-0").wait(5)
                left = _locks(st)
                if k == 2:
                    stop.set()
                    for t in ths:
                        t.join(30)
                time.sleep(0.2)
                restart_partnerd(st, "partnerd-0")
                kills.append((len(left), t_kill))
                if k == 2:
                    when, first = _until_writable(cl, cids, "Plain", ttl / 1000.0 + 5, t0=t_kill)
                    if len(when) != len(cids):
                        problems.append("(A) customers not writable %.1f s after the last kill: %s"
                                        % (ttl / 1000.0 + 5, sorted(set(cids) - set(when))))
                    else:
                        late = max(when.values())
                        say("after the last kill (locks left: %d) every customer was writable %.2f s after the kill",
                            len(left), late)
                        if late > ttl / 1000.0 + 1.5:
                            problems.append("(A) a customer became writable only %.2f s after the kill (ttl %.1f s)"
                                            % (late, ttl / 1000.0))
        finally:
            stop.set()
            for t in ths:
                t.join(30)
        by_status, by_code, fenced = counts(results)
        say("killed worker: %d batch requests of 50 customers x 2 items, 3 SIGKILLs (locks left by each: %s); "
            "HTTP %s; items %s; fenced %d", len(results), [k[0] for k in kills], dict(by_status),
            dict(sorted(by_code.items())), fenced)
        # A response nginx was already relaying when its partnerd was killed is cut off
        # (IncompleteRead): like a 502, the client cannot know the outcome; the customers'
        # atomicity is checked below either way.
        bad = [r for r in results
               if (r.error is not None and "IncompleteRead" not in str(r.error))
               or (r.error is None and r.status not in (200, 502))]
        if bad:
            problems.append("(A) requests with neither 200 nor 502: %d, e.g. %r" % (len(bad), bad[:3]))
        problems += _pairs_whole(st, cids + held, nthreads)
        # 200 items have exactly their history; requests answered 502 applied per customer all or nothing
        want = ok_items(results)
        have = history_items(st, cids)
        answered = set(r.rid for r in results if r.status == 200)
        missing = want - have
        if missing:
            problems.append("(A) 200 items without history: %s" % list(missing)[:5])
        extra = collections.Counter(dict((k, v) for k, v in (have - want).items() if k[0] in answered
                                         and k[2] != "Plain"))
        if extra:
            problems.append("(A) history entries of answered requests that match no 200 item: %s" % list(extra)[:5])
        per = collections.Counter((k[0], k[1]) for k in have.elements() if k[2] != "Plain")
        half = [k for k, n in per.items() if n % 2]
        if half:
            problems.append("(A) (request, customer) pairs with an odd number of activities: %s" % half[:5])
        problems += check_history_chains(st, cids + held)
        ctl_check(st, problems)
        say("invariant violations: %d", len(problems))
        assert not problems, "\n".join(problems[:30])


# ---------------------------------------------------------------- 5. Redis goes away

def test_guarantee_redis_stopped_shut_down_flushed_and_paused_answers_fast_and_recovers():
    timeout_ms = 500
    bound = 3.0
    cids = list(range(7031, 7039))
    with own_stack(partnerds=2, args=["--redis-timeout-ms", str(timeout_ms), "--lock-ttl-ms", "2000"]) as st:
        cl = HttpClient(st.http_port)
        problems = []
        phases = collections.OrderedDict()

        def phase(name, secs, action=None):
            res = []
            stop = threading.Event()
            ths = [threading.Thread(target=load_loop, args=(cl, cids, res, stop, hash((name, k)) & 0xffff, 0.005, 10),
                                    daemon=True) for k in range(6)]
            for t in ths:
                t.start()
            t0 = time.monotonic()
            note = action() if action else None
            rest = secs - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)
            stop.set()
            for t in ths:
                t.join(30)
            phases[name] = (res, note)
            return res

        phase("baseline", 1.0)

        def sigstop():
            p = st.proc("redis-server")
            os.kill(p.pid, signal.SIGSTOP)
            time.sleep(2.0)
            os.kill(p.pid, signal.SIGCONT)
        phase("SIGSTOP redis 2 s", 3.5, sigstop)
        h = wait_health(cl, 10)

        def shutdown():
            try:
                st.redis("SHUTDOWN", "SAVE")
            except (OSError, harness.RedisError):
                pass
            st.stop_proc("redis-server")
            time.sleep(1.5)
            st.restart_redis()                 # loads dump.rdb from the stack directory
            return "restarted from the dump"
        phase("SHUTDOWN SAVE + restart", 4.0, shutdown)
        t_h = time.monotonic()
        wait_health(cl, 10)
        say("health 200 again %.2f s after the restarted Redis answered", time.monotonic() - t_h)

        def pause():
            st.redis("CLIENT", "PAUSE", 1500, "WRITE")
            time.sleep(1.6)
        phase("CLIENT PAUSE 1500 WRITE", 2.5, pause)

        # SCRIPT FLUSH between requests: NOSCRIPT must be handled transparently
        flush_res = []
        c = 7039
        for k in range(20):
            st.redis("SCRIPT", "FLUSH")
            if k % 2 == 0:
                body = body_of(LINK, [(c, [link_item("Plain", new_rid("f"))])])
                flush_res.append(cl.post(LINK, body))
            else:
                flush_res.append(cl.post(DELINK, body_of(DELINK, [(c, [delink_item("Plain")])])))
        bad_flush = [r for r in flush_res if r.status != 200 or [i[2] for i in items_of(r)] != [200]]
        say("SCRIPT FLUSH before each of %d writes: %d not 200/200: %s", len(flush_res), len(bad_flush), bad_flush[:2])
        if bad_flush:
            problems.append("SCRIPT FLUSH: %d writes not answered 200 with item 200, e.g. %r" % (len(bad_flush), bad_flush[:2]))

        after = phase("after recovery", 1.0)
        all_res = []
        for name, (res, note) in phases.items():
            all_res += res
            by_status, by_code, fenced = counts(res)
            slow = [r for r in res if r.secs > bound]
            say("%s: 503 answers latency %s; 200 answers latency %s", name,
                latency([r for r in res if r.status == 503]), latency([r for r in res if r.status == 200]))
            say("%s: %d requests, HTTP %s, items %s, latency %s, over %.1f s: %d", name, len(res), dict(by_status),
                dict(sorted(by_code.items())), latency(res), bound, len(slow))
            if slow:
                problems.append("%s: %d requests took over %.1f s, e.g. %r" % (name, len(slow), bound, slow[:2]))
            for r in res:
                if r.error is not None:
                    problems.append("%s: transport error %r" % (name, r))
                elif r.status == 503:
                    if not r.headers.get("Retry-After") or not (isinstance(r.resp, dict) and "errors" in r.resp):
                        problems.append("%s: 503 without Retry-After or envelope: %r %r" % (name, r, dict(r.headers)))
                elif r.status != 200:
                    problems.append("%s: HTTP %s: %r" % (name, r.status, r))
        if not any(r.status == 200 and all(i[2] in (200, 2004, 2005, 2104, 2102, 2003) for i in items_of(r))
                   for r in after):
            problems.append("no clean 200 after recovery")
        base = phases["baseline"][0]
        if any(r.status != 200 for r in base):
            problems.append("baseline had non-200 answers")
        # nothing half-applied: history vs the answers
        all_res += flush_res
        want = ok_items(all_res)
        have = history_items(st, cids + [7039])
        # SPEC §4: 2001 means nothing of the item applied; only 2011 may have applied
        unsure = set()
        for r in all_res:
            if r.status == 200:
                for cid, prog, code, msg, act in items_of(r):
                    if code == 2011:
                        unsure.add((r.rid, cid))
        missing = want - have
        if missing:
            problems.append("200 items without history: %s" % list(missing)[:5])
        extra = [k for k in (have - want) if (k[0], k[1]) not in unsure]
        if extra:
            problems.append("history entries of items not answered 200 (nor 2011): %s" % extra[:5])
        # a 2011 entry: all its items applied or none
        for rid, cid in unsure:
            r = [x for x in all_res if x.rid == rid][0]
            sent = [(p, a) for c, p, code, m, a in items_of(r) if c == cid and code in (200, 2011)]
            got = [k for k in have if k[0] == rid and k[1] == cid]
            if got and len(got) != len(sent):
                problems.append("request %s customer %d answered 2011: %d of %d items applied" % (rid, cid, len(got), len(sent)))
        problems += check_history_chains(st, cids + [7039])
        ctl_check(st, problems)
        assert not problems, "\n".join(problems[:30])


# ---------------------------------------------------------------- 6. lock contention

def test_guarantee_contended_customer_gets_200_or_2010_within_lock_wait_and_others_are_not_slowed():
    wait_ms = 300
    hot = 7041
    others = list(range(7042, 7046))
    with own_stack(partnerds=2, args=["--lock-wait-ms", str(wait_ms)]) as st:
        cl = HttpClient(st.http_port)
        r = cl.post(LINK, body_of(LINK, [(hot, [link_item("Tiered", "HOT", "Bronze")])]))
        assert r.status == 200 and items_of(r)[0][2] == 200, r
        for c in others:
            r = cl.post(LINK, body_of(LINK, [(c, [link_item("Tiered", "O-%d" % c, "Bronze")])]))
            assert r.status == 200 and items_of(r)[0][2] == 200, r

        tier_of = dict((c, "Bronze") for c in others)

        def other_loop(k, stop, res):
            c = others[k]
            while not stop.is_set():
                utype, tier = ("UPGRADE", "Gold") if tier_of[c] == "Bronze" else ("DOWNGRADE", "Bronze")
                r = cl.post(UPDATE, body_of(UPDATE, [(c, [update_item("Tiered", utype, tier)])]))
                res.append(r)
                if r.status == 200 and items_of(r)[0][2] == 200:
                    tier_of[c] = tier
                time.sleep(0.01)

        def hot_loop(k, stop, res):
            rnd = random.Random(k)
            while not stop.is_set():
                res.append(cl.post(UPDATE, body_of(UPDATE, [(hot, [update_item(
                    "Tiered", rnd.choice(["UPGRADE", "DOWNGRADE", "RENEWAL"]), rnd.choice(TIERS["Tiered"]))])])))

        base = []
        run_threads(len(others), lambda k, stop: other_loop(k, stop, base), 2.0)
        # A third partnerd reaches Redis through the proxy: every 1.5 s one of its requests
        # holds the hot customer's lock for 0.8 s (its commit is held), so that the others
        # must give up with 2010 after --lock-wait-ms.
        proxy = RedisProxy(st.redis_port)
        hold_res = []
        try:
            px = HttpClient(add_front(st, "nginx-px", [add_partnerd(
                st, "partnerd-px", ["--lock-wait-ms", str(wait_ms), "--redis-timeout-ms", "5000"],
                redis_url=proxy.url, workers=4)]))
            wait_health(px)

            def holder(k, stop):
                n = 0
                while not stop.wait(0.7):
                    proxy.arm(commit_of(ORG, hot))
                    out = {}
                    t = threading.Thread(target=lambda: out.update(r=px.post(UPDATE, body_of(
                        UPDATE, [(hot, [update_item("Tiered", "RENEWAL", "Bronze")])]))), daemon=True)
                    t.start()
                    if proxy.held.wait(2):
                        time.sleep(0.8)
                    proxy.release()
                    t.join(10)
                    hold_res.append(out.get("r"))
                    n += 1

            hot_res, cold = [], []
            stop = threading.Event()
            ths = [threading.Thread(target=hot_loop, args=(k, stop, hot_res), daemon=True) for k in range(24)]
            ths += [threading.Thread(target=other_loop, args=(k, stop, cold), daemon=True) for k in range(len(others))]
            ths.append(threading.Thread(target=holder, args=(0, stop), daemon=True))
            for t in ths:
                t.start()
            time.sleep(6.0)
            stop.set()
            for t in ths:
                t.join(30)
        finally:
            proxy.release()
            proxy.close()
        say("lock holders stalled 0.8 s: %d, answered %s", len(hold_res),
            [(r.status, [i[2] for i in items_of(r)]) if r and r.status == 200 else r for r in hold_res])
        hs, hc, hf = counts(hot_res)
        cs, cc, cf = counts(cold)
        say("contention: hot customer %d requests: HTTP %s items %s (2010: %d), latency %s", len(hot_res), dict(hs),
            dict(sorted(hc.items())), hc.get(2010, 0), latency(hot_res))
        r2010 = [r for r in hot_res if r.status == 200 and items_of(r)[0][2] == 2010]
        say("contention: 2010 answers latency %s", latency(r2010))
        say("other customers: baseline %s; under contention %s, HTTP %s, items %s", latency(base), latency(cold),
            dict(cs), dict(sorted(cc.items())))
        problems = []
        limit = wait_ms / 1000.0 + 0.7
        slow = [r for r in hot_res if r.secs > limit]
        if slow:
            problems.append("%d hot requests took over %.1f s, e.g. %r" % (len(slow), limit, slow[:3]))
        for r in hot_res:
            if r.status != 200 or items_of(r)[0][2] not in (200, 2010, 2104):
                problems.append("hot request answered %r" % r)
                break
        if not hc.get(200):
            problems.append("no hot request succeeded")
        if not hc.get(2010):
            problems.append("no hot request answered 2010 although the lock was held for 0.8 s %d times" % len(hold_res))
        for r in cold:
            if r.status != 200 or items_of(r)[0][2] != 200:
                problems.append("other customer's request not 200: %r" % r)
                break
        xs = sorted(r.secs for r in cold)
        bs = sorted(r.secs for r in base)
        p95, b95 = xs[int(.95 * len(xs))], bs[int(.95 * len(bs))]
        if p95 > max(0.25, 5 * b95) or xs[-1] > 1.0:
            problems.append("other customers slowed down: p95 %.1f ms (baseline %.1f ms), max %.1f ms"
                            % (p95 * 1000, b95 * 1000, xs[-1] * 1000))
        problems += check_history_chains(st, [hot] + others)
        assert not problems, "\n".join(problems[:20])


# ---------------------------------------------------------------- 7. SIGTERM

def test_guarantee_sigterm_lets_a_request_held_between_begin_and_commit_finish_then_exits_0():
    """Deterministic: the request's commit waits in the proxy when its partnerd gets
    SIGTERM; the request must still get its real answer, and the process exit 0 soon after."""
    with own_stack(partnerds=1) as st:
        problems = []
        proxy = RedisProxy(st.redis_port)
        try:
            sock = add_partnerd(st, "partnerd-px", ["--redis-timeout-ms", "5000"], redis_url=proxy.url, workers=4)
            px = HttpClient(add_front(st, "nginx-px", [sock]))
            wait_health(px)
            c = 7071
            proxy.arm(commit_of(ORG, c))
            out = {}
            th = threading.Thread(target=lambda: out.update(r=px.post(LINK, body_of(
                LINK, [(c, [link_item("Plain", "TERM-%d" % c)])]))), daemon=True)
            th.start()
            assert proxy.held.wait(10), "the commit never reached the proxy"
            pp = st.proc("partnerd-px")
            os.kill(pp.pid, signal.SIGTERM)
            time.sleep(1.0)
            alive = pp.poll() is None
            t_rel = time.monotonic()
            proxy.release()
            th.join(15)
            try:
                rc = pp.wait(10)
            except Exception:
                rc = None
            secs = time.monotonic() - t_rel
            r = out.get("r")
            say("SIGTERM while a request was between begin and commit: still running 1 s later: %s; the request "
                "answered %s %s; exit status %s %.2f s after its commit was released", alive,
                r and r.status, r and r.status == 200 and [i[2] for i in items_of(r)], rc, secs)
            if not alive:
                problems.append("partnerd exited (status %r) with a request in flight" % pp.returncode)
            if r is None or r.status != 200 or [i[2] for i in items_of(r)] != [200]:
                problems.append("the in-flight request did not get its real answer: %r" % r)
            if rc != 0 or secs > 5:
                problems.append("exit status %r %.2f s after the in-flight request finished (want 0 within 5 s)"
                                % (rc, secs))
            m = memberships(st, c)
            if (m.get("Plain") or {}).get("mid") != "TERM-%d" % c:
                problems.append("the in-flight link is not stored: %r" % m)
            if _locks(st):
                problems.append("locks left: %s" % _locks(st))
        finally:
            proxy.close()
        ctl_check(st, problems)
        assert not problems, "\n".join(problems)


def test_guarantee_sigterm_of_partnerds_under_load_loses_no_request():
    """12 threads of random writes through nginx to 4 partnerd; partnerd-0, -1 and -2 get
    SIGTERM one after the other (partnerd-3 stays). Every request must get a real answer
    (nginx retries connection failures on another partnerd): a 502 means nginx handed the
    request to a stopping partnerd (on a kept-alive FastCGI connection or in the listen
    backlog) and it exited without reading it."""
    cids = list(range(7061, 7071))
    stopped = ["partnerd-0", "partnerd-1", "partnerd-2"]
    with own_stack(partnerds=4) as st:
        cl = HttpClient(st.http_port)
        results = []
        stop = threading.Event()
        ths = [threading.Thread(target=load_loop, args=(cl, cids, results, stop, 500 + k), daemon=True)
               for k in range(12)]
        for t in ths:
            t.start()
        exits = []
        for name in stopped:
            time.sleep(1.0)
            p = st.proc(name)
            t0 = time.monotonic()
            os.kill(p.pid, signal.SIGTERM)
            try:
                rc = p.wait(15)
            except Exception:
                rc = None
            exits.append((name, rc, time.monotonic() - t0))
        time.sleep(1.0)
        stop.set()
        for t in ths:
            t.join(30)
        by_status, by_code, fenced = counts(results)
        logged = {}
        for k in range(4):
            logged.update(logged_rids(st, "partnerd-%d" % k))
        logged0 = {}
        for name in stopped:
            logged0.update(logged_rids(st, name))
        logged1 = logged
        say("SIGTERM during load: %s; %d requests: HTTP %s; items %s",
            ", ".join("%s exited %s after %.2f s" % e for e in exits), len(results), dict(by_status),
            dict(sorted(by_code.items())))
        problems = []
        for name, rc, exit_secs in exits:
            if rc != 0 or exit_secs > 5:
                problems.append("%s exit status %r after %.2f s (want 0 within 5 s)" % (name, rc, exit_secs))
        want = ok_items(results)
        have = history_items(st, cids)
        lost = []
        for r in results:
            if r.error is not None:
                problems.append("transport error: %r" % r)
            elif r.status != 200:
                seen = r.rid in logged0 or r.rid in logged1
                applied = [k for k in have if k[0] == r.rid]
                say("HTTP %s for %s after %.3f s: logged by a partnerd: %s (status %s); activities applied: %d",
                    r.status, r.rid, r.secs, seen, logged0.get(r.rid, logged1.get(r.rid)), len(applied))
                if seen or applied:
                    problems.append("HTTP %s for a request partnerd processed (logged %s, %d activities): %r"
                                    % (r.status, logged0.get(r.rid, logged1.get(r.rid)), len(applied), r))
                else:
                    lost.append(r)
            elif r.rid in logged0 and logged0[r.rid] != 200:
                problems.append("a stopping partnerd logged %s for %s but the client got 200" % (logged0[r.rid], r.rid))
        # A request nginx sends on an idle kept-alive connection at the instant the stopping
        # partnerd closes it is reset before partnerd reads it: nginx answers 502 and nothing
        # is applied (checked above: not logged, no activity). That residual race of
        # FastCGI keep-alive is documented (docs/OPERATIONS.md); more than 0.5 % of the
        # requests lost that way would mean the drain itself is broken. (The race widens
        # with the machine's load: 0 to 0.05 % on a quiet machine, up to 0.17 % seen on a
        # loaded one, 2026-12-04; a drain that drops what it was handed loses far more.)
        if lost and len(lost) <= max(1, len(results) // 200):
            say("%d of %d requests answered 502 by nginx on a connection the stopping partnerd "
                "closed (not processed, nothing applied): the documented keep-alive race",
                len(lost), len(results))
        elif lost:
            for line in harness.tail(os.path.join(st.dir, "nginx-error.log"), 200).splitlines():
                if "[error]" in line and "upstream" in line:
                    say("nginx: %s", line[:400])
            problems.append("%d request(s) answered %s by nginx although another partnerd was up; partnerd never "
                            "processed them (not in its log, nothing applied): the drain drops requests already "
                            "handed to a stopping partnerd (see nginx-error.log: 'recv() failed (104: Connection reset by "
                            "peer) while reading response header from upstream'). E.g. %r"
                            % (len(lost), sorted(set(r.status for r in lost)), lost[0]))
        missing = want - have
        if missing:
            problems.append("200 items without history: %s" % list(missing)[:5])
        nonok = set(r.rid for r in results if r.status != 200)
        extra = [k for k in (have - want) if k[0] not in nonok]
        if extra:
            problems.append("history entries matching no 200 item: %s" % extra[:5])
        problems += check_history_chains(st, cids)
        if _locks(st):
            problems.append("locks left after the drain: %s" % _locks(st))
        ctl_check(st, problems)
        assert not problems, "\n".join(problems[:20])
