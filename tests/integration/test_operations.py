"""Operations (SPEC §6): Idempotency-Key, metrics, the request log, settings precedence,
and the per-credential rate limit shared by several partnerd processes.

Each test that needs particular partnerd settings builds its own stack."""
import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import re
import signal
import threading
import time

import activity
import keys
from harness import ACME, LINK, Stack, basic
from helpers import assert_error, by_mobile, drop_lock, entry, item, lock_of, take_lock
from support_guarantee import RedisProxy, add_front, add_partnerd, any_commit

DELINK = "/v2/partnerProgram/deLinkCustomer"
METRICS = "/v2/partnerProgram/metrics"


def _link_body(stack, c, mid=None):
    return {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", mid or stack.uid()))]}


def _codes(body):
    return [i["partnerLinkStatus"]["code"] for e in body["linkCustomers"]
            for i in e["linkToPartnerPrograms"]]


def test_idempotency_key_replays_the_stored_response_and_applies_nothing(stack):
    c = stack.customer()
    body = _link_body(stack, c)
    key = {"Idempotency-Key": "op-replay-%s" % stack.uid()}
    s1, h1, b1 = stack.post(LINK, body, headers=key)
    assert s1 == 200 and _codes(b1) == [200], (s1, b1)
    assert h1.get("Idempotent-Replayed") is None
    hist = stack.redis("LLEN", keys.hist("acme", c["id"]))
    s2, h2, b2 = stack.post(LINK, body, headers=key)
    assert s2 == 200 and h2.get("Idempotent-Replayed") == "true", (s2, dict(h2))
    assert b2 == b1, "the replay differs from the first answer:\n%r\n%r" % (b1, b2)
    assert stack.redis("LLEN", keys.hist("acme", c["id"])) == hist, "the replay applied something"
    # without the key, the same body is processed again: already linked
    s3, _, b3 = stack.post(LINK, body)
    assert s3 == 200 and _codes(b3) == [2005], b3


def test_idempotency_key_with_another_body_is_422_and_changes_nothing(stack):
    c, d = stack.customers(2)
    key = {"Idempotency-Key": "op-422-%s" % stack.uid()}
    s1, _, b1 = stack.post(LINK, _link_body(stack, c), headers=key)
    assert s1 == 200, b1
    before = stack.digest()[0]
    resp = stack.post(LINK, _link_body(stack, d), headers=key)
    assert_error(resp, 422)
    assert stack.digest()[0] == before
    # the same key on another route is another request too
    resp = stack.post(DELINK, {"deLinkCustomers": [{"customer": by_mobile(c),
                                                    "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeShop"}]}]},
                      headers=key)
    assert_error(resp, 422)


def test_idempotency_key_while_the_first_request_runs_is_409():
    # The first request stalls between lock and commit (a Redis proxy holds its commit
    # script call), the second with the same key arrives meanwhile: 409 with Retry-After;
    # the first then answers 200 and a third attempt replays it.
    with _stall_partnerd() as (st, proxy, port):
        c = st.customer()
        body = _link_body(st, c)
        key = {"Idempotency-Key": "op-409"}
        proxy.arm(any_commit("acme"))
        t, first = _in_background(lambda: _call_via(port, "POST", LINK, body, key))
        assert proxy.held.wait(15), "the first request's commit never reached the proxy: %r" % first
        second = st.post(LINK, body, headers=key)
        proxy.release()
        t.join(30)
        assert_error(second, 409)
        assert (second[1].get("Retry-After") or "").isdigit(), dict(second[1])
        s1, _, b1 = first["r"]
        assert s1 == 200 and _codes(b1) == [200], first["r"]
        s3, h3, b3 = st.post(LINK, body, headers=key)
        assert s3 == 200 and h3.get("Idempotent-Replayed") == "true" and b3 == b1, (s3, b3)


