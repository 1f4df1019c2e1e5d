"""Pending relinks of SUPPLEMENTARY programs (SPEC §4.1, §4.2): queue, refuse a second one,
cancel, the relink taking effect at its start date without any write, and the old membership
id it leaves behind (held while pending, free once the relink took effect)."""

import json
import re
import time

import keys
from helpers import assert_codes, by_mobile, drop_lock, item, link1, ms, take_lock, unchanged
from support_model import (CANCEL, FUT1, add_months, cancel, check_passes, delink1, history_of, iso,
                           iso_ms, now_ms, programs_of, read_programs, update1, upd)


def test_supplementary_relink_walkthrough_queue_refuse_cancel(stack):
    c = stack.customer()
    m1, m2, m3 = stack.uid(), stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m1))
    assert_codes(st, [200])
    cur = programs_of(stack, c["id"])["AcmePlus"]
    assert cur["partnerMembershipId"] == m1 and cur["state"] == "ACTIVE" and cur["pendingRelink"] is None, cur

    # a future relink: 200, queued, current membership unchanged
    start = "2031-07-01T00:00:00Z"
    _, st = link1(stack, {"email": c["email"]}, item("AcmePlus", m2, start=start))
    assert_codes(st, [200])
    p = programs_of(stack, c["id"])["AcmePlus"]
    for k in ("partnerMembershipId", "partnerTierName", "partnerTierExpiryDate", "membershipStartDate",
              "membershipEndDate", "state", "linkedOn"):
        assert p[k] == cur[k], "current membership changed (%s): %r -> %r" % (k, cur, p)
    rl = p["pendingRelink"]
    assert rl is not None and rl["partnerMembershipId"] == m2, p
    assert iso_ms(rl["membershipStartDate"]) == ms(start), rl
    assert iso_ms(rl["membershipEndDate"]) == ms("2032-07-01T00:00:00Z"), rl
    assert rl["partnerTierName"] is None and rl["partnerTierExpiryDate"] is None, rl
    assert stack.mid_holder("AcmePlus", m1) == c["id"] and stack.mid_holder("AcmePlus", m2) == c["id"]

    # a second future relink while one is pending: 2005, nothing changes
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("AcmePlus", m3, start="2031-09-01T00:00:00Z"))
    assert_codes(st, [2005])
    assert stack.mid_holder("AcmePlus", m3) is None

    # cancel: no updateDetails needed; the relink goes, its id is freed, current stays
    _, st = update1(stack, by_mobile(c), cancel("AcmePlus"))
    assert_codes(st, [200])
    p = programs_of(stack, c["id"])["AcmePlus"]
    assert p["pendingRelink"] is None and p["partnerMembershipId"] == m1 and p["state"] == "ACTIVE", p
    assert stack.membership(c["id"], "AcmePlus")["rl"] is None
    assert stack.mid_holder("AcmePlus", m2) is None, "cancelled relink's membership id still held"
    assert stack.mid_holder("AcmePlus", m1) == c["id"]
    acts = history_of(stack, c["id"])["activities"]
    assert [a["activityType"] for a in acts] == ["RELINK_CANCELLED", "RELINK_SCHEDULED", "LINK"], acts

    # cancel again: nothing pending
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), cancel("AcmePlus"))
    assert_codes(st, [2105])
    # and a new relink can be queued after the cancel
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m3, start="2031-09-01T00:00:00Z"))
    assert_codes(st, [200])
    assert programs_of(stack, c["id"])["AcmePlus"]["pendingRelink"]["partnerMembershipId"] == m3
    check_passes(stack, "acme")


