"""Bounded payloads and bounded reads (SPEC §4 "Sizes and encodings", §5): membership ids,
tier names and program names of at most 128 bytes (2002 beyond), email 254 and externalId
128 bytes (the customer's 400 beyond, also in partnerctl load and import-customers), at
most 64 tiers a program in partnerctl load (partnerd reads no more), a
history read that reads only its page however long the stored list is, and the read
routes' own 400 messages for an identifierValue that is too long or holds a NUL byte.

Org `bounds` (loaded here, not in data/orgs.json) has names of exactly 128 bytes."""

import json
import os
import time

import activity
import keys
from harness import ACME, HEALTH
from helpers import assert_code, assert_codes, assert_error, by_mobile, item, link1, unchanged
from support_model import (HISTORY, PROGRAMS, delink1, history_of, query, read_history,
                           update1, upd)

BOUNDS = ("bounds_api", "bounds_secret")
P128 = "P" * 127 + "X"                      # a program name of 128 bytes
E128 = "\u00e9" * 64                        # 128 bytes, 64 characters
T_LOW, T_HIGH = "L" * 128, "\u00e9" * 63 + "HH"   # tier names of 128 bytes
EMAIL254 = "b" * 239 + "@bounds.example"    # 254 bytes
EXT128 = "X" * 128
DOC = {"orgs": [{
    "id": "bounds", "defaultCountryCode": "91", "nationalNumberLength": 10,
    "credentials": [{"username": BOUNDS[0], "password": BOUNDS[1]}],
    "programs": [{"name": P128, "type": "EXTERNAL", "tiers": [T_LOW, T_HIGH]},
                 {"name": E128, "type": "EXTERNAL", "tiers": []}],
    "customers": [{"id": 9001, "mobile": "919000009001", "email": EMAIL254, "externalId": EXT128}]
                 + [{"id": 9000 + k, "mobile": "9190000090%02d" % k} for k in range(2, 20)]}]}
_next = [2]


def _org(stack):
    """Loads org bounds once per stack; returns a customer id of it no other test got."""
    if not getattr(stack, "_bounds_loaded", False):
        path = os.path.join(stack.dir, "bounds.json")
        with open(path, "w") as f:
            json.dump(DOC, f)
        stack.load(path)
        stack._bounds_loaded = True
    cid = 9000 + _next[0]
    _next[0] += 1
    return cid


def _bytes(s):
    return len(s.encode("utf-8"))


def test_bounds_membership_id_of_129_bytes_is_2002_naming_the_field_and_128_nothing_written(stack):
    c = stack.customer()
    for mid in ("M" * 129, "\u00e9" * 64 + "M", "M" * 100000):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeShop", mid), item("AcmeAir", mid, "Gold"))
        assert_codes(st, [2002, 2002])
        assert st[0]["message"] == "partnerMembershipId is too long: at most 128 bytes (UTF-8)", st
    mid = "\u00e9" * 63 + "MM"
    assert _bytes(mid) == 128
    _, st = link1(stack, by_mobile(c), item("AcmeShop", mid))
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmeShop")["mid"] == mid
    assert history_of(stack, c["id"])["activities"][0]["after"]["partnerMembershipId"] == mid


