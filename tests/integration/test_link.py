"""POST /v2/partnerProgram/linkCustomer: customer identification and every item rule
of SPEC §4 and §4.1, checked through the HTTP answer and in Redis (docs/DATA-MODEL.md).

Fixture programs (data/orgs.json, org acme): AcmeAir (EXTERNAL, Bronze<Silver<Gold),
AcmeShop (EXTERNAL, no tiers), AcmePlus (SUPPLEMENTARY, 12 MONTHS, no tiers), AcmeDays
(SUPPLEMENTARY, 30 DAYS, Basic<Premium), AcmeOld (expired 2020), AcmeLater (expires 2099).
"""

import time

import keys
from harness import DEMO, LINK
from helpers import (FUTURE, PAST, assert_code, assert_codes, assert_error, by_mobile, drop_lock,
                     entry, item, link1, lock_of, ms, post_link, stored_view, take_lock, unchanged)


# ---------------------------------------------------------------- customer identification

def test_link_by_national_mobile_adds_country_code_and_shows_stored_customer(stack):
    c = stack.customer()
    mid = stack.uid()
    cust, st = link1(stack, {"mobile": c["mobile"][2:]}, item("AcmeShop", mid))
    assert cust == stored_view(c), cust
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmeShop")["mid"] == mid


def test_mobile_with_plus_spaces_dashes_dots_and_parentheses_is_normalised(stack):
    forms = [lambda n: "+91 %s-%s" % (n[:5], n[5:]),
             lambda n: "(91) %s.%s" % (n[:4], n[4:]),
             lambda n: "+91-(%s) %s" % (n[:3], n[3:]),
             lambda n: " 91 %s " % n,
             lambda n: "%s-%s" % (n[:5], n[5:])]          # national number with a dash
    bad = []
    for form, c in zip(forms, stack.customers(len(forms))):
        sent = form(c["mobile"][2:])
        cust, st = link1(stack, {"mobile": sent}, item("AcmeShop", stack.uid()))
        if cust != stored_view(c) or st[0]["code"] != 200:
            bad.append("%r -> %r %r" % (sent, cust, st))
    assert not bad, "\n".join(bad)


def test_mobile_as_json_number_is_accepted_with_and_without_country_code(stack):
    a, b = stack.customers(2)
    cust, st = link1(stack, {"mobile": int(a["mobile"])}, item("AcmeShop", stack.uid()))
    assert cust == stored_view(a), cust
    assert_codes(st, [200])
    cust, st = link1(stack, {"mobile": int(b["mobile"][2:])}, item("AcmeShop", stack.uid()))
    assert cust == stored_view(b), cust
    assert_codes(st, [200])


def test_link_by_email_by_external_id_and_by_id(stack):
    a, b, c = stack.customers(3)
    for cust_sent, want in (({"email": a["email"]}, a), ({"externalId": b["externalId"]}, b),
                            ({"id": c["id"]}, c)):
        cust, st = link1(stack, cust_sent, item("AcmeShop", stack.uid()))
        assert cust == stored_view(want), "%r -> %r" % (cust_sent, cust)
        assert isinstance(cust["id"], int)
        assert_codes(st, [200])


def test_all_four_identifiers_naming_one_customer_are_accepted(stack):
    c = stack.customer()
    sent = {"id": c["id"], "mobile": "+91 " + c["mobile"][2:], "email": c["email"], "externalId": c["externalId"]}
    cust, st = link1(stack, sent, item("AcmeShop", stack.uid()))
    assert cust == stored_view(c), cust
    assert_codes(st, [200])


def test_null_and_empty_identifiers_count_as_not_given(stack):
    c = stack.customer()
    sent = {"mobile": c["mobile"], "email": "", "externalId": None, "id": None}
    cust, st = link1(stack, sent, item("AcmeShop", stack.uid()))
    assert cust == stored_view(c), cust
    assert_codes(st, [200])


def test_response_shows_empty_strings_for_identifiers_the_customer_lacks(stack):
    cust, st = link1(stack, {"id": 1999}, item("AcmeShop", stack.uid()))
    assert cust == {"id": 1999, "mobile": "919000001999", "email": "", "externalId": "",
                    "status": {"status": True, "message": "Customer successfully retrieved", "code": 1000}}, cust
    assert_codes(st, [200])
    cust, st = link1(stack, {"email": "only-email@acme.example"}, item("AcmeShop", stack.uid()))
    assert cust["id"] == 1998 and cust["mobile"] == "" and cust["externalId"] == "", cust
    assert_codes(st, [200])


