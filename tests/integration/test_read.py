"""The read routes of SPEC §5 (customerPartnerPrograms, customerActivityHistory) and the
per-org change feed (docs/CHANGE-FEED.md): every field against what Redis stores
(docs/DATA-MODEL.md), lookups, paging, errors, org scoping."""

import json
import time

import activity
import keys
from harness import ACME, GLOBEX
from helpers import (CUSTOMER_OK, FUTURE, PAST, assert_code, assert_codes, assert_error, by_mobile,
                     item, link1, ms, stored_view, unchanged)
from support_model import (FUT1, FUT2, FUT3, HISTORY, PROGRAMS, add_months, cancel, delink1,
                           feed_after, feed_last_id, history_of, iso, iso_ms, programs_of, query,
                           read_history, read_programs, update1, upd)


def _values(m):
    """The values object (docs/CHANGE-FEED.md) of a stored membership or relink."""
    return {"partnerMembershipId": m["mid"], "partnerTierName": m["tier"],
            "partnerTierExpiryDate": None if m["exp"] is None else iso(m["exp"]),
            "membershipStartDate": iso(m["start"]),
            "membershipEndDate": None if m["end"] is None else iso(m["end"])}


def _same_values(got, want, what):
    """Compares values objects by instant, not by spelling of the dates."""
    assert got is not None and want is not None, "%s: %r vs %r" % (what, got, want)
    for k in ("partnerMembershipId", "partnerTierName"):
        assert got[k] == want[k], "%s.%s: %r, expected %r" % (what, k, got, want)
    for k in ("partnerTierExpiryDate", "membershipStartDate", "membershipEndDate"):
        g = iso_ms(got[k], k)
        w = None if want[k] is None else ms(want[k])
        assert g == w, "%s.%s: %r, expected %r" % (what, k, got[k], want[k])


# ---------------------------------------------------------------- customerPartnerPrograms

def test_programs_shows_every_field_of_each_membership(stack):
    c = stack.customer()
    t0 = int(time.time() * 1000)
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Silver", FUT1),
                  item("AcmeShop", stack.uid(), start=FUT2), item("AcmePlus", stack.uid()),
                  item("AcmeDays", stack.uid(), "Premium", FUT3, start="2031-02-10T06:00:00Z"))
    t1 = int(time.time() * 1000)
    assert_codes(st, [200] * 4)
    body = read_programs(stack, "mobile", c["mobile"])
    assert body["customer"] == stored_view(c), body["customer"]
    got = dict((p["partnerProgramName"], p) for p in body["partnerPrograms"])
    assert set(got) == {"AcmeAir", "AcmeShop", "AcmePlus", "AcmeDays"}, sorted(got)
    types = {"AcmeAir": "EXTERNAL", "AcmeShop": "EXTERNAL", "AcmePlus": "SUPPLEMENTARY", "AcmeDays": "SUPPLEMENTARY"}
    for name, p in got.items():
        m = stack.membership(c["id"], name)
        assert p["partnerProgramType"] == types[name], p
        assert p["partnerMembershipId"] == m["mid"] and p["partnerTierName"] == m["tier"], (p, m)
        assert iso_ms(p["partnerTierExpiryDate"]) == m["exp"], (p, m)
        assert iso_ms(p["membershipStartDate"]) == m["start"], (p, m)
        assert iso_ms(p["membershipEndDate"]) == m["end"], (p, m)
        assert iso_ms(p["linkedOn"]) == m["lk"] and t0 - 2000 <= m["lk"] <= t1 + 2000, (p, m)
        assert iso_ms(p["lastUpdatedOn"]) == m["up"], (p, m)
        assert p["pendingRelink"] is None, p
    a, s, pl, d = got["AcmeAir"], got["AcmeShop"], got["AcmePlus"], got["AcmeDays"]
    assert a["partnerTierName"] == "Silver" and iso_ms(a["partnerTierExpiryDate"]) == ms(FUT1), a
    assert a["membershipEndDate"] is None and a["state"] == "ACTIVE", a
    assert s["partnerTierName"] is None and s["partnerTierExpiryDate"] is None, s
    assert iso_ms(s["membershipStartDate"]) == ms(FUT2) and s["state"] == "PENDING", s
    start = iso_ms(pl["membershipStartDate"])
    assert t0 - 2000 <= start <= t1 + 2000 and pl["state"] == "ACTIVE", pl
    assert iso_ms(pl["membershipEndDate"]) == add_months(start, 12), pl
    assert d["state"] == "PENDING" and d["partnerTierName"] == "Premium", d
    assert iso_ms(d["membershipEndDate"]) == ms("2031-02-10T06:00:00Z") + 30 * 86400000, d


