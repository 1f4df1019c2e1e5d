"""The history recorder of the linearizability check (issue 15).

Client threads drive link / update (tier moves and relink cancels) / delink and both read
routes through nginx in front of several partnerd processes sharing one Redis, over a small
org so that conflicts are frequent, and record every request: invocation and completion time
(time.monotonic), request, HTTP status and answer. `to_ops` turns the records into
lincheck.Op (one per customer entry; reads one each).

The data (org `stress` of tests/integration/data/orgs.json, loaded by harness.Stack):
  - customers 7001-7008, in pairs (7001+7002, 7003+7004, ...); each pair draws membership ids
    from its own pool of two per program, so links of a pair collide (2101) and each pair is
    an independent part for the checker;
  - programs Tiered (EXTERNAL, Bronze < Silver < Gold), Plain (EXTERNAL, no tiers) and Supp
    (SUPPLEMENTARY, Basic < Premium, 30-day cycle);
  - dates: links are sent without a start (starts "now": ACTIVE, and a supplementary end
    30 days away) or with a start in 2031-2033 (PENDING; on a Supp membership already linked:
    a pending relink); tier expiries, when sent, are in 2031-2034. So nothing the recorder
    creates changes state with the clock while a run lasts (no relink becomes due, nothing
    expires or ends), and the model needs no clock.

Faults: `run(..., nemesis=N)` starts N.run(stack, stop_event, log) in a thread of its own
for the length of the load (nemesis.py: SIGKILL / SIGSTOP of partnerd, SIGSTOP and restart
of Redis); log(text) records a nemesis event in the history. After the load the run waits
for the stack to answer again before its last reads.
"""

import http.client
import json
import os
import random
import re
import shutil
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
import lincheck  # noqa: E402

ORG = "stress"
AUTH = ("stress_api", "stress_secret")
LINK = "/v2/partnerProgram/linkCustomer"
UPDATE = "/v2/partnerProgram/customerPartnerProgramUpdate"
DELINK = "/v2/partnerProgram/deLinkCustomer"
PROGRAMS = "/v2/partnerProgram/customerPartnerPrograms"
HISTORY = "/v2/partnerProgram/customerActivityHistory"
CANCEL = lincheck.CANCEL

CUSTOMERS = list(range(7001, 7009))
PROGS = {"Tiered": {"supp": False, "tiers": ["Bronze", "Silver", "Gold"]},
         "Plain": {"supp": False, "tiers": []},
         "Supp": {"supp": True, "tiers": ["Basic", "Premium"]}}
STARTS = ["2031-06-01T00:00:00Z", "2032-01-15T08:30:00Z", "2033-03-03T12:00:00.500Z"]
EXPIRIES = ["2031-12-31T23:59:59Z", "2032-07-01T00:00:00+05:30", "2034-02-02T02:02:02Z"]
HISTORY_LIMIT = 5
# the partnerd flags a run needs: every activity kept, so that `total` is the model's count
PARTNERD_ARGS = ["--history-max", "100000"]
# threads per partnerd: >= nginx workers (2) x keepalive (16) + client threads, or kept
# connections pin every thread and requests wait in the backlog until nginx's 504
# (docs/OPERATIONS.md, --workers)
WORKERS = 48

WRITE_ROUTES = {LINK: ("link", "linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus"),
                UPDATE: ("update", "customersPartnerUpdates", "partnerProgramUpdates", "updateStatus"),
                DELINK: ("delink", "deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus")}


def model():
    return lincheck.Model(PROGS)


def mid_pool(cid, program):
    pair = (cid - CUSTOMERS[0]) // 2
    return ["P%d-%s-%s" % (pair, program[:1], k) for k in "ab"]


# ---------------------------------------------------------------- the workload