def test_identifiers_naming_two_different_customers_is_8016_and_echoes_what_was_sent(stack):
    a, b = stack.customers(2)
    sent = {"mobile": a["mobile"][2:], "email": b["email"]}
    with unchanged(stack):
        cust, st = link1(stack, sent, item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Gold"))
    assert_code(cust["status"], 8016, "customer")
    assert cust["mobile"] == sent["mobile"] and cust["email"] == sent["email"], \
        "identifiers must be echoed as sent: %r" % cust
    assert_codes(st, [8016, 8016])


def test_one_known_and_one_unknown_identifier_is_8016(stack):
    c = stack.customer()
    with unchanged(stack):
        cust, st = link1(stack, {"mobile": c["mobile"], "externalId": "NO-SUCH-EXT"},
                         item("AcmeShop", stack.uid()))
    assert_code(cust["status"], 8016, "customer")
    assert_codes(st, [8016])
    with unchanged(stack):
        cust, st = link1(stack, {"id": 987654321, "email": c["email"]}, item("AcmeShop", stack.uid()))
    assert_code(cust["status"], 8016, "customer")
    assert_codes(st, [8016])


def test_unknown_customer_is_8015_on_the_customer_and_every_item(stack):
    sent = {"mobile": "+91 77777-00000", "email": "nobody@acme.example"}
    with unchanged(stack):
        cust, st = link1(stack, sent, item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Bronze"),
                         item("NoSuchProgram", stack.uid()))
    assert_code(cust["status"], 8015, "customer")
    assert cust["mobile"] == sent["mobile"] and cust["email"] == sent["email"], cust
    assert_codes(st, [8015, 8015, 8015])
    with unchanged(stack):
        cust, st = link1(stack, {"id": 424242}, item("AcmeShop", stack.uid()))
    assert_code(cust["status"], 8015, "customer")
    assert cust["id"] == 424242, cust
    assert_codes(st, [8015])


def test_customer_without_any_identifier_is_400(stack):
    bad = []
    for sent in ({}, {"mobile": "", "email": "", "externalId": ""},
                 {"mobile": None, "email": None, "externalId": None, "id": None}):
        with unchanged(stack):
            cust, st = link1(stack, sent, item("AcmeShop", stack.uid()), item("AcmePlus", stack.uid()))
        if cust["status"]["code"] != 400 or [s["code"] for s in st] != [400, 400]:
            bad.append("%r -> %r %r" % (sent, cust, st))
    assert not bad, "\n".join(bad)


def test_identifier_of_wrong_type_or_form_is_400(stack):
    c = stack.customer()
    cases = [
        {"id": str(c["id"])},                    # id must be an integer
        {"id": 1011.5},
        {"id": True},
        {"id": [c["id"]]},
        {"mobile": c["mobile"][:6] + "abcd" + c["mobile"][10:]},   # letters
        {"mobile": "12345"},                     # 5 digits: too short
        {"mobile": "1234567890123456"},          # 16 digits: too long
        {"mobile": "+91/9000001011"},            # '/' is not a dropped separator
        {"mobile": True},
        {"mobile": {"number": c["mobile"]}},
        {"email": 12345},
        {"externalId": ["x"]},
        {"mobile": c["mobile"], "id": "x"},       # one bad identifier spoils the customer
        {"email": c["email"], "mobile": "abc"},
    ]
    bad = []
    for sent in cases:
        with unchanged(stack):
            cust, st = link1(stack, sent, item("AcmeShop", stack.uid()))
        if cust["status"]["code"] != 400 or [s["code"] for s in st] != [400]:
            bad.append("%r -> customer %r items %r" % (sent, cust.get("status"), st))
    assert not bad, "wrong-type or malformed identifiers not refused with 400:\n" + "\n".join(bad)
    assert stack.membership(c["id"], "AcmeShop") is None


# ---------------------------------------------------------------- success is stored

def test_tiered_link_stores_membership_and_membership_id_index(stack):
    c = stack.customer()
    mid = stack.uid()
    t0 = int(time.time() * 1000)
    cust, st = link1(stack, by_mobile(c), item("AcmeAir", mid, "Silver", FUTURE))
    t1 = int(time.time() * 1000)
    assert cust == stored_view(c), cust
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeAir")
    assert m is not None, "no m:PID field for a successful link"
    assert m["mid"] == mid and m["tier"] == "Silver", m
    assert m["exp"] == ms(FUTURE), "exp %r, expected %r" % (m["exp"], ms(FUTURE))
    assert t0 - 2000 <= m["start"] <= t1 + 2000, "start %r should default to now (%d..%d)" % (m["start"], t0, t1)
    assert m["end"] is None and m["rl"] is None, m
    assert t0 - 2000 <= m["lk"] <= t1 + 2000, m
    assert stack.mid_holder("AcmeAir", mid) == c["id"]


def test_tierless_link_stores_null_tier_and_expiry(stack):
    c = stack.customer()
    mid = stack.uid()
    cust, st = link1(stack, {"externalId": c["externalId"]}, item("AcmeShop", mid))
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeShop")
    assert m["mid"] == mid and m["tier"] is None and m["exp"] is None and m["end"] is None, m
    assert stack.mid_holder("AcmeShop", mid) == c["id"]


def test_supplementary_link_sets_end_to_start_plus_cycle(stack):
    a, b, d = stack.customers(3)
    _, st = link1(stack, by_mobile(a), item("AcmePlus", stack.uid(), start="2031-01-31T00:00:00Z"))
    assert_codes(st, [200])
    m = stack.membership(a["id"], "AcmePlus")
    assert m["start"] == ms("2031-01-31T00:00:00Z") and m["end"] == ms("2032-01-31T00:00:00Z"), m
    _, st = link1(stack, by_mobile(b), item("AcmeDays", stack.uid(), "Premium", start="2031-03-01T12:00:00+05:30"))
    assert_codes(st, [200])
    m = stack.membership(b["id"], "AcmeDays")
    assert m["tier"] == "Premium", m
    assert m["start"] == ms("2031-03-01T12:00:00+05:30"), m
    assert m["end"] == m["start"] + 30 * 86400 * 1000, m
    _, st = link1(stack, by_mobile(d), item("AcmePlus", stack.uid()))   # start: now
    assert_codes(st, [200])
    m = stack.membership(d["id"], "AcmePlus")
    assert 365 * 86400000 <= m["end"] - m["start"] <= 366 * 86400000, m


def test_future_membership_start_is_accepted_and_stored(stack):
    c = stack.customer()
    start = "2031-05-01T08:30:00.250+02:00"
    cust, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid(), start=start))
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeShop")
    assert m["start"] == ms(start), "start %r, expected %r" % (m["start"], ms(start))