def test_programs_state_is_tier_expired_once_the_stored_expiry_passed(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", FUTURE), item("AcmeShop", stack.uid()))
    assert_codes(st, [200, 200])
    # the API refuses past expiries, so age the stored one by hand (docs/DATA-MODEL.md)
    m = stack.membership(c["id"], "AcmeAir")
    past = int(time.time() * 1000) - 86400000
    m["exp"] = past
    stack.set_membership(c["id"], "AcmeAir", m)
    got = programs_of(stack, c["id"])
    assert got["AcmeAir"]["state"] == "TIER_EXPIRED", got["AcmeAir"]
    assert iso_ms(got["AcmeAir"]["partnerTierExpiryDate"]) == past, got["AcmeAir"]
    assert got["AcmeShop"]["state"] == "ACTIVE", got["AcmeShop"]
    # a renewal brings it back
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "RENEWAL", "Gold", FUT1))
    assert_codes(st, [200])
    assert programs_of(stack, c["id"])["AcmeAir"]["state"] == "ACTIVE"


def test_programs_shows_the_queued_pending_relink(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m1, "Basic", FUT1))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m2, "Premium", FUT3, start="2031-04-20T00:00:00Z"))
    assert_codes(st, [200])
    p = programs_of(stack, c["id"])["AcmeDays"]
    assert p["partnerMembershipId"] == m1 and p["partnerTierName"] == "Basic" and p["state"] == "ACTIVE", p
    _same_values(p["pendingRelink"], {"partnerMembershipId": m2, "partnerTierName": "Premium",
                                      "partnerTierExpiryDate": FUT3, "membershipStartDate": "2031-04-20T00:00:00Z",
                                      "membershipEndDate": "2031-05-20T00:00:00Z"}, "pendingRelink")


def test_programs_lookup_by_each_identifier(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])
    want = read_programs(stack, "id", str(c["id"]))
    assert want["customer"] == stored_view(c) and len(want["partnerPrograms"]) == 1, want
    for name, value in (("mobile", c["mobile"]), ("mobile", c["mobile"][2:]), ("mobile", "+91 " + c["mobile"][2:]),
                        ("mobile", "(91) %s-%s" % (c["mobile"][2:7], c["mobile"][7:])),
                        ("email", c["email"]), ("externalId", c["externalId"]), ("id", str(c["id"]))):
        got = read_programs(stack, name, value)
        assert got == want, "%s=%r: %r, expected %r" % (name, value, got, want)


def test_programs_of_unknown_customer_is_200_with_8015_and_no_programs(stack):
    for name, value in (("mobile", "919999000555"), ("mobile", "9999000555"), ("email", "nobody@acme.example"),
                        ("externalId", "NO-SUCH"), ("id", "987654321")):
        body = read_programs(stack, name, value)
        assert_code(body["customer"]["status"], 8015, "%s=%s" % (name, value))
        assert body["partnerPrograms"] == [], body


def test_programs_of_customer_without_memberships_is_an_empty_list(stack):
    c = stack.customer()
    body = read_programs(stack, "externalId", c["externalId"])
    assert body["customer"] == stored_view(c) and body["partnerPrograms"] == [], body


def _bad_queries(c):
    return [("no identifierName", {"identifierValue": c["email"]}),
            ("unknown identifierName", {"identifierName": "phone", "identifierValue": c["mobile"]}),
            ("identifierName in the wrong case", {"identifierName": "Mobile", "identifierValue": c["mobile"]}),
            ("empty identifierName", {"identifierName": "", "identifierValue": c["mobile"]}),
            ("no identifierValue", {"identifierName": "email"}),
            ("empty identifierValue", {"identifierName": "email", "identifierValue": ""}),
            ("nothing", {})]


def test_read_routes_refuse_missing_or_unknown_identifiers_with_400(stack):
    c = stack.customer()
    bad = []
    for path in (PROGRAMS, HISTORY):
        for what, params in _bad_queries(c):
            try:
                assert_error(stack.get(query(path, **params)), 400)
            except AssertionError as e:
                bad.append("%s %s: %s" % (path, what, e))
    assert not bad, "\n".join(bad)


