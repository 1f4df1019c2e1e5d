"""Operations (SPEC §6): Idempotency-Key, metrics, the request log, settings precedence,
and the per-credential rate limit shared by several partnerd processes.

Each test that needs particular partnerd settings builds its own stack."""
import concurrent.futures
import json
import os
import re
import threading
import time

from harness import ACME, LINK, Stack
from helpers import assert_error, by_mobile, entry, item

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
    hist = stack.redis("LLEN", "pp:{acme:%d}:h" % c["id"])
    s2, h2, b2 = stack.post(LINK, body, headers=key)
    assert s2 == 200 and h2.get("Idempotent-Replayed") == "true", (s2, dict(h2))
    assert b2 == b1, "the replay differs from the first answer:\n%r\n%r" % (b1, b2)
    assert stack.redis("LLEN", "pp:{acme:%d}:h" % c["id"]) == hist, "the replay applied something"
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
    # The first request stalls between lock and commit (test hook), the second with the
    # same key arrives meanwhile: 409 with Retry-After; the first then answers 200 and
    # a third attempt replays it.
    st = Stack(partnerd_env={"PARTNERD_TEST_STALL_BEFORE_COMMIT_MS": "1500"}, workers=8)
    try:
        st.start()
        c = st.customer()
        body = _link_body(st, c)
        key = {"Idempotency-Key": "op-409"}
        first = {}
        t = threading.Thread(target=lambda: first.update(r=st.post(LINK, body, headers=key)))
        t.start()
        time.sleep(0.5)
        second = st.post(LINK, body, headers=key)
        t.join(20)
        assert_error(second, 409)
        assert (second[1].get("Retry-After") or "").isdigit(), dict(second[1])
        s1, _, b1 = first["r"]
        assert s1 == 200 and _codes(b1) == [200], first["r"]
        s3, h3, b3 = st.post(LINK, body, headers=key)
        assert s3 == 200 and h3.get("Idempotent-Replayed") == "true" and b3 == b1, (s3, b3)
    finally:
        st.stop()


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
        assert st.redis("LLEN", "pp:{acme:%d}:h" % d["id"]) == 7
    finally:
        st.stop()


def test_rate_limit_is_shared_by_two_partnerd_processes_and_answers_429():
    st = Stack(partnerds=2, partnerd_args=["--rate-limit", "6"], workers=4)
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
        before = st.digest("pp:{acme:%d}:*" % c["id"])[0]
        resp = st.post(LINK, _link_body(st, c))
        assert_error(resp, 429)
        assert st.digest("pp:{acme:%d}:*" % c["id"])[0] == before
        # another credential has its own budget
        s, _, _ = st.get(url.replace(str(c["id"]), "4001"), auth=("globex_api", "globex_secret"))
        assert s == 200
    finally:
        st.stop()