def test_relink_takes_effect_at_its_start_without_any_write(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m1))
    assert_codes(st, [200])
    start_ms = (int(time.time() * 1000) // 1000 + 3) * 1000 + 250
    _, st = link1(stack, by_mobile(c), item("AcmePlus", m2, start=iso(start_ms)))
    assert_codes(st, [200])
    p = programs_of(stack, c["id"])["AcmePlus"]
    assert p["partnerMembershipId"] == m1 and p["pendingRelink"]["partnerMembershipId"] == m2, p
    while time.time() * 1000 < start_ms + 300:
        time.sleep(0.1)
    got = programs_of(stack, c["id"])
    assert "AcmePlus" in got, "membership missing from the read route once its relink's start passed: %r" % got
    p = got["AcmePlus"]
    assert p["partnerMembershipId"] == m2, "relink did not take effect at its start: %r" % p
    assert p["state"] == "ACTIVE" and p["pendingRelink"] is None, p
    assert iso_ms(p["membershipStartDate"]) == start_ms, p
    assert iso_ms(p["membershipEndDate"]) == add_months(start_ms, 12), p
    # every lookup agrees
    again = read_programs(stack, "email", c["email"])["partnerPrograms"]
    assert [x["partnerMembershipId"] for x in again if x["partnerProgramName"] == "AcmePlus"] == [m2], again
    # a write now works on the new membership
    _, st = update1(stack, by_mobile(c), cancel("AcmePlus"))
    assert_codes(st, [2105])
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start="2031-01-01T00:00:00Z"))
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmePlus")["mid"] == m2
    check_passes(stack, "acme")
    # once the customer was written, the old id is free and the new one held
    d = stack.customer()
    _, st = link1(stack, by_mobile(d), item("AcmePlus", m1))
    assert_codes(st, [200])
    with unchanged(stack):
        _, st = link1(stack, by_mobile(stack.customer()), item("AcmePlus", m2))
    assert_codes(st, [2101])
    _, st = delink1(stack, by_mobile(c), "AcmePlus")
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmePlus") is None
    assert stack.mid_holder("AcmePlus", m2) is None
    check_passes(stack, "acme")


def test_relink_taking_effect_then_delink_without_other_writes(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m1, "Basic"))
    assert_codes(st, [200])
    start_ms = (int(time.time() * 1000) // 1000 + 2) * 1000
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m2, "Premium", FUT1, start=iso(start_ms)))
    assert_codes(st, [200])
    while time.time() * 1000 < start_ms + 300:
        time.sleep(0.1)
    got = programs_of(stack, c["id"])
    assert "AcmeDays" in got, "membership missing from the read route once its relink's start passed: %r" % got
    p = got["AcmeDays"]
    assert p["partnerMembershipId"] == m2 and p["partnerTierName"] == "Premium", p
    assert iso_ms(p["membershipEndDate"]) == start_ms + 30 * 86400000, p
    # the update route works on the new membership's tier
    _, st = update1(stack, by_mobile(c), upd("AcmeDays", "DOWNGRADE", "Basic", FUT1))
    assert_codes(st, [200])
    assert stack.membership(c["id"], "AcmeDays")["mid"] == m2
    _, st = delink1(stack, by_mobile(c), "AcmeDays")
    assert_codes(st, [200])
    assert stack.mid_holder("AcmeDays", m1) is None and stack.mid_holder("AcmeDays", m2) is None
    check_passes(stack, "acme")


def test_external_program_linked_again_with_a_future_start_is_2005(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()), item("AcmeAir", stack.uid(), "Silver"),
                  item("AcmeLater", stack.uid(), start="2031-01-01T00:00:00Z"))
    assert_codes(st, [200, 200, 200])
    for it in (item("AcmeShop", stack.uid(), start="2031-01-01T00:00:00Z"),
               item("AcmeAir", stack.uid(), "Gold", FUT1, start="2032-01-01T00:00:00Z"),
               item("AcmeLater", stack.uid(), start="2033-01-01T00:00:00Z")):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), it)
        assert_codes(st, [2005])
    assert all(p["pendingRelink"] is None for p in programs_of(stack, c["id"]).values())


def test_twelve_month_membership_ends_twelve_months_after_its_start(stack):
    a, b = stack.customers(2)
    for c, start, end in ((a, "2030-03-15T10:20:30.456+05:30", "2031-03-15T10:20:30.456+05:30"),
                          (b, "2031-01-28T23:00:00Z", "2032-01-28T23:00:00Z")):
        _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start=start))
        assert_codes(st, [200])
        m = stack.membership(c["id"], "AcmePlus")
        assert m["start"] == ms(start) and m["end"] == ms(end), m
        p = programs_of(stack, c["id"])["AcmePlus"]
        assert iso_ms(p["membershipEndDate"]) == ms(end) and p["state"] == "PENDING", p
    # and for a relink
    m = stack.uid()
    _, st = link1(stack, by_mobile(b), item("AcmePlus", m, start="2033-05-20T00:00:00Z"))
    assert_codes(st, [200])
    rl = stack.membership(b["id"], "AcmePlus")["rl"]
    assert rl["start"] == ms("2033-05-20T00:00:00Z") and rl["end"] == ms("2034-05-20T00:00:00Z"), rl


