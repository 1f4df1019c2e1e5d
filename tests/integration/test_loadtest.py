"""scripts/loadtest (docs/LOADTEST.md, issue 17) end to end at a tiny size, on a stack of its
own: org `loadtest` from examples/loadtest.json (program LoadTest-Partner), plus an org
`ltforeign` holding one customer the kit did not create. Each run's report is checked
against partnerd's own /metrics, scraped by the test itself before and after the run.
Needs wrk and python3-matplotlib (scripts/install-deps): a missing one fails.
"""

import json
import os
import re
import subprocess
import sys

from harness import Stack, partnerctl_bin, srcdir

ORG = "loadtest"
CRED = "loadtest_api:loadtest_secret"
PROGRAM = "LoadTest-Partner"
METRICS = "/v2/partnerProgram/metrics"
FOREIGN = {"orgs": [{"id": "ltforeign", "defaultCountryCode": "91", "nationalNumberLength": 10,
                     "credentials": [{"username": "ltforeign_api", "password": "ltforeign_secret"}],
                     "programs": [{"name": "P", "type": "EXTERNAL", "tiers": ["T"]}],
                     "customers": [{"id": 42, "email": "someone@example.com"}]}]}

_own = None


def _stack():
    global _own
    if _own is None:
        _own = Stack(fixtures=os.path.join(srcdir(), "examples", "loadtest.json"))
        _own.start()
        path = os.path.join(_own.dir, "foreign.json")
        with open(path, "w") as f:
            json.dump(FOREIGN, f)
        _own.load(path)
    return _own


def kit(st, *args, timeout=120):
    """Runs scripts/loadtest VERB ... against st: (exit status, stdout, stderr)."""
    argv = [sys.executable, os.path.join(srcdir(), "scripts", "loadtest")] + [str(a) for a in args]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, cwd=st.dir)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def target(st, org=ORG, cred=CRED, customers=40, prefix="lt-", program=PROGRAM, tier="Silver"):
    return ["--url", "http://127.0.0.1:%d" % st.http_port, "--credential", cred, "--org", org,
            "--customers", customers, "--prefix", prefix, "--redis", st.redis_url,
            "--partnerctl", partnerctl_bin(), "--program", program, "--tier", tier]


def counters(st):
    """(requests {route: {status: n}}, items {code: n}) of one /metrics scrape."""
    status, _, body = st.request("GET", METRICS, auth=None)
    assert status == 200, status
    req, items = {}, {}
    for line in body.decode().splitlines():
        m = re.match(r'^partnerd_requests_total\{route="(\w+)",status="(\w+)"\} (\d+)$', line)
        if m:
            req.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
        m = re.match(r'^partnerd_items_total\{code="(\w+)"\} (\d+)$', line)
        if m:
            items[m.group(1)] = int(m.group(2))
    return req, items


def since(before, after):
    """Per-route request counts and per-code item counts added between two scrapes. A run
    reads the last kit customer once before its load (is it there?): one customerPartnerPrograms
    request of partnerd's that is not the load's."""
    (rb, ib), (ra, ia) = before, after
    routes = {}
    for route, by in ra.items():
        n = sum(by.values()) - sum(rb.get(route, {}).values())
        if n and route != "metrics":
            routes[route] = n
    items = {c: n - ib.get(c, 0) for c, n in ia.items() if n - ib.get(c, 0)}
    return routes, items


def org_customers(st, org):
    rc, out, err = st.ctl("check", "--org", org)
    m = re.search(r"checked (\d+) customers", out + err)
    assert m, out + err
    return int(m.group(1))


def prepared(st, prefix, customers, *extra):
    rc, out, err = kit(st, "prepare", *target(st, customers=customers, prefix=prefix), *extra)
    assert rc == 0, out + err
    return err


def report_of(out):
    m = re.search(r"^  report +(\S+)$", out, re.M)
    assert m, out
    with open(m.group(1)) as f:
        return json.load(f)


def test_loadtest_prepare_refuses_an_org_holding_customers_it_did_not_create():
    st = _stack()
    digest = st.digest()
    rc, out, err = kit(st, "prepare", *target(st, org="ltforeign", cred="ltforeign_api:ltforeign_secret",
                                             customers=5))
    assert rc == 2, (rc, out, err)
    assert "org ltforeign holds 1 customers the kit did not create" in err and "--force" in err, err
    assert st.digest() == digest, "a refused prepare changed the store"
    # Told to, it adds its own customers beside the foreign one (and links them).
    rc, out, err = kit(st, "prepare", *target(st, org="ltforeign", cred="ltforeign_api:ltforeign_secret",
                                             customers=5, program="P", tier="T"), "--force")
    assert rc == 0, err
    assert org_customers(st, "ltforeign") == 6
    rc, show, _ = st.ctl("show", "--org", "ltforeign", "--external-id", "lt-4")
    assert rc == 0 and json.loads(show)["id"] == 7700000000004, show


