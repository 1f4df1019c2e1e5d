"""POST /v2/partnerProgram/customerPartnerProgramUpdate (SPEC §4.2): every item code, the
rule order, the response shape, partial success, checked through the HTTP answer, the read
route and Redis (docs/DATA-MODEL.md).

Fixture programs (org acme): AcmeAir (EXTERNAL, Bronze<Silver<Gold), AcmeShop (EXTERNAL, no
tiers), AcmePlus (SUPPLEMENTARY, no tiers), AcmeDays (SUPPLEMENTARY, Basic<Premium).
"""

from harness import DEMO, LINK
from helpers import (FUTURE, PAST, assert_code, assert_codes, by_mobile, item, link1, ms,
                     stored_view, unchanged)
from support_model import (CANCEL, FUT1, FUT2, FUT3, UPDATE, cancel, iso_ms, post_update, programs_of,
                           uentry, upd, update1)


def _linked(stack, *items):
    """A fresh customer linked to items (all must succeed)."""
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), *items)
    assert_codes(st, [200] * len(items))
    return c


def _air(stack, tier="Silver", exp=FUTURE):
    return _linked(stack, item("AcmeAir", stack.uid(), tier, exp))


def _refused(stack, c, it, code, what=""):
    with unchanged(stack):
        cust, st = update1(stack, by_mobile(c), it)
    assert cust == stored_view(c), cust
    assert_code(st[0], code, what or repr(it))
    return st[0]


# ---------------------------------------------------------------- 200: the moves are stored

def test_upgrade_downgrade_renewal_and_renew_store_tier_and_expiry(stack):
    c = _air(stack, "Bronze")
    before = stack.membership(c["id"], "AcmeAir")
    steps = [("UPGRADE", "Gold", FUT1), ("DOWNGRADE", "Silver", FUT2), ("RENEWAL", "Silver", FUT3),
             ("RENEW", "Silver", "2034-01-01T00:00:00Z"), ("DOWNGRADE", "Bronze", "2035-02-02T02:02:02.500+01:00"),
             ("UPGRADE", "Silver", FUT1)]
    for utype, tier, exp in steps:
        cust, st = update1(stack, {"email": c["email"]}, upd("AcmeAir", utype, tier, exp))
        assert cust == stored_view(c), cust
        assert_codes(st, [200])
        m = stack.membership(c["id"], "AcmeAir")
        assert m["tier"] == tier and m["exp"] == ms(exp), "%s -> stored %r" % (utype, m)
        for k in ("mid", "start", "end", "lk", "rl"):
            assert m[k] == before[k], "%s changed %s: %r -> %r" % (utype, k, before, m)
        assert m["up"] >= before["up"], m
        p = programs_of(stack, c["id"])["AcmeAir"]
        assert p["partnerTierName"] == tier, p
        assert iso_ms(p["partnerTierExpiryDate"]) == ms(exp), p
        assert p["partnerMembershipId"] == before["mid"] and p["state"] == "ACTIVE", p


def test_tiered_supplementary_program_moves_between_its_tiers(stack):
    c = _linked(stack, item("AcmeDays", stack.uid(), "Basic"))
    _, st = update1(stack, {"id": c["id"]}, upd("AcmeDays", "UPGRADE", "Premium", FUT1))
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmeDays")["tier"] == "Premium"
    _, st = update1(stack, {"externalId": c["externalId"]}, upd("AcmeDays", "DOWNGRADE", "Basic", FUT2))
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeDays")
    assert m["tier"] == "Basic" and m["exp"] == ms(FUT2), m