def test_tier_update_with_a_pending_relink_changes_the_current_membership_only(stack):
    c = stack.customer()
    m1, m2 = stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m1, "Basic"))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m2, "Basic", start="2031-02-01T00:00:00Z"))
    assert_codes(st, [200])
    rl = stack.membership(c["id"], "AcmeDays")["rl"]
    _, st = update1(stack, by_mobile(c), upd("AcmeDays", "UPGRADE", "Premium", FUT1))
    assert_codes(st, [200])
    m = stack.membership(c["id"], "AcmeDays")
    assert m["tier"] == "Premium" and m["mid"] == m1 and m["rl"] == rl, m


def test_relink_refusals_change_nothing(stack):
    c, other = stack.customers(2)
    held = stack.uid()
    _, st = link1(stack, by_mobile(other), item("AcmeDays", held, "Basic"))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(c), item("AcmeDays", stack.uid(), "Basic"))
    assert_codes(st, [200])
    for it, code in ((item("AcmeDays", stack.uid(), "Premium", start="2020-01-01T00:00:00Z"), 2005),
                     (item("AcmeDays", stack.uid(), "Premium"), 2005),
                     (item("AcmeDays", held, "Premium", start=FUT1), 2101),
                     (item("AcmeDays", None, "Premium", start=FUT1), 2002),
                     (item("AcmeDays", stack.uid(), None, start=FUT1), 2002),
                     (item("AcmeDays", stack.uid(), "Gold", start=FUT1), 2007),
                     (item("AcmeDays", stack.uid(), "Basic", "2020-05-05T00:00:00Z", start=FUT1), 2003),
                     (item("AcmeDays", stack.uid(), "Basic", start="2031-02-30T00:00:00Z"), 2103)):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), it)
        assert_codes(st, [code])


def test_cancel_of_a_relink_in_the_same_entry_as_other_updates(stack):
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid()), item("AcmeAir", stack.uid(), "Bronze"))
    assert_codes(st, [200, 200])
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start=FUT1))
    assert_codes(st, [200])
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Silver", FUT1), cancel("AcmePlus"),
                    {"partnerProgramName": "AcmeAir", "updateType": CANCEL})
    assert_codes(st, [200, 200, 2102])
    assert stack.membership(c["id"], "AcmePlus")["rl"] is None
    assert stack.membership(c["id"], "AcmeAir")["tier"] == "Silver"


# ---- the old membership id of a relink that took effect (issue 12, defect 10) ------------