class Workload:
    def __init__(self, rng):
        self.rng = rng

    def _programs(self, candidates):
        k = 1 if self.rng.random() < 0.75 else 2
        return self.rng.sample(candidates, k)

    def link_item(self, cid, name):
        r = self.rng
        ref = {"partnerMembershipId": r.choice(mid_pool(cid, name))}
        tiers = PROGS[name]["tiers"]
        if tiers:
            ref["partnerTierName"] = r.choice(tiers)
        if r.random() < 0.3:
            ref["partnerTierExpiryDate"] = r.choice(EXPIRIES)
        if r.random() < (0.5 if name == "Supp" else 0.1):
            ref["membershipStartDate"] = r.choice(STARTS)
        return {"partnerProgramName": name, "customerPartnerReference": ref}

    def update_item(self, cid, name):
        r = self.rng
        if name == "Supp" and r.random() < 0.4:
            return {"partnerProgramName": name, "updateType": CANCEL}
        d = {"updatedTierName": r.choice(PROGS[name]["tiers"])}
        if r.random() < 0.3:
            d["updatedTierExpiryDate"] = r.choice(EXPIRIES)
        return {"partnerProgramName": name, "updateType": r.choice(["UPGRADE", "DOWNGRADE", "RENEWAL"]),
                "updateDetails": d}

    def next(self):
        """(method, path, body or None)"""
        r = self.rng
        x = r.random()
        if x < 0.22:
            cid = r.choice(CUSTOMERS)
            return "GET", PROGRAMS + "?" + urllib.parse.urlencode({"identifierName": "id", "identifierValue": cid}), None
        if x < 0.34:
            cid = r.choice(CUSTOMERS)
            return "GET", HISTORY + "?" + urllib.parse.urlencode(
                {"identifierName": "id", "identifierValue": cid, "limit": HISTORY_LIMIT}), None
        cids = r.sample(CUSTOMERS, r.choice([1, 1, 2, 3]))
        if x < 0.66:
            entries = [{"customer": {"id": c},
                        "linkToPartnerPrograms": [self.link_item(c, p) for p in self._programs(list(PROGS))]}
                       for c in cids]
            return "POST", LINK, {"linkCustomers": entries}
        if x < 0.86:
            entries = [{"customer": {"id": c},
                        "partnerProgramUpdates": [self.update_item(c, p) for p in self._programs(["Tiered", "Supp"])]}
                       for c in cids]
            return "POST", UPDATE, {"customersPartnerUpdates": entries}
        entries = [{"customer": {"id": c},
                    "deLinkFromPartnerPrograms": [{"partnerProgramName": p} for p in self._programs(list(PROGS))]}
                   for c in cids]
        return "POST", DELINK, {"deLinkCustomers": entries}


# ---------------------------------------------------------------- recording

def call(port, method, path, body, timeout):
    """One request on a fresh connection. Returns (status or None, parsed answer or text, error)."""
    h = {"Authorization": harness.basic(*AUTH)}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw), None
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")[:300], None
    except (OSError, http.client.HTTPException) as e:
        return None, None, "%s: %s" % (type(e).__name__, e)
    finally:
        conn.close()


class Nemesis:
    """No faults. nemesis.py's nemeses subclass this: run() loops until stop is set.
    partnerd_args: flags the partnerd processes of a run with this nemesis need.
    error: set by run() (the recorder's) when the nemesis raised: the run is not valid."""
    name = "none"
    partnerd_args = ()
    error = None

    def run(self, stack, stop, log):
        stop.wait()


class LoseMemberships(Nemesis):
    """Not a fault partnerd must survive: after `after` seconds, deletes a customer's
    memberships in Redis behind partnerd's back (a lost write). For the test that the whole
    pipeline (recorder, to_ops, checker) reports a violation on a real stack."""
    name = "lose-memberships"

    def __init__(self, cid=CUSTOMERS[0], after=1.0):
        self.cid, self.after = cid, after

    def run(self, stack, stop, log):
        import keys
        if stop.wait(self.after):
            return
        k = keys.cust(ORG, self.cid)
        prefix = keys.membership_field("*")[:-1]
        fields = [f.decode() for f in stack.redis("HKEYS", k) or []]
        gone = [f for f in fields if f.startswith(prefix)]
        if gone:
            stack.redis("HDEL", k, *gone)
        log("HDEL %s %s" % (k, " ".join(gone)))
        stop.wait()


