"""Model-based test of the write routes (SPEC §4, §4.1, §4.2, §4.3).

One client sends a few thousand random linkCustomer / customerPartnerProgramUpdate /
deLinkCustomer requests (1-5 customer entries of 1-3 items, over 8 customers and the acme
programs, valid and invalid items alike, membership ids from a small pool) and checks every
customer code and item code against a Python model of the rules, in SPEC order. At the end
the read route's memberships, the membership-id index and the history are compared with the
model. The RNG seed is printed; PARTNERD_MODEL_SEED=N reproduces a run, PARTNERD_MODEL_REQUESTS
changes the number of requests (default 3000).
"""

import json
import os
import random
import sys
import time

import keys
from helpers import ms, stored_view
from support_model import (CANCEL, DELINK, UPDATE, add_months, check_passes, feed_added, feed_last_id, feed_after,
                           history_of, iso_ms, programs_of)
from harness import LINK

PROGS = {
    "AcmeAir": {"supp": False, "tiers": ["Bronze", "Silver", "Gold"], "cycle": None, "expired": False},
    "AcmeShop": {"supp": False, "tiers": [], "cycle": None, "expired": False},
    "AcmePlus": {"supp": True, "tiers": [], "cycle": ("MONTHS", 12), "expired": False},
    "AcmeDays": {"supp": True, "tiers": ["Basic", "Premium"], "cycle": ("DAYS", 30), "expired": False},
    "AcmeOld": {"supp": False, "tiers": ["Bronze"], "cycle": None, "expired": True},
    "AcmeLater": {"supp": False, "tiers": [], "cycle": None, "expired": False},
}
LIVE = ["AcmeAir", "AcmeShop", "AcmePlus", "AcmeDays", "AcmeLater"]
PROG_WEIGHTS = [("AcmeAir", 30), ("AcmeShop", 15), ("AcmePlus", 35), ("AcmeDays", 30), ("AcmeLater", 8),
                ("AcmeOld", 4), ("NoSuchProgram", 4), ("acmeair", 2), (None, 2), ("", 1)]

FUTURE_DATES = ["2031-01-10T00:00:00Z", "2032-06-15T12:00:00+05:30", "2033-02-20T08:30:00.500Z",
                "2034-11-05T23:59:59-03:00"]
PAST_DATES = ["2020-01-01T00:00:00Z", "2024-03-03T03:03:03+05:30"]
BAD_DATES = ["2030-02-30T00:00:00Z", "2031-01-01T00:00:00", "soon", 20310101]
VALID_TYPES = {"UPGRADE", "DOWNGRADE", "RENEWAL", "RENEW", CANCEL}
TYPE_WEIGHTS = [("UPGRADE", 30), ("DOWNGRADE", 25), ("RENEWAL", 15), ("RENEW", 8), (CANCEL, 25),
                ("upgrade", 3), ("SIDEGRADE", 3), (None, 2), ("", 1)]


def _pick(rng, weighted):
    total = sum(w for _, w in weighted)
    x = rng.uniform(0, total)
    for v, w in weighted:
        x -= w
        if x <= 0:
            return v
    return weighted[-1][0]


def _nonempty(v):
    return isinstance(v, str) and v != ""


def _date(v):
    """('absent'|'bad'|'ok', ms)"""
    if v is None:
        return "absent", None
    if v in BAD_DATES or not isinstance(v, str):
        return "bad", None
    return "ok", ms(v)


def _add_cycle(start, cycle):
    unit, n = cycle
    return add_months(start, n) if unit == "MONTHS" else start + n * 86400000


# ---------------------------------------------------------------- the model