def test_program_expiring_in_the_future_still_links(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeLater", stack.uid()))
    assert_codes(st, [200])


# ---------------------------------------------------------------- 2002 required fields

def test_missing_or_mistyped_required_fields_are_2002_and_store_nothing(stack):
    c = stack.customer()
    cases = [
        ("no partnerProgramName", item(None, stack.uid())),
        ("empty partnerProgramName", item("", stack.uid())),
        ("null partnerProgramName", dict(item("AcmeShop", stack.uid()), partnerProgramName=None)),
        ("numeric partnerProgramName", dict(item("AcmeShop", stack.uid()), partnerProgramName=7)),
        ("no customerPartnerReference", item("AcmeShop", ref=False)),
        ("null customerPartnerReference", item("AcmeShop", ref=None)),
        ("string customerPartnerReference", item("AcmeShop", ref="M-1")),
        ("no partnerMembershipId", item("AcmeShop")),
        ("empty partnerMembershipId", item("AcmeShop", "")),
        ("null partnerMembershipId", item("AcmeShop", partnerMembershipId=None)),
        ("numeric partnerMembershipId", item("AcmeShop", 12345)),
        ("no partnerTierName for a tiered program", item("AcmeAir", stack.uid())),
        ("empty partnerTierName for a tiered program", item("AcmeAir", stack.uid(), "")),
        ("numeric partnerTierName", item("AcmeAir", stack.uid(), 2)),
        ("no partnerTierName for a tiered supplementary program", item("AcmeDays", stack.uid())),
    ]
    bad = []
    for what, it in cases:
        with unchanged(stack):
            cust, st = link1(stack, by_mobile(c), it)
        assert_code(cust["status"], 1000, what)
        if st[0]["code"] != 2002:
            bad.append("%s: %r" % (what, st[0]))
    assert not bad, "expected 2002:\n" + "\n".join(bad)


# ---------------------------------------------------------------- 2003, 2005, 2006, 2007

def test_tier_expiry_in_the_past_is_2003(stack):
    c = stack.customer()
    for exp in (PAST, "2001-06-01T00:00:00+05:30"):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", exp))
        assert_codes(st, [2003])


def test_linking_an_already_linked_program_again_is_2005(stack):
    c = stack.customer()
    mid = stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", mid, "Bronze", FUTURE))
    assert_codes(st, [200])
    for again in (item("AcmeAir", mid, "Bronze", FUTURE), item("AcmeAir", stack.uid(), "Gold"),
                  item("AcmeAir", stack.uid(), "Silver", start="2031-01-01T00:00:00Z")):
        with unchanged(stack):
            _, st = link1(stack, {"email": c["email"]}, again)
        assert_codes(st, [2005])
    assert stack.membership(c["id"], "AcmeAir")["mid"] == mid


def test_link_to_unknown_program_is_2006(stack):
    c = stack.customer()
    for name in ("NoSuchProgram", "acmeshop", "AcmeShop ", "GlobexOnly"):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item(name, stack.uid()))
        assert_code(st[0], 2006, repr(name))


def test_link_to_expired_program_is_2006_saying_it_expired(stack):
    c = stack.customer()
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("AcmeOld", stack.uid(), "Bronze"))
    assert_codes(st, [2006])
    assert "expired" in st[0]["message"].lower(), "message should say the program expired: %r" % st[0]


def test_unknown_tier_is_2007_and_tier_for_tierless_program_is_2007(stack):
    c = stack.customer()
    cases = [item("AcmeAir", stack.uid(), "Platinum"), item("AcmeAir", stack.uid(), "gold"),
             item("AcmeDays", stack.uid(), "Gold"),
             item("AcmeShop", stack.uid(), "Bronze"), item("AcmePlus", stack.uid(), "Basic")]
    for it in cases:
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), it)
        assert_code(st[0], 2007, repr(it))


# ---------------------------------------------------------------- 2101 membership ids

def test_membership_id_held_by_another_customer_in_the_program_is_2101(stack):
    a, b = stack.customers(2)
    mid = stack.uid()
    _, st = link1(stack, by_mobile(a), item("AcmeShop", mid))
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = link1(stack, by_mobile(b), item("AcmeShop", mid))
    assert_codes(st, [2101])
    assert stack.mid_holder("AcmeShop", mid) == a["id"]
    assert stack.membership(b["id"], "AcmeShop") is None


def test_same_membership_id_in_a_different_program_is_fine(stack):
    a, b = stack.customers(2)
    mid = stack.uid()
    _, st = link1(stack, by_mobile(a), item("AcmeShop", mid))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(b), item("AcmeAir", mid, "Gold"), item("AcmePlus", mid))
    assert_codes(st, [200, 200])
    _, st = link1(stack, by_mobile(a), item("AcmeLater", mid))
    assert_codes(st, [200])
    assert stack.mid_holder("AcmeShop", mid) == a["id"]
    assert stack.mid_holder("AcmeAir", mid) == b["id"]
    assert stack.mid_holder("AcmePlus", mid) == b["id"]