def _metric(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^(\w+)(?:\{([^}]*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        if not labels or all('%s="%s"' % kv in (m.group(2) or "") for kv in labels.items()):
            total += float(m.group(3))
    return total


def test_metrics_count_requests_items_and_latency(stack):
    s, h, before = stack.get(METRICS, auth=None)
    assert s == 200 and h.get("Content-Type", "").startswith("text/plain"), (s, dict(h))
    before = before.decode() if isinstance(before, bytes) else before
    c = stack.customer()
    body = {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()), item("NoSuchProgram", stack.uid()))]}
    stack.post(LINK, body)
    stack.post(LINK, b"{", content_type="application/json")
    _, _, after = stack.get(METRICS, auth=None)
    after = after.decode() if isinstance(after, bytes) else after
    d = lambda name, **l: _metric(after, name, **l) - _metric(before, name, **l)
    assert d("partnerd_requests_total", route="linkCustomer", status="200") == 1, after
    assert d("partnerd_requests_total", route="linkCustomer", status="400") == 1, after
    assert d("partnerd_items_total", code="200") == 1 and d("partnerd_items_total", code="2006") == 1, after
    assert d("partnerd_request_duration_seconds_count", route="linkCustomer") == 2, after
    for name in ("partnerd_redis_errors_total", "partnerd_lock_waits_total",
                 "partnerd_lock_timeouts_total", "partnerd_commits_fenced_total"):
        assert re.search(r"^%s \d+$" % name, after, re.M), name


def test_one_log_line_per_request_with_request_id_org_route_status_items_and_duration():
    st = Stack(workers=4)
    try:
        st.start()
        log = os.path.join(st.dir, "requests.log")
        st.stop_proc("partnerd-0")
        st.partnerd_args += ["--log", log]
        st._start_partnerd(0)
        c = st.customer()
        s, h, b = st.post(LINK, _link_body(st, c), headers={"X-Request-Id": "op-log-1"})
        assert s == 200 and h.get("X-Request-Id") == "op-log-1", (s, dict(h))
        st.get("/v2/partnerProgram/nowhere")
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline and "op-log-1" not in text:
            time.sleep(0.05)
            text = open(log).read() if os.path.exists(log) else ""
        line = [l for l in text.splitlines() if "rid=op-log-1" in l]
        assert len(line) == 1, text
        f = dict(kv.split("=", 1) for kv in line[0].split())
        assert f["org"] == "acme" and f["route"] == "linkCustomer" and f["status"] == "200", f
        assert f["items_ok"] == "1" and f["items_failed"] == "0" and float(f["ms"]) >= 0, f
        assert re.match(r"\d{4}-\d\d-\d\dT", f["time"]), f
        assert re.search(r"route=- method=GET status=404", text), text
        assert "acme_secret" not in text and "Authorization" not in text
    finally:
        st.stop()


def test_settings_precedence_flag_over_environment_over_config_file():
    # max-body from the file (2048) is overridden by the environment (4096): a 3000-byte
    # body passes; then a flag (--max-body 1024) wins over both: 413 from partnerd.
    st = Stack(workers=4)
    try:
        st.start()
        conf = os.path.join(st.dir, "partnerd.conf")
        with open(conf, "w") as f:
            f.write("# test config\nmax-body = 2048\nhistory-max = 7\n")
        c = st.customer()
        # padded with a field partnerd ignores (a membership id is at most 128 bytes)
        pad = {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", st.uid(), note="x" * 2900))]}
        assert 2048 < len(json.dumps(pad)) < 4096
        st.stop_proc("partnerd-0")
        st.partnerd_args += ["--config", conf]
        st.partnerd_env["PARTNERD_MAX_BODY"] = "4096"
        st._start_partnerd(0)
        s, _, b = st.post(LINK, pad)
        assert s == 200 and _codes(b) == [200], (s, b)
        st.stop_proc("partnerd-0")
        st.partnerd_args += ["--max-body", "1024"]
        st._start_partnerd(0)
        assert_error(st.post(LINK, _link_body(st, st.customer(), "P" + "y" * 1100)), 413)
        # a setting only the file names is taken from it: history trimmed to 7
        d = st.customer()
        st.stop_proc("partnerd-0")
        st.partnerd_args = [a for a in st.partnerd_args if a not in ("--max-body", "1024")]
        st._start_partnerd(0)
        for k in range(9):
            st.post(LINK, {"linkCustomers": [entry(by_mobile(d), item("AcmeShop", st.uid()))]})
            st.post(DELINK, {"deLinkCustomers": [{"customer": by_mobile(d),
                                                  "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeShop"}]}]})
        assert st.redis("LLEN", keys.hist("acme", d["id"])) == 7
    finally:
        st.stop()