class Model:
    def __init__(self, customers):
        self.cust = dict((c["id"], c) for c in customers)
        self.state = dict((c["id"], {}) for c in customers)     # cid -> {program: membership}
        self.index = dict((p, {}) for p in PROGS)                # program -> {mid: cid}
        self.history = dict((c["id"], []) for c in customers)    # cid -> [activityType], oldest first
        self.applied = 0

    # each returns (accepted codes, effect or None)
    def _name(self, it, seen):
        name = it.get("partnerProgramName")
        if not _nonempty(name):
            return name, {2002}
        if name in seen:
            return name, ({2102} if name in LIVE else {2102, 2006, 2004})
        seen.add(name)
        return name, None

    def link(self, cid, it, seen, now):
        name, bad = self._name(it, seen)
        if bad:
            return bad, None
        P = PROGS.get(name)
        if P is None or P["expired"]:
            return {2006}, None
        ref = it.get("customerPartnerReference")
        if not isinstance(ref, dict):
            return {2002}, None
        ek, exp = _date(ref.get("partnerTierExpiryDate"))
        sk, start = _date(ref.get("membershipStartDate"))
        if ek == "bad" or sk == "bad":
            return {2103}, None
        cur = self.state[cid].get(name)
        relink = False
        if cur is not None:
            if not (P["supp"] and sk == "ok" and start > now):
                return {2005}, None
            if cur["rl"] is not None:
                return {2005}, None
            relink = True
        mid = ref.get("partnerMembershipId")
        if not _nonempty(mid):
            return {2002}, None
        holder = self.index[name].get(mid)
        if holder is not None and holder != cid:
            return {2101}, None
        tier = ref.get("partnerTierName")
        if P["tiers"]:
            if not _nonempty(tier):
                return {2002}, None
            if tier not in P["tiers"]:
                return {2007}, None
        elif tier is not None:
            return {2007}, None
        if ek == "ok" and exp <= now:
            return {2003}, None
        vals = {"mid": mid, "tier": tier if P["tiers"] else None, "exp": exp, "start": start, "end": None}
        if P["cycle"] and start is not None:
            vals["end"] = _add_cycle(start, P["cycle"])

        def apply():
            if relink:
                self.state[cid][name]["rl"] = vals
                self.history[cid].append("RELINK_SCHEDULED")
            else:
                self.state[cid][name] = dict(vals, rl=None)
                self.history[cid].append("LINK")
            self.index[name][mid] = cid
        return {200}, apply

    def update(self, cid, it, seen, now):
        name, bad = self._name(it, seen)
        if bad:
            return bad, None
        P = PROGS.get(name)
        if P is None:
            return {2006}, None
        cur = self.state[cid].get(name)
        if cur is None:
            return ({2004, 2006} if P["expired"] else {2004}), None
        ut = it.get("updateType")
        if not _nonempty(ut):
            return {2002}, None
        if ut not in VALID_TYPES:
            return {2009}, None
        if ut == CANCEL:
            if cur["rl"] is None:
                return {2105}, None

            def apply_cancel():
                rl = cur["rl"]
                cur["rl"] = None
                if rl["mid"] != cur["mid"]:
                    self.index[name].pop(rl["mid"], None)
                self.history[cid].append("RELINK_CANCELLED")
            return {200}, apply_cancel
        d = it.get("updateDetails")
        if not isinstance(d, dict):
            return {2002}, None
        tn = d.get("updatedTierName")
        if not _nonempty(tn):
            return {2002}, None
        if not P["tiers"]:
            return {2007}, None
        if tn not in P["tiers"]:
            return {2007}, None
        c_i, n_i = P["tiers"].index(cur["tier"]), P["tiers"].index(tn)
        if (ut == "UPGRADE" and n_i <= c_i) or (ut == "DOWNGRADE" and n_i >= c_i) or \
                (ut in ("RENEWAL", "RENEW") and n_i != c_i):
            return {2104}, None
        ek, exp = _date(d.get("updatedTierExpiryDate"))
        if ek == "bad":
            return {2103}, None
        if ek == "ok" and exp <= now:
            return {2003}, None

        def apply_update():
            cur["tier"] = tn
            if ek == "ok":
                cur["exp"] = exp
            self.history[cid].append("UPDATE")
        return {200}, apply_update

    def delink(self, cid, it, seen, now):
        name, bad = self._name(it, seen)
        if bad:
            return bad, None
        P = PROGS.get(name)
        if P is None:
            return {2006}, None
        cur = self.state[cid].get(name)
        if cur is None:
            return ({2004, 2006} if P["expired"] else {2004}), None

        def apply():
            del self.state[cid][name]
            self.index[name].pop(cur["mid"], None)
            if cur["rl"] is not None:
                self.index[name].pop(cur["rl"]["mid"], None)
            self.history[cid].append("DELINK")
        return {200}, apply