def test_membership_id_taken_by_an_earlier_entry_of_the_same_request_is_2101(stack):
    a, b = stack.customers(2)
    mid = stack.uid()
    body = post_link(stack, [entry(by_mobile(a), item("AcmeShop", mid)),
                             entry(by_mobile(b), item("AcmeShop", mid))])
    assert_codes([i["partnerLinkStatus"] for i in body["linkCustomers"][0]["linkToPartnerPrograms"]], [200])
    assert_codes([i["partnerLinkStatus"] for i in body["linkCustomers"][1]["linkToPartnerPrograms"]], [2101])
    assert stack.mid_holder("AcmeShop", mid) == a["id"]


def test_an_id_an_earlier_entry_claims_is_2101_for_a_customer_with_entries_around_it(stack):
    # b's second entry names the id that a's entry, between b's two, claims: request order
    # gives it to a and b's item 2101 (kept: a's commit applied, write_round.c settle_deps);
    # b's two entries are one commit (its version + 1)
    a, b = stack.customers(2)
    mid, other, plus = stack.uid(), stack.uid(), stack.uid()
    v = lambda c: int(stack.redis("HGET", keys.cust("acme", c["id"]), "v") or 0)
    vb = v(b)
    body = post_link(stack, [entry(by_mobile(b), item("AcmeAir", other, "Bronze")),
                             entry(by_mobile(a), item("AcmeShop", mid)),
                             entry(by_mobile(b), item("AcmeShop", mid), item("AcmePlus", plus))])
    got = [[i["partnerLinkStatus"]["code"] for i in e["linkToPartnerPrograms"]] for e in body["linkCustomers"]]
    assert got == [[200], [200], [2101, 200]], got
    assert stack.mid_holder("AcmeShop", mid) == a["id"]
    assert stack.membership(b["id"], "AcmeAir")["mid"] == other
    assert stack.membership(b["id"], "AcmePlus")["mid"] == plus
    assert stack.membership(b["id"], "AcmeShop") is None
    assert v(b) == vb + 1, "b's entries were not one commit"


# ---------------------------------------------------------------- 2102 duplicates

def test_same_program_twice_in_one_entry_fails_the_later_with_2102(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeShop", m1), item("AcmeAir", stack.uid(), "Bronze"),
                  item("AcmeShop", m2))
    assert_codes(st, [200, 200, 2102])
    assert stack.membership(c["id"], "AcmeShop")["mid"] == m1
    assert stack.mid_holder("AcmeShop", m2) is None


# ---------------------------------------------------------------- 2103 dates

BAD_DATES = [
    "2030-06-01T10:00:00",              # no offset
    "2030-02-30T10:00:00Z",             # no such day
    "2029-02-29T10:00:00Z",             # not a leap year
    "2030-13-01T10:00:00Z",
    "2030-06-01T24:00:00Z",
    "2030-06-01T10:60:00Z",
    "2030-06-01t10:00:00z",             # lowercase
    "2030-06-01T10:00:00.1234567890Z",  # 10-digit fraction
    "2030-06-01T10:00:00.Z",            # empty fraction
    "2030-06-01T10:00:00+0530",         # offset without colon
    "2030-06-01T10:00:00+05",
    "2030-06-01T10:00:00  +05:30",      # two spaces
    "2030-06-01T10:00:00 Z",            # space only tolerated before +-hh:mm
    "2030-06-01",
    "2030-06-01 10:00:00Z",
    "tomorrow",
    "2030-06-01T10:00:00Z ",
]


def test_bad_tier_expiry_dates_are_2103(stack):
    c = stack.customer()
    bad = []
    for d in BAD_DATES + [20300601, True]:
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", d))
        if st[0]["code"] != 2103:
            bad.append("%r -> %r" % (d, st[0]))
    assert not bad, "expected 2103:\n" + "\n".join(bad)


def test_bad_membership_start_dates_are_2103(stack):
    c = stack.customer()
    bad = []
    for d in ["2030-06-01T10:00:00", "2031-02-29T00:00:00Z", "garbage", "2030-06-01T10:00:00.1234567890+05:30", 1]:
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid(), start=d))
        if st[0]["code"] != 2103:
            bad.append("%r -> %r" % (d, st[0]))
    assert not bad, "expected 2103:\n" + "\n".join(bad)


GOOD_DATES = [
    ("2030-06-01T10:00:00Z", 0),
    ("2030-06-01T10:00:00.1Z", 100),
    ("2030-06-01T10:00:00.12Z", 120),
    ("2030-06-01T10:00:00.123Z", 123),
    ("2030-06-01T10:00:00.1234Z", 123),
    ("2030-06-01T10:00:00.12345Z", 123),
    ("2030-06-01T10:00:00.123456Z", 123),
    ("2030-06-01T10:00:00.1234567Z", 123),
    ("2030-06-01T10:00:00.12345678Z", 123),
    ("2030-06-01T10:00:00.123456789Z", 123),
    ("2030-06-01T10:00:00+05:30", -19800000),
    ("2030-06-01T10:00:00 +05:30", -19800000),
    ("2030-06-01T10:00:00.5-03:00", 10800500),
    ("2030-06-01T10:00:00+00:00", 0),
    ("2032-02-29T10:00:00Z", ms("2032-02-29T10:00:00Z") - ms("2030-06-01T10:00:00Z")),
]