def test_bounds_a_membership_stored_before_the_limits_accepts_only_a_delink(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Bronze"))
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeAir")
    stack.redis("HDEL", keys.mid("acme", stack.pid("AcmeAir"), m["mid"]), m["mid"])
    m["mid"] = "L" * 100000                 # as a partnerd without limits stored it
    stack.set_membership(c["id"], "AcmeAir", m)
    stack.redis("HSET", keys.mid("acme", stack.pid("AcmeAir"), m["mid"]), m["mid"], c["id"])
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold"))
        assert_codes(st, [2002])
        assert "over 128 bytes" in st[0]["message"] and "delink" in st[0]["message"], st
        _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold"))
        assert_codes(st, [2002])
    _, st = delink1(stack, by_mobile(c), "AcmeAir")
    assert_codes(st, [200])
    assert stack.mid_holder("AcmeAir", m["mid"]) is None
    h = history_of(stack, c["id"])
    assert [a["activityType"] for a in h["activities"]] == ["DELINK", "LINK"], h
    assert h["activities"][0]["before"]["partnerMembershipId"] == m["mid"]
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold"))
    assert_codes(st, [200])

def test_bounds_tier_names_over_128_bytes_are_2002_in_link_and_update_128_accepted(stack):
    cid = _org(stack)
    cust = {"id": cid}
    with unchanged(stack):
        _, st = link1(stack, cust, item(P128, stack.uid(), T_LOW + "x"), auth=BOUNDS)
    assert_codes(st, [2002])
    assert st[0]["message"] == "partnerTierName is too long: at most 128 bytes (UTF-8)", st
    _, st = link1(stack, cust, item(P128, stack.uid(), T_LOW), auth=BOUNDS)
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = update1(stack, cust, upd(P128, "UPGRADE", T_HIGH + "H"), auth=BOUNDS)
    assert_codes(st, [2002])
    assert st[0]["message"] == "updateDetails.updatedTierName is too long: at most 128 bytes (UTF-8)", st
    _, st = update1(stack, cust, upd(P128, "UPGRADE", T_HIGH), auth=BOUNDS)
    assert_codes(st, [200])
    assert stack.membership(cid, P128, org="bounds")["tier"] == T_HIGH


def test_bounds_program_names_over_128_bytes_are_2002_on_every_route_128_accepted(stack):
    cid = _org(stack)
    cust = {"id": cid}
    long_name = P128 + "Y"
    with unchanged(stack):
        _, st = link1(stack, cust, item(long_name, stack.uid()), auth=BOUNDS)
        assert_codes(st, [2002])
        assert st[0]["message"] == "partnerProgramName is too long: at most 128 bytes (UTF-8)", st
        _, st = update1(stack, cust, upd(long_name, "UPGRADE", T_HIGH), auth=BOUNDS)
        assert_codes(st, [2002])
        assert st[0]["message"] == "partnerProgramName is too long: at most 128 bytes (UTF-8)", st
        _, st = delink1(stack, cust, long_name, auth=BOUNDS)
        assert_codes(st, [2002])
        assert st[0]["message"] == "partnerProgramName is too long: at most 128 bytes (UTF-8)", st
    _, st = link1(stack, cust, item(E128, stack.uid()), item(P128, stack.uid(), T_LOW), auth=BOUNDS)
    assert_codes(st, [200, 200])
    _, st = update1(stack, cust, upd(P128, "UPGRADE", T_HIGH), auth=BOUNDS)
    assert_codes(st, [200])
    _, st = delink1(stack, cust, E128, P128, auth=BOUNDS)
    assert_codes(st, [200, 200])
    h = read_history(stack, "id", str(cid), auth=BOUNDS, partnerProgramName=E128)
    assert h["total"] == 2 and [a["activityType"] for a in h["activities"]] == ["DELINK", "LINK"], h


def test_bounds_email_over_254_or_external_id_over_128_bytes_is_the_customers_400(stack):
    _org(stack)
    for cust, msg in (({"email": EMAIL254 + "m"}, "email is too long: at most 254 bytes (UTF-8)"),
                      ({"externalId": EXT128 + "9"}, "externalId is too long: at most 128 bytes (UTF-8)"),
                      ({"id": 9001, "externalId": "\u00e9" * 65}, "externalId is too long: at most 128 bytes (UTF-8)")):
        with unchanged(stack):
            c, st = link1(stack, cust, item(E128, stack.uid()), auth=BOUNDS)
        assert_code(c["status"], 400, repr(cust))
        assert c["status"]["message"] == msg, c
        assert_codes(st, [400])
    # at the limits they name the customer
    for cust in ({"email": EMAIL254}, {"externalId": EXT128}, {"email": EMAIL254, "externalId": EXT128}):
        c, st = link1(stack, cust, item("NoSuchProgram", stack.uid()), auth=BOUNDS)
        assert_code(c["status"], 1000, repr(cust))
        assert c["id"] == 9001 and c["email"] == EMAIL254 and c["externalId"] == EXT128, c
        assert_codes(st, [2006])


def test_bounds_partnerctl_load_and_import_refuse_identifiers_and_names_over_the_limits(stack):
    _org(stack)
    doc = json.loads(json.dumps(DOC))
    org = doc["orgs"][0]
    org["programs"].append({"name": "Q" * 129, "type": "EXTERNAL", "tiers": []})
    org["programs"].append({"name": "Tiers", "type": "EXTERNAL", "tiers": ["Low", "T" * 129]})
    org["customers"].append({"id": 9100, "email": "e" * 255})
    org["customers"].append({"id": 9101, "externalId": "x" * 129})
    path = os.path.join(stack.dir, "bounds-long.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    with unchanged(stack):
        rc, out, err = stack.ctl("load", path)
    text = out + err
    assert rc != 0, "load accepted over-long names:\n" + text
    for want in ("name is 129 bytes long: at most 128", "tier #2 is 129 bytes long: at most 128",
                 "customer 9100: email is 255 bytes long: at most 254",
                 "customer 9101: externalId is 129 bytes long: at most 128"):
        assert want in text, "%r not in:\n%s" % (want, text)
    lines = [{"id": 9102, "email": "e" * 255}, {"id": 9103, "externalId": "x" * 129},
             {"id": 9104, "email": "e" * 254}]
    path = os.path.join(stack.dir, "bounds-import.jsonl")
    with open(path, "w") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))
    rc, out, err = stack.ctl("import-customers", "--org", "bounds", path)
    text = out + err
    assert rc == 1, "import exited %d:\n%s" % (rc, text)
    assert "email is 255 bytes long: at most 254" in text and "externalId is 129 bytes long: at most 128" in text, text
    assert stack.redis("EXISTS", keys.cust("bounds", 9102)) == 0 and stack.redis("EXISTS", keys.cust("bounds", 9103)) == 0
    assert stack.redis("HGET", keys.cust("bounds", 9104), "email") == b"e" * 254