# ---------------------------------------------------------------- the generator

class Gen:
    def __init__(self, rng, customers, model, mids):
        self.rng, self.cs, self.model, self.mids = rng, customers, model, mids

    def customer(self):
        """(customer object to send, expected customer code, cid or None)"""
        r, c = self.rng.random(), self.rng.choice(self.cs)
        if r < 0.04:
            return self.rng.choice([{"mobile": "919999900001"}, {"email": "ghost@acme.example"},
                                    {"id": 99999001}]), 8015, None
        if r < 0.08:
            o = self.rng.choice([x for x in self.cs if x["id"] != c["id"]])
            return self.rng.choice([{"mobile": c["mobile"], "email": o["email"]},
                                    {"id": c["id"], "externalId": "NOPE-EXT"}]), 8016, None
        if r < 0.11:
            return self.rng.choice([{}, {"mobile": "12ab"}, {"id": "x"}, {"email": "", "mobile": None}]), 400, None
        form = self.rng.randrange(6)
        sent = [{"mobile": c["mobile"]}, {"mobile": c["mobile"][2:]}, {"email": c["email"]},
                {"externalId": c["externalId"]}, {"id": c["id"]}, {"id": c["id"], "email": c["email"]}][form]
        return sent, 1000, c["id"]

    def program(self):
        return _pick(self.rng, PROG_WEIGHTS)

    def mid(self):
        r = self.rng.random()
        if r < 0.03:
            return None
        if r < 0.04:
            return ""
        return self.rng.choice(self.mids)

    def link_item(self, cid):
        rng = self.rng
        name = self.program()
        it = {} if name is None else {"partnerProgramName": name}
        if rng.random() < 0.04:
            if rng.random() < 0.5:
                it["customerPartnerReference"] = None
            return it
        P = PROGS.get(name) or {"supp": False, "tiers": rng.choice([[], ["Bronze"]])}
        ref = {}
        m = self.mid()
        if m is not None:
            ref["partnerMembershipId"] = m
        r = rng.random()
        if P["tiers"]:
            if r < 0.8:
                ref["partnerTierName"] = rng.choice(P["tiers"])
            elif r < 0.88:
                ref["partnerTierName"] = "Platinum"
        elif r < 0.12:
            ref["partnerTierName"] = "Gold"
        r = rng.random()
        if r < 0.45:
            ref["partnerTierExpiryDate"] = rng.choice(FUTURE_DATES)
        elif r < 0.53:
            ref["partnerTierExpiryDate"] = rng.choice(PAST_DATES)
        elif r < 0.6:
            ref["partnerTierExpiryDate"] = rng.choice(BAD_DATES)
        linked = cid is not None and name in self.model.state[cid]
        r = rng.random()
        if P["supp"]:
            if r < 0.45:
                ref["membershipStartDate"] = rng.choice(FUTURE_DATES)
            elif r < 0.5:
                ref["membershipStartDate"] = rng.choice(BAD_DATES)
            elif r < 0.55 and linked:
                ref["membershipStartDate"] = rng.choice(PAST_DATES)
        else:
            if r < 0.1:
                ref["membershipStartDate"] = rng.choice(FUTURE_DATES)
            elif r < 0.15:
                ref["membershipStartDate"] = rng.choice(PAST_DATES)
            elif r < 0.18:
                ref["membershipStartDate"] = rng.choice(BAD_DATES)
        it["customerPartnerReference"] = ref
        return it

    def update_item(self, cid):
        rng = self.rng
        name = self.program()
        it = {} if name is None else {"partnerProgramName": name}
        ut = _pick(rng, TYPE_WEIGHTS)
        if ut is not None:
            it["updateType"] = ut
        if ut == CANCEL:
            return it
        if rng.random() < 0.04:
            return it
        d = {}
        r = rng.random()
        tiers = (PROGS.get(name) or {}).get("tiers") or ["Bronze", "Silver", "Gold", "Basic", "Premium"]
        if r < 0.85:
            d["updatedTierName"] = rng.choice(tiers)
        elif r < 0.92:
            d["updatedTierName"] = "Platinum"
        r = rng.random()
        d["updatedTierExpiryDate"] = rng.choice(FUTURE_DATES if r < 0.85 else PAST_DATES if r < 0.93 else BAD_DATES)
        it["updateDetails"] = d
        return it

    def delink_item(self, cid):
        name = self.program()
        return {} if name is None else {"partnerProgramName": name}


