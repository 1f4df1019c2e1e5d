"""The operator's monitoring files against a live partnerd (docs/OPERATIONS.md "Dashboard and
alerts"): every metric that examples/grafana/partnerd-dashboard.json and
examples/prometheus/partnerd-rules.yml query exists in a real /metrics answer, with the labels
they match on, and every label value they match exactly is one partnerd can export.

The PromQL is read by a small tokenizer, not a full parser: string literals, range and
subquery brackets, Grafana's `$variables`, the label lists of by/without/on/ignoring/
group_left/group_right, function names (an identifier before `(`) and keywords are dropped;
what is left are metric names. `up` is no partnerd metric: Prometheus adds it to every
target (as it adds the labels job and instance). promtool's own checks of both files are
tests/prometheus/check."""
import json
import os
import re

from harness import LINK, srcdir
from helpers import by_mobile, entry, item

METRICS = "/v2/partnerProgram/metrics"
HEALTH = "/v2/partnerProgram/health"
DASHBOARD = os.path.join("examples", "grafana", "partnerd-dashboard.json")
RULES = os.path.join("examples", "prometheus", "partnerd-rules.yml")

# Series Prometheus makes itself for each target, and the labels it adds to every series.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan"}
STRING = r'"(?:[^"\\]|\\.)*"'
NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"


def dashboard_exprs(path):
    d = json.load(open(path))
    out = []
    for p in d["panels"]:
        out += [("%s: %s" % (p.get("title"), t["refId"]), t["expr"]) for t in p.get("targets", [])]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q)
            assert m, "variable %s: not label_values(SELECTOR, LABEL): %s" % (v["name"], q)
            out.append(("variable %s" % v["name"], m.group(1)))
            out.append(("variable %s" % v["name"], "%s{%s=~\".+\"}" % (m.group(1).split("{")[0], m.group(2))))
    return out


def rules_exprs(path):
    """The `expr:` of each rule: the file's YAML read by hand (a block scalar `|` or one line),
    so the test needs no YAML module."""
    lines = open(path).read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:- )?(alert|record|expr):\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        if m.group(2) != "expr":
            name = m.group(3)
            continue
        if m.group(3) in ("|", ">", "|-", ">-"):
            body = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(m.group(1))):
                body.append(lines[i])
                i += 1
            out.append((name, "\n".join(body)))
        else:
            out.append((name, m.group(3)))
    return out


def selectors(expr):
    """[(metric, {label: (op, value)})] of an expression, by the tokenizer described above."""
    e = re.sub(r"\$\{?\w+\}?", "", expr)                  # Grafana variables
    found = []
    for m in re.finditer(r"(%s)?\s*\{((?:[^}\"]|%s)*)\}" % (NAME, STRING), e):
        matchers = {}
        for lm in re.finditer(r"(%s)\s*(=~|!~|!=|=)\s*(%s)" % (NAME, STRING), m.group(2)):
            matchers[lm.group(1)] = (lm.group(2), json.loads(lm.group(3)))
        if m.group(1):
            found.append((m.group(1), matchers))
    e = re.sub(r"\{(?:[^}\"]|%s)*\}" % STRING, " ", e)   # label matchers
    e = re.sub(STRING, " ", e)                            # other strings
    e = re.sub(r"\[[^\]]*\]", " ", e)                     # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\b\d[\w.]*", " ", e)                     # numbers, durations
    named = {n for n, _ in found}
    for m in re.finditer(r"(%s)(\s*\()?" % NAME, e):
        if m.group(2) or m.group(1).lower() in KEYWORDS or m.group(1) in named:
            continue
        found.append((m.group(1), {}))
    return found