def run(stack, ops=2000, seconds=120.0, seed=None, threads=12, timeout=10.0, nemesis=None, out=None,
        pace=0.0, backoff=(0.2, 0.5)):
    """Drives the load until `ops` requests were recorded or `seconds` passed. Returns
    (records, t0): records in completion order (dicts, see below), t0 the monotonic start.
    out: a file path to which the records are written as JSON lines.
    pace: each thread waits a random 0 to 2 x pace seconds between two requests (a slower
    load over a longer time: the faults meet fewer requests each, so the check stays small).
    backoff: after an answer other than 200 (or none), the thread waits that long (a random
    time in the range) before its next request, as a client would; else a Redis outage
    turns into thousands of fast 503s, each an unknown outcome for the checker."""
    seed = random.randrange(1 << 30) if seed is None else seed
    t0 = time.monotonic()
    deadline = t0 + seconds
    records = []
    lock = threading.Lock()
    count = [0]
    stop = threading.Event()

    def log(text):
        with lock:
            records.append({"nemesis": text, "t": time.monotonic()})

    def worker(k):
        wl = Workload(random.Random(seed * 1000 + k))
        while not stop.is_set():
            with lock:
                if count[0] >= ops or time.monotonic() >= deadline:
                    break
                count[0] += 1
                n = count[0]
            method, path, body = wl.next()
            inv = time.monotonic()
            status, resp, err = call(stack.http_port, method, path, body, timeout)
            ret = time.monotonic()
            rec = {"n": n, "thread": k, "method": method, "path": path, "body": body, "inv": inv,
                   "ret": ret, "status": status, "resp": resp, "error": err}
            with lock:
                records.append(rec)
            wait = wl.rng.uniform(0, 2 * pace) if pace else 0
            if status != 200:
                wait += wl.rng.uniform(*backoff)
            if wait and stop.wait(wait):
                break

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    nt = None
    if nemesis is not None:
        def nem():
            try:
                nemesis.run(stack, stop, log)
            except Exception as e:      # the test fails on it (nemesis.error)
                nemesis.error = "%s: %s" % (type(e).__name__, e)
                log("nemesis error: %s" % nemesis.error)
        nt = threading.Thread(target=nem, daemon=True)
        nt.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    if nt is not None:
        nt.join(180)                    # a failover's heal waits for a replica's sync
        wait_healthy(stack)
    # a last read of every customer, after every write completed: the final state must be
    # explained too (a write lost at the end shows here)
    for cid in CUSTOMERS:
        for path in (PROGRAMS + "?" + urllib.parse.urlencode({"identifierName": "id", "identifierValue": cid}),
                     HISTORY + "?" + urllib.parse.urlencode({"identifierName": "id", "identifierValue": cid,
                                                            "limit": HISTORY_LIMIT})):
            inv = time.monotonic()
            status, resp, err = call(stack.http_port, "GET", path, None, timeout)
            count[0] += 1
            records.append({"n": count[0], "thread": "end", "method": "GET", "path": path, "body": None,
                            "inv": inv, "ret": time.monotonic(), "status": status, "resp": resp, "error": err})
    if out:
        with open(out, "w") as f:
            f.write(json.dumps({"seed": seed, "t0": t0}) + "\n")
            for r in records:
                f.write(json.dumps(r) + "\n")
    return records, t0, seed


def wait_healthy(stack, seconds=20.0):
    """After faults: waits (bounded) until a read answers 200 through nginx."""
    path = PROGRAMS + "?" + urllib.parse.urlencode({"identifierName": "id", "identifierValue": CUSTOMERS[0]})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if call(stack.http_port, "GET", path, None, 5)[0] == 200:
            return True
        time.sleep(0.1)
    return False


UNSAFE_KILL = "SIGKILL master (unsafe)"


def unsafe_kills(records):
    """The times of the masters killed without their writes paused (nemesis
    failover-unsafe): a failover that may lose acknowledged writes."""
    return [r["t"] for r in records if "nemesis" in r and r["nemesis"].startswith(UNSAFE_KILL)]


def load(path):
    """Reads a history written by run(out=...): (records, t0, seed)."""
    with open(path) as f:
        head = json.loads(f.readline())
        return [json.loads(line) for line in f if line.strip()], head["t0"], head["seed"]


# ---------------------------------------------------------------- records -> operations