ROUTES = {"link": (LINK, "linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus", "link_item", "link"),
          "update": (UPDATE, "customersPartnerUpdates", "partnerProgramUpdates", "updateStatus", "update_item", "update"),
          "delink": (DELINK, "deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus", "delink_item",
                     "delink")}


def _fail(seed, n, route, req, resp, msg, model=None, cids=()):
    state = ""
    if model is not None:
        state = "\nmodel state: " + json.dumps(dict((c, model.state[c]) for c in cids), sort_keys=True)
    raise AssertionError("seed %d (PARTNERD_MODEL_SEED=%d reproduces), request #%d %s: %s\nrequest: %s\nresponse: %s%s"
                         % (seed, seed, n, route, msg, json.dumps(req), json.dumps(resp), state))


def test_random_requests_agree_with_a_model_of_the_rules(stack):
    seed = int(os.environ.get("PARTNERD_MODEL_SEED") or random.SystemRandom().randrange(1, 2 ** 31))
    n_req = int(os.environ.get("PARTNERD_MODEL_REQUESTS") or 3000)
    sys.stdout.write("    model seed %d (PARTNERD_MODEL_SEED=%d to reproduce), %d requests\n" % (seed, seed, n_req))
    sys.stdout.flush()
    rng = random.Random(seed)
    customers = stack.customers(8)
    base = stack.uid("MM")
    mids = ["%s-%d" % (base, k) for k in range(10)]
    model = Model(customers)
    gen = Gen(rng, customers, model, mids)
    feed0 = feed_last_id(stack)
    added0 = feed_added(stack)
    t_start = time.monotonic()
    counts = {}
    for n in range(n_req):
        route = _pick(rng, [("link", 45), ("update", 35), ("delink", 20)])
        path, top, items_key, status_key, gen_item, rule = ROUTES[route]
        entries, expect = [], []
        for _ in range(rng.randint(1, 5)):
            sent, ccode, cid = gen.customer()
            items = [getattr(gen, gen_item)(cid) for _ in range(rng.randint(1, 3))]
            entries.append({"customer": sent, items_key: items})
            expect.append((ccode, cid))
        req = {top: entries}
        st, _, body = stack.post(path, req)
        if st != 200 or not isinstance(body, dict) or not isinstance(body.get(top), list) \
                or len(body[top]) != len(entries):
            _fail(seed, n, route, req, body, "HTTP %s or malformed answer" % st)
        now = int(time.time() * 1000)
        for k, (e, (ccode, cid), got) in enumerate(zip(entries, expect, body[top])):
            gc = got.get("customer", {}).get("status", {}).get("code")
            if gc != ccode:
                _fail(seed, n, route, req, body, "entry %d: customer code %r, model %d" % (k, gc, ccode))
            if ccode == 1000 and got["customer"] != stored_view(model.cust[cid]):
                _fail(seed, n, route, req, body, "entry %d: customer object %r" % (k, got["customer"]))
            gitems = got.get(items_key)
            if not isinstance(gitems, list) or len(gitems) != len(e[items_key]):
                _fail(seed, n, route, req, body, "entry %d: %d items answered" % (k, len(gitems or [])))
            seen = set()
            for j, (it, g) in enumerate(zip(e[items_key], gitems)):
                code = g.get(status_key, {}).get("code")
                if ccode != 1000:
                    want, effect = {ccode}, None
                else:
                    want, effect = getattr(model, rule)(cid, it, seen, now)
                if code not in want:
                    _fail(seed, n, route, req, body, "entry %d item %d (%r): code %r, model %s"
                          % (k, j, it, code, sorted(want)), model, [cid] if cid else [])
                if effect is not None and code == 200:
                    effect()
                    model.applied += 1
                counts[code] = counts.get(code, 0) + 1
    took = time.monotonic() - t_start
    sys.stdout.write("    %d requests in %.1f s; item codes %s\n"
                     % (n_req, took, ", ".join("%s:%d" % kv for kv in sorted(counts.items()))))
    sys.stdout.flush()
    for code in (200, 2002, 2004, 2005, 2006, 2007, 2101, 2102, 2103, 2104, 2105, 8015, 8016, 400):
        assert counts.get(code, 0) > 0, "the random run never produced code %d (%r): widen the generator" % (code, counts)

    # final state: the read route against the model
    now = int(time.time() * 1000)
    problems = []
    for c in customers:
        cid = c["id"]
        got = programs_of(stack, cid)
        want = model.state[cid]
        if set(got) != set(want):
            problems.append("customer %d: programs %r, model %r" % (cid, sorted(got), sorted(want)))
            continue
        for name, w in want.items():
            g = got[name]
            start = iso_ms(g["membershipStartDate"])
            wstart = w["start"] if w["start"] is not None else start
            wend = _add_cycle(wstart, PROGS[name]["cycle"]) if PROGS[name]["cycle"] else None
            exp_state = "PENDING" if wstart > now else "ACTIVE"
            checks = [("partnerMembershipId", g["partnerMembershipId"], w["mid"]),
                      ("partnerTierName", g["partnerTierName"], w["tier"]),
                      ("partnerTierExpiryDate", iso_ms(g["partnerTierExpiryDate"]), w["exp"]),
                      ("membershipStartDate", start, wstart),
                      ("membershipEndDate", iso_ms(g["membershipEndDate"]), wend),
                      ("state", g["state"], exp_state)]
            rl, grl = w["rl"], g["pendingRelink"]
            if rl is None or grl is None:
                checks.append(("pendingRelink", grl, rl))
            else:
                checks += [("pendingRelink.partnerMembershipId", grl["partnerMembershipId"], rl["mid"]),
                           ("pendingRelink.partnerTierName", grl["partnerTierName"], rl["tier"]),
                           ("pendingRelink.partnerTierExpiryDate", iso_ms(grl["partnerTierExpiryDate"]), rl["exp"]),
                           ("pendingRelink.membershipStartDate", iso_ms(grl["membershipStartDate"]), rl["start"]),
                           ("pendingRelink.membershipEndDate", iso_ms(grl["membershipEndDate"]), rl["end"])]
            for what, gv, wv in checks:
                if gv != wv:
                    problems.append("customer %d %s %s: %r, model %r" % (cid, name, what, gv, wv))
        h = history_of(stack, cid, limit=100)
        wh = list(reversed(model.history[cid]))[:100]
        if h["total"] != len(wh) or [a["activityType"] for a in h["activities"]] != wh:
            problems.append("customer %d history: total %d %r, model %d %r"
                            % (cid, h["total"], [a["activityType"] for a in h["activities"]][:12], len(wh), wh[:12]))
    # the membership-id index agrees with the model for the pool of ids
    for name in LIVE:
        raw = stack.hashes(keys.mids("acme", stack.pid(name)))
        idx = dict((m, int(c)) for m, c in raw.items() if m in mids)
        if idx != model.index[name]:
            problems.append("%s membership-id index %r, model %r" % (name, idx, model.index[name]))
    new = feed_after(stack, feed0)
    # counted by entries-added: a partition that the test's few customers fill beyond its
    # share of --feed-max is trimmed (MAXLEN ~), so its first new entries may be gone
    fed = feed_added(stack) - added0
    if fed != model.applied:
        problems.append("change feed grew by %d entries, %d changes applied" % (fed, model.applied))
    # docs/CHANGE-FEED.md: one customer's entries (one partition, entry-id order) have
    # strictly increasing (customerVersion, seq), the last one the customer's version now
    last = {}
    for eid, f in new:
        cid, pair = int(f["customerId"]), (int(f["customerVersion"]), int(f["seq"]))
        if cid in last and not last[cid] < pair:
            problems.append("customer %d: feed entry %s %r after %r" % (cid, eid, pair, last[cid]))
        last[cid] = pair
    for cid, (cv, _) in sorted(last.items()):
        v = int(stack.redis("HGET", keys.cust("acme", cid), "v"))
        if cv != v:
            problems.append("customer %d: last feed entry's customerVersion %d, its version %d" % (cid, cv, v))
    assert not problems, "seed %d: final state differs from the model:\n%s" % (seed, "\n".join(problems[:30]))
    check_passes(stack, "acme")


