"""The stored membership value (docs/DATA-MODEL.md "Membership value"): partnerd writes the
compact format, small enough for Redis to keep a customer hash as a listpack, and still
reads the JSON an older partnerd wrote, rewriting it compact on the customer's next write."""

import json

import harness
import keys
from helpers import assert_codes, by_mobile, item, link1
from support_model import FUT1, FUT3, cancel, iso_ms, programs_of, update1, upd


def _raw(stack, cid, program):
    return stack.redis("HGET", keys.cust("acme", cid), keys.membership_field(stack.pid(program)))


def _ctl_check_clean(stack):
    rc, out, err = stack.ctl("check", "--org", "acme")
    assert rc == 0, "partnerctl check exited %d:\n%s%s" % (rc, out, err)


def test_a_freshly_linked_customer_hash_is_a_listpack_with_values_of_at_most_64_bytes(stack):
    c = stack.customer()
    mid = "ABCDEFGHIJ0123456789"          # 20 bytes: the longest typical membership id
    _, st = link1(stack, by_mobile(c), item("AcmeAir", mid, "Silver", FUT1),
                  item("AcmeShop", stack.uid()), item("AcmePlus", stack.uid()),
                  item("AcmeDays", stack.uid(), "Premium", FUT1))
    assert_codes(st, [200, 200, 200, 200])
    key = keys.cust("acme", c["id"])
    assert harness._s(stack.redis("OBJECT", "ENCODING", key)) == "listpack"
    for program in ("AcmeAir", "AcmeShop", "AcmePlus", "AcmeDays"):
        raw = _raw(stack, c["id"], program)
        assert raw[:1] != b"{" and len(raw) <= 64, (program, raw, len(raw))
    raw = _raw(stack, c["id"], "AcmeAir")
    m = harness.decode_membership(raw)
    assert m["mid"] == mid and m["tier"] == "Silver" and m["exp"] == iso_ms(FUT1), m
    assert m["start"] == m["lk"] and m["rl"] is None, m
    # the start equal to the link time is left out: "20:MID,6:Silver,EXP,,,LK,UP"
    assert raw.startswith(b"20:" + mid.encode() + b",6:Silver," + harness.b36(m["exp"]).encode() + b",,,"), raw
    assert raw == harness.encode_membership(m), raw
    # an update keeps it compact
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold", FUT3))
    assert_codes(st, [200])
    assert harness._s(stack.redis("OBJECT", "ENCODING", key)) == "listpack"
    assert len(_raw(stack, c["id"], "AcmeAir")) <= 64
    _ctl_check_clean(stack)


def test_a_membership_stored_as_json_by_an_older_partnerd_is_read_and_rewritten_compact(stack):
    c = stack.customer()
    m1, m2, m3 = stack.uid(), stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", m1, "Bronze", FUT1), item("AcmeDays", m2, "Basic"))
    assert_codes(st, [200, 200])
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m3, "Premium", FUT1, start="2031-04-20T00:00:00Z"))
    assert_codes(st, [200])
    before = programs_of(stack, c["id"])
    key = keys.cust("acme", c["id"])
    # what an older partnerd wrote: the JSON of the same memberships
    legacy = {}
    for program in ("AcmeAir", "AcmeDays"):
        m = stack.membership(c["id"], program)
        legacy[program] = m
        stack.redis("HSET", key, keys.membership_field(stack.pid(program)), json.dumps(m, separators=(",", ":")))
        assert _raw(stack, c["id"], program)[:1] == b"{"
    assert legacy["AcmeDays"]["rl"]["mid"] == m3
    # read as before, by the API, partnerctl show and partnerctl check
    assert programs_of(stack, c["id"]) == before
    rc, out, err = stack.ctl("show", "--org", "acme", "--id", str(c["id"]))
    assert rc == 0, out + err
    shown = dict((p["partnerProgramName"], p) for p in json.loads(out)["memberships"])
    assert shown["AcmeAir"]["partnerMembershipId"] == m1 and shown["AcmeAir"]["partnerTierName"] == "Bronze", shown
    assert shown["AcmeDays"]["pendingRelink"]["partnerMembershipId"] == m3, shown
    _ctl_check_clean(stack)
    # the next write of the customer rewrites what it changed compact (the hash stays a
    # hashtable: Redis never converts one back to a listpack)
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Silver", FUT1), cancel("AcmeDays"))
    assert_codes(st, [200, 200])
    for program in ("AcmeAir", "AcmeDays"):
        raw = _raw(stack, c["id"], program)
        assert raw[:1] != b"{" and len(raw) <= 64, (program, raw)
        m = harness.decode_membership(raw)
        for k in ("mid", "exp", "start", "end", "lk"):
            assert m[k] == legacy[program][k], (program, k, m, legacy[program])
        assert m["up"] >= legacy[program]["up"], m
    assert harness.decode_membership(_raw(stack, c["id"], "AcmeAir"))["tier"] == "Silver"
    assert harness.decode_membership(_raw(stack, c["id"], "AcmeDays"))["rl"] is None
    _ctl_check_clean(stack)