def test_update_response_has_the_seed_shape(stack):
    c = _linked(stack, item("AcmeAir", stack.uid(), "Bronze"), item("AcmeDays", stack.uid(), "Premium"))
    st, hdrs, body = stack.post(UPDATE, {"customersPartnerUpdates": [uentry(
        {"mobile": c["mobile"][2:], "email": "", "externalId": ""},
        upd("AcmeAir", "UPGRADE", "Gold", FUT1), upd("AcmeDays", "RENEWAL", "Basic", FUT1))]})
    assert st == 200, (st, body)
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")
    assert isinstance(body, dict), body
    code2104 = body["customersPartnerUpdates"][0]["partnerProgramUpdates"][1]["updateStatus"]
    assert code2104.get("status") is False and code2104.get("code") == 2104, body
    assert isinstance(code2104.get("message"), str) and code2104["message"].strip(), body
    assert body == {
        "customersPartnerUpdates": [{
            "customer": stored_view(c),
            "partnerProgramUpdates": [
                {"partnerProgramName": "AcmeAir", "updateType": "UPGRADE",
                 "updateStatus": {"status": True, "message": "Success", "code": 200}},
                {"partnerProgramName": "AcmeDays", "updateType": "RENEWAL", "updateStatus": code2104}]}],
        "warnings": []}, body


def test_seed_update_example_answers_in_the_seed_shape(stack):
    # the seed's update request (demo org) with the date moved into the future
    _, st = link1(stack, {"mobile": "919740000000"}, item("Apparel-Partner", "App-919740000000", "Bronze",
                                                          "2030-12-29T23:59:59+05:30"), auth=DEMO)
    assert_codes(st, [200])
    req = {"customersPartnerUpdates": [{
        "customer": {"mobile": "919740000000", "email": "", "externalId": ""},
        "partnerProgramUpdates": [{"partnerProgramName": "Apparel-Partner", "updateType": "UPGRADE",
                                   "updateDetails": {"updatedTierName": "Silver",
                                                     "updatedTierExpiryDate": "2033-12-29T23:59:59+05:30"}}]}]}
    st, _, body = stack.post(UPDATE, req, auth=DEMO)
    assert st == 200, (st, body)
    assert body == {
        "customersPartnerUpdates": [{
            "customer": {"id": 382741351, "mobile": "919740000000", "email": "919740000000@mail.com",
                         "externalId": "X919740000000",
                         "status": {"status": True, "message": "Customer successfully retrieved", "code": 1000}},
            "partnerProgramUpdates": [{"partnerProgramName": "Apparel-Partner", "updateType": "UPGRADE",
                                       "updateStatus": {"status": True, "message": "Success", "code": 200}}]}],
        "warnings": []}, body
    m = stack.membership(382741351, "Apparel-Partner", org="demo")
    assert m["tier"] == "Silver" and m["exp"] == ms("2033-12-29T23:59:59+05:30"), m
    # the same request again: Silver is not above Silver
    with unchanged(stack):
        st, _, body = stack.post(UPDATE, req, auth=DEMO)
    assert st == 200, (st, body)
    assert_codes([body["customersPartnerUpdates"][0]["partnerProgramUpdates"][0]["updateStatus"]], [2104])


# ---------------------------------------------------------------- 2002

def test_missing_required_fields_are_2002_and_change_nothing(stack):
    c = _air(stack)
    cases = [
        ("no partnerProgramName", upd(None, "UPGRADE", "Gold", FUT1)),
        ("empty partnerProgramName", upd("", "UPGRADE", "Gold", FUT1)),
        ("null partnerProgramName", dict(upd("AcmeAir", "UPGRADE", "Gold", FUT1), partnerProgramName=None)),
        ("no updateType", upd("AcmeAir", None, "Gold", FUT1)),
        ("empty updateType", upd("AcmeAir", "", "Gold", FUT1)),
        ("null updateType", dict(upd("AcmeAir", "UPGRADE", "Gold", FUT1), updateType=None)),
        ("UPGRADE without updateDetails", upd("AcmeAir", "UPGRADE", details=False)),
        ("DOWNGRADE without updateDetails", upd("AcmeAir", "DOWNGRADE", details=False)),
        ("RENEWAL without updateDetails", upd("AcmeAir", "RENEWAL", details=False)),
        ("RENEW without updateDetails", upd("AcmeAir", "RENEW", details=False)),
        ("null updateDetails", upd("AcmeAir", "UPGRADE", details=None)),
        ("updateDetails a string", upd("AcmeAir", "UPGRADE", details="Gold")),
        ("no updatedTierName", upd("AcmeAir", "UPGRADE", None, FUT1)),
        ("empty updatedTierName", upd("AcmeAir", "UPGRADE", "", FUT1)),
        ("null updatedTierName", upd("AcmeAir", "UPGRADE", updatedTierName=None, updatedTierExpiryDate=FUT1)),
        ("numeric updatedTierName", upd("AcmeAir", "UPGRADE", 3, FUT1)),
        ("RENEWAL without updatedTierName", upd("AcmeAir", "RENEWAL", None, FUT1)),
    ]
    bad = []
    for what, it in cases:
        with unchanged(stack):
            _, st = update1(stack, by_mobile(c), it)
        if st[0]["code"] != 2002:
            bad.append("%s: %r" % (what, st[0]))
    assert not bad, "expected 2002:\n" + "\n".join(bad)
    assert stack.membership(c["id"], "AcmeAir")["tier"] == "Silver"