def test_read_routes_need_credentials(stack):
    c = stack.customer()
    for path in (PROGRAMS, HISTORY):
        url = query(path, identifierName="id", identifierValue=str(c["id"]))
        for auth in (None, ("acme_api", "wrong"), ("nobody", "acme_secret")):
            resp = stack.get(url, auth=auth)
            assert_error(resp, 401)
            assert resp[1].get("WWW-Authenticate") == 'Basic realm="partnerProgram"', resp[1].get("WWW-Authenticate")


def test_read_routes_are_org_scoped(stack):
    # acme 1009 and globex 4009 share mobile and email (fixtures kept for org scoping)
    acme = {"id": 1009, "mobile": "919000001009", "email": "c1009@acme.example", "externalId": "ACME-1009"}
    _, st = link1(stack, {"id": 1009}, item("AcmeAir", stack.uid(), "Gold"))
    assert_codes(st, [200])
    assert set(programs_of(stack, 1009)) == {"AcmeAir"}
    for name, value in (("mobile", acme["mobile"]), ("email", acme["email"])):
        body = read_programs(stack, name, value, auth=GLOBEX)
        assert body["customer"]["id"] == 4009 and body["customer"]["externalId"] == "GLX-1009", body
        assert body["partnerPrograms"] == [], "globex sees acme's memberships: %r" % body
        h = read_history(stack, name, value, auth=GLOBEX)
        assert h["total"] == 0 and h["activities"] == [], h
    for name, value in (("id", "1009"), ("externalId", "ACME-1009")):
        body = read_programs(stack, name, value, auth=GLOBEX)
        assert_code(body["customer"]["status"], 8015, name)
        assert body["partnerPrograms"] == [], body
        h = read_history(stack, name, value, auth=GLOBEX)
        assert h["activities"] == [] and h["total"] == 0, h
    body = read_programs(stack, "id", "4009", auth=ACME)
    assert_code(body["customer"]["status"], 8015, "acme reading a globex id")
    assert read_programs(stack, "id", "1009")["customer"] == stored_view(acme)


# ---------------------------------------------------------------- customerActivityHistory

