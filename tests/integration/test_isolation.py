"""Tenant isolation (SPEC §2 "Nothing in a request can name or reach another org's data",
§6 "Idempotency keys belong to the org of the credential").

Fixtures (data/orgs.json): orgs `isoa` and `isob` are twins. Both have customers 1-40 with
the SAME ids, mobiles, emails and externalIds, and the same programs `Shared` (tiers
Bronze<Silver<Gold), `SharedPlain` and `SharedSupp` (SUPPLEMENTARY, 12 months); only
`OnlyA` / `OnlyB` differ, and isoa alone has customer 41. Credentials: isoa_api,
isoa_second (isoa), isob_api (isob). Every test takes customer ids no other test of this
module uses (_ids) and uses the same membership ids in both orgs.

Each route is driven with org B's credential while a digest of org A's keys
(pp:{isoa}... and pp:{isoa:N}...) must stay the same, then the other way round.
"""

import json
import os
import tempfile

import activity
import harness
import keys
from harness import LINK, Stack
from helpers import FUTURE, assert_code, assert_codes, assert_error, entry, item, link1, unchanged
from support_model import (HISTORY, PROGRAMS, UPDATE, DELINK, cancel, delink1, feed, history_of,
                           programs_of, query, read_history, read_programs, update1, upd)

ISOA = ("isoa_api", "isoa_secret")
ISOA2 = ("isoa_second", "isoa_second_secret")
ISOB = ("isob_api", "isob_secret")
A_KEYS = keys.of_org("isoa")
B_KEYS = keys.of_org("isob")
START = "2031-06-01T00:00:00Z"

_next = {}


def _ids(stack, n=1):
    """n customer ids (1-40) of the twin orgs that no other test of this stack uses."""
    k = _next.get(id(stack), 1)
    assert k + n - 1 <= 40, "isoa/isob customers exhausted: add customers to data/orgs.json"
    _next[id(stack)] = k + n
    return list(range(k, k + n))


def mobile(cid):
    return "9177%08d" % cid


def _mid(stack):
    return stack.uid("ISO")


def _both_linked(stack, cid, mid, tier="Silver"):
    """Links customer cid of both orgs to Shared with the same membership id and tier."""
    for auth in (ISOA, ISOB):
        cust, st = link1(stack, {"mobile": mobile(cid)[2:]}, item("Shared", mid, tier, FUTURE), auth=auth)
        assert_code(cust["status"], 1000)
        assert_codes(st, [200])
        assert cust["id"] == cid, cust


def _pid(stack, org, program="Shared"):
    return stack.pid(program, org=org)


# ---------------------------------------------------------------- the write routes