def test_loadtest_prepare_again_keeps_what_it_made_and_refuses_bad_options():
    st = _stack()
    err = prepared(st, "lt-", 30)
    assert "link item codes: {\"200\": 30}" in err, err
    err = prepared(st, "lt-", 60)      # its own customers are no reason to refuse: adds 30..59
    assert "importing kit customers 30..59" in err and '{"200": 30, "2005": 30}' in err, err
    err = prepared(st, "lt-", 60)
    assert "the 60 kit customers are there already" in err and '{"2005": 60}' in err, err
    assert org_customers(st, ORG) == 60
    for bad, said in ((["--batch", "51"], "--batch must be 1..50"),
                      (["--requests", "2", "--connections", "4"], "must be at least --connections"),
                      (["--rate", "0"], "--rate must be more than 0")):
        rc, out, err = kit(st, "run", "update", *target(st, customers=60, prefix="lt-"), *bad)
        assert rc == 2 and said in err, (bad, rc, err)
    rc, out, err = kit(st, "run", "update", "--url", "http://127.0.0.1:%d/v2/x" % st.http_port,
                       *target(st, customers=60, prefix="lt-")[2:])
    assert rc == 2 and "give the base URL only" in err, err


def test_loadtest_delink_then_link_walk_every_kit_customer_once():
    st = _stack()
    prepared(st, "lt-", 60)
    for workload in ("delink", "link"):   # customers 0..39: 2 connections x 4 requests x 5
        before = counters(st)
        rc, out, err = kit(st, "run", workload, *target(st, customers=40, prefix="lt-"),
                           "--requests", 8, "--connections", 2, "--batch", 5, "--out", "walk-" + workload)
        assert rc == 0, out + err
        rep = report_of(out)
        routes, items = since(before, counters(st))
        route = {"link": "linkCustomer", "delink": "deLinkCustomer"}[workload]
        assert rep["summary"]["requests"] == 8, rep["summary"]
        assert routes == {route: 8, "customerPartnerPrograms": 1}, routes
        assert rep["summary"]["items"] == {"200": 40} == items, (rep["summary"]["items"], items)
        assert rep["summary"]["customer_entries"] == 40


def test_loadtest_closed_loop_report_agrees_with_partnerd_metrics():
    st = _stack()
    prepared(st, "lt-", 60)
    before = counters(st)
    rc, out, err = kit(st, "run", "update", *target(st, customers=60, prefix="lt-"),
                       "--requests", 120, "--connections", 4, "--batch", 5, "--out", "closed")
    assert rc == 0, out + err
    after = counters(st)
    rep = report_of(out)
    s = rep["summary"]
    routes, items = since(before, after)
    assert s["requests"] == 120 == routes["customerPartnerProgramUpdate"], (s, routes)
    assert routes == {"customerPartnerProgramUpdate": 120, "customerPartnerPrograms": 1}, routes
    assert s["http_status"] == {"200": 120} and s["http_errors"] == 0 and s["socket_errors"] == 0, s
    assert s["customer_entries"] == 600
    assert s["items"] == items and sum(items.values()) == 600, (s["items"], items)
    assert set(s["latency_ms"]) >= {"p50", "p90", "p99", "p99.9"}, s["latency_ms"]
    assert s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["p99.9"]
    assert "coordinated omission applies" in s["latency_measured_from"]
    # The kit's own view of partnerd's counters says the same; Redis's INFO was read.
    assert rep["partnerd"]["agreement"]["requests"] == {"report": 120, "partnerd": 120}, rep["partnerd"]
    assert rep["redis"]["delta"]["total_commands_processed"] > 0, rep["redis"]
    assert abs(sum(x["requests_per_s"] * x["width_s"] for x in rep["timeline"]) - 120) < 1, rep["timeline"]
    with open(rep["picture"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", rep["picture"]


def test_loadtest_target_rate_report_agrees_with_partnerd_metrics():
    st = _stack()
    prepared(st, "lt-", 60)
    before = counters(st)
    rc, out, err = kit(st, "run", "mix", *target(st, customers=60, prefix="lt-"),
                       "--rate", 100, "--duration", 3, "--ramp-up", 1, "--connections", 4,
                       "--out", "rate", "--picture", "rate/picture.svg")
    assert rc == 0, out + err
    after = counters(st)
    rep = report_of(out)
    s = rep["summary"]
    routes, items = since(before, after)
    # 1 s of ramp to 100/s then 2 s at 100/s: about 250 requests. Requests still in flight when
    # wrk stops (at most one per connection) are partnerd's but not the report's.
    assert 200 <= s["requests"] <= 260, s
    assert s["requests"] + 1 <= sum(routes.values()) <= s["requests"] + 1 + 4, (s["requests"], routes)
    for route, n in s["requests_by_route"].items():
        n += route == "customerPartnerPrograms"
        assert n <= routes.get(route, 0) <= n + 4, (route, n, routes)
    for code, n in s["items"].items():
        assert n <= items.get(code, 0) <= n + 4, (code, n, items)
    assert "no coordinated omission" in s["latency_measured_from"], s
    assert s["http_errors"] == 0, s
    with open(os.path.join(st.dir, "rate", "picture.svg")) as f:
        assert "<svg" in f.read(2000)
