"""Request builders, shape assertions and small readers for the update, delink and read
routes (SPEC §4.2, §4.3, §5), shared by test_update.py, test_delink.py, test_read.py,
test_relink.py and test_model.py. helpers.py holds the linkCustomer side."""

import datetime
import re
import urllib.parse

import keys
from harness import ACME
from helpers import CUSTOMER_OK, assert_status, ms

UPDATE = "/v2/partnerProgram/customerPartnerProgramUpdate"
DELINK = "/v2/partnerProgram/deLinkCustomer"
PROGRAMS = "/v2/partnerProgram/customerPartnerPrograms"
HISTORY = "/v2/partnerProgram/customerActivityHistory"

CANCEL = "MEMBERSHIP_RELINKING_CANCELLED"

# 2030 and later: "in the future" for as long as these tests will run.
FUT1 = "2031-03-01T10:00:00Z"
FUT2 = "2032-04-02T11:30:00+05:30"
FUT3 = "2033-05-03T00:00:00.250Z"

MEMBERSHIP_KEYS = {"partnerProgramName", "partnerProgramType", "partnerMembershipId", "partnerTierName",
                   "partnerTierExpiryDate", "membershipStartDate", "membershipEndDate", "state",
                   "pendingRelink", "linkedOn", "lastUpdatedOn"}
VALUES_KEYS = {"partnerMembershipId", "partnerTierName", "partnerTierExpiryDate",
               "membershipStartDate", "membershipEndDate"}
ACTIVITY_KEYS = {"activityType", "activityDate", "partnerProgramName", "updateType", "before",
                 "after", "requestId"}

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


# ---------------------------------------------------------------- dates