def test_bounds_partnerctl_load_refuses_a_program_of_65_tiers_naming_the_limit_and_loads_64(stack):
    """partnerd reads only the first 64 tiers of a program (RULES_MAX_TIERS): load refuses a
    program with more, naming the limit, and writes nothing; 64 load and the 64th links.
    A 65th tier added to the definition by hand: check reports a membership on it."""
    cid = _org(stack)
    tiers = ["T%02d" % k for k in range(1, 66)]
    doc = json.loads(json.dumps(DOC))
    progs = doc["orgs"][0]["programs"]
    progs.append({"name": "Tiers65", "type": "EXTERNAL", "tiers": tiers})
    path = os.path.join(stack.dir, "bounds-tiers.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    with unchanged(stack):
        rc, out, err = stack.ctl("load", path)
    assert rc != 0, "load accepted 65 tiers:\n" + out + err
    assert 'program "Tiers65": has 65 tiers: at most 64 (partnerd reads only the first 64)' in err, err
    progs[-1] = {"name": "Tiers64", "type": "EXTERNAL", "tiers": tiers[:64]}
    with open(path, "w") as f:
        json.dump(doc, f)
    stack.load(path)
    _, st = link1(stack, {"id": cid}, item("Tiers64", stack.uid(), "T64"), auth=BOUNDS)
    assert_codes(st, [200])
    key = keys.progs("bounds")
    saved = stack.redis("HGET", key, "Tiers64")
    m = stack.membership(cid, "Tiers64", org="bounds")
    stack.redis("HSET", key, "Tiers64", json.dumps(dict(json.loads(saved), tiers=tiers),
                                                   separators=(",", ":")))
    try:
        stack.set_membership(cid, "Tiers64", dict(m, tier="T65"), org="bounds")
        rc, out, err = stack.ctl("check", "--org", "bounds")
        assert rc == 1 and 'membership: tier "T65" is not a tier of the program' in out, out + err
    finally:
        stack.redis("HSET", key, "Tiers64", saved)
        stack.set_membership(cid, "Tiers64", m, org="bounds")


def test_bounds_history_read_reads_only_its_page_of_a_huge_history_and_the_worker_stays_healthy(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold"))
    assert_codes(st, [200])
    _, st = delink1(stack, by_mobile(c), "AcmeAir")
    assert_codes(st, [200])
    key = keys.hist("acme", c["id"])
    newest = [activity.load(x, c["id"]) for x in stack.redis("LRANGE", key, 0, -1)]
    # Older than the history's trim (--history-max 100): 5000 activities of ~20 KB, as an
    # old partnerd without field limits stored them (~100 MB).
    big = dict(newest[1], partnerProgramName="AcmeShop")
    big["after"] = dict(big["after"], partnerMembershipId="m" * 20000, partnerTierName=None)
    big = json.dumps(big, separators=(",", ":"))
    for _ in range(50):
        stack.redis("RPUSH", key, *([big] * 100))
    try:
        assert stack.redis("LLEN", key) == 5002
        for k in range(3):
            t0 = time.monotonic()
            h = history_of(stack, c["id"], limit=1)
            took = time.monotonic() - t0
            assert h["total"] == 5002 and len(h["activities"]) == 1, (h["total"], len(h["activities"]))
            assert h["activities"][0] == newest[0], h["activities"][0]
            assert took < 0.5, "limit=1 took %.3f s" % took
        h = history_of(stack, c["id"], limit=2, offset=4000)
        assert [a["partnerProgramName"] for a in h["activities"]] == ["AcmeShop"] * 2 and h["total"] == 5002
        # a program filter scans at most --history-max (100) entries: total counts those
        h = history_of(stack, c["id"], limit=1, partnerProgramName="AcmeShop")
        assert h["total"] == 98 and len(h["activities"]) == 1, h["total"]
        h = history_of(stack, c["id"], limit=100, partnerProgramName="AcmeAir")
        assert h["total"] == 2 and h["activities"] == newest, h
        # every worker still answers (a timed-out read used to leave its connection broken)
        for _ in range(20):
            st, _, body = stack.get(HEALTH, auth=None)
            assert st == 200 and body == {"status": "ok", "redis": "ok"}, (st, body)
            history_of(stack, c["id"], limit=1)
    finally:
        stack.redis("LTRIM", key, 0, 1)


def test_bounds_read_routes_say_why_an_identifier_value_is_refused(stack):
    _org(stack)
    cases = [
        ("email", "e" * 600, "identifierValue is too long for an email: at most 254 bytes (UTF-8)"),
        ("email", EMAIL254 + "m", "identifierValue is too long for an email: at most 254 bytes (UTF-8)"),
        ("externalId", EXT128 + "9", "identifierValue is too long for an externalId: at most 128 bytes (UTF-8)"),
        ("externalId", "x" * 600, "identifierValue is too long for an externalId: at most 128 bytes (UTF-8)"),
        ("email", "a\x00b@bounds.example", "identifierValue contains a NUL byte (%00)"),
        ("mobile", "9190000\x0009001", "identifierValue contains a NUL byte (%00)"),
        ("id", "9" * 600, "identifierValue must be a positive integer customer id"),
        ("id", "9223372036854775808", "identifierValue must be a positive integer customer id"),
        ("mobile", "9" * 600, "identifierValue is not a valid mobile number: 6 to 15 digits"),
        ("email", "", "identifierValue is required and must not be empty"),
    ]
    bad = []
    for path in (PROGRAMS, HISTORY):
        for name, value, msg in cases:
            resp = stack.get(query(path, identifierName=name, identifierValue=value), auth=BOUNDS)
            try:
                assert_error(resp, 400)
                assert resp[2]["errors"][0]["message"] == msg, resp[2]["errors"][0]["message"]
            except AssertionError as e:
                bad.append("%s %s=%r...: %s" % (path, name, value[:20], e))
        for params, msg in (({"partnerProgramName": P128 + "Y"}, "partnerProgramName is too long: at most 128 bytes (UTF-8)"),
                            ({"partnerProgramName": "a\x00"}, "partnerProgramName contains a NUL byte (%00)")):
            if path != HISTORY:
                continue
            resp = stack.get(query(path, identifierName="id", identifierValue="9001", **params), auth=BOUNDS)
            try:
                assert_error(resp, 400)
                assert resp[2]["errors"][0]["message"] == msg, resp[2]["errors"][0]["message"]
            except AssertionError as e:
                bad.append("%s %r: %s" % (path, params, e))
    assert not bad, "\n".join(bad)
    # the largest id the write routes take is read too (an unknown customer: 8015)
    for path in (PROGRAMS, HISTORY):
        st, _, body = stack.get(query(path, identifierName="id", identifierValue="9223372036854775807"), auth=BOUNDS)
        assert st == 200 and body["customer"]["status"]["code"] == 8015, (st, body)
    # at the limits the customer is found
    for name, value in (("email", EMAIL254), ("externalId", EXT128)):
        st, _, body = stack.get(query(PROGRAMS, identifierName=name, identifierValue=value), auth=BOUNDS)
        assert st == 200 and body["customer"]["id"] == 9001, (st, body)
        h = read_history(stack, name, value, auth=BOUNDS, partnerProgramName=P128)
        assert h["customer"]["id"] == 9001, h