def test_history_records_every_change_newest_first_with_values_and_request_ids(stack):
    c = stack.customer()
    ma, mp, mr = stack.uid(), stack.uid(), stack.uid()
    rid = stack.uid("rid")
    t0 = int(time.time() * 1000)
    _, st = link1(stack, by_mobile(c), item("AcmeAir", ma, "Bronze", FUT1), item("AcmePlus", mp))
    assert_codes(st, [200, 200])
    air0 = stack.membership(c["id"], "AcmeAir")
    plus0 = stack.membership(c["id"], "AcmePlus")
    # the link above went without an X-Request-Id: the generated one is returned and recorded
    st_, hdrs, _ = stack.post("/v2/partnerProgram/customerPartnerProgramUpdate", {"customersPartnerUpdates": [
        {"customer": by_mobile(c), "partnerProgramUpdates": [upd("AcmeAir", "UPGRADE", "Gold", FUT2)]}]},
        headers={"X-Request-Id": rid + "-upd"})
    assert st_ == 200 and hdrs.get("X-Request-Id") == rid + "-upd", (st_, hdrs.get("X-Request-Id"))
    air1 = stack.membership(c["id"], "AcmeAir")
    st_, hdrs, body = stack.post("/v2/partnerProgram/linkCustomer", {"linkCustomers": [
        {"customer": by_mobile(c), "linkToPartnerPrograms": [item("AcmePlus", mr, start="2031-06-05T00:00:00Z")]}]},
        headers={"X-Request-Id": rid + "-rl"})
    assert st_ == 200 and body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, body
    rl = stack.membership(c["id"], "AcmePlus")["rl"]
    rl = dict(rl, lk=None, up=None, rl=None)
    _, st = update1(stack, by_mobile(c), cancel("AcmePlus"), headers={"X-Request-Id": rid + "-cancel"})
    assert_codes(st, [200])
    st_, hdrs, body = stack.post("/v2/partnerProgram/deLinkCustomer", {"deLinkCustomers": [
        {"customer": by_mobile(c), "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeAir"}]}]})
    assert st_ == 200, body
    delink_rid = hdrs.get("X-Request-Id")
    assert delink_rid, "no X-Request-Id returned for a request without one"
    t1 = int(time.time() * 1000)

    h = history_of(stack, c["id"], limit=100)
    assert h["customer"] == stored_view(c), h["customer"]
    acts = h["activities"]
    got = [(a["activityType"], a["partnerProgramName"]) for a in acts]
    assert got == [("DELINK", "AcmeAir"), ("RELINK_CANCELLED", "AcmePlus"), ("RELINK_SCHEDULED", "AcmePlus"),
                   ("UPDATE", "AcmeAir"), ("LINK", "AcmePlus"), ("LINK", "AcmeAir")], got
    assert h["total"] == 6, h["total"]
    dates = [iso_ms(a["activityDate"]) for a in acts]
    assert dates == sorted(dates, reverse=True), "not newest first: %r" % dates
    assert all(t0 - 2000 <= d <= t1 + 2000 for d in dates), dates
    dl, rc, rs, up, lp, la = acts
    assert la["before"] is None and lp["before"] is None, (la, lp)
    _same_values(la["after"], _values(air0), "LINK after")
    _same_values(lp["after"], _values(plus0), "LINK AcmePlus after")
    _same_values(up["before"], _values(air0), "UPDATE before")
    _same_values(up["after"], _values(air1), "UPDATE after")
    assert up["after"]["partnerTierName"] == "Gold" and iso_ms(up["after"]["partnerTierExpiryDate"]) == ms(FUT2), up
    _same_values(rs["before"], _values(plus0), "RELINK_SCHEDULED before")
    _same_values(rs["after"], _values(rl), "RELINK_SCHEDULED after")
    assert rs["after"]["partnerMembershipId"] == mr, rs
    _same_values(rc["before"], _values(rl), "RELINK_CANCELLED before (the cancelled relink)")
    _same_values(dl["before"], _values(air1), "DELINK before")
    assert dl["after"] is None, dl
    assert up["requestId"] == rid + "-upd" and rs["requestId"] == rid + "-rl", (up, rs)
    assert rc["requestId"] == rid + "-cancel", rc
    assert dl["requestId"] == delink_rid, (dl, delink_rid)
    assert la["requestId"] == lp["requestId"] and la["requestId"], (la, lp)
    assert la["requestId"] not in (rid + "-upd", delink_rid), la
    # docs/CHANGE-FEED.md: updateType is the request's for UPDATE, else null
    assert [a["updateType"] for a in acts] == [None, None, None, "UPGRADE", None, None], \
        "updateType per activity %r, expected [None, None, None, 'UPGRADE', None, None] (docs/CHANGE-FEED.md)" \
        % [(a["activityType"], a["updateType"]) for a in acts]