# ---------------------------------------------------------------- 2003, 2103

def test_expiry_not_in_the_future_is_2003(stack):
    c = _air(stack)
    for it in (upd("AcmeAir", "UPGRADE", "Gold", PAST), upd("AcmeAir", "RENEWAL", "Silver", "2001-01-01T00:00:00+05:30"),
               upd("AcmeAir", "DOWNGRADE", "Bronze", "2024-06-30T23:59:59.999Z")):
        _refused(stack, c, it, 2003)


def test_bad_updated_tier_expiry_dates_are_2103(stack):
    c = _air(stack)
    bad = []
    for d in ["2030-06-01T10:00:00", "2030-02-30T10:00:00Z", "2030-13-01T10:00:00Z", "2030-06-01t10:00:00z",
              "2030-06-01T10:00:00+0530", "2030-06-01", "2030-06-01T10:00:00.1234567890Z", "next year",
              "2030-06-01T10:00:00  +05:30", 20300601, True, {"d": FUT1}]:
        with unchanged(stack):
            _, st = update1(stack, by_mobile(c), upd("AcmeAir", "RENEWAL", "Silver", d))
        if st[0]["code"] != 2103:
            bad.append("%r -> %r" % (d, st[0]))
    assert not bad, "expected 2103:\n" + "\n".join(bad)


def test_accepted_expiry_forms_are_stored_as_the_right_instant(stack):
    c = _air(stack)
    for d, want in (("2031-06-01T10:00:00 +05:30", ms("2031-06-01T10:00:00+05:30")),
                    ("2031-06-01T10:00:00.123456789-03:00", ms("2031-06-01T13:00:00Z") + 123),
                    ("2032-02-29T00:00:00+00:00", ms("2032-02-29T00:00:00Z"))):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "RENEWAL", "Silver", d))
        assert_codes(st, [200])
        got = stack.membership(c["id"], "AcmeAir")["exp"]
        assert got == want, "%r stored as %r, expected %r" % (d, got, want)


# ---------------------------------------------------------------- 2004, 2006

def test_update_of_a_program_the_customer_is_not_linked_to_is_2004(stack):
    c = _air(stack)
    for it in (upd("AcmeDays", "UPGRADE", "Premium", FUT1), upd("AcmeShop", "RENEWAL", "Gold", FUT1),
               cancel("AcmePlus")):
        _refused(stack, c, it, 2004)
    d = stack.customer()
    _refused(stack, d, upd("AcmeAir", "UPGRADE", "Gold", FUT1), 2004)


def test_update_after_delink_is_2004(stack):
    from support_model import delink1
    c = _air(stack)
    _, st = delink1(stack, by_mobile(c), "AcmeAir")
    assert_codes(st, [200])
    _refused(stack, c, upd("AcmeAir", "UPGRADE", "Gold", FUT1), 2004)