def test_accepted_date_forms_link_and_store_the_right_instant(stack):
    cs = stack.customers(len(GOOD_DATES))
    base = ms("2030-06-01T10:00:00Z")
    entries = [entry(by_mobile(c), item("AcmeAir", stack.uid(), "Bronze", d)) for c, (d, _) in zip(cs, GOOD_DATES)]
    body = post_link(stack, entries)
    bad = []
    for c, (d, delta), e in zip(cs, GOOD_DATES, body["linkCustomers"]):
        s = e["linkToPartnerPrograms"][0]["partnerLinkStatus"]
        if s["code"] != 200:
            bad.append("%r -> %r" % (d, s))
            continue
        m = stack.membership(c["id"], "AcmeAir")
        if m["exp"] != base + delta:
            bad.append("%r stored exp %r, expected %r" % (d, m["exp"], base + delta))
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- order of the rules (§4.1)

def _order_cases(stack, cases):
    bad = []
    for what, cust, it, want in cases:
        with unchanged(stack):
            _, st = link1(stack, cust, it)
        if st[0]["code"] != want:
            bad.append("%s: expected %d, got %r" % (what, want, st[0]))
    assert not bad, "rule order of SPEC 4.1 not followed:\n" + "\n".join(bad)


def test_rule_order_program_checks_come_before_reference_and_dates(stack):
    c = by_mobile(stack.customer())
    _order_cases(stack, [
        ("missing name and missing reference", c, item(None, ref=False), 2002),
        ("unknown program and missing reference", c, item("NoSuchProgram", ref=False), 2006),
        ("unknown program and bad date", c, item("NoSuchProgram", stack.uid(), exp="bad"), 2006),
        ("expired program and missing reference", c, item("AcmeOld", ref=False), 2006),
        ("expired program and bad date and no tier", c, item("AcmeOld", stack.uid(), exp="bad"), 2006),
        ("missing reference on a valid program", c, item("AcmeAir", ref=False), 2002),
    ])


def test_rule_order_dates_are_checked_before_membership_id_tier_and_expiry(stack):
    c = by_mobile(stack.customer())
    _order_cases(stack, [
        ("missing membership id and bad expiry", c, item("AcmeAir", None, "Gold", "2030-02-30T00:00:00Z"), 2103),
        ("missing membership id and bad start", c, item("AcmeShop", None, start="nope"), 2103),
        ("unknown tier and bad start", c, item("AcmeAir", stack.uid(), "Platinum", start="2030-01-01"), 2103),
        ("missing tier and bad expiry", c, item("AcmeAir", stack.uid(), None, "2030-01-01T00:00:00"), 2103),
        ("tier on tierless program and bad start", c, item("AcmeShop", stack.uid(), "Gold", start="x"), 2103),
    ])


def test_rule_order_already_linked_comes_after_dates_and_before_the_rest(stack):
    a, b = stack.customers(2)
    ma, mb = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(a), item("AcmeAir", ma, "Silver"), item("AcmeShop", stack.uid()))
    assert_codes(st, [200, 200])
    _, st = link1(stack, by_mobile(b), item("AcmeAir", mb, "Silver"))
    assert_codes(st, [200])
    ca = by_mobile(a)
    _order_cases(stack, [
        ("already linked and bad date", ca, item("AcmeAir", ma, "Silver", "2030-06-31T00:00:00Z"), 2103),
        ("already linked and missing membership id", ca, item("AcmeAir", None, "Silver"), 2005),
        ("already linked and membership id of another customer", ca, item("AcmeAir", mb, "Silver"), 2005),
        ("already linked and missing tier", ca, item("AcmeAir", stack.uid()), 2005),
        ("already linked and unknown tier and past expiry", ca, item("AcmeAir", stack.uid(), "Platinum", PAST), 2005),
        ("already linked tierless and tier given", ca, item("AcmeShop", stack.uid(), "Gold"), 2005),
    ])


def test_rule_order_membership_id_comes_before_tier_and_expiry(stack):
    a, b = stack.customers(2)
    held = stack.uid()
    _, st = link1(stack, by_mobile(a), item("AcmeAir", held, "Gold"), item("AcmeShop", held))
    assert_codes(st, [200, 200])
    cb = by_mobile(b)
    _order_cases(stack, [
        ("missing membership id and unknown tier", cb, item("AcmeAir", None, "Platinum"), 2002),
        ("missing membership id and missing tier", cb, item("AcmeAir", None, None, PAST), 2002),
        ("held membership id and unknown tier", cb, item("AcmeAir", held, "Platinum"), 2101),
        ("held membership id and past expiry", cb, item("AcmeAir", held, "Bronze", PAST), 2101),
        ("held membership id and tier on tierless program", cb, item("AcmeShop", held, "Gold"), 2101),
    ])


def test_rule_order_tier_comes_before_expiry(stack):
    c = by_mobile(stack.customer())
    _order_cases(stack, [
        ("missing tier and past expiry", c, item("AcmeAir", stack.uid(), None, PAST), 2002),
        ("unknown tier and past expiry", c, item("AcmeAir", stack.uid(), "Platinum", PAST), 2007),
        ("tier on tierless program and past expiry", c, item("AcmeShop", stack.uid(), "Gold", PAST), 2007),
    ])