def test_isolation_link_with_org_b_changes_only_org_b(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    with unchanged(stack, A_KEYS):
        cust, st = link1(stack, {"mobile": mobile(cid)}, item("Shared", mid, "Gold", FUTURE), auth=ISOB)
    assert cust["id"] == cid and cust["externalId"] == "ISO-%d" % cid, cust
    assert_codes(st, [200])
    assert stack.membership(cid, "Shared", org="isob")["mid"] == mid
    assert stack.membership(cid, "Shared", org="isoa") is None, "org B's link landed in org A"
    assert stack.mid_holder("Shared", mid, org="isob") == cid
    assert stack.mid_holder("Shared", mid, org="isoa") is None
    # the same membership id in org A is free: another org, no 2101
    with unchanged(stack, B_KEYS):
        cust, st = link1(stack, {"mobile": mobile(cid)}, item("Shared", mid, "Bronze", FUTURE), auth=ISOA)
    assert_codes(st, [200])
    assert stack.membership(cid, "Shared", org="isoa")["tier"] == "Bronze"
    assert stack.membership(cid, "Shared", org="isob")["tier"] == "Gold"


def test_isolation_every_identifier_resolves_within_the_credentials_org(stack):
    ids = _ids(stack, 4)
    idents = [{"id": ids[0]}, {"mobile": mobile(ids[1])}, {"email": "iso%d@shared.example" % ids[2]},
              {"externalId": "ISO-%d" % ids[3]}]
    for cid, ident in zip(ids, idents):
        with unchanged(stack, A_KEYS):
            cust, st = link1(stack, ident, item("SharedPlain", _mid(stack)), auth=ISOB)
        assert cust["id"] == cid, (ident, cust)
        assert_codes(st, [200])
        assert stack.membership(cid, "SharedPlain", org="isob") is not None
        assert stack.membership(cid, "SharedPlain", org="isoa") is None, ident


def test_isolation_update_with_org_b_changes_only_org_b(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    _both_linked(stack, cid, mid, "Silver")
    a_before = stack.membership(cid, "Shared", org="isoa")
    with unchanged(stack, A_KEYS):
        cust, st = update1(stack, {"id": cid}, upd("Shared", "UPGRADE", "Gold", FUTURE), auth=ISOB)
    assert_codes(st, [200])
    assert stack.membership(cid, "Shared", org="isob")["tier"] == "Gold"
    assert stack.membership(cid, "Shared", org="isoa") == a_before
    # and A's own UPGRADE still starts from Silver (B's Gold did not leak into A's snapshot)
    with unchanged(stack, B_KEYS):
        cust, st = update1(stack, {"id": cid}, upd("Shared", "DOWNGRADE", "Bronze"), auth=ISOA)
    assert_codes(st, [200])
    assert stack.membership(cid, "Shared", org="isob")["tier"] == "Gold"


def test_isolation_update_of_a_program_linked_only_in_org_a_is_2004_for_org_b(stack):
    cid, = _ids(stack)
    cust, st = link1(stack, {"id": cid}, item("Shared", _mid(stack), "Silver", FUTURE), auth=ISOA)
    assert_codes(st, [200])
    with unchanged(stack):
        cust, st = update1(stack, {"id": cid}, upd("Shared", "UPGRADE", "Gold"), auth=ISOB)
    assert_codes(st, [2004])


def test_isolation_relink_and_cancel_with_org_b_change_only_org_b(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    for auth in (ISOA, ISOB):
        _, st = link1(stack, {"id": cid}, item("SharedSupp", mid), auth=auth)
        assert_codes(st, [200])
    with unchanged(stack, A_KEYS):
        _, st = link1(stack, {"id": cid}, item("SharedSupp", mid + "-next", start=START), auth=ISOB)
        assert_codes(st, [200])
        assert stack.membership(cid, "SharedSupp", org="isob")["rl"] is not None
        _, st = update1(stack, {"id": cid}, cancel("SharedSupp"), auth=ISOB)
        assert_codes(st, [200])
    assert stack.membership(cid, "SharedSupp", org="isob")["rl"] is None
    # org A has no pending relink to cancel
    with unchanged(stack):
        _, st = update1(stack, {"id": cid}, cancel("SharedSupp"), auth=ISOA)
    assert_codes(st, [2105])


def test_isolation_delink_with_org_b_changes_only_org_b(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    _both_linked(stack, cid, mid)
    with unchanged(stack, A_KEYS):
        cust, st = delink1(stack, {"mobile": int(mobile(cid))}, "Shared", auth=ISOB)
    assert_codes(st, [200])
    assert stack.membership(cid, "Shared", org="isob") is None
    assert stack.mid_holder("Shared", mid, org="isob") is None
    assert stack.membership(cid, "Shared", org="isoa")["mid"] == mid, "org B's delink removed org A's membership"
    assert stack.mid_holder("Shared", mid, org="isoa") == cid
    # delinking again in B: not linked (2004), although A still holds it
    with unchanged(stack):
        _, st = delink1(stack, {"id": cid}, "Shared", auth=ISOB)
    assert_codes(st, [2004])


def test_isolation_membership_id_held_in_org_a_is_free_in_org_b(stack):
    c1, c2 = _ids(stack, 2)
    mid = _mid(stack)
    _, st = link1(stack, {"id": c1}, item("SharedPlain", mid), auth=ISOA)
    assert_codes(st, [200])
    # another customer of org B takes the same id in the same-named program
    with unchanged(stack, A_KEYS):
        _, st = link1(stack, {"id": c2}, item("SharedPlain", mid), auth=ISOB)
    assert_codes(st, [200])
    assert stack.mid_holder("SharedPlain", mid, org="isoa") == c1
    assert stack.mid_holder("SharedPlain", mid, org="isob") == c2
    # within org A it is held: 2101
    with unchanged(stack):
        _, st = link1(stack, {"id": c2}, item("SharedPlain", mid), auth=ISOA)
    assert_codes(st, [2101])


def test_isolation_org_a_only_program_and_customer_are_unknown_to_org_b(stack):
    cid, = _ids(stack)
    with unchanged(stack):
        _, st = link1(stack, {"id": cid}, item("OnlyA", _mid(stack)), auth=ISOB)
    assert_codes(st, [2006])
    with unchanged(stack):
        _, st = update1(stack, {"id": cid}, upd("OnlyA", "UPGRADE", "Gold"), auth=ISOB)
    assert_codes(st, [2006])
    with unchanged(stack):
        _, st = delink1(stack, {"id": cid}, "OnlyA", auth=ISOB)
    assert_codes(st, [2006])
    for ident in ({"id": 41}, {"mobile": "917799999941"}, {"email": "only41@isoa.example"},
                  {"externalId": "ISOA-ONLY-41"}):
        with unchanged(stack):
            cust, st = link1(stack, ident, item("Shared", _mid(stack), "Gold"), auth=ISOB)
        assert_code(cust["status"], 8015, "org B naming org A's customer by %r" % ident)
        assert_codes(st, [8015])


def test_isolation_body_fields_naming_an_org_are_ignored(stack):
    cid, = _ids(stack)
    body = {"org": "isoa", "orgId": "isoa",
            "linkCustomers": [{"customer": {"id": cid, "org": "isoa"}, "org": "isoa",
                               "linkToPartnerPrograms": [item("SharedPlain", _mid(stack), org="isoa")]}]}
    with unchanged(stack, A_KEYS):
        st, _, ans = stack.post(LINK, body, auth=ISOB)
    assert st == 200, (st, ans)
    assert ans["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, ans
    assert stack.membership(cid, "SharedPlain", org="isob") is not None


def test_isolation_a_write_of_org_b_creates_only_org_b_keys(stack):
    cid, = _ids(stack)
    before = set(stack.keys(keys.ALL))
    link1(stack, {"id": cid}, item("SharedPlain", _mid(stack)), auth=ISOB)
    new = set(stack.keys(keys.ALL)) - before
    assert all(keys.org_of(k) == "isob" for k in new), "org B's write created %r" % sorted(new)


# ---------------------------------------------------------------- the read routes

def test_isolation_customer_partner_programs_shows_only_the_credentials_org(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    _, st = link1(stack, {"id": cid}, item("Shared", mid, "Gold", FUTURE), auth=ISOA)
    assert_codes(st, [200])
    _, st = link1(stack, {"id": cid}, item("SharedPlain", mid + "-b"), auth=ISOB)
    assert_codes(st, [200])
    for name, value in (("id", str(cid)), ("mobile", mobile(cid)), ("email", "iso%d@shared.example" % cid),
                        ("externalId", "ISO-%d" % cid)):
        with unchanged(stack):
            b = read_programs(stack, name, value, auth=ISOB)
            a = read_programs(stack, name, value, auth=ISOA)
        assert [p["partnerProgramName"] for p in b["partnerPrograms"]] == ["SharedPlain"], (name, b)
        assert b["partnerPrograms"][0]["partnerMembershipId"] == mid + "-b"
        assert [p["partnerProgramName"] for p in a["partnerPrograms"]] == ["Shared"], (name, a)
        assert a["partnerPrograms"][0]["partnerTierName"] == "Gold"
    with unchanged(stack):
        b = read_programs(stack, "id", "41", auth=ISOB)
    assert_code(b["customer"]["status"], 8015)
    assert b["partnerPrograms"] == [], b


def test_isolation_activity_history_shows_only_the_credentials_org(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    rid_a, rid_b = "iso-a-" + mid, "iso-b-" + mid
    st, _, _ = stack.post(LINK, {"linkCustomers": [entry({"id": cid}, item("Shared", mid, "Silver", FUTURE))]},
                          auth=ISOA, headers={"X-Request-Id": rid_a})
    assert st == 200
    st, _, _ = stack.post(LINK, {"linkCustomers": [entry({"id": cid}, item("SharedPlain", mid))]},
                          auth=ISOB, headers={"X-Request-Id": rid_b})
    assert st == 200
    _, s = update1(stack, {"id": cid}, upd("Shared", "UPGRADE", "Gold"), auth=ISOA)
    assert_codes(s, [200])
    with unchanged(stack):
        hb = read_history(stack, "id", str(cid), auth=ISOB)
        ha = read_history(stack, "mobile", mobile(cid), auth=ISOA)
    assert hb["total"] == 1 and [x["requestId"] for x in hb["activities"]] == [rid_b], hb
    assert hb["activities"][0]["partnerProgramName"] == "SharedPlain", hb
    assert ha["total"] == 2, ha
    assert rid_b not in [x["requestId"] for x in ha["activities"]], ha
    with unchanged(stack):
        hf = read_history(stack, "id", str(cid), auth=ISOB, partnerProgramName="Shared")
    assert hf["total"] == 0 and hf["activities"] == [], hf
    with unchanged(stack):
        h41 = read_history(stack, "id", "41", auth=ISOB)
    assert_code(h41["customer"]["status"], 8015)
    assert h41["activities"] == [] and h41["total"] == 0, h41


def test_isolation_change_feed_of_org_b_gets_only_org_b_events(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    a_feed = feed(stack, "isoa")
    _, st = link1(stack, {"id": cid}, item("SharedPlain", mid), auth=ISOB)
    assert_codes(st, [200])
    assert feed(stack, "isoa") == a_feed, "org B's link appeared in org A's feed"
    events = [activity.from_feed(f) for _, f in feed(stack, "isob")]
    assert any(e.get("after") and e["after"]["partnerMembershipId"] == mid for e in events), events[-3:]


# ---------------------------------------------------------------- Idempotency-Key per org

def test_isolation_same_idempotency_key_in_two_orgs_is_two_keys(stack):
    cid, = _ids(stack)
    mid = _mid(stack)
    key = "shared-key-" + mid
    body = {"linkCustomers": [entry({"id": cid}, item("SharedPlain", mid))]}
    st, h, ans_a = stack.post(LINK, body, auth=ISOA, headers={"Idempotency-Key": key})
    assert st == 200 and ans_a["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, ans_a
    # org B, same key, same body: a first request of org B, applied to org B, no replay
    with unchanged(stack, A_KEYS):
        st, h, ans_b = stack.post(LINK, body, auth=ISOB, headers={"Idempotency-Key": key})
    assert st == 200, (st, ans_b)
    assert h.get("Idempotent-Replayed") is None, "org B got org A's stored answer replayed"
    assert ans_b["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, ans_b
    assert stack.membership(cid, "SharedPlain", org="isob")["mid"] == mid
    # org B, same key, another body: not org A's key, so no 422 ... but B's own: 422
    other = {"linkCustomers": [entry({"id": cid}, item("Shared", mid, "Gold"))]}
    with unchanged(stack):
        resp = stack.post(LINK, other, auth=ISOB, headers={"Idempotency-Key": key})
    assert_error(resp, 422)
    # each org replays its own answer
    st, h, again_a = stack.post(LINK, body, auth=ISOA, headers={"Idempotency-Key": key})
    assert h.get("Idempotent-Replayed") == "true" and again_a == ans_a, (h, again_a)
    st, h, again_b = stack.post(LINK, body, auth=ISOB, headers={"Idempotency-Key": key})
    assert h.get("Idempotent-Replayed") == "true" and again_b == ans_b, (h, again_b)
    ka = [k for k in stack.keys(keys.idem("isoa", "*"))]
    kb = [k for k in stack.keys(keys.idem("isob", "*"))]
    assert ka and kb, (ka, kb)


def test_isolation_idempotency_key_of_org_a_does_not_answer_org_b_with_a_new_body(stack):
    c1, = _ids(stack)
    key = "k-" + _mid(stack)
    a_body = {"linkCustomers": [entry({"id": c1}, item("SharedPlain", _mid(stack)))]}
    st, _, _ = stack.post(LINK, a_body, auth=ISOA, headers={"Idempotency-Key": key})
    assert st == 200
    b_body = {"linkCustomers": [entry({"id": c1}, item("SharedPlain", _mid(stack)))]}
    with unchanged(stack, A_KEYS):
        st, h, ans = stack.post(LINK, b_body, auth=ISOB, headers={"Idempotency-Key": key})
    assert st == 200 and h.get("Idempotent-Replayed") is None, (st, h, ans)
    assert ans["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] == 200, ans


# ---------------------------------------------------------------- removed orgs and credentials

def _ok(st, auth, cid, program="SharedPlain"):
    cust, s = link1(st, {"id": cid}, item(program, st.uid("ISO")), auth=auth)
    assert_codes(s, [200])


def _assert_401(resp, what):
    try:
        assert_error(resp, 401)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (what, e)) from None
    assert resp[1].get("WWW-Authenticate") == 'Basic realm="partnerProgram"', resp[1]


def _every_route_401(st, auth, cid, what):
    reqs = [("POST", LINK, {"linkCustomers": [entry({"id": cid}, item("SharedPlain", st.uid("ISO")))]}),
            ("POST", UPDATE, {"customersPartnerUpdates": [{"customer": {"id": cid},
                                                           "partnerProgramUpdates": [upd("Shared", "UPGRADE", "Gold")]}]}),
            ("POST", DELINK, {"deLinkCustomers": [{"customer": {"id": cid},
                                                   "deLinkFromPartnerPrograms": [{"partnerProgramName": "SharedPlain"}]}]}),
            ("GET", query(PROGRAMS, identifierName="id", identifierValue=str(cid)), None),
            ("GET", query(HISTORY, identifierName="id", identifierValue=str(cid)), None)]
    for method, path, body in reqs:
        with unchanged(st):
            resp = st.request(method, path, body, auth=auth, content_type="application/json" if body else None)
        _assert_401(resp, "%s %s (%s)" % (method, path.split("?")[0], what))


def test_isolation_credentials_of_a_removed_org_are_401():
    st = Stack(partnerd_args=["--auth-cache-s", "0"])
    try:
        st.start()
        _ok(st, ISOA, 1)                       # works, and would be cached if caching were on
        _ok(st, ISOB, 1)
        saved = st.redis("DUMP", keys.org("isoa"))
        ttl = 0
        assert saved is not None
        st.redis("DEL", keys.org("isoa"))
        st.redis("SREM", keys.ORGS, "isoa")
        try:
            _every_route_401(st, ISOA, 2, "org isoa removed")
            _every_route_401(st, ISOA2, 2, "org isoa removed, second credential")
            _ok(st, ISOB, 2)                   # the other org is not affected
        finally:
            st.redis("RESTORE", keys.org("isoa"), ttl, saved, "REPLACE")
            st.redis("SADD", keys.ORGS, "isoa")
        _ok(st, ISOA, 3)                       # restored: accepted again
        # only the org's settings hash gone (still listed in pp:orgs): refused as well
        st.redis("DEL", keys.org("isoa"))
        try:
            with unchanged(st):
                resp = st.post(LINK, {"linkCustomers": [entry({"id": 4}, item("SharedPlain", st.uid("ISO")))]}, auth=ISOA)
            _assert_401(resp, keys.org("isoa") + " deleted")
        finally:
            st.redis("RESTORE", keys.org("isoa"), 0, saved, "REPLACE")
        # only removed from pp:orgs (settings still there): report what partnerd does
        st.redis("SREM", keys.ORGS, "isoa")
        try:
            s, _, b = st.post(LINK, {"linkCustomers": [entry({"id": 4}, item("SharedPlain", st.uid("ISO")))]}, auth=ISOA)
            print("    # org isoa removed from pp:orgs only (pp:{isoa}:org kept): HTTP %s" % s)
        finally:
            st.redis("SADD", keys.ORGS, "isoa")
        _ok(st, ISOA, 5)
    finally:
        st.stop()


def test_isolation_a_revoked_credential_is_401_and_its_orgs_other_credential_works():
    st = Stack(partnerd_args=["--auth-cache-s", "0"])
    tmp = None
    try:
        st.start()
        _ok(st, ISOA2, 1)
        org = [o for o in st.fixture()["orgs"] if o["id"] == "isoa"][0]
        org["credentials"] = [c for c in org["credentials"] if c["username"] != "isoa_second"]
        assert len(org["credentials"]) == 1
        fd, tmp = tempfile.mkstemp(prefix="isoa-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"orgs": [org]}, f)
        creds_before = st.redis("HGET", keys.CREDS, "isoa_api")
        st.load(tmp)
        assert st.redis("HGET", keys.CREDS, "isoa_second") is None, "partnerctl load kept the revoked credential"
        assert st.redis("HGET", keys.CREDS, "isoa_api") == creds_before, "the kept credential was rewritten"
        _every_route_401(st, ISOA2, 2, "isoa_second revoked")
        _ok(st, ISOA, 2)                       # the org's other credential still works
        _ok(st, ISOB, 2)
        st.load(st.fixtures)                   # restore
        _ok(st, ISOA2, 3)
    finally:
        if tmp:
            os.unlink(tmp)
        st.stop()


def test_isolation_a_revoked_credential_is_refused_within_the_auth_cache_time():
    """With the default cache (60 s) a revoked credential may work until its entry
    expires; with --auth-cache-s 1 it must be refused within ~1 s (docs/OPERATIONS.md)."""
    import time
    st = Stack(partnerd_args=["--auth-cache-s", "1"])
    tmp = None
    try:
        st.start()
        _ok(st, ISOA2, 1)                      # cached now
        org = [o for o in st.fixture()["orgs"] if o["id"] == "isoa"][0]
        org["credentials"] = [c for c in org["credentials"] if c["username"] != "isoa_second"]
        fd, tmp = tempfile.mkstemp(prefix="isoa-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump({"orgs": [org]}, f)
        st.load(tmp)
        time.sleep(1.3)
        with unchanged(st):
            resp = st.post(LINK, {"linkCustomers": [entry({"id": 2}, item("SharedPlain", st.uid("ISO")))]}, auth=ISOA2)
        _assert_401(resp, "isoa_second revoked 1.3 s ago with --auth-cache-s 1")
    finally:
        if tmp:
            os.unlink(tmp)
        st.stop()