def test_update_of_an_unknown_program_is_2006(stack):
    c = _air(stack)
    for name in ("NoSuchProgram", "acmeair", "AcmeAir ", "GlobexOnly"):
        _refused(stack, c, upd(name, "UPGRADE", "Gold", FUT1), 2006, repr(name))


# ---------------------------------------------------------------- 2007

def test_tier_move_on_a_program_without_tiers_is_2007(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()), item("AcmePlus", stack.uid()))
    for it in (upd("AcmeShop", "UPGRADE", "Gold", FUT1), upd("AcmePlus", "RENEWAL", "Basic", FUT1),
               upd("AcmeShop", "DOWNGRADE", "Bronze", FUT1), upd("AcmePlus", "RENEW", "x")):
        _refused(stack, c, it, 2007)


def test_unknown_tier_is_2007(stack):
    c = _linked(stack, item("AcmeAir", stack.uid(), "Silver"), item("AcmeDays", stack.uid(), "Basic"))
    for it in (upd("AcmeAir", "UPGRADE", "Platinum", FUT1), upd("AcmeAir", "UPGRADE", "gold", FUT1),
               upd("AcmeAir", "RENEWAL", "Silver ", FUT1), upd("AcmeDays", "UPGRADE", "Gold", FUT1),
               upd("AcmeDays", "DOWNGRADE", "Bronze", FUT1)):
        _refused(stack, c, it, 2007)


# ---------------------------------------------------------------- 2009

def test_bad_update_type_is_2009(stack):
    c = _air(stack)
    bad = []
    for ut in ("upgrade", "SIDEGRADE", "Upgrade", "RENEWALS", " UPGRADE", "UPGRADE ", "RENEW_AL", "CANCEL",
               "membership_relinking_cancelled", "DELINK"):
        with unchanged(stack):
            _, st = update1(stack, by_mobile(c), upd("AcmeAir", ut, "Gold", FUT1))
        if st[0]["code"] != 2009:
            bad.append("%r -> %r" % (ut, st[0]))
    assert not bad, "expected 2009:\n" + "\n".join(bad)


# ---------------------------------------------------------------- 2102

def test_same_program_twice_in_one_entry_fails_the_later_with_2102(stack):
    c = _air(stack, "Bronze")
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Silver", FUT1),
                    upd("AcmeAir", "UPGRADE", "Gold", FUT2))
    assert_codes(st, [200, 2102])
    m = stack.membership(c["id"], "AcmeAir")
    assert m["tier"] == "Silver" and m["exp"] == ms(FUT1), m
    # the later one fails even when the earlier one failed
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "SIDEGRADE", "Gold", FUT1),
                        upd("AcmeAir", "UPGRADE", "Gold", FUT2))
    assert_codes(st, [2009, 2102])


# ---------------------------------------------------------------- 2104

def test_tier_move_against_the_update_type_is_2104(stack):
    c = _air(stack, "Silver")
    for it in (upd("AcmeAir", "UPGRADE", "Silver", FUT1), upd("AcmeAir", "UPGRADE", "Bronze", FUT1),
               upd("AcmeAir", "DOWNGRADE", "Silver", FUT1), upd("AcmeAir", "DOWNGRADE", "Gold", FUT1),
               upd("AcmeAir", "RENEWAL", "Gold", FUT1), upd("AcmeAir", "RENEWAL", "Bronze", FUT1),
               upd("AcmeAir", "RENEW", "Gold", FUT1)):
        _refused(stack, c, it, 2104)
    top = _air(stack, "Gold")
    _refused(stack, top, upd("AcmeAir", "UPGRADE", "Gold", FUT1), 2104)
    low = _air(stack, "Bronze")
    _refused(stack, low, upd("AcmeAir", "DOWNGRADE", "Bronze", FUT1), 2104)


# ---------------------------------------------------------------- 2105