def _relink_soon(stack, c, program, tier=None, exp=None, start_ms=None, ids=None):
    """Links c to program with a new id, then queues a relink to another id starting at
    start_ms (default: about two seconds from now); returns (old id, new id, start_ms)."""
    old, new = ids or (stack.uid(), stack.uid())
    _, st = link1(stack, by_mobile(c), item(program, old, tier))
    assert_codes(st, [200])
    if start_ms is None:
        start_ms = (int(time.time() * 1000) // 1000 + 3) * 1000 + 250
    _, st = link1(stack, by_mobile(c), item(program, new, tier, exp, start=iso(start_ms)))
    assert_codes(st, [200])
    return old, new, start_ms


def _wait_past(start_ms):
    while time.time() * 1000 < start_ms + 300:
        time.sleep(0.1)


def test_relinked_away_id_is_2101_while_the_relink_is_pending_and_free_once_it_took_effect(stack):
    x1, x2, y, z = stack.customers(4)
    start_ms = (int(time.time() * 1000) // 1000 + 3) * 1000 + 250
    # a program without tiers, and one with tiers, expiries and ids that hold the
    # separators of the stored value (',', ':', '-')
    cases = [(x1, "AcmePlus", None) + _relink_soon(stack, x1, "AcmePlus", start_ms=start_ms),
             (x2, "AcmeDays", "Basic") + _relink_soon(stack, x2, "AcmeDays", "Premium", FUT1, start_ms,
                                                      (stack.uid("1:a,-") + ",", stack.uid("2:b,-,")))]
    # pending: both ids stay X's, whatever reads it; another customer gets 2101 for either
    for x, prog, tier, a, b, _ in cases:
        assert programs_of(stack, x["id"])[prog]["partnerMembershipId"] == a
        history_of(stack, x["id"])
        for mid in (a, b):
            with unchanged(stack):
                _, st = link1(stack, by_mobile(y), item(prog, mid, tier))
            assert_codes(st, [2101])
            assert stack.mid_holder(prog, mid) == x["id"]
        assert stack.membership(x["id"], prog)["rl"]["mid"] == b
    check_passes(stack, "acme")

    _wait_past(start_ms)
    for x, prog, tier, a, b, _ in cases:
        # X is neither read nor written: its stored value still carries the relink
        assert stack.membership(x["id"], prog)["rl"]["mid"] == b
        # the claim finds that X no longer holds A (its relink is due) and takes A over
        _, st = link1(stack, by_mobile(y), item(prog, a, tier))
        assert_codes(st, [200])
        assert stack.mid_holder(prog, a) == y["id"]
        assert stack.mid_holder(prog, b) == x["id"]
        # B is X's current membership now: still held
        with unchanged(stack):
            _, st = link1(stack, by_mobile(z), item(prog, b, tier))
        assert_codes(st, [2101])
    # the stored data agrees (X's due relink is its current membership)
    check_passes(stack, "acme")
    for x, prog, tier, a, b, _ in cases:
        # a later write of X settles it and leaves Y's claim on A alone
        _, st = update1(stack, by_mobile(x), cancel(prog))
        assert_codes(st, [2105])
        m = stack.membership(x["id"], prog)
        assert m["mid"] == b and m["rl"] is None and m["start"] == start_ms, m
        assert stack.mid_holder(prog, a) == y["id"] and stack.mid_holder(prog, b) == x["id"]
        assert programs_of(stack, y["id"])[prog]["partnerMembershipId"] == a
    check_passes(stack, "acme")


def _script_calls(stack):
    """EVALSHA calls Redis has served so far (INFO commandstats)."""
    info = stack.redis("INFO", "commandstats").decode()
    m = re.search(r"^cmdstat_evalsha:calls=(\d+)", info, re.M)
    return int(m.group(1)) if m else 0


def test_a_read_after_a_relinks_start_settles_it_and_frees_the_old_id(stack):
    x, y = stack.customers(2)
    a, b, start_ms = _relink_soon(stack, x, "AcmeDays", "Basic", FUT1)
    v = stack.redis("HGET", keys.cust("acme", x["id"]), "v")
    # nothing due: a read is one script call, as before (on a cluster none: HGET and HGETALL);
    # the settling read one more (on a cluster four: settle.lua under the customer's lock,
    # hdel_if.lua and claim.lua in the buckets, unlock.lua)
    reads, settling = (0, 4) if stack.cluster is not None else (1, 2)
    n = _script_calls(stack)
    programs_of(stack, x["id"])
    assert _script_calls(stack) - n == reads, "a read with nothing due made %d script calls" % (_script_calls(stack) - n)
    _wait_past(start_ms)
    n = _script_calls(stack)
    p = programs_of(stack, x["id"])["AcmeDays"]
    assert _script_calls(stack) - n == settling, "the settling read made %d script calls" % (_script_calls(stack) - n)
    assert p["partnerMembershipId"] == b and p["pendingRelink"] is None and p["state"] == "ACTIVE", p
    # the read wrote the settled membership and released A; B stays X's
    m = stack.membership(x["id"], "AcmeDays")
    assert m["mid"] == b and m["tier"] == "Basic" and m["rl"] is None, m
    assert m["start"] == start_ms and m["end"] == start_ms + 30 * 86400000 and m["up"] == start_ms, m
    assert stack.mid_holder("AcmeDays", a) is None, "the read did not release the relinked-away id"
    assert stack.mid_holder("AcmeDays", b) == x["id"]
    # a settle is no change of the customer's state: its version stays (docs/DATA-MODEL.md)
    assert stack.redis("HGET", keys.cust("acme", x["id"]), "v") == v
    check_passes(stack, "acme")
    # reading again changes nothing, with one script call
    n = _script_calls(stack)
    with unchanged(stack):
        assert programs_of(stack, x["id"])["AcmeDays"]["partnerMembershipId"] == b
    assert _script_calls(stack) - n == reads
    _, st = link1(stack, by_mobile(y), item("AcmeDays", a, "Premium"))
    assert_codes(st, [200])
    assert stack.mid_holder("AcmeDays", a) == y["id"]
    check_passes(stack, "acme")


def test_a_history_read_after_a_relinks_start_settles_it_too(stack):
    x = stack.customer()
    a, b, start_ms = _relink_soon(stack, x, "AcmePlus")
    _wait_past(start_ms)
    acts = history_of(stack, x["id"])["activities"]
    assert [t["activityType"] for t in acts] == ["RELINK_SCHEDULED", "LINK"], acts
    m = stack.membership(x["id"], "AcmePlus")
    assert m["mid"] == b and m["rl"] is None, m
    assert stack.mid_holder("AcmePlus", a) is None and stack.mid_holder("AcmePlus", b) == x["id"]
    check_passes(stack, "acme")


def test_a_read_does_not_settle_while_the_customer_is_locked(stack):
    x = stack.customer()
    a, b, start_ms = _relink_soon(stack, x, "AcmePlus")
    _wait_past(start_ms)
    take_lock(stack, "acme", x["id"], for_ms=10000)
    try:
        with unchanged(stack):
            # the read shows the relink in effect, but a writer holds the customer: no write
            assert programs_of(stack, x["id"])["AcmePlus"]["partnerMembershipId"] == b
    finally:
        drop_lock(stack, "acme", x["id"])
    assert stack.mid_holder("AcmePlus", a) == x["id"]
    assert programs_of(stack, x["id"])["AcmePlus"]["partnerMembershipId"] == b
    assert stack.mid_holder("AcmePlus", a) is None, "the read after the lock went did not release the old id"
    assert stack.membership(x["id"], "AcmePlus")["rl"] is None
    check_passes(stack, "acme")


def test_a_due_relink_in_an_older_partnerds_json_value_frees_its_old_id_too(stack):
    x, y = stack.customers(2)
    a, b = stack.uid(), stack.uid()
    t0 = now_ms() - 86400000
    start = now_ms() - 1000
    # a value as an older partnerd wrote it, with a relink that is already due
    m = {"mid": a, "tier": None, "exp": None, "start": t0, "end": add_months(t0, 12), "lk": t0, "up": t0,
         "rl": {"mid": b, "tier": None, "exp": None, "start": start, "end": add_months(start, 12)}}
    pid = stack.pid("AcmePlus")
    stack.redis("HSET", keys.cust("acme", x["id"]), keys.membership_field(pid), json.dumps(m, separators=(",", ":")))
    stack.redis("HSET", keys.mid("acme", pid, a), a, str(x["id"]))
    stack.redis("HSET", keys.mid("acme", pid, b), b, str(x["id"]))
    check_passes(stack, "acme")
    _, st = link1(stack, by_mobile(y), item("AcmePlus", a))
    assert_codes(st, [200])
    assert stack.mid_holder("AcmePlus", a) == y["id"]
    p = programs_of(stack, x["id"])["AcmePlus"]
    assert p["partnerMembershipId"] == b and p["pendingRelink"] is None, p
    got = stack.membership(x["id"], "AcmePlus")
    assert got["mid"] == b and got["rl"] is None and got["start"] == start and got["lk"] == t0, got
    assert not stack.redis("HGET", keys.cust("acme", x["id"]), keys.membership_field(pid)).startswith(b"{")
    assert stack.mid_holder("AcmePlus", a) == y["id"] and stack.mid_holder("AcmePlus", b) == x["id"]
    check_passes(stack, "acme")