# ---------------------------------------------------------------- partial success, atomicity

def test_failing_item_does_not_stop_its_siblings_which_are_stored(stack):
    c = stack.customer()
    m1, m2, m3 = stack.uid(), stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeShop", m1), item("NoSuchProgram", m2),
                  item("AcmeAir", m3, "Gold", FUTURE), item("AcmePlus", stack.uid(), exp="bad"))
    assert_codes(st, [200, 2006, 200, 2103])
    assert stack.membership(c["id"], "AcmeShop")["mid"] == m1
    assert stack.membership(c["id"], "AcmeAir")["mid"] == m3
    assert stack.membership(c["id"], "AcmePlus") is None
    assert stack.mid_holder("AcmeShop", m1) == c["id"]
    assert stack.mid_holder("AcmeAir", m3) == c["id"]


def test_entry_whose_items_all_fail_changes_nothing(stack):
    c = stack.customer()
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("NoSuchProgram", stack.uid()), item("AcmeAir", stack.uid(), "Tin"),
                      item("AcmeShop", stack.uid(), exp=PAST + "x"))
    assert_codes(st, [2006, 2007, 2103])


def test_same_customer_twice_in_one_request_later_entry_sees_the_earlier(stack):
    c = stack.customer()
    m1, m2, m3 = stack.uid(), stack.uid(), stack.uid()
    body = post_link(stack, [entry(by_mobile(c), item("AcmeShop", m1)),
                             entry({"email": c["email"]}, item("AcmeShop", m2), item("AcmeAir", m3, "Silver")),
                             entry({"id": c["id"]}, item("AcmeAir", stack.uid(), "Gold"))])
    codes = [[i["partnerLinkStatus"]["code"] for i in e["linkToPartnerPrograms"]] for e in body["linkCustomers"]]
    assert codes == [[200], [2005, 200], [2005]], codes
    assert stack.membership(c["id"], "AcmeShop")["mid"] == m1
    assert stack.membership(c["id"], "AcmeAir")["mid"] == m3
    assert stack.mid_holder("AcmeShop", m2) is None


def test_batch_of_customers_are_independent(stack):
    a, b, d, e = stack.customers(4)
    ma, mb = stack.uid(), stack.uid()
    body = post_link(stack, [
        entry({"mobile": "919999999999"}, item("AcmeShop", stack.uid())),
        entry(by_mobile(a), item("AcmeShop", ma)),
        entry(by_mobile(b), item("NoSuchProgram", mb)),
        entry({"mobile": d["mobile"], "email": e["email"]}, item("AcmeShop", stack.uid())),
        entry({"id": "x"}, item("AcmeShop", stack.uid())),
    ])
    got = [(x["customer"]["status"]["code"], [i["partnerLinkStatus"]["code"] for i in x["linkToPartnerPrograms"]])
           for x in body["linkCustomers"]]
    assert got == [(8015, [8015]), (1000, [200]), (1000, [2006]), (8016, [8016]), (400, [400])], got
    assert body["linkCustomers"][1]["customer"] == stored_view(a)
    assert stack.membership(a["id"], "AcmeShop")["mid"] == ma
    assert stack.membership(b["id"], "AcmeShop") is None
    assert stack.membership(d["id"], "AcmeShop") is None and stack.membership(e["id"], "AcmeShop") is None


# ---------------------------------------------------------------- batch limits (2008)

def test_fifty_customer_entries_are_accepted(stack):
    cs = stack.customers(50)
    mids = [stack.uid() for _ in cs]
    body = post_link(stack, [entry(by_mobile(c), item("AcmeShop", m)) for c, m in zip(cs, mids)])
    codes = [e["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"] for e in body["linkCustomers"]]
    assert codes == [200] * 50, codes
    for c, m in zip(cs, mids):
        assert stack.mid_holder("AcmeShop", m) == c["id"]


def test_fifty_one_customer_entries_refuse_the_whole_request_with_2008(stack):
    c = stack.customer()
    entries = [entry(by_mobile(c), item("AcmeShop", stack.uid()))] + \
              [entry({"mobile": "91880000%04d" % k}, item("AcmeShop", stack.uid())) for k in range(50)]
    with unchanged(stack):
        resp = stack.post(LINK, {"linkCustomers": entries})
    assert_error(resp, 400, 2008)


def test_fifty_items_are_accepted_and_fifty_one_refuse_the_request_with_2008(stack):
    c = stack.customer()
    m = stack.uid()
    items = [item("AcmeShop", m)] + [item("AcmeShop", stack.uid()) for _ in range(49)]
    _, st = link1(stack, by_mobile(c), *items)
    assert_codes(st, [200] + [2102] * 49)
    d = stack.customer()
    items = [item("AcmeShop", stack.uid())] + [item("AcmeAir", stack.uid(), "Gold") for _ in range(50)]
    with unchanged(stack):
        resp = stack.post(LINK, {"linkCustomers": [entry(by_mobile(d), *items)]})
    assert_error(resp, 400, 2008)
    # one entry over the limit spoils a request whose other entries are fine
    with unchanged(stack):
        resp = stack.post(LINK, {"linkCustomers": [entry(by_mobile(d), item("AcmeShop", stack.uid())),
                                                   entry(by_mobile(d), *items)]})
    assert_error(resp, 400, 2008)