def test_cancel_without_a_pending_relink_is_2105(stack):
    c = _linked(stack, item("AcmePlus", stack.uid()), item("AcmeAir", stack.uid(), "Gold"),
                item("AcmeDays", stack.uid(), "Basic"))
    for p in ("AcmePlus", "AcmeAir", "AcmeDays"):
        _refused(stack, c, cancel(p), 2105, p)


# ---------------------------------------------------------------- the order of §4.2

def test_rule_order_of_update(stack):
    c = _linked(stack, item("AcmeAir", stack.uid(), "Silver"), item("AcmeShop", stack.uid()))
    cases = [
        ("missing name + bad updateType", upd(None, "SIDEGRADE", "Gold", FUT1), 2002),
        ("unknown program + bad updateType", upd("NoSuchProgram", "upgrade", "Gold", FUT1), 2006),
        ("unknown program + missing updateType", upd("NoSuchProgram", None, details=False), 2006),
        ("not linked + bad updateType", upd("AcmeDays", "SIDEGRADE", "Gold", FUT1), 2004),
        ("not linked + missing details", upd("AcmeDays", "UPGRADE", details=False), 2004),
        ("not linked + cancel", cancel("AcmePlus"), 2004),
        ("bad updateType + missing details", upd("AcmeAir", "upgrade", details=False), 2009),
        ("bad updateType + unknown tier + bad date", upd("AcmeAir", "SIDEGRADE", "Platinum", "x"), 2009),
        ("missing details on a tierless program", upd("AcmeShop", "UPGRADE", details=False), 2002),
        ("missing tier name on a tierless program", upd("AcmeShop", "UPGRADE", None, FUT1), 2002),
        ("tierless + unknown tier name", upd("AcmeShop", "UPGRADE", "Platinum", FUT1), 2007),
        ("tierless + bad date", upd("AcmeShop", "RENEWAL", "Gold", "bad"), 2007),
        ("tierless + past date", upd("AcmeShop", "RENEWAL", "Gold", PAST), 2007),
        ("unknown tier + past date", upd("AcmeAir", "UPGRADE", "Platinum", PAST), 2007),
        ("unknown tier + bad date", upd("AcmeAir", "DOWNGRADE", "Platinum", "bad"), 2007),
        ("wrong direction + bad date", upd("AcmeAir", "UPGRADE", "Bronze", "2030-02-30T00:00:00Z"), 2104),
        ("wrong direction + past date", upd("AcmeAir", "DOWNGRADE", "Gold", PAST), 2104),
        ("right direction + bad date", upd("AcmeAir", "UPGRADE", "Gold", "2030-02-30T00:00:00Z"), 2103),
        ("right direction + past date", upd("AcmeAir", "UPGRADE", "Gold", PAST), 2003),
        ("cancel, no relink, on a linked tierless program", cancel("AcmeShop"), 2105),
    ]
    bad = []
    for what, it, want in cases:
        with unchanged(stack):
            _, st = update1(stack, by_mobile(c), it)
        if st[0]["code"] != want:
            bad.append("%s: expected %d, got %r" % (what, want, st[0]))
    assert not bad, "rule order of SPEC 4.2 not followed:\n" + "\n".join(bad)


# ---------------------------------------------------------------- customer-level outcomes

def test_customer_failures_carry_to_every_update_item(stack):
    a, b = stack.customers(2)
    _, st = link1(stack, by_mobile(a), item("AcmeAir", stack.uid(), "Bronze"))
    assert_codes(st, [200])
    its = [upd("AcmeAir", "UPGRADE", "Gold", FUT1), upd("NoSuchProgram", "UPGRADE", "Gold", FUT1), cancel("AcmePlus")]
    for sent, code in (({"mobile": "919999000999"}, 8015), ({"id": 987654}, 8015),
                       ({"mobile": a["mobile"], "email": b["email"]}, 8016),
                       ({"mobile": a["mobile"], "externalId": "NOPE"}, 8016),
                       ({}, 400), ({"mobile": "abc"}, 400), ({"id": str(a["id"])}, 400)):
        with unchanged(stack):
            cust, st = update1(stack, sent, *its)
        assert_code(cust["status"], code, repr(sent))
        assert_codes(st, [code] * 3)
    assert stack.membership(a["id"], "AcmeAir")["tier"] == "Bronze"


