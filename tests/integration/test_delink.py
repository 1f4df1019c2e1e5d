"""POST /v2/partnerProgram/deLinkCustomer (SPEC §4.3): delinking removes the membership,
frees its membership id (also the one of a pending relink), and answers in the shape of the
older seed: deLinkCustomers[].customer, deLinkFromPartnerPrograms[].partnerDeLinkStatus."""

from harness import DEMO
from helpers import (FUTURE, assert_code, assert_codes, by_mobile, item, link1, stored_view,
                     unchanged)
from support_model import (DELINK, FUT1, cancel, dentry, delink1, post_delink, programs_of,
                           update1)


def _linked(stack, *items):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), *items)
    assert_codes(st, [200] * len(items))
    return c


def test_delink_removes_the_membership_and_frees_its_membership_id(stack):
    ma, ms_ = stack.uid(), stack.uid()
    c = _linked(stack, item("AcmeAir", ma, "Gold", FUTURE), item("AcmeShop", ms_))
    shop = stack.membership(c["id"], "AcmeShop")
    cust, st = delink1(stack, by_mobile(c), "AcmeAir")
    assert cust == stored_view(c), cust
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmeAir") is None, "membership still stored after delink"
    assert stack.mid_holder("AcmeAir", ma) is None, "membership id still held in pp:{acme}:mid:PID"
    assert stack.membership(c["id"], "AcmeShop") == shop, "another membership was touched"
    assert set(programs_of(stack, c["id"])) == {"AcmeShop"}
    # another customer can now link with the same membership id
    d = stack.customer()
    _, st = link1(stack, by_mobile(d), item("AcmeAir", ma, "Bronze"))
    assert_codes(st, [200])
    assert stack.mid_holder("AcmeAir", ma) == d["id"]


def test_delink_of_several_programs_in_one_entry(stack):
    m1, m2, m3 = stack.uid(), stack.uid(), stack.uid()
    c = _linked(stack, item("AcmeAir", m1, "Gold"), item("AcmeShop", m2), item("AcmePlus", m3))
    _, st = delink1(stack, {"externalId": c["externalId"]}, "AcmeShop", "AcmePlus", "AcmeAir")
    assert_codes(st, [200, 200, 200])
    for p, m in (("AcmeAir", m1), ("AcmeShop", m2), ("AcmePlus", m3)):
        assert stack.membership(c["id"], p) is None, p
        assert stack.mid_holder(p, m) is None, p
    assert programs_of(stack, c["id"]) == {}


def test_delink_when_not_linked_is_2004(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()))
    with unchanged(stack):
        _, st = delink1(stack, by_mobile(c), "AcmeAir")
    assert_codes(st, [2004])
    _, st = delink1(stack, by_mobile(c), "AcmeShop")
    assert_codes(st, [200])
    with unchanged(stack):                          # delinking twice
        _, st = delink1(stack, by_mobile(c), "AcmeShop")
    assert_codes(st, [2004])


def test_same_customer_twice_in_one_delink_request_second_is_2004(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()))
    body = post_delink(stack, [dentry(by_mobile(c), "AcmeShop"), dentry({"id": c["id"]}, "AcmeShop")])
    codes = [[i["partnerDeLinkStatus"]["code"] for i in e["deLinkFromPartnerPrograms"]] for e in body["deLinkCustomers"]]
    assert codes == [[200], [2004]], codes


def test_delink_of_an_unknown_program_is_2006(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()))
    for name in ("NoSuchProgram", "acmeshop", "GlobexOnly", "AcmeShop "):
        with unchanged(stack):
            _, st = delink1(stack, by_mobile(c), name)
        assert_code(st[0], 2006, repr(name))


def test_delink_item_without_program_name_is_2002(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()))
    for it in ({}, {"partnerProgramName": ""}, {"partnerProgramName": None}, {"partnerProgramName": 5}):
        with unchanged(stack):
            _, st = delink1(stack, by_mobile(c), it)
        assert_code(st[0], 2002, repr(it))