# ---------------------------------------------------------------- pending relink (§4.1)

def test_future_start_on_a_linked_supplementary_program_queues_a_pending_relink(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m1))
    assert_codes(st, [200])
    before = stack.membership(c["id"], "AcmePlus")
    start = "2031-07-01T00:00:00Z"
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m2, start=start))
    assert_codes(st, [200])
    after = stack.membership(c["id"], "AcmePlus")
    for k in ("mid", "tier", "exp", "start", "end", "lk"):
        assert after[k] == before[k], "current membership changed (%s): %r -> %r" % (k, before, after)
    rl = after["rl"]
    assert isinstance(rl, dict), "no pending relink stored: %r" % after
    assert rl["mid"] == m2 and rl["start"] == ms(start), rl
    assert rl["end"] == ms("2032-07-01T00:00:00Z"), rl
    assert stack.mid_holder("AcmePlus", m1) == c["id"]
    # one pending relink at a time
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start="2031-09-01T00:00:00Z"))
    assert_codes(st, [2005])


def test_relink_without_a_future_start_is_2005(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeDays", stack.uid(), "Basic"))
    assert_codes(st, [200])
    for start in (None, PAST):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeDays", stack.uid(), "Premium", start=start))
        assert_codes(st, [2005])


def test_future_start_on_a_linked_external_program_is_2005(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Bronze"))
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", start="2031-01-01T00:00:00Z"))
    assert_codes(st, [2005])


def test_relink_to_a_membership_id_held_by_another_customer_is_2101(stack):
    a, b = stack.customers(2)
    held = stack.uid()
    _, st = link1(stack, by_mobile(a), item("AcmePlus", held))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(b), item("AcmePlus", stack.uid()))
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = link1(stack, by_mobile(b), item("AcmePlus", held, start="2031-01-01T00:00:00Z"))
    assert_codes(st, [2101])


# ---------------------------------------------------------------- locks and store failures

def test_customer_locked_by_another_change_answers_2010_in_bounded_time(stack):
    c = stack.customer()
    take_lock(stack, "acme", c["id"], "0123456789abcdef0123456789abcdef", 30000)
    try:
        with unchanged(stack, keys.cust("acme", c["id"])):
            t0 = time.monotonic()
            cust, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Gold"))
            took = time.monotonic() - t0
        assert_codes(st, [2010, 2010])
        assert took < 5, "lock wait took %.1f s (lock-wait default 1 s)" % took
        assert lock_of(stack, "acme", c["id"])[0] == "0123456789abcdef0123456789abcdef", \
            "another owner's lock was touched"
    finally:
        drop_lock(stack, "acme", c["id"])
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])


def test_store_failure_during_an_item_reports_2001_and_applies_nothing(stack):
    # AcmeSpare is used by this test only. The bucket of its membership-id claims that
    # holds mid is made a string, so that every Redis command on it fails (WRONGTYPE)
    # while the rest of the store works.
    a, b = stack.customers(2)
    mid = stack.uid()
    idx = keys.mid("acme", stack.pid("AcmeSpare"), mid)
    assert stack.redis("EXISTS", idx) == 0
    stack.redis("SET", idx, "not-a-hash")
    try:
        with unchanged(stack, keys.cust("acme", a["id"])):
            st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(a), item("AcmeSpare", mid))]})
        assert st == 200, "HTTP %s %r (a store failure during an item is that item's 2001)" % (st, body)
        assert_code(body["linkCustomers"][0]["customer"]["status"], 1000, "customer")
        assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [2001])
        # a sibling entry for another customer of the same request is not harmed by it
        mb = stack.uid()
        body = post_link(stack, [entry(by_mobile(a), item("AcmeSpare", mid)),
                                 entry(by_mobile(b), item("AcmeShop", mb))])
        assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [2001])
        assert_codes([body["linkCustomers"][1]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])
        assert stack.mid_holder("AcmeShop", mb) == b["id"]
    finally:
        stack.redis("DEL", idx)
    assert stack.membership(a["id"], "AcmeSpare") is None
    assert lock_of(stack, "acme", a["id"]) is None, "lock left behind after a store failure"
    _, st = link1(stack, by_mobile(a), item("AcmeSpare", stack.uid()))
    assert_codes(st, [200])


def test_store_failure_releases_every_customer_lock_the_request_took(stack):
    # The same broken AcmeSpare index as above, in the second entry of a request: the
    # failure must not leave the first entry's customer locked until the lock expires.
    a, b = stack.customers(2)
    mid = stack.uid()
    idx = keys.mid("acme", stack.pid("AcmeSpare"), mid)
    saved = stack.redis("DUMP", idx)   # the test above may have left real entries in it
    stack.redis("SET", idx, "not-a-hash")
    try:
        st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(a), item("AcmeShop", stack.uid())),
                                                          entry(by_mobile(b), item("AcmeSpare", mid))]})
        assert st in (200, 503), "HTTP %s %r" % (st, body)
        left = [c["id"] for c in (a, b) if lock_of(stack, "acme", c["id"]) is not None]
    finally:
        stack.redis("DEL", idx)
        if saved is not None:
            stack.redis("RESTORE", idx, "0", saved)
    assert not left, "customer lock(s) of %r left behind after the store failure (HTTP %s)" % (left, st)
    _, st = link1(stack, by_mobile(a), item("AcmeAir", stack.uid(), "Gold"))
    assert_codes(st, [200])