# ---------------------------------------------------------------- partial success, atomicity

def test_failing_items_do_not_stop_their_siblings(stack):
    c = _linked(stack, item("AcmeAir", stack.uid(), "Bronze"), item("AcmeDays", stack.uid(), "Premium"),
                item("AcmeShop", stack.uid()))
    shop = stack.membership(c["id"], "AcmeShop")
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold", FUT1),
                    upd("NoSuchProgram", "UPGRADE", "Gold", FUT1), upd("AcmeShop", "UPGRADE", "Gold", FUT1),
                    upd("AcmeDays", "DOWNGRADE", "Basic", FUT2), upd("AcmePlus", "RENEWAL", "x", FUT1))
    assert_codes(st, [200, 2006, 2007, 200, 2004])
    a = stack.membership(c["id"], "AcmeAir")
    d = stack.membership(c["id"], "AcmeDays")
    assert a["tier"] == "Gold" and a["exp"] == ms(FUT1), a
    assert d["tier"] == "Basic" and d["exp"] == ms(FUT2), d
    assert stack.membership(c["id"], "AcmeShop") == shop
    assert stack.membership(c["id"], "AcmePlus") is None


def test_entry_whose_items_all_fail_changes_nothing(stack):
    c = _air(stack)
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Bronze", FUT1),
                        upd("AcmeShop", "UPGRADE", "Gold", FUT1), upd("Nope", "UPGRADE", "Gold", FUT1))
    assert_codes(st, [2104, 2004, 2006])


def test_same_customer_twice_in_one_update_request_later_entry_sees_the_earlier(stack):
    c = _air(stack, "Bronze")
    body = post_update(stack, [uentry(by_mobile(c), upd("AcmeAir", "UPGRADE", "Silver", FUT1)),
                               uentry({"id": c["id"]}, upd("AcmeAir", "UPGRADE", "Gold", FUT2)),
                               uentry({"email": c["email"]}, upd("AcmeAir", "UPGRADE", "Silver", FUT3))])
    codes = [[i["updateStatus"]["code"] for i in e["partnerProgramUpdates"]] for e in body["customersPartnerUpdates"]]
    assert codes == [[200], [200], [2104]], codes
    m = stack.membership(c["id"], "AcmeAir")
    assert m["tier"] == "Gold" and m["exp"] == ms(FUT2), m


def test_update_items_of_different_customers_in_one_request_are_independent(stack):
    a, b = _air(stack, "Bronze"), _air(stack, "Gold")
    body = post_update(stack, [uentry(by_mobile(a), upd("AcmeAir", "UPGRADE", "Gold", FUT1)),
                               uentry(by_mobile(b), upd("AcmeAir", "UPGRADE", "Gold", FUT1)),
                               uentry({"mobile": "919999000998"}, upd("AcmeAir", "UPGRADE", "Gold", FUT1))])
    got = [(e["customer"]["status"]["code"], [i["updateStatus"]["code"] for i in e["partnerProgramUpdates"]])
           for e in body["customersPartnerUpdates"]]
    assert got == [(1000, [200]), (1000, [2104]), (8015, [8015])], got
    assert stack.membership(a["id"], "AcmeAir")["tier"] == "Gold"


def test_cancel_item_needs_no_update_details_and_type_is_echoed(stack):
    c = _linked(stack, item("AcmePlus", stack.uid()))
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start=FUT1))
    assert_codes(st, [200])
    body = post_update(stack, [uentry(by_mobile(c), cancel("AcmePlus"))])
    it = body["customersPartnerUpdates"][0]["partnerProgramUpdates"][0]
    assert it["updateType"] == CANCEL, it
    assert_codes([it["updateStatus"]], [200])
    assert stack.membership(c["id"], "AcmePlus")["rl"] is None