def test_rate_limit_is_shared_by_two_partnerd_processes_and_answers_429():
    # 8 workers: at most three quarters of them may be inside password checks (docs/SECURITY.md),
    # so the 4 concurrent cold-cache requests below never meet that bound (503) on one partnerd.
    st = Stack(partnerds=2, partnerd_args=["--rate-limit", "6"], workers=8)
    try:
        st.start()
        c = st.customer()
        url = "/v2/partnerProgram/customerPartnerPrograms?identifierName=id&identifierValue=%d" % c["id"]
        # wait for a fresh minute window if the current one is about to end
        now = float(st.redis("TIME")[0])
        if now % 60 > 50:
            time.sleep(61 - now % 60)
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda _: st.get(url), range(10)))
        codes = sorted(r[0] for r in got)
        assert codes == [200] * 6 + [429] * 4, codes
        for r in got:
            if r[0] == 429:
                assert_error(r, 429)
                ra = r[1].get("Retry-After") or ""
                assert ra.isdigit() and 1 <= int(ra) <= 60, ra
        # the writes count against the same budget: refused without being applied
        before = st.digest(keys.of_customer("acme", c["id"]))[0]
        resp = st.post(LINK, _link_body(st, c))
        assert_error(resp, 429)
        assert st.digest(keys.of_customer("acme", c["id"]))[0] == before
        # another credential has its own budget
        s, _, _ = st.get(url.replace(str(c["id"]), "4001"), auth=("globex_api", "globex_secret"))
        assert s == 200
    finally:
        st.stop()


# ---------------------------------------------------------------- Idempotency-Key fencing
# SPEC §6: the claim of an Idempotency-Key is fenced like a lock: a request whose claim
# expired or was taken over by a repeat can neither apply its changes nor store its
# response. Each test runs partnerd-0 behind the stack's nginx (the client's repeats) and a
# second partnerd, "partnerd-stall", behind its own nginx, which gets stopped or stalled.

def _idem_key(org, key):
    """The Redis key of an Idempotency-Key's claim (docs/DATA-MODEL.md)."""
    return keys.idem(org, hashlib.blake2b(key.encode(), digest_size=16).hexdigest())


def _call_via(port, method, path, body=None, headers=None, timeout=30):
    """(status, headers, parsed body) of one request to the nginx on `port`, as acme."""
    h = {"Authorization": basic(*ACME)}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, resp.headers, json.loads(raw)
        except ValueError:
            return resp.status, resp.headers, raw
    finally:
        conn.close()


def _in_background(fn):
    """Runs fn() in a thread; returns (thread, dict that gets "r": fn's result)."""
    out = {}
    t = threading.Thread(target=lambda: out.update(r=fn()), daemon=True)
    t.start()
    return t, out


@contextlib.contextmanager
def _stall_partnerd():
    """A started Stack(workers=4) plus a second partnerd behind its own nginx, talking to
    Redis through a RedisProxy that can hold one command (e.g. a commit script call):
    yields (stack, proxy, nginx port). On the way out the proxy is closed (if it was
    made) and the stack stops."""
    st = Stack(workers=4)
    proxy = None
    try:
        st.start()
        proxy = RedisProxy(st.redis_port)
        sock = add_partnerd(st, "partnerd-stall", ["--redis-timeout-ms", "10000"], redis_url=proxy.url)
        yield st, proxy, add_front(st, "nginx-stall", [sock])
    finally:
        if proxy is not None:
            proxy.close()
        st.stop()


def _until(cond, secs, what):
    deadline = time.monotonic() + secs
    while not cond():
        assert time.monotonic() < deadline, "%s: not within %.0f s" % (what, secs)
        time.sleep(0.02)


def _wait_lock_waiting(port, secs=15):
    """Until the partnerd behind `port` has retried a busy lock at least once."""
    def waited():
        s, _, text = _call_via(port, "GET", METRICS, timeout=5)
        text = text.decode() if isinstance(text, bytes) else str(text)
        return s == 200 and _metric(text, "partnerd_lock_waits_total") >= 1
    _until(waited, secs, "the stalled request waiting for the lock")


def _delink_body(c, program):
    return {"deLinkCustomers": [{"customer": by_mobile(c),
                                 "deLinkFromPartnerPrograms": [{"partnerProgramName": program}]}]}


def _history(st, cid):
    """The customer's activities, oldest first, as (activityType, requestId)."""
    return [(e["activityType"], e["requestId"]) for e in
            (activity.load(x, cid) for x in reversed(st.redis("LRANGE", keys.hist("acme", cid), 0, -1)))]