def iso(msv):
    """ISO 8601 UTC with milliseconds, the form partnerd answers (docs/CHANGE-FEED.md)."""
    d = datetime.datetime.fromtimestamp(msv / 1000.0, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (msv % 1000)


def iso_ms(value, what="date"):
    """ms of an ISO UTC date-time partnerd answered (None stays None); asserts the form."""
    if value is None:
        return None
    assert isinstance(value, str) and ISO_UTC.match(value), "%s %r is not an ISO UTC date-time" % (what, value)
    return ms(value)


def add_months(msv, n):
    """start + n calendar months, computed in UTC (day of month <= 28 in the tests)."""
    d = datetime.datetime.fromtimestamp(msv / 1000.0, datetime.timezone.utc)
    y, m = divmod(d.month - 1 + n, 12)
    d2 = d.replace(year=d.year + y, month=m + 1)
    return int(d2.timestamp() * 1000)


def now_ms():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


# ---------------------------------------------------------------- builders

def upd(program, utype, tier=None, exp=None, details=True, **extra):
    """One partnerProgramUpdates item. None leaves a field out; details=False leaves out
    updateDetails, details=<anything else> sends that value as it is."""
    it = {}
    if program is not None:
        it["partnerProgramName"] = program
    if utype is not None:
        it["updateType"] = utype
    if details is True:
        d = {}
        if tier is not None:
            d["updatedTierName"] = tier
        if exp is not None:
            d["updatedTierExpiryDate"] = exp
        d.update(extra)
        it["updateDetails"] = d
    elif details is not False:
        it["updateDetails"] = details
    return it


def cancel(program):
    return {"partnerProgramName": program, "updateType": CANCEL}


def uentry(customer, *items):
    return {"customer": customer, "partnerProgramUpdates": list(items)}


def dentry(customer, *programs):
    """programs: names (None: an item without partnerProgramName) or ready item dicts."""
    its = []
    for p in programs:
        if isinstance(p, dict):
            its.append(p)
        elif p is None:
            its.append({})
        else:
            its.append({"partnerProgramName": p})
    return {"customer": customer, "deLinkFromPartnerPrograms": its}


# ---------------------------------------------------------------- write routes

def _check_write(st, hdrs, body, top, items_key, status_key, entries, echo_type=False):
    assert st == 200, "HTTP %s, body %r" % (st, body)
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")
    assert isinstance(body, dict), "body is not JSON: %r" % (body,)
    assert set(body) == {top, "warnings"}, "top-level keys %r" % sorted(body)
    assert body["warnings"] == [], body["warnings"]
    out = body[top]
    assert isinstance(out, list) and len(out) == len(entries), "%d entries sent, %r answered" % (len(entries), out)
    for sent, got in zip(entries, out):
        assert set(got) == {"customer", items_key}, "entry keys %r" % sorted(got)
        assert isinstance(got["customer"], dict) and "status" in got["customer"], got["customer"]
        assert_status(got["customer"]["status"])
        items = got[items_key]
        assert isinstance(items, list) and len(items) == len(sent[items_key]), \
            "%d items sent, answered %r" % (len(sent[items_key]), items)
        for s_it, g_it in zip(sent[items_key], items):
            want = {"partnerProgramName", status_key} | ({"updateType"} if echo_type else set())
            assert set(g_it) == want, "item keys %r, expected %r" % (sorted(g_it), sorted(want))
            name = s_it.get("partnerProgramName") if isinstance(s_it, dict) else None
            if isinstance(name, str) and name:
                assert g_it["partnerProgramName"] == name, "partnerProgramName %r echoed as %r" % (name, g_it)
            if echo_type:
                ut = s_it.get("updateType") if isinstance(s_it, dict) else None
                if isinstance(ut, str) and ut and ut != "RENEW":
                    assert g_it["updateType"] == ut, "updateType %r echoed as %r" % (ut, g_it["updateType"])
                if ut == "RENEW":
                    assert g_it["updateType"] in ("RENEW", "RENEWAL"), g_it
            assert_status(g_it[status_key])
    return body


def post_update(stack, entries, auth=ACME, headers=None):
    st, hdrs, body = stack.post(UPDATE, {"customersPartnerUpdates": entries}, auth=auth, headers=headers)
    return _check_write(st, hdrs, body, "customersPartnerUpdates", "partnerProgramUpdates", "updateStatus",
                        entries, echo_type=True)


def update1(stack, customer, *items, auth=ACME, headers=None):
    """One entry; returns (customer object, [updateStatus...])."""
    body = post_update(stack, [uentry(customer, *items)], auth=auth, headers=headers)
    e = body["customersPartnerUpdates"][0]
    return e["customer"], [i["updateStatus"] for i in e["partnerProgramUpdates"]]


def post_delink(stack, entries, auth=ACME, headers=None):
    st, hdrs, body = stack.post(DELINK, {"deLinkCustomers": entries}, auth=auth, headers=headers)
    return _check_write(st, hdrs, body, "deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus",
                        entries)


def delink1(stack, customer, *programs, auth=ACME, headers=None):
    body = post_delink(stack, [dentry(customer, *programs)], auth=auth, headers=headers)
    e = body["deLinkCustomers"][0]
    return e["customer"], [i["partnerDeLinkStatus"] for i in e["deLinkFromPartnerPrograms"]]


# ---------------------------------------------------------------- read routes

def query(path, **params):
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def read_programs(stack, name, value, auth=ACME):
    """GET customerPartnerPrograms; asserts a 200 of the SPEC §5 shape; returns the body."""
    st, hdrs, body = stack.get(query(PROGRAMS, identifierName=name, identifierValue=value), auth=auth)
    assert st == 200, "HTTP %s %r" % (st, body)
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")
    assert isinstance(body, dict) and set(body) == {"customer", "partnerPrograms", "warnings"}, body
    assert body["warnings"] == [], body
    assert_status(body["customer"]["status"])
    assert isinstance(body["partnerPrograms"], list), body
    for p in body["partnerPrograms"]:
        assert set(p) == MEMBERSHIP_KEYS, "membership keys %r" % sorted(p)
        for k in ("partnerTierExpiryDate", "membershipStartDate", "membershipEndDate", "linkedOn", "lastUpdatedOn"):
            iso_ms(p[k], k)
        assert p["state"] in ("ACTIVE", "PENDING", "TIER_EXPIRED", "ENDED"), p
        rl = p["pendingRelink"]
        if rl is not None:
            assert isinstance(rl, dict) and VALUES_KEYS <= set(rl), "pendingRelink %r" % (rl,)
            for k in ("partnerTierExpiryDate", "membershipStartDate", "membershipEndDate"):
                iso_ms(rl[k], "pendingRelink." + k)
    names = [p["partnerProgramName"] for p in body["partnerPrograms"]]
    assert len(names) == len(set(names)), "a program listed twice: %r" % names
    return body


def programs_of(stack, cid, auth=ACME):
    """{program name: membership object} of customer cid, read by id."""
    body = read_programs(stack, "id", str(cid), auth=auth)
    assert body["customer"]["status"] == CUSTOMER_OK, body["customer"]
    return dict((p["partnerProgramName"], p) for p in body["partnerPrograms"])


def read_history(stack, name, value, auth=ACME, **params):
    """GET customerActivityHistory; asserts a 200 of the SPEC §5 shape; returns the body."""
    st, hdrs, body = stack.get(query(HISTORY, identifierName=name, identifierValue=value, **params), auth=auth)
    assert st == 200, "HTTP %s %r" % (st, body)
    assert isinstance(body, dict) and set(body) == {"customer", "activities", "total", "warnings"}, body
    assert body["warnings"] == [], body
    assert isinstance(body["total"], int) and not isinstance(body["total"], bool), body
    assert isinstance(body["activities"], list), body
    for a in body["activities"]:
        assert ACTIVITY_KEYS <= set(a), "activity keys %r" % sorted(a)
        assert a["activityType"] in ("LINK", "UPDATE", "DELINK", "RELINK_SCHEDULED", "RELINK_CANCELLED"), a
        iso_ms(a["activityDate"], "activityDate")
        for k in ("before", "after"):
            if a[k] is not None:
                assert set(a[k]) == VALUES_KEYS, "%s keys %r" % (k, sorted(a[k]))
    return body


def history_of(stack, cid, **params):
    return read_history(stack, "id", str(cid), **params)


# ---------------------------------------------------------------- change feed

def _feed_entries(stack, names, starts):
    """[(entry id, {field: value}, partition)] of the feed partitions named, each read from
    its start (pipelined XRANGE)."""
    stack.redis("PING")                     # (re)connects if needed
    out = []
    replies = stack._redis.pipeline([("XRANGE", k, st, "+") for k, st in zip(names, starts)])
    for p, r in enumerate(replies):
        if isinstance(r, Exception):
            raise r
        for eid, fields in r or []:
            f = [x.decode() for x in fields]
            out.append((eid.decode(), dict(zip(f[0::2], f[1::2])), p))
    return out


def feed(stack, org="acme", start="-"):
    """[(entry id, {field: value})] of org's change feed, every one of its partitions
    (keys.feeds) from start (inclusive) on, ordered by entry id, then partition. Entry ids
    of different partitions are not comparable (docs/CHANGE-FEED.md): the order of two
    customers' entries here says nothing; one customer's entries (one partition) are in
    commit order."""
    got = _feed_entries(stack, keys.feeds(org), [start] * keys.LAYOUT_PARTS)
    got.sort(key=lambda e: (_sid(e[0]), e[2]))
    return [(eid, fields) for eid, fields, _ in got]


def feed_last_id(stack, org="acme"):
    """Where each partition of org's feed ends now: a position for feed_after."""
    stack.redis("PING")
    r = stack._redis.pipeline([("XREVRANGE", k, "+", "-", "COUNT", 1) for k in keys.feeds(org)])
    return tuple(x[0][0].decode() if x else "0-0" for x in r)


def feed_added(stack, org="acme"):
    """Entries ever appended to org's feed (XINFO STREAM's entries-added over its partitions):
    a count that trimming (MAXLEN ~ per partition, --feed-max) does not lower."""
    stack.redis("PING")
    n = 0
    for k in keys.feeds(org):
        try:
            info = stack.redis("XINFO", "STREAM", k)
        except Exception:           # no such key: nothing appended yet
            continue
        f = dict(zip([x.decode() if isinstance(x, bytes) else x for x in info[0::2]], info[1::2]))
        n += int(f["entries-added"])
    return n


def feed_after(stack, last, org="acme"):
    """The entries of org's feed after position last (feed_last_id), ordered as feed()."""
    got = _feed_entries(stack, keys.feeds(org), ["(" + x for x in last])
    got.sort(key=lambda e: (_sid(e[0]), e[2]))
    return [(eid, fields) for eid, fields, _ in got]


def _sid(s):
    a, b = s.split("-")
    return (int(a), int(b))


# ---------------------------------------------------------------- partnerctl check

def check_passes(stack, org=None, stale=0):
    """partnerctl check exits 0 and reports no violation (every key it finds, the history
    :h and change-feed :feed keys included, is in the documented key space), and exactly
    `stale` stale claims (on a cluster, claims of commits that did not complete: not
    violations). Returns the STALE CLAIM lines."""
    args = ["check"] + (["--org", org] if org else [])
    rc, out, err = stack.ctl(*args)
    text = out + err
    bad = [l for l in text.splitlines() if "VIOLATION" in l]
    assert not bad, "partnerctl check reports:\n" + "\n".join(bad[:20])
    assert rc == 0, "partnerctl check exited %d:\n%s" % (rc, text)
    stale_lines = [l for l in text.splitlines() if l.startswith("STALE CLAIM: ")]
    assert len(stale_lines) == stale, "partnerctl check: %d stale claims, %d expected:\n%s" % (
        len(stale_lines), stale, text)
    return stale_lines