def scrape(text):
    """{sample name: {label: set of values}} of a Prometheus text answer."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(%s)(?:\{(.*)\})?\s" % NAME, line)
        assert m, "not a sample line: %r" % line
        labels = series.setdefault(m.group(1), {})
        for lm in re.finditer(r"(%s)=(%s)" % (NAME, STRING), m.group(2) or ""):
            labels.setdefault(lm.group(1), set()).add(json.loads(lm.group(2)))
    return series


def exportable_values():
    """The label values src/metrics.c can export (its route, status and code tables): a
    live answer shows only those that were counted."""
    src = open(os.path.join(srcdir(), "src", "metrics.c")).read()

    def table(name):
        m = re.search(r"\b%s\[\]\s*=\s*\{(.*?)\};" % name, src, re.S)
        assert m, "src/metrics.c: no table %s" % name
        return set(re.findall(r'"([^"]*)"', m.group(1))) | set(re.findall(r"\b(\d+)\b", m.group(1)))

    return {"route": table("route_names"), "status": table("statuses") | {"other"},
            "code": table("codes") | {"other"}}


def problems_of(queries, series, known):
    bad = []
    for where, expr in queries:
        sel = selectors(expr)
        if not sel:
            bad.append("%s: no metric found in %r" % (where, expr))
        for name, matchers in sel:
            if name in PROMETHEUS_SERIES:
                continue
            if name not in series:
                bad.append("%s: metric %s is not in /metrics" % (where, name))
                continue
            for label, (op, value) in matchers.items():
                if label in TARGET_LABELS:
                    continue
                if label not in series[name]:
                    bad.append("%s: %s has no label %s" % (where, name, label))
                elif op in ("=", "!=") and value not in series[name][label] | known.get(label, set()):
                    bad.append("%s: %s{%s=%r}: partnerd exports no such value" % (where, name, label, value))
    return bad


def test_dashboard_and_alert_rules_query_only_metrics_partnerd_exports(stack):
    top = srcdir()
    queries = dashboard_exprs(os.path.join(top, DASHBOARD)) + rules_exprs(os.path.join(top, RULES))
    assert len(queries) >= 20, queries
    # Traffic on every route family the files look at: a write with an applied item and a
    # refused one (items), health, metrics.
    c = stack.customer()
    s, _, _ = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()),
                                                        item("NoSuchProgram", stack.uid()))]})
    assert s == 200, s
    assert stack.get(HEALTH, auth=None)[0] == 200
    assert stack.get(METRICS, auth=None)[0] == 200
    s, _, text = stack.get(METRICS, auth=None)
    assert s == 200, s
    series = scrape(text.decode() if isinstance(text, bytes) else text)
    bad = problems_of(queries, series, exportable_values())
    assert not bad, "\n".join(bad)
    # The tokenizer itself: it must see every metric of the files, and catch one that is not there.
    used = {n for _, e in queries for n, _ in selectors(e)}
    assert {"partnerd_requests_total", "partnerd_request_duration_seconds_bucket", "partnerd_items_total",
            "partnerd_lock_timeouts_total", "partnerd_redis_errors_total", "up"} <= used, used
    assert problems_of([("probe", 'sum(rate(partnerd_no_such_total{job="x"}[5m])) by (instance)')],
                       series, {}) == ["probe: metric partnerd_no_such_total is not in /metrics"]
    assert problems_of([("probe", 'rate(partnerd_items_total{code="9999"}[5m])')], series,
                       exportable_values()) != []


def _rounds(stack):
    """partnerd_redis_round_trips_total by route, from the (one) partnerd's /metrics, with the
    credential checks' round trips (partnerd_login_redis_round_trips_total) under "login"."""
    st, _, body = stack.get(METRICS)
    assert st == 200, st
    text = body if isinstance(body, str) else body.decode() if isinstance(body, bytes) else str(body)
    out = {}
    for m in re.finditer(r'^partnerd_redis_round_trips_total\{route="(\w+)"\} (\d+)$', text, re.M):
        out[m.group(1)] = int(m.group(2))
    m = re.search(r'^partnerd_login_redis_round_trips_total (\d+)$', text, re.M)
    assert m, "no partnerd_login_redis_round_trips_total in /metrics"
    out["login"] = int(m.group(1))
    return out


def test_writes_make_their_round_trips_at_any_batch_size(stack):
    """docs/CONSISTENCY.md: an uncontended write makes 2 Redis round trips on one Redis,
    whatever the number of customers in it; on a cluster (PARTNERD_TEST_CLUSTER=1) an
    update 3, a link 4 and a delink 5 rounds, one fewer when partnerd's memo has them."""
    from support_model import post_delink, post_update, dentry, uentry, upd
    cluster = getattr(stack, "cluster", None) is not None
    want = {"linkCustomer": 4, "customerPartnerProgramUpdate": 3, "deLinkCustomer": 5} if cluster else \
        {"linkCustomer": 2, "customerPartnerProgramUpdate": 2, "deLinkCustomer": 2}
    for n in (1, 7):
        cs = stack.customers(n)
        mids = [stack.uid() for _ in cs]
        from helpers import post_link
        post_link(stack, [entry(by_mobile(c), item("AcmeAir", m, "Silver")) for c, m in zip(cs, mids)])  # warm
        calls = [
            ("customerPartnerProgramUpdate",
             lambda: post_update(stack, [uentry(by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold")) for c in cs])),
            ("deLinkCustomer", lambda: post_delink(stack, [dentry(by_mobile(c), "AcmeAir") for c in cs])),
            ("linkCustomer",
             lambda: post_link(stack, [entry(by_mobile(c), item("AcmeAir", stack.uid(), "Gold")) for c in cs])),
        ]
        for route, call in calls:
            before = _rounds(stack)
            body = call()
            codes = re.findall(r"'code': (\d+)", str(body))
            assert set(codes) <= {"200", "1000"}, "%s: %s" % (route, body)
            after = _rounds(stack)
            # a credential check that met Redis (the cache's entry refreshed in the last tenth
            # of its life, or gone) is the login's, not the write protocol's
            got = after.get(route, 0) - before.get(route, 0) - (after["login"] - before["login"])
            # on a cluster a partnerd that met these customers and read the programs less than
            # a second ago skips the identify round (docs/CONSISTENCY.md "The memo")
            ok = (want[route] - 1, want[route]) if cluster else (want[route],)
            assert got in ok, "%s of %d customers: %d round trips, want %r" % (route, n, got, ok)


def test_credential_checks_that_meet_redis_count_their_round_trips_apart(stack):
    """partnerd_login_redis_round_trips_total: an unknown username is read (1 round trip) and
    its failure counted (1 more); both are also in the route's count. A cached credential
    makes none."""
    before = _rounds(stack)
    s, _, _ = stack.post(LINK, {"linkCustomers": []}, auth=("nobody_%s" % stack.uid(), "nope"))
    assert s == 401, s
    after = _rounds(stack)
    assert after["login"] - before["login"] == 2, (before, after)
    assert after.get("linkCustomer", 0) - before.get("linkCustomer", 0) == 2, (before, after)
    stack.post(LINK, {"linkCustomers": []})    # the default credential, cached from here on
    before = _rounds(stack)
    s, _, _ = stack.post(LINK, {"linkCustomers": []})
    after = _rounds(stack)
    assert after["login"] - before["login"] in (0, 2), (before, after)   # 2: the entry's refresh