def test_check_reports_a_membership_value_that_decodes_as_neither_format(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", FUT1))
    assert_codes(st, [200])
    key, field = keys.cust("acme", c["id"]), keys.membership_field(stack.pid("AcmeAir"))
    saved = stack.redis("HGET", key, field)
    m = harness.decode_membership(saved)
    bad_values = [
        saved + b"!",                                           # trailing byte
        saved[:-1] + b"Z",                                      # not a base-36 digit
        b"99" + saved[saved.index(b":"):],                      # length past the end
        harness.encode_membership(dict(m, mid="")),             # empty mid
        b"{" + saved,                                           # neither JSON nor compact
        json.dumps(dict(m, extra=1)).encode(),                  # legacy JSON, wrong keys
    ]
    try:
        for bad in bad_values:
            stack.redis("HSET", key, field, bad)
            rc, out, err = stack.ctl("check", "--org", "acme")
            text = out + err
            want = ("does not have exactly the keys" if bad.startswith(b'{"')
                    else "membership %s is not a valid membership value" % field)
            hits = [l for l in out.splitlines() if l.startswith("VIOLATION: ") and
                    "customer %d:" % c["id"] in l and want in l]
            assert rc == 1 and hits, "%r: rc %d\n%s" % (bad, rc, text)
            # partnerctl show marks it (legacy JSON with an extra key still shows)
            rc, out, err = stack.ctl("show", "--org", "acme", "--id", str(c["id"]))
            shown = json.loads(out)["memberships"][0]
            assert rc == 0 and ("error" in shown) != bad.startswith(b'{"'), (bad, out + err)
    finally:
        stack.redis("HSET", key, field, saved)
    _ctl_check_clean(stack)


def test_a_stored_program_whose_cycle_unit_is_null_does_not_crash_partnerd(stack):
    """A definition written by hand with "unit": null made partnerd compare a NULL string
    (a crash of the whole process) when a request named the program. It reads as any unit
    but DAYS does (months); partnerctl check reports it as a bad cycle."""
    key, name = keys.progs("acme"), "NullUnitCycle"
    stack.redis("HSET", key, name, json.dumps({"pid": 9990, "type": "SUPPLEMENTARY", "tiers": [],
                                               "cycle": {"unit": None, "value": 1}, "expiresAt": None}))
    try:
        c = stack.customer()
        # without customerPartnerReference: read and decided (2002), nothing stored
        _, st = link1(stack, by_mobile(c), item(name, ref=False))
        assert_codes(st, [2002])
        assert stack.request("GET", harness.HEALTH, auth=None)[0] == 200
        rc, out, err = stack.ctl("check", "--org", "acme")
        assert rc == 1 and 'program "NullUnitCycle": the definition has a bad cycle' in out, out + err
    finally:
        stack.redis("HDEL", key, name)