@contextlib.contextmanager
def _lock_waiting_partnerd():
    """A started Stack(workers=4) plus partnerd-stall (waits up to 60 s for a busy lock)
    behind its own nginx: yields (stack, that nginx's port, partnerd-stall's process).
    On the way out partnerd-stall gets SIGCONT if it still runs, and the stack stops."""
    st = Stack(workers=4)
    stopped = None
    try:
        st.start()
        sock = add_partnerd(st, "partnerd-stall", ["--lock-wait-ms", "60000"])
        port = add_front(st, "nginx-stall", [sock])
        stopped = st.proc("partnerd-stall")
        yield st, port, stopped
    finally:
        if stopped is not None and stopped.poll() is None:
            os.kill(stopped.pid, signal.SIGCONT)
        st.stop()


def _stop_while_waiting_for(st, lock, stopped, port, body, headers):
    """Holds `lock` (org, customer id) by hand, POSTs the link `body` through `port` in the background and
    SIGSTOPs partnerd-stall once it waits for the lock. Returns _in_background's (thread, box)."""
    take_lock(st, *lock, token="feedfacefeedfacefeedfacefeedface", for_ms=20000)
    t, first = _in_background(lambda: _call_via(port, "POST", LINK, body, headers))
    _wait_lock_waiting(port)
    os.kill(stopped.pid, signal.SIGSTOP)
    return t, first


def _expire(st, claim):
    """Makes the Idempotency-Key claim expire now and waits until it is gone."""
    st.redis("PEXPIRE", claim, 1)
    _until(lambda: not st.redis("EXISTS", claim), 5, "the claim's expiry")


def _delink_and_resume(st, c, rid, stopped, t):
    """Delinks c from AcmeShop (must answer 200), then SIGCONTs partnerd-stall and waits
    (30 s at most) for the stopped request's thread t."""
    s3, _, b3 = st.post(DELINK, _delink_body(c, "AcmeShop"), headers={"X-Request-Id": rid})
    assert s3 == 200 and b3["deLinkCustomers"][0]["deLinkFromPartnerPrograms"][0]["partnerDeLinkStatus"]["code"] == 200, b3
    os.kill(stopped.pid, signal.SIGCONT)
    t.join(30)


def test_idempotency_key_whose_claim_expired_while_its_request_was_stopped_applies_nothing_and_stores_nothing():
    # The defect of issue 12: hold a customer's lock by hand, send a link with key K to a
    # partnerd that waits for the lock, SIGSTOP it, let K's claim expire, repeat with K
    # (200, linked), delink (200), SIGCONT: the stopped request must not link again nor
    # replace K's stored response. It answers 409 (nothing of it applied).
    with _lock_waiting_partnerd() as (st, port, stopped):
        c = st.customer()
        mid = st.uid("IF")
        body = _link_body(st, c, mid)
        key = "op-fence-%s" % st.uid()
        claim = _idem_key("acme", key)
        lock = ("acme", c["id"])
        t, first = _stop_while_waiting_for(st, lock, stopped, port, body, {
            "Idempotency-Key": key, "X-Request-Id": "op-fence-stalled"})
        assert st.redis("HGET", claim, "s") == b"running", st.redis("HGETALL", claim)
        _expire(st, claim)
        drop_lock(st, *lock)
        s2, h2, b2 = st.post(LINK, body, headers={"Idempotency-Key": key, "X-Request-Id": "op-fence-retry"})
        assert s2 == 200 and h2.get("Idempotent-Replayed") is None and _codes(b2) == [200], (s2, b2)
        _delink_and_resume(st, c, "op-fence-delink", stopped, t)
        assert "r" in first, "the stopped request did not answer after SIGCONT"
        assert st.membership(c["id"], "AcmeShop") is None, \
            "the stopped request linked again after the delink: %r (it answered %r)" % (
                st.membership(c["id"], "AcmeShop"), first["r"])
        assert st.mid_holder("AcmeShop", mid) is None, st.mid_holder("AcmeShop", mid)
        assert _history(st, c["id"]) == [("LINK", "op-fence-retry"), ("DELINK", "op-fence-delink")], \
            _history(st, c["id"])
        s4, h4, b4 = st.post(LINK, body, headers={"Idempotency-Key": key})
        assert s4 == 200 and h4.get("Idempotent-Replayed") == "true", (s4, dict(h4), b4)
        assert b4 == b2, "K's stored response is not the repeat's:\n%r\n%r" % (b4, b2)
        assert_error(first["r"], 409)
        assert "claim expired" in first["r"][2]["errors"][0]["message"], first["r"]
        assert (first["r"][1].get("Retry-After") or "").isdigit(), dict(first["r"][1])
        assert lock_of(st, *lock) is None