def to_ops(records):
    """Returns (ops, counts): lincheck.Op per customer entry of each write and per answered
    read; counts of requests by outcome, items by code, HTTP statuses."""
    ops = []
    counts = {"requests": 0, "entries": {"ok": 0, "noeffect": 0, "unknown": 0},
              "reads": {"answered": 0, "dropped": 0}, "http": {}, "codes": {}, "nemesis": 0,
              "kinds": {}, "unknown_why": {}, "nemesis_events": {}}
    for rec in records:
        if "nemesis" in rec:
            counts["nemesis"] += 1
            ev = rec["nemesis"].split()[0]
            counts["nemesis_events"][ev] = counts["nemesis_events"].get(ev, 0) + 1
            continue
        counts["requests"] += 1
        st = rec["status"]
        key = str(st) if st is not None else (rec["error"] or "error").split(":")[0]
        counts["http"][key] = counts["http"].get(key, 0) + 1
        resp_ok = st == 200 and isinstance(rec["resp"], dict)
        rid = "%d" % rec["n"]
        if rec["method"] == "GET":
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(rec["path"]).query)
            cid = int(q["identifierValue"][0])
            if not resp_ok:
                counts["reads"]["dropped"] += 1
                continue
            counts["reads"]["answered"] += 1
            if rec["path"].startswith(PROGRAMS):
                ops.append(lincheck.Op(rid, cid, "programs", rec["inv"], rec["ret"], "ok",
                                       result=lincheck.norm_programs(rec["resp"]), req=rid, thread=rec["thread"]))
            else:
                ops.append(lincheck.Op(rid, cid, "history", rec["inv"], rec["ret"], "ok",
                                       result=lincheck.norm_history(rec["resp"]), limit=HISTORY_LIMIT,
                                       req=rid, thread=rec["thread"]))
            continue
        kind, top, items_key, status_key = WRITE_ROUTES[rec["path"]]
        entries = rec["body"][top]
        answered = None
        if resp_ok:
            try:
                answered = rec["resp"][top]
                assert len(answered) == len(entries)
            except (KeyError, TypeError, AssertionError):
                answered = None
        # partnerd's own 503 (a JSON error body: nginx answers 502/504 with HTML) means
        # nothing of the request was applied (docs/openapi.yaml, Unavailable; write.c
        # answers it only when no round committed): no effect and no codes, so no op.
        refused = st == 503 and isinstance(rec["resp"], dict)
        for k, e in enumerate(entries):
            cid = e["customer"]["id"]
            items = [lincheck.norm_item(kind, it) for it in e[items_key]]
            per = counts["kinds"].setdefault(kind, {"ok": 0, "noeffect": 0, "unknown": 0})
            if refused:
                counts["entries"]["noeffect"] += 1
                per["noeffect"] += 1
                counts["refused_503"] = counts.get("refused_503", 0) + 1
                continue
            if answered is None:
                why = ("HTTP %s" % st) if st is not None else rec["error"]
                counts["entries"]["unknown"] += 1
                per["unknown"] += 1
                w = key if st is not None else "no answer (%s)" % key
                counts["unknown_why"][w] = counts["unknown_why"].get(w, 0) + 1
                ops.append(lincheck.Op("%s.%d" % (rid, k), cid, kind, rec["inv"], None, "unknown", items=items,
                                       req=rid, resp=why, thread=rec["thread"]))
                continue
            a = answered[k]
            codes = [a["customer"]["status"]["code"]] + [it[status_key]["code"] for it in a[items_key]]
            for c in codes[1:]:
                counts["codes"][c] = counts["codes"].get(c, 0) + 1
            if 2011 in codes[1:]:
                outcome, wild = "unknown", {2011}
            elif 200 in codes[1:] and (2010 in codes[1:] or 2001 in codes[1:]):
                # the entry applied its 200 items; its 2010 item did nothing on its own (a 2101
                # that leaned on another customer's claim of the request, whose commit did not
                # apply: write_round.c settle_deps), and the model skips it (lincheck.Model.apply)
                outcome, wild = "ok", {2010, 2001}
            elif 2010 in codes[1:] or 2001 in codes[1:]:
                outcome, wild = "noeffect", {2010, 2001}
            else:
                outcome, wild = "ok", None
            counts["entries"][outcome] += 1
            per[outcome] += 1
            if outcome == "unknown":
                counts["unknown_why"]["2011"] = counts["unknown_why"].get("2011", 0) + 1
            ops.append(lincheck.Op("%s.%d" % (rid, k), cid, kind, rec["inv"], rec["ret"], outcome, items=items,
                                   codes=codes, wild=wild, req=rid, thread=rec["thread"]))
    return ops, counts


def format_counts(counts, seconds=None):
    lines = ["%d requests%s; HTTP %s" % (counts["requests"],
                                         " in %.1f s" % seconds if seconds is not None else "",
                                         json.dumps(counts["http"], sort_keys=True)),
             "write entries by outcome: ok %(ok)d, applied nothing (2010/2001) %(noeffect)d, "
             "unknown (timeout/502/504/2011) %(unknown)d" % counts["entries"],
             "reads: %(answered)d answered, %(dropped)d without an answer (dropped)" % counts["reads"],
             "items by code: %s" % ", ".join("%s: %d" % (c, n) for c, n in sorted(counts["codes"].items(),
                                                                                  key=lambda x: int(x[0])))]
    if counts.get("kinds"):
        lines.append("write entries by kind: %s" % "; ".join(
            "%s ok %d, nothing %d, unknown %d" % (k, v["ok"], v["noeffect"], v["unknown"])
            for k, v in sorted(counts["kinds"].items())))
    if counts.get("refused_503"):
        lines.append("write entries refused whole by partnerd's 503 (nothing applied, no op): %d"
                     % counts["refused_503"])
    if counts.get("unknown_why"):
        lines.append("unknown write entries by cause: %s" % ", ".join(
            "%s: %d" % kv for kv in sorted(counts["unknown_why"].items())))
    if counts["nemesis"]:
        lines.append("nemesis events: %d (%s)" % (counts["nemesis"], ", ".join(
            "%s %d" % kv for kv in sorted(counts.get("nemesis_events", {}).items()))))
    return lines