def test_history_update_type_is_recorded_as_sent(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Silver"))
    assert_codes(st, [200])
    for ut, tier in (("RENEW", "Silver"), ("RENEWAL", "Silver"), ("DOWNGRADE", "Bronze")):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", ut, tier, FUT1))
        assert_codes(st, [200])
    acts = history_of(stack, c["id"])["activities"]
    assert [(a["activityType"], a["updateType"]) for a in acts] == [
        ("UPDATE", "DOWNGRADE"), ("UPDATE", "RENEWAL"), ("UPDATE", "RENEW"), ("LINK", None)], acts


def test_history_filter_by_program_and_total(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Bronze"), item("AcmeShop", stack.uid()))
    assert_codes(st, [200, 200])
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold", FUT1))
    assert_codes(st, [200])
    _, st = delink1(stack, by_mobile(c), "AcmeShop")
    assert_codes(st, [200])
    h = history_of(stack, c["id"], partnerProgramName="AcmeAir")
    assert [a["activityType"] for a in h["activities"]] == ["UPDATE", "LINK"] and h["total"] == 2, h
    assert all(a["partnerProgramName"] == "AcmeAir" for a in h["activities"]), h
    h = history_of(stack, c["id"], partnerProgramName="AcmeShop", limit=1)
    assert [a["activityType"] for a in h["activities"]] == ["DELINK"] and h["total"] == 2, h
    h = history_of(stack, c["id"], partnerProgramName="NoSuchProgram")
    assert h["activities"] == [] and h["total"] == 0, h
    h = history_of(stack, c["id"])
    assert h["total"] == 4 and len(h["activities"]) == 4, h


def test_history_limit_and_offset_page_through_the_events(stack):
    c = stack.customer()
    for k in range(6):                                   # 12 events
        _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
        assert_codes(st, [200])
        _, st = delink1(stack, by_mobile(c), "AcmeShop")
        assert_codes(st, [200])
    full = history_of(stack, c["id"], limit=100)
    assert full["total"] == 12 and len(full["activities"]) == 12, full
    assert [a["activityType"] for a in full["activities"]] == ["DELINK", "LINK"] * 6
    dflt = history_of(stack, c["id"])
    assert dflt["activities"] == full["activities"][:10] and dflt["total"] == 12, "default limit is 10: %r" % dflt
    for limit, offset in ((1, 0), (3, 2), (5, 9), (100, 11), (4, 12), (2, 50)):
        h = history_of(stack, c["id"], limit=limit, offset=offset)
        assert h["activities"] == full["activities"][offset:offset + limit], (limit, offset, h)
        assert h["total"] == 12, h
    h = history_of(stack, c["id"], offset=4)
    assert h["activities"] == full["activities"][4:12], h


def test_history_bad_limit_or_offset_is_400(stack):
    c = stack.customer()
    bad = []
    for params in ({"limit": "0"}, {"limit": "101"}, {"limit": "-1"}, {"limit": "x"}, {"limit": "1.5"},
                   {"offset": "-1"}, {"offset": "y"}, {"limit": "10", "offset": "-5"}):
        try:
            assert_error(stack.get(query(HISTORY, identifierName="id", identifierValue=str(c["id"]), **params)), 400)
        except AssertionError as e:
            bad.append("%r: %s" % (params, e))
    assert not bad, "\n".join(bad)
    for limit in ("1", "100"):
        assert history_of(stack, c["id"], limit=limit)["total"] == 0


def test_history_of_unknown_customer_is_200_with_8015(stack):
    body = read_history(stack, "email", "nobody@acme.example")
    assert_code(body["customer"]["status"], 8015, "customer")
    assert body["activities"] == [] and body["total"] == 0, body


def test_refused_items_record_no_history(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Silver"))
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Bronze", FUT1), upd("AcmeAir", "x"))
        assert_codes(st, [2104, 2102])
        _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", PAST))
        assert_codes(st, [2005])
    assert history_of(stack, c["id"])["total"] == 1


# ---------------------------------------------------------------- the change feed

def test_every_applied_change_appends_one_feed_entry_equal_to_its_history_entry(stack):
    c = stack.customer()
    last = feed_last_id(stack)
    rid = stack.uid("feed")
    st_, _, body = stack.post("/v2/partnerProgram/linkCustomer", {"linkCustomers": [
        {"customer": by_mobile(c), "linkToPartnerPrograms": [item("AcmeAir", stack.uid(), "Bronze"),
                                                             item("AcmeShop", stack.uid()),
                                                             item("NoSuchProgram", stack.uid())]}]},
        headers={"X-Request-Id": rid})
    assert st_ == 200, body
    new = feed_after(stack, last)
    assert len(new) == 2, "2 applied items, %d feed entries: %r" % (len(new), new)
    # a refused item appends nothing
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "DOWNGRADE", "Gold", FUT1))
    assert_codes(st, [2104])
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold", FUT1))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid()))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start=FUT2))
    assert_codes(st, [200])
    _, st = update1(stack, by_mobile(c), cancel("AcmePlus"))
    assert_codes(st, [200])
    _, st = delink1(stack, by_mobile(c), "AcmeShop", "AcmePlus")
    assert_codes(st, [200, 200])
    new = feed_after(stack, last)
    hist = history_of(stack, c["id"], limit=100)
    assert hist["total"] == 8 == len(new), "history %d, feed %d" % (hist["total"], len(new))
    for (eid, fields), act in zip(new, reversed(hist["activities"])):
        # format 3: always the same fields in the same order (Redis stores their names once
        # per stream node), the activity's values as fields of their own
        assert list(fields) == activity.FEED3, fields
        assert fields["v"] == "3" and fields["type"] == act["activityType"], fields
        assert fields["customerId"] == str(c["id"]), fields
        assert activity.from_feed(fields) == act, "feed entry %s:\n  %r\nhistory:\n  %r" % (eid, fields, act)
    assert [f["type"] for _, f in new] == ["LINK", "LINK", "UPDATE", "LINK", "RELINK_SCHEDULED", "RELINK_CANCELLED",
                                           "DELINK", "DELINK"], new
    assert new[0][1]["requestId"] == rid


def _cust_version(stack, cid):
    return int(stack.redis("HGET", keys.cust("acme", cid), "v"))


def _versions(stack, cid, last):
    """(customerVersion, seq, type) of customer cid's feed entries after last, in entry-id
    order (one partition: commit order)."""
    return [(int(f["customerVersion"]), int(f["seq"]), f["type"]) for _, f in feed_after(stack, last)
            if f["customerId"] == str(cid)]


def test_feed_entries_carry_the_customers_version_and_their_place_in_the_commit(stack):
    # docs/CHANGE-FEED.md (formats 2, 3): customerVersion is the customer's version `v` after the
    # commit, seq the entry's place among that customer's entries of the commit; per
    # customer (customerVersion, seq) strictly increases, across requests and within one
    a, b = stack.customers(2)
    last = feed_last_id(stack)
    seen = {a["id"]: [], b["id"]: []}

    def step(st_codes, want):
        """After a request: each customer's new entries all carry its version now, with seq
        0, 1, ... (want: the number of entries per customer)."""
        for cid, n in want.items():
            v = _cust_version(stack, cid)
            got = _versions(stack, cid, last)[len(seen[cid]):]
            assert [(cv, sq) for cv, sq, _ in got] == [(v, k) for k in range(n)], \
                "customer %d: entries %r, its version is now %d" % (cid, got, v)
            seen[cid] += got

    # one request, two entries for customer a (one commit of a: 3 entries) and one for b
    st_, _, body = stack.post("/v2/partnerProgram/linkCustomer", {"linkCustomers": [
        {"customer": by_mobile(a), "linkToPartnerPrograms": [item("AcmeAir", stack.uid(), "Bronze"),
                                                             item("NoSuchProgram", stack.uid()),
                                                             item("AcmeShop", stack.uid())]},
        {"customer": by_mobile(b), "linkToPartnerPrograms": [item("AcmeShop", stack.uid())]},
        {"customer": by_mobile(a), "linkToPartnerPrograms": [item("AcmePlus", stack.uid())]}]})
    assert st_ == 200, body
    step(None, {a["id"]: 3, b["id"]: 1})
    _, st = update1(stack, by_mobile(a), upd("AcmeAir", "UPGRADE", "Silver", FUT1))
    assert_codes(st, [200])
    step(st, {a["id"]: 1})
    with unchanged(stack):                                  # refused: no entry, no version
        _, st = update1(stack, by_mobile(a), upd("AcmeAir", "DOWNGRADE", "Gold", FUT1))
    assert_codes(st, [2104])
    step(st, {a["id"]: 0})
    _, st = update1(stack, by_mobile(a), upd("AcmeAir", "UPGRADE", "Gold", FUT2))
    assert_codes(st, [200])
    step(st, {a["id"]: 1})
    _, st = link1(stack, by_mobile(a), item("AcmePlus", stack.uid(), start=FUT2))
    assert_codes(st, [200])
    step(st, {a["id"]: 1})
    _, st = update1(stack, by_mobile(a), cancel("AcmePlus"))
    assert_codes(st, [200])
    step(st, {a["id"]: 1})
    _, st = delink1(stack, by_mobile(a), "AcmeShop", "AcmePlus", "AcmeAir")
    assert_codes(st, [200, 200, 200])
    step(st, {a["id"]: 3})
    _, st = delink1(stack, by_mobile(b), "AcmeShop")
    assert_codes(st, [200])
    step(st, {b["id"]: 1})
    for cid, got in seen.items():
        order = [(cv, sq) for cv, sq, _ in got]
        assert all(x < y for x, y in zip(order, order[1:])), "customer %d: not increasing: %r" % (cid, got)
    assert [t for _, _, t in seen[a["id"]]] == ["LINK", "LINK", "LINK", "UPDATE", "UPDATE", "RELINK_SCHEDULED",
                                                "RELINK_CANCELLED", "DELINK", "DELINK", "DELINK"], seen
    assert len({cv for cv, _, _ in seen[a["id"]]}) == 6, seen           # 6 requests applied something