def test_idempotency_key_fenced_after_an_earlier_round_applied_answers_those_200_and_the_rest_2001():
    # Two customers with key K: X is free (committed in the first round), Y is locked by
    # hand (the request waits). Stopped, its claim expires, a repeat with K takes it over
    # (X: 2005, already linked by the first; Y: 200), then Y is delinked. After SIGCONT the
    # first request answers 200 with X's item 200 (applied) and Y's item 2001 (its claim
    # was gone: nothing applied, Y stays delinked), and K keeps the repeat's response.
    with _lock_waiting_partnerd() as (st, port, stopped):
        x, y = st.customers(2)
        body = {"linkCustomers": [entry(by_mobile(x), item("AcmeShop", st.uid("IFX"))),
                                  entry(by_mobile(y), item("AcmeShop", st.uid("IFY")))]}
        key = "op-fence-mixed-%s" % st.uid()
        claim = _idem_key("acme", key)
        lock = ("acme", y["id"])
        t, first = _stop_while_waiting_for(st, lock, stopped, port, body, {
            "Idempotency-Key": key, "X-Request-Id": "op-fence-mixed-stalled"})
        assert st.membership(x["id"], "AcmeShop") is not None, "X was not committed in the first round"
        _expire(st, claim)
        drop_lock(st, *lock)
        s2, _, b2 = st.post(LINK, body, headers={"Idempotency-Key": key, "X-Request-Id": "op-fence-mixed-retry"})
        assert s2 == 200 and _codes(b2) == [2005, 200], (s2, b2)
        _delink_and_resume(st, y, "op-fence-mixed-delink", stopped, t)
        s1, _, b1 = first["r"]
        assert s1 == 200 and _codes(b1) == [200, 2001], first["r"]
        msg = b1["linkCustomers"][1]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["message"]
        assert "Idempotency-Key claim expired" in msg and "nothing of it was applied" in msg, msg
        assert st.membership(y["id"], "AcmeShop") is None, st.membership(y["id"], "AcmeShop")
        assert _history(st, y["id"]) == [("LINK", "op-fence-mixed-retry"), ("DELINK", "op-fence-mixed-delink")], \
            _history(st, y["id"])
        assert _history(st, x["id"]) == [("LINK", "op-fence-mixed-stalled")], _history(st, x["id"])
        s4, h4, b4 = st.post(LINK, body, headers={"Idempotency-Key": key})
        assert s4 == 200 and h4.get("Idempotent-Replayed") == "true" and b4 == b2, (s4, b4, b2)


def test_idempotency_key_response_of_a_request_stalled_after_its_commit_is_not_stored_over_the_repeat():
    # The commit went through, then the request stalls before storing its response (a
    # Redis proxy holds that call); meanwhile its claim expires and a repeat with K is
    # processed (2005: already linked) and stored. The late store must be refused: K
    # replays the repeat's response. The stalled request still answers its own outcome.
    with _stall_partnerd() as (st, proxy, port):
        c = st.customer()
        body = _link_body(st, c)
        key = "op-fence-store-%s" % st.uid()
        claim = _idem_key("acme", key).encode()
        # the call that stores the response: names the claim and is not the claim itself
        # (main's code: HSET of the claim; now: the idem script's "finish")
        proxy.arm(lambda args: claim in args and (args[0].upper() == b"HSET" or b"finish" in args))
        t, first = _in_background(lambda: _call_via(port, "POST", LINK, body, {"Idempotency-Key": key}))
        assert proxy.held.wait(15), "the stalled request never tried to store its response: %r" % first
        assert st.membership(c["id"], "AcmeShop") is not None
        _expire(st, claim)
        s2, h2, b2 = st.post(LINK, body, headers={"Idempotency-Key": key})
        assert s2 == 200 and h2.get("Idempotent-Replayed") is None and _codes(b2) == [2005], (s2, b2)
        proxy.release()
        t.join(30)
        s1, _, b1 = first["r"]
        assert s1 == 200 and _codes(b1) == [200], first["r"]
        s3, h3, b3 = st.post(LINK, body, headers={"Idempotency-Key": key})
        assert s3 == 200 and h3.get("Idempotent-Replayed") == "true", (s3, dict(h3))
        assert b3 == b2, "K's stored response was replaced by the stalled request's:\n%r\n%r" % (b3, b2)
