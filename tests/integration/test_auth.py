"""Tenancy and authentication (SPEC §2): Basic credentials, one org per credential,
nothing of another org reachable.

Fixtures: acme customers 1001-1010 have globex twins 4001-4010 with the same mobiles
and emails; both orgs have a program called AcmeAir; GlobexOnly exists only in globex."""

import base64

import keys
from harness import ACME, GLOBEX, HEALTH, LINK
from helpers import (assert_code, assert_codes, assert_error, by_mobile, entry, item, link1,
                     stored_view, unchanged)

REALM = 'Basic realm="partnerProgram"'


def _body(stack, mobile="919999000001"):
    return {"linkCustomers": [entry({"mobile": mobile}, item("AcmeShop", stack.uid()))]}


def _assert_401(resp, what):
    try:
        assert_error(resp, 401)
    except AssertionError as e:
        raise AssertionError("%s: %s" % (what, e)) from None
    got = resp[1].get("WWW-Authenticate")
    assert got == REALM, "%s: WWW-Authenticate %r, expected %r" % (what, got, REALM)


def test_missing_authorization_is_401_with_basic_challenge(stack):
    with unchanged(stack):
        resp = stack.post(LINK, _body(stack), auth=None)
    _assert_401(resp, "no Authorization header")


def test_wrong_password_and_unknown_user_are_401(stack):
    for cred, what in ((("acme_api", "wrong"), "wrong password"),
                       (("acme_api", ""), "empty password"),
                       (("acme_api", "acme_secret "), "password with a trailing space"),
                       (("acme_api", "ACME_SECRET"), "password in another case"),
                       (("acme_api", "acme_secret:x"), "password with extra ':x'"),
                       (("nobody", "acme_secret"), "unknown user"),
                       (("", "acme_secret"), "empty user"),
                       (("ACME_API", "acme_secret"), "user in another case"),
                       (("acme_api", "globex_secret"), "another org's password")):
        with unchanged(stack):
            resp = stack.post(LINK, _body(stack), auth=cred)
        _assert_401(resp, what)


def test_malformed_authorization_headers_are_401(stack):
    good = base64.b64encode(b"acme_api:acme_secret").decode()
    for value, what in (("Bearer " + good, "not Basic"),
                        ("Digest username=\"acme_api\"", "Digest"),
                        ("Basic", "scheme only"),
                        ("Basic ", "empty credentials"),
                        ("Basic !!!not-base64!!!", "bad base64"),
                        ("Basic " + good[:-2], "truncated base64"),
                        ("Basic " + base64.b64encode(b"acme_api").decode(), "no colon"),
                        ("Basic " + base64.b64encode(b"acme_api\x00:acme_secret").decode(), "NUL in user"),
                        (good, "credentials without a scheme"),
                        ("Basic " + good + " trailing", "trailing garbage")):
        with unchanged(stack):
            resp = stack.post(LINK, _body(stack), auth=None, headers={"Authorization": value})
        _assert_401(resp, what)


def test_health_needs_no_credentials(stack):
    st, hdrs, body = stack.get(HEALTH, auth=None)
    assert st == 200, (st, body)
    assert body == {"status": "ok", "redis": "ok"}, body
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")


def test_same_mobile_resolves_to_the_requesting_orgs_customer(stack):
    acme_mobile = "919000001003"      # acme 1003 and globex 4003 share it
    cust, st = link1(stack, {"mobile": acme_mobile}, item("AcmeAir", "twin-3", "Gold"), auth=GLOBEX)
    assert cust["id"] == 4003 and cust["externalId"] == "GLX-1003", cust
    assert_code(cust["status"], 1000)
    assert_codes(st, [200])
    assert stack.membership(4003, "AcmeAir", org="globex")["mid"] == "twin-3"
    assert stack.redis("HGET", keys.cust("acme", 1003), keys.membership_field(stack.pid("AcmeAir"))) is None, \
        "a globex request wrote to the acme customer"
    # and the same from acme's side, with the same membership id: another org, no 2101
    cust, st = link1(stack, {"mobile": acme_mobile}, item("AcmeAir", "twin-3", "Gold"), auth=ACME)
    assert cust == stored_view({"id": 1003, "mobile": acme_mobile, "email": "c1003@acme.example",
                                "externalId": "ACME-1003"}), cust
    assert_codes(st, [200])


def test_another_orgs_customers_are_unknown_8015(stack):
    c = stack.customer()              # an acme customer with no globex twin
    with unchanged(stack, keys.of_org("acme")):
        for ident in (by_mobile(c), {"email": c["email"]}, {"externalId": c["externalId"]}, {"id": c["id"]}):
            with unchanged(stack):
                cust, st = link1(stack, ident, item("AcmeAir", stack.uid(), "Gold"), auth=GLOBEX)
            assert_code(cust["status"], 8015, "globex asking for acme's %r" % ident)
            assert_codes(st, [8015])


def test_another_orgs_programs_are_unknown_2006(stack):
    c = stack.customer()
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("GlobexOnly", stack.uid()))
    assert_codes(st, [2006])


def test_globex_writes_leave_acme_data_untouched(stack):
    g = stack.customer("globex")
    with unchanged(stack, keys.of_org("acme")):
        cust, st = link1(stack, by_mobile(g), item("AcmeAir", stack.uid(), "Silver"),
                         item("GlobexOnly", stack.uid()), auth=GLOBEX)
    assert cust["id"] == g["id"], cust
    assert_codes(st, [200, 200])


def test_a_valid_credential_keeps_working_after_failed_attempts(stack):
    for _ in range(3):
        _assert_401(stack.post(LINK, _body(stack), auth=("acme_api", "nope")), "wrong password")
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])