def record_and_check(ops=2000, seconds=120.0, seed=None, threads=12, partnerds=3, nemesis=None, pace=0.0,
                     keep=None, say=print, max_steps=None, max_seconds=300.0, shrink_seconds=30.0,
                     keep_on_violation=True,
                     partnerd_binary=None, partnerd_env=None, out=None, cluster=None):
    """Starts a stack (one Redis, `partnerds` partnerd behind nginx), records, checks.
    Returns (lincheck.Report, counts). partnerd_binary, partnerd_env: another partnerd
    binary (the tests' broken builds) and its environment. out: a path to copy the history to.
    cluster: True for a 3+3 Redis Cluster instead of one Redis, False for one Redis, None
    for the environment's choice (PARTNERD_TEST_CLUSTER, harness.cluster_mode())."""
    extra_out = out
    args = PARTNERD_ARGS + list(getattr(nemesis, "partnerd_args", ()))
    st = harness.Stack(partnerds=partnerds, partnerd_args=args, workers=WORKERS,
                       partnerd_binary=partnerd_binary, partnerd_env=partnerd_env, cluster=cluster)
    need = getattr(nemesis, "cluster", None)
    if need is not None and need != st.use_cluster:
        raise ValueError("nemesis %s needs %s" % (nemesis.name, "a Redis Cluster" if need else "one Redis"))
    st.start()
    try:
        out = os.path.join(st.dir, "history.jsonl")
        t_start = time.monotonic()
        records, t0, seed = run(st, ops=ops, seconds=seconds, seed=seed, threads=threads, nemesis=nemesis, out=out,
                                pace=pace)
        if extra_out:
            shutil.copyfile(out, extra_out)
        took = time.monotonic() - t_start
        say("seed %d (--seed %d repeats the workload; timing differs); store: %s; history: %s"
            % (seed, seed, "a 3+3 Redis Cluster" if st.cluster is not None else "one Redis", out))
        opl, counts = to_ops(records)
        for line in format_counts(counts, took):
            say(line)
        rep = lincheck.check(model(), opl, max_steps=max_steps, shrink_seconds=shrink_seconds,
                             max_seconds=max_seconds)
        kills = unsafe_kills(records)
        if kills:
            counts["lost_acks"] = lincheck.excuse_lost_acks(model(), opl, rep, kills)
            say("failovers without the writes paused: %d; acknowledged writes lost (counted apart): %d"
                % (len(kills), counts["lost_acks"]))
        for line in lincheck.format_report(rep, t0).splitlines():
            say(line)
        rc, cout, cerr = st.ctl("check", "--org", ORG)
        counts["partnerctl_check"] = rc
        say("partnerctl check --org %s: exit %d%s" % (ORG, rc, "" if rc == 0 else "\n" + cout + cerr))
        # On a cluster, a commit refused after its claims were made (its master unreachable
        # or killed, its reply lost and found not applied) leaves a stale claim entry: an id's
        # bucket naming a customer without that membership (docs/CONSISTENCY.md "On a Redis
        # Cluster"; the next claimant takes it over). Counted apart; any other violation,
        # or a stale entry on one Redis, is a failure (partnerctl_check_other).
        # partnerctl check prints them as "STALE CLAIM" lines (on a cluster only), not as
        # violations.
        viol = [l for l in (cout + cerr).splitlines() if "VIOLATION" in l]
        stale = [l for l in (cout + cerr).splitlines() if l.startswith("STALE CLAIM: ") and re.search(
            r":mid:%s:\d+ maps .* to customer \d+, which has no such membership" % ORG, l)]
        counts["stale_claims"] = len(stale)
        counts["partnerctl_check_other"] = 0 if rc == 0 else (len(viol) or 1)
        if stale:
            say("partnerctl check: %d stale claim entries (refused commits on a cluster), %d other "
                "violations" % (len(stale), counts["partnerctl_check_other"]))
        if not rep.ok or getattr(nemesis, "error", None):
            for r in records:
                if "nemesis" in r:
                    say("nemesis at %6.3f: %s" % (r["t"] - t0, r["nemesis"]))
        if (not rep.ok and keep_on_violation) or keep or getattr(nemesis, "error", None):
            st.keep = True
            say("stack directory kept: %s" % st.dir)
        return rep, counts
    finally:
        st.stop()