def test_same_program_twice_in_one_delink_entry_fails_the_later_with_2102(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Gold"))
    _, st = delink1(stack, by_mobile(c), "AcmeShop", "AcmeAir", "AcmeShop")
    assert_codes(st, [200, 200, 2102])
    d = stack.customer()
    with unchanged(stack):
        _, st = delink1(stack, by_mobile(d), "AcmeShop", "AcmeShop")
    assert_codes(st, [2004, 2102])


def test_delink_accepts_mobile_as_a_json_number(stack):
    a, b = _linked(stack, item("AcmeShop", stack.uid())), _linked(stack, item("AcmeShop", stack.uid()))
    cust, st = delink1(stack, {"mobile": int(a["mobile"])}, "AcmeShop")
    assert cust == stored_view(a), cust
    assert_codes(st, [200])
    cust, st = delink1(stack, {"mobile": int(b["mobile"][2:])}, "AcmeShop")
    assert cust == stored_view(b), cust
    assert_codes(st, [200])
    assert stack.membership(a["id"], "AcmeShop") is None and stack.membership(b["id"], "AcmeShop") is None


def test_delink_response_has_the_older_seed_shape(stack):
    c = _linked(stack, item("AcmeShop", stack.uid()))
    st, hdrs, body = stack.post(DELINK, {"deLinkCustomers": [dentry(
        {"mobile": c["mobile"][2:], "email": "", "externalId": ""}, "AcmeShop", "AcmeAir")]})
    assert st == 200, (st, body)
    assert (hdrs.get("Content-Type") or "").startswith("application/json"), hdrs.get("Content-Type")
    assert isinstance(body, dict), body
    s2004 = body["deLinkCustomers"][0]["deLinkFromPartnerPrograms"][1]["partnerDeLinkStatus"]
    assert s2004.get("status") is False and s2004.get("code") == 2004, body
    assert isinstance(s2004.get("message"), str) and s2004["message"].strip(), body
    assert body == {
        "deLinkCustomers": [{
            "customer": stored_view(c),
            "deLinkFromPartnerPrograms": [
                {"partnerProgramName": "AcmeShop",
                 "partnerDeLinkStatus": {"status": True, "message": "Success", "code": 200}},
                {"partnerProgramName": "AcmeAir", "partnerDeLinkStatus": s2004}]}],
        "warnings": []}, body


def test_seed_delink_example(stack):
    _, st = link1(stack, {"mobile": "919800000000"},
                  item("1stProgram", "621000099", "2ndSlab", "2030-12-29T23:59:59+05:30"), auth=DEMO)
    assert_codes(st, [200])
    req = {"deLinkCustomers": [{"customer": {"mobile": 919800000000},
                                "deLinkFromPartnerPrograms": [{"partnerProgramName": "1stProgram"},
                                                              {"partnerProgramName": "p3e1"}]}]}
    st, _, body = stack.post(DELINK, req, auth=DEMO)
    assert st == 200, (st, body)
    s2006 = body["deLinkCustomers"][0]["deLinkFromPartnerPrograms"][1]["partnerDeLinkStatus"]
    assert s2006.get("status") is False and s2006.get("code") == 2006, body
    assert isinstance(s2006.get("message"), str) and s2006["message"].strip(), body
    assert body == {
        "deLinkCustomers": [{
            "customer": {"id": 382741352, "mobile": "919800000000", "email": "919800000000@mail.com",
                         "externalId": "X919800000000",
                         "status": {"status": True, "message": "Customer successfully retrieved", "code": 1000}},
            "deLinkFromPartnerPrograms": [
                {"partnerProgramName": "1stProgram",
                 "partnerDeLinkStatus": {"status": True, "message": "Success", "code": 200}},
                {"partnerProgramName": "p3e1", "partnerDeLinkStatus": s2006}]}],
        "warnings": []}, body
    assert stack.membership(382741352, "1stProgram", org="demo") is None
    assert stack.mid_holder("1stProgram", "621000099", org="demo") is None
    with unchanged(stack):
        st, _, body = stack.post(DELINK, req, auth=DEMO)
    assert st == 200
    assert [i["partnerDeLinkStatus"]["code"] for i in body["deLinkCustomers"][0]["deLinkFromPartnerPrograms"]] \
        == [2004, 2006], body


def test_delink_drops_a_pending_relink_and_frees_both_membership_ids(stack):
    m1, m2 = stack.uid(), stack.uid()
    c = _linked(stack, item("AcmePlus", m1))
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m2, start=FUT1))
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmePlus")["rl"]["mid"] == m2
    _, st = delink1(stack, by_mobile(c), "AcmePlus")
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmePlus") is None
    assert stack.mid_holder("AcmePlus", m1) is None and stack.mid_holder("AcmePlus", m2) is None
    assert programs_of(stack, c["id"]) == {}
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), cancel("AcmePlus"))
    assert_codes(st, [2004])
    # both ids are free for other customers
    d, e = stack.customers(2)
    _, st = link1(stack, by_mobile(d), item("AcmePlus", m2))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(e), item("AcmePlus", m1))
    assert_codes(st, [200])


def test_link_again_after_delink_works(stack):
    m1, m2 = stack.uid(), stack.uid()
    c = _linked(stack, item("AcmeAir", m1, "Gold"), item("AcmePlus", m2))
    _, st = delink1(stack, by_mobile(c), "AcmeAir", "AcmePlus")
    assert_codes(st, [200, 200])
    m3 = stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", m1, "Bronze"), item("AcmePlus", m3))
    assert_codes(st, [200, 200])
    assert stack.membership(c["id"], "AcmeAir")["tier"] == "Bronze"
    assert stack.membership(c["id"], "AcmePlus")["mid"] == m3 and stack.membership(c["id"], "AcmePlus")["rl"] is None
    assert stack.mid_holder("AcmeAir", m1) == c["id"] and stack.mid_holder("AcmePlus", m3) == c["id"]
    assert stack.mid_holder("AcmePlus", m2) is None


def test_delink_and_link_of_one_program_in_one_request_order(stack):
    # a link request and a delink request are separate routes; within a delink request the
    # same customer twice: the first entry delinks, the second sees it gone
    c = _linked(stack, item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Gold"))
    body = post_delink(stack, [dentry(by_mobile(c), "AcmeAir"),
                               dentry({"email": c["email"]}, "AcmeAir", "AcmeShop")])
    codes = [[i["partnerDeLinkStatus"]["code"] for i in e["deLinkFromPartnerPrograms"]] for e in body["deLinkCustomers"]]
    assert codes == [[200], [2004, 200]], codes
    assert programs_of(stack, c["id"]) == {}


def test_customer_failures_carry_to_every_delink_item(stack):
    a, b = stack.customers(2)
    _, st = link1(stack, by_mobile(a), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])
    for sent, code in (({"mobile": 919999000997}, 8015), ({"email": "nobody@acme.example"}, 8015),
                       ({"mobile": int(a["mobile"]), "email": b["email"]}, 8016),
                       ({}, 400), ({"mobile": 12345}, 400), ({"mobile": True}, 400)):
        with unchanged(stack):
            cust, st = delink1(stack, sent, "AcmeShop", "NoSuchProgram")
        assert_code(cust["status"], code, repr(sent))
        assert_codes(st, [code, code])
    assert stack.membership(a["id"], "AcmeShop") is not None