def test_history_key_of_another_type_fails_the_item_and_writes_nothing(stack):
    # The commit script checks the history list's type with its first LPUSH, before any
    # other write of the customer: a history key that is not a list must leave the
    # membership, the membership-id index and the change feed exactly as they were.
    c = stack.customer()
    hist = keys.hist("acme", c["id"])
    stack.redis("DEL", hist)
    stack.redis("SET", hist, "not-a-list")
    mid = stack.uid()
    try:
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeShop", mid))
        assert_codes(st, [2001])
    finally:
        stack.redis("DEL", hist)
    assert stack.membership(c["id"], "AcmeShop") is None
    assert stack.mid_holder("AcmeShop", mid) is None
    assert lock_of(stack, "acme", c["id"]) is None, "lock left behind"
    _, st = link1(stack, by_mobile(c), item("AcmeShop", mid))
    assert_codes(st, [200])
    assert stack.redis("LLEN", hist) == 1


def test_store_refusing_all_writes_applies_nothing_and_answers_2001_or_503(stack):
    # With Redis out of memory even the customer lock cannot be taken: nothing may be
    # applied, and the answer is either per-item 2001 or a whole-request 503 (nothing
    # applied, Retry-After), never a hang, a 500 or a partial write.
    c = stack.customer()
    stack.redis("CONFIG", "SET", "maxmemory-policy", "noeviction")
    stack.redis("CONFIG", "SET", "maxmemory", "1")
    try:
        with unchanged(stack):
            st, hdrs, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]})
    finally:
        stack.redis("CONFIG", "SET", "maxmemory", "0")
    if st == 503:
        assert_error((st, hdrs, body), 503)
        assert (hdrs.get("Retry-After") or "").strip().isdigit(), hdrs.get("Retry-After")
    else:
        assert st == 200, "HTTP %s %r" % (st, body)
        assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [2001])
    assert stack.membership(c["id"], "AcmeShop") is None
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])


# ---------------------------------------------------------------- the seeds' examples

def test_seed_link_examples_answer_in_the_seed_shape(stack):
    req1 = {"linkCustomers": [{
        "customer": {"mobile": "6215000000", "email": "", "externalId": ""},
        "linkToPartnerPrograms": [
            {"partnerProgramName": "1stProgram",
             "customerPartnerReference": {"partnerMembershipId": "621000000", "partnerTierName": "1stSlab",
                                          "partnerTierExpiryDate": "2030-12-29T23:59:59+05:30"}},
            {"partnerProgramName": "NoTierPartnerProgram",
             "customerPartnerReference": {"partnerMembershipId": "91621000000"}},
            {"partnerProgramName": "2ndProgram",
             "customerPartnerReference": {"partnerMembershipId": "621000000", "partnerTierName": "1stSlab",
                                          "partnerTierExpiryDate": "2030-12-29T23:59:59+05:30"}}]}]}
    st, hdrs, body = stack.post(LINK, req1, auth=DEMO)
    ok = {"status": True, "message": "Success", "code": 200}
    assert st == 200, (st, body)
    assert body == {
        "linkCustomers": [{
            "customer": {"id": 382741349, "mobile": "916215000000", "email": "916215000000@mail.com",
                         "externalId": "X916215776456",
                         "status": {"status": True, "message": "Customer successfully retrieved", "code": 1000}},
            "linkToPartnerPrograms": [
                {"partnerProgramName": "1stProgram", "partnerLinkStatus": ok},
                {"partnerProgramName": "NoTierPartnerProgram", "partnerLinkStatus": ok},
                {"partnerProgramName": "2ndProgram", "partnerLinkStatus": ok}]}],
        "warnings": []}, body
    req2 = {"linkCustomers": [{
        "customer": {"mobile": "919740390055", "email": "", "externalId": ""},
        "linkToPartnerPrograms": [
            {"partnerProgramName": "Apparel-Partner",
             "customerPartnerReference": {"partnerMembershipId": "App-919886886886", "partnerTierName": "Bronze",
                                          "partnerTierExpiryDate": "2030-12-29T23:59:59+05:30"}}]}]}
    st, hdrs, body = stack.post(LINK, req2, auth=DEMO)
    assert st == 200, (st, body)
    assert body == {
        "linkCustomers": [{
            "customer": {"id": 382741350, "mobile": "919740390055", "email": "919740390055@mail.com",
                         "externalId": "X919740390055",
                         "status": {"status": True, "message": "Customer successfully retrieved", "code": 1000}},
            "linkToPartnerPrograms": [{"partnerProgramName": "Apparel-Partner", "partnerLinkStatus": ok}]}],
        "warnings": []}, body
    m = stack.membership(382741350, "Apparel-Partner", org="demo")
    assert m["mid"] == "App-919886886886" and m["tier"] == "Bronze" and m["exp"] == ms("2030-12-29T23:59:59+05:30"), m
    # the seed request sent again: every program is already linked
    with unchanged(stack):
        st, _, body = stack.post(LINK, req1, auth=DEMO)
    assert st == 200
    assert_codes([i["partnerLinkStatus"] for i in body["linkCustomers"][0]["linkToPartnerPrograms"]],
                 [2005, 2005, 2005])