# ---------------------------------------------------------------- pinned cases the model found

def _codes(body, items_key="linkToPartnerPrograms", status_key="partnerLinkStatus"):
    return [[i[status_key]["code"] for i in e[items_key]] for e in body["linkCustomers"]]


def test_entries_are_applied_in_request_order_across_customers(stack):
    # SPEC §4: items are processed in order; a customer's later entry sees its earlier one,
    # and nothing lets it jump ahead of another customer's entry between the two.
    from helpers import by_mobile, entry, item, post_link
    a, b = stack.customers(2)
    m = stack.uid()
    body = post_link(stack, [entry(by_mobile(a), item("AcmeShop", stack.uid())),
                             entry(by_mobile(b), item("AcmeLater", m)),
                             entry(by_mobile(a), item("AcmeLater", m))])
    assert _codes(body) == [[200], [200], [2101]], \
        "entry 2 (customer %d) claimed %s before entry 1 (customer %d): %r" % (a["id"], m, b["id"], _codes(body))
    assert stack.mid_holder("AcmeLater", m) == b["id"]


def test_membership_id_claimed_by_an_earlier_entry_is_2101_before_tier_and_expiry(stack):
    # SPEC §4.1 order: membership id held (2101) comes before tier (2002, 2007) and expiry (2003),
    # also when the holder took it in an earlier entry of the same request.
    from helpers import PAST, by_mobile, entry, item, post_link
    from support_model import delink1
    a, b = stack.customers(2)
    bad = []
    for what, tier, exp in (("unknown tier", "Platinum", None), ("missing tier", None, None),
                            ("past expiry", "Premium", PAST)):
        m = stack.uid()
        body = post_link(stack, [entry(by_mobile(a), item("AcmeDays", m, "Basic")),
                                 entry(by_mobile(b), item("AcmeDays", m, tier, exp))])
        if _codes(body) != [[200], [2101]]:
            bad.append("%s: %r" % (what, _codes(body)))
        assert stack.membership(b["id"], "AcmeDays") is None
        _, st = delink1(stack, by_mobile(a), "AcmeDays")        # frees the id for the next case
        assert [s["code"] for s in st] == [200], st
    assert not bad, "expected [[200], [2101]] (earlier entry took the id):\n" + "\n".join(bad)
