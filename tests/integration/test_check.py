"""partnerctl check: the history and change-feed invariants of docs/DATA-MODEL.md.

Each test links its own customers through the API, then plants one kind of fault directly
in Redis, runs `partnerctl check` (exit 1 and the specific VIOLATION line, naming org,
customer and program), then restores every planted key to its exact previous value
(DUMP/RESTORE, or DEL for a key that did not exist) and runs it again (exit 0), so the
suite's final `partnerctl check` still passes. One test runs the normal flow (link, update,
relink, cancel, delink, a relink taking effect) and expects exit 0 throughout.
"""

import contextlib
import hashlib
import json
import time

import activity as actrec
import harness
import keys
from helpers import assert_codes, by_mobile, item, link1, take_lock
from support_model import FUT1, cancel, delink1, iso, update1, upd


# ---------------------------------------------------------------- helpers

def run_check(stack, *args):
    """(exit status, [VIOLATION lines], whole output)."""
    rc, out, err = stack.ctl("check", *args)
    viol = [l for l in out.splitlines() if l.startswith("VIOLATION: ")]
    return rc, viol, out + err


def expect_violation(stack, *needles, args=()):
    """check exits 1 with a VIOLATION line holding every needle; returns the lines."""
    rc, viol, text = run_check(stack, *args)
    assert rc == 1, "partnerctl check exited %d, expected 1:\n%s" % (rc, text)
    hits = [l for l in viol if all(n in l for n in needles)]
    assert hits, "no VIOLATION line with %r in:\n%s" % (needles, text)
    return viol


def expect_clean(stack, *args):
    rc, _, text = run_check(stack, *args)
    assert rc == 0, "partnerctl check exited %d, expected 0:\n%s" % (rc, text)


def about(viol, cid):
    """The violation lines that name customer cid."""
    return [l for l in viol if "customer %d:" % cid in l]


@contextlib.contextmanager
def planted(stack, *names):
    """Saves keys with DUMP; on the way out puts back exactly what was there (or nothing)."""
    saved = [(k, stack.redis("DUMP", k)) for k in names]
    try:
        yield
    finally:
        for k, v in saved:
            stack.redis("DEL", k)
            if v is not None:
                stack.redis("RESTORE", k, 0, v)


def ckey(cid):
    return keys.cust("acme", cid)


def hkey(cid):
    return keys.hist("acme", cid)



def history(stack, cid):
    return [actrec.load(x, cid) for x in stack.redis("LRANGE", hkey(cid), 0, -1)]


def enc(obj):
    return json.dumps(obj, separators=(",", ":"))


def activity(stack, cid, program, typ, mid=None, tier=None):
    """An activity JSON (as partnerd writes it) for a planted history entry."""
    after = None if mid is None else {
        "partnerMembershipId": mid, "partnerTierName": tier, "partnerTierExpiryDate": None,
        "membershipStartDate": "2026-01-01T00:00:00.000Z", "membershipEndDate": None}
    return {"activityType": typ, "activityDate": "2026-01-01T00:00:00.000Z",
            "partnerProgramName": program, "updateType": None, "before": None, "after": after,
            "requestId": "0" * 32, "customerId": cid}


def linked(stack, *items):
    """A fresh customer linked with items (all must answer 200)."""
    c = stack.customer()
    _, st = link1(stack, by_mobile(c), *items)
    assert_codes(st, [200] * len(items))
    return c


# ---------------------------------------------------------------- the normal flow

def test_check_passes_after_link_update_relink_cancel_delink(stack):
    expect_clean(stack)
    a, b, d = stack.customers(3)
    # link, update, relink, cancel, relink again (left pending), delink
    _, st = link1(stack, by_mobile(a), item("AcmeAir", stack.uid(), "Bronze", FUT1),
                  item("AcmeShop", stack.uid()), item("AcmePlus", stack.uid()))
    assert_codes(st, [200, 200, 200])
    _, st = update1(stack, by_mobile(a), upd("AcmeAir", "UPGRADE", "Silver", FUT1))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(a), item("AcmePlus", stack.uid(), start=FUT1))
    assert_codes(st, [200])
    _, st = update1(stack, by_mobile(a), cancel("AcmePlus"))
    assert_codes(st, [200])
    expect_clean(stack)
    _, st = link1(stack, by_mobile(a), item("AcmePlus", stack.uid(), start="2031-09-01T00:00:00Z"))
    assert_codes(st, [200])
    _, st = delink1(stack, by_mobile(a), "AcmeShop")
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(a), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])
    _, st = delink1(stack, by_mobile(a), "AcmeShop")
    assert_codes(st, [200])
    expect_clean(stack)

    # relinks that fall due: b is updated while its relink is pending, and the relink is
    # made current (by a write of another program) after the update; d's relink is due but
    # nothing wrote the customer since
    m1, m2, m3, m4 = stack.uid(), stack.uid(), stack.uid(), stack.uid()
    _, st = link1(stack, by_mobile(b), item("AcmeDays", m1, "Basic"))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(d), item("AcmePlus", m3))
    assert_codes(st, [200])
    start_ms = (int(time.time() * 1000) // 1000 + 2) * 1000
    _, st = link1(stack, by_mobile(b), item("AcmeDays", m2, "Premium", FUT1, start=iso(start_ms)))
    assert_codes(st, [200])
    _, st = link1(stack, by_mobile(d), item("AcmePlus", m4, start=iso(start_ms)))
    assert_codes(st, [200])
    _, st = update1(stack, by_mobile(b), upd("AcmeDays", "UPGRADE", "Premium", FUT1))
    assert_codes(st, [200])
    expect_clean(stack)
    while time.time() * 1000 < start_ms + 300:
        time.sleep(0.1)
    expect_clean(stack)                      # due, not yet written
    _, st = link1(stack, by_mobile(b), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])
    m = stack.membership(b["id"], "AcmeDays")
    assert m["mid"] == m2 and m["rl"] is None, "the relink was not made current by the write: %r" % m
    assert history(stack, b["id"])[1]["activityType"] == "UPDATE", history(stack, b["id"])
    expect_clean(stack)
    assert stack.membership(d["id"], "AcmePlus")["rl"]["mid"] == m4
    expect_clean(stack, "--org", "acme")


# ---------------------------------------------------------------- history keys

def test_check_reports_a_history_of_a_customer_that_does_not_exist(stack):
    ghost = 987654321
    assert stack.redis("EXISTS", ckey(ghost)) == 0
    with planted(stack, hkey(ghost)):
        stack.redis("LPUSH", hkey(ghost), enc(activity(stack, ghost, "AcmeShop", "LINK", "x")))
        expect_violation(stack, "org acme: customer %d:" % ghost, "does not exist")
    expect_clean(stack)


def test_check_reports_a_history_that_is_not_a_list(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    with planted(stack, hkey(c["id"])):
        stack.redis("DEL", hkey(c["id"]))
        stack.redis("SET", hkey(c["id"]), "not a list")
        expect_violation(stack, "org acme: customer %d:" % c["id"], "is not a list")
    expect_clean(stack)


def test_check_reports_history_entries_that_are_not_activities_of_the_customer(stack):
    c = linked(stack, item("AcmeAir", stack.uid(), "Gold", FUT1), item("AcmeShop", stack.uid()))
    cid = c["id"]
    good = activity(stack, cid, "AcmeShop", "LINK", "old-mid")
    cases = [
        ("not json {", 'program (none): history entry 2 is not an activity JSON object'),
        (enc([1, 2]), 'program (none): history entry 2 is not an activity JSON object'),
        (enc(dict(good, activityType="RENAME")), 'program "AcmeShop": history entry 2 has no valid activityType'),
        (enc(dict(good, activityType=None)), 'program "AcmeShop": history entry 2 has no valid activityType'),
        (enc(dict(good, customerId=cid + 1)), 'program "AcmeShop": history entry 2 has a customerId that is not'),
        (enc(dict(good, customerId=str(cid))), 'program "AcmeShop": history entry 2 has a customerId that is not'),
        (enc(dict(good, partnerProgramName="NoSuchProgram")),
         'program "NoSuchProgram": history entry 2 names no program of the org'),
        (enc(dict(good, partnerProgramName="GlobexOnly")),       # another org's program
         'program "GlobexOnly": history entry 2 names no program of the org'),
    ]
    assert len(history(stack, cid)) == 2
    for bad, text in cases:
        with planted(stack, hkey(cid)):
            stack.redis("RPUSH", hkey(cid), bad)        # the oldest entry: matching unaffected
            viol = expect_violation(stack, "org acme: customer %d:" % cid, text)
            assert len(about(viol, cid)) == 1, about(viol, cid)
        expect_clean(stack)


# ---------------------------------------------------------------- history vs memberships

def test_check_reports_a_membership_that_differs_from_the_newest_link_or_update(stack):
    mid = stack.uid()
    c = linked(stack, item("AcmeAir", mid, "Bronze", FUT1))
    cid = c["id"]
    field = keys.membership_field(stack.pid("AcmeAir"))
    # the stored tier changed behind partnerd's back
    with planted(stack, ckey(cid)):
        m = stack.membership(cid, "AcmeAir")
        m["tier"] = "Gold"
        stack.redis("HSET", ckey(cid), field, harness.encode_membership(m))
        expect_violation(stack, 'org acme: customer %d: program "AcmeAir": the newest activity '
                         '(history entry 0) is LINK to mid "%s" tier "Bronze", but the membership '
                         'holds mid "%s" tier "Gold"' % (cid, mid, mid))
    expect_clean(stack)
    # the newest activity an UPDATE that is not what the membership holds (and no relink)
    _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Silver", FUT1))
    assert_codes(st, [200])
    with planted(stack, hkey(cid)):
        ev = history(stack, cid)[0]
        ev["after"]["partnerTierName"] = "Gold"
        stack.redis("LSET", hkey(cid), 0, enc(ev))
        viol = expect_violation(stack, 'org acme: customer %d: program "AcmeAir"' % cid,
                                'is UPDATE to mid "%s" tier "Gold"' % mid, 'holds mid "%s" tier "Silver"' % mid)
        assert len(about(viol, cid)) == 1, about(viol, cid)
    expect_clean(stack)


def test_check_reports_a_link_activity_without_the_membership(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    with planted(stack, hkey(c["id"])):
        stack.redis("LPUSH", hkey(c["id"]), enc(activity(stack, c["id"], "AcmeAir", "LINK", "ghost-mid", "Gold")))
        expect_violation(stack, 'org acme: customer %d: program "AcmeAir"' % c["id"],
                         'is LINK to mid "ghost-mid" tier "Gold", but the customer holds no membership')
    expect_clean(stack)


def test_check_reports_a_membership_whose_newest_activity_is_a_delink(stack):
    mid = stack.uid()
    c = linked(stack, item("AcmeShop", mid))
    with planted(stack, hkey(c["id"])):
        stack.redis("LPUSH", hkey(c["id"]), enc(activity(stack, c["id"], "AcmeShop", "DELINK")))
        expect_violation(stack, 'org acme: customer %d: program "AcmeShop"' % c["id"],
                         'is DELINK, but the customer holds a membership (mid "%s" tier null)' % mid)
    expect_clean(stack)


def test_check_reports_a_membership_without_activity_unless_the_history_may_be_trimmed(stack):
    c = stack.customer()
    cid = c["id"]
    for it in (item("AcmeAir", stack.uid(), "Silver", FUT1), item("AcmeShop", stack.uid()),
               item("AcmePlus", stack.uid())):
        _, st = link1(stack, by_mobile(c), it)
        assert_codes(st, [200])
    with planted(stack, hkey(cid)):
        oldest = stack.redis("LINDEX", hkey(cid), -1)
        assert actrec.load(oldest, cid)["partnerProgramName"] == "AcmeAir"
        stack.redis("LREM", hkey(cid), 1, oldest)
        viol = expect_violation(stack, 'org acme: customer %d: program "AcmeAir": the customer holds a '
                                'membership but its history (2 entries, not trimmed) has no activity' % cid)
        assert len(about(viol, cid)) == 1, about(viol, cid)
        # a list at its trim limit may have lost the activity: allowed
        rc, viol, text = run_check(stack, "--history-max", "2")
        assert not about(viol, cid), text
        # no history at all (data loaded): allowed
        stack.redis("DEL", hkey(cid))
        rc, viol, text = run_check(stack)
        assert not about(viol, cid), text
    expect_clean(stack)


def test_check_reports_relink_activities_the_membership_does_not_match(stack):
    m1, m2 = stack.uid(), stack.uid()
    c = linked(stack, item("AcmeDays", m1, "Basic"))
    cid = c["id"]
    _, st = link1(stack, by_mobile(c), item("AcmeDays", m2, "Premium", start="2031-04-01T00:00:00Z"))
    assert_codes(st, [200])
    expect_clean(stack)
    field = keys.membership_field(stack.pid("AcmeDays"))
    # the queued relink is not the scheduled one
    with planted(stack, ckey(cid)):
        m = stack.membership(cid, "AcmeDays")
        m["rl"]["tier"] = "Basic"
        stack.redis("HSET", ckey(cid), field, harness.encode_membership(m))
        expect_violation(stack, 'org acme: customer %d: program "AcmeDays"' % cid,
                         'is RELINK_SCHEDULED to mid "%s" tier "Premium", but the membership holds '
                         'mid "%s" tier "Basic" with a different relink pending' % (m2, m1))
    expect_clean(stack)
    # the relink vanished without a cancel
    with planted(stack, ckey(cid)):
        m = stack.membership(cid, "AcmeDays")
        m["rl"] = None
        stack.redis("HSET", ckey(cid), field, harness.encode_membership(m))
        expect_violation(stack, 'org acme: customer %d: program "AcmeDays"' % cid,
                         'is RELINK_SCHEDULED to mid "%s"' % m2, "with no relink pending")
    expect_clean(stack)
    # a cancel recorded, but the relink still pending
    with planted(stack, hkey(cid)):
        stack.redis("LPUSH", hkey(cid), enc(activity(stack, cid, "AcmeDays", "RELINK_CANCELLED")))
        expect_violation(stack, 'org acme: customer %d: program "AcmeDays"' % cid,
                         'is RELINK_CANCELLED, but a relink is pending (mid "%s" tier "Premium")' % m2)
    expect_clean(stack)
    # cancelled through the API, then a relink put back by hand
    _, st = update1(stack, by_mobile(c), cancel("AcmeDays"))
    assert_codes(st, [200])
    expect_clean(stack)
    with planted(stack, ckey(cid), keys.mid("acme", stack.pid("AcmeDays"), m2)):
        m = stack.membership(cid, "AcmeDays")
        m["rl"] = {"mid": m2, "tier": "Premium", "exp": None, "start": 1932000000000, "end": None}
        stack.redis("HSET", ckey(cid), field, harness.encode_membership(m))
        stack.redis("HSET", keys.mid("acme", stack.pid("AcmeDays"), m2), m2, str(cid))
        viol = expect_violation(stack, 'org acme: customer %d: program "AcmeDays"' % cid,
                                'is RELINK_CANCELLED, but a relink is pending')
        assert len(about(viol, cid)) == 1, about(viol, cid)
    expect_clean(stack)
    # delinked through the API, then the membership put back by hand
    saved = stack.redis("HGET", ckey(cid), field)
    _, st = delink1(stack, by_mobile(c), "AcmeDays")
    assert_codes(st, [200])
    expect_clean(stack)
    with planted(stack, ckey(cid), keys.mid("acme", stack.pid("AcmeDays"), m1)):
        stack.redis("HSET", ckey(cid), field, saved)
        stack.redis("HSET", keys.mid("acme", stack.pid("AcmeDays"), m1), m1, str(cid))
        viol = expect_violation(stack, 'org acme: customer %d: program "AcmeDays"' % cid,
                                'is DELINK, but the customer holds a membership (mid "%s" tier "Basic")' % m1)
        assert len(about(viol, cid)) == 1, about(viol, cid)
    expect_clean(stack)


def test_check_reports_a_pending_relink_on_an_external_program(stack):
    mid = stack.uid()
    c = linked(stack, item("AcmeAir", mid, "Bronze", FUT1))
    with planted(stack, ckey(c["id"])):
        m = stack.membership(c["id"], "AcmeAir")
        m["rl"] = {"mid": mid, "tier": "Gold", "exp": None, "start": 1932000000000, "end": None}
        stack.redis("HSET", ckey(c["id"]), keys.membership_field(stack.pid("AcmeAir")), harness.encode_membership(m))
        expect_violation(stack, "org acme: customer %d:" % c["id"], '(program "AcmeAir")',
                         "pending relink, but the program is not SUPPLEMENTARY")
    expect_clean(stack)


# ---------------------------------------------------------------- the change feed

def test_check_reports_change_feed_entries_that_break_the_format(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    ev = history(stack, cid)[0]
    fkey = keys.feed_of("acme", cid)       # the partition of the customer's entries
    assert stack.redis("TYPE", fkey) == "stream"
    good = ["v", "1", "type", "LINK", "customerId", str(cid), "event", enc(ev)]
    cases = [
        (["v", "4"] + good[2:], "has a version v that is not 1, 2 or 3"),
        (["v", "2"] + good[2:], "does not have exactly the fields v, type, customerId, customerVersion, seq, event"),
        (good[:6] + ["seq", "0"] + good[6:], "does not have exactly the fields v, type, customerId, event"),
        (good[:2] + ["type", "UPDATE"] + good[4:], "has a type that is not the event's (valid) activityType"),
        (good[:2] + ["type", "LINKED"] + good[4:], "has a type that is not the event's (valid) activityType"),
        (good[:6], "does not have exactly the fields v, type, customerId, event"),
        (good + ["extra", "x"], "does not have exactly the fields v, type, customerId, event"),
        (good[:6] + ["event", "{not json"], "has an event that is not a JSON object"),
        (good[:4] + ["customerId", "x1"] + good[6:], "has a customerId that is not a customer id"),
        (good[:4] + ["customerId", str(cid + 1)] + good[6:], "has an event whose customerId is not the entry's"),
    ]
    for fields, text in cases:
        with planted(stack, fkey):
            stack.redis("XADD", fkey, "*", *fields)
            expect_violation(stack, "org acme: customer", text, "change feed %s entry" % fkey)
        expect_clean(stack)
    with planted(stack, fkey):
        stack.redis("XADD", fkey, "*", *(["v", "4"] + good[2:]))
        expect_violation(stack, 'org acme: customer %d: program "AcmeShop": change feed' % cid,
                         "has a version v that is not 1, 2 or 3")
    expect_clean(stack)
    with planted(stack, fkey):
        stack.redis("DEL", fkey)
        stack.redis("SET", fkey, "not a stream")
        expect_violation(stack, "org acme: change feed %s is not a stream" % fkey)
    expect_clean(stack)


# ---------------------------------------------------------------- placement (key layout 2)

def elsewhere(p):
    """A partition other than p (the next one)."""
    return (p + 1) % keys.LAYOUT_PARTS


def test_check_reports_customer_keys_outside_their_customers_partition(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    wrong = elsewhere(keys.part_of_cid(cid))
    for name, right in (("CUST", ckey(cid)), ("HIST", hkey(cid))):
        moved = keys.build(name, keys.tag(wrong), "acme", cid)
        with planted(stack, right, moved):
            # RENAME's two keys are in two slots: on a cluster, a copy and a delete instead
            stack.redis("RESTORE", moved, 0, stack.redis("DUMP", right))
            stack.redis("DEL", right)
            expect_violation(stack, "org acme: customer %d: key %s is in partition %d, not in "
                             "its customer id's partition %d: expected %s"
                             % (cid, moved, wrong, keys.part_of_cid(cid), right))
        expect_clean(stack)
    # a lock left in another partition (partnerd's begin.lua never sees it)
    lock = keys.build("LOCK", keys.tag(wrong), "acme", cid)
    with planted(stack, lock):
        stack.redis("SET", lock, "0" * 32, "PX", 60000)
        expect_violation(stack, "org acme: customer %d: key %s is in partition %d" % (cid, lock, wrong),
                         "expected %s" % keys.lock("acme", cid))
    expect_clean(stack)


def test_check_reads_the_lock_field_and_reports_a_bad_one_or_a_layout_2_lock_key(stack):
    """Key layout 3: a customer's lock is its hash's field `lock`, TOKEN:EXPIRY (src/lua/lock.lua).
    A taken or expired one is fine; one that does not read is reported, and so is a lock key
    of key layout 2 (a partnerd of an older release writing to this data)."""
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    with planted(stack, ckey(cid)):
        take_lock(stack, "acme", cid)                    # taken, 30 s left
        expect_clean(stack)
        take_lock(stack, "acme", cid, for_ms=-60000)     # left by a request that died
        expect_clean(stack)
        stack.redis("HSET", ckey(cid), "lock", "not-a-lock")
        expect_violation(stack, "org acme: customer %d: lock is \"not-a-lock\"" % cid,
                         "not 32 hex digits, ':' and an expiry in ms")
    expect_clean(stack)
    lock = keys.lock("acme", cid)
    with planted(stack, lock):
        stack.redis("SET", lock, "0" * 32, "PX", 60000)
        expect_violation(stack, "org acme: %s is a customer lock of key layout 2" % lock,
                         "a partnerd of an older release writes to this data")
    expect_clean(stack)


def test_check_reports_idempotency_and_rate_keys_outside_their_digests_partition(stack):
    hexd = hashlib.md5(stack.uid().encode()).hexdigest()      # 32 hex digits, like partnerd's
    home = keys.bucket_of(hexd)
    wrong = elsewhere(home)
    idem = keys.build("IDEM", keys.tag(wrong), "acme", hexd)
    rate = keys.build("RATE", keys.tag(wrong), "acme", hexd) + ":29000000"
    with planted(stack, idem):
        stack.redis("HSET", idem, "s", "0")
        expect_violation(stack, "org acme: key %s is in partition %d, not in its digest's "
                         "partition %d: expected %s" % (idem, wrong, home, keys.idem("acme", hexd)))
    expect_clean(stack)
    with planted(stack, rate):
        stack.redis("SET", rate, "1", "EX", 120)
        expect_violation(stack, "org acme: key %s is in partition %d" % (rate, wrong),
                         "expected %s:29000000" % keys.rate("acme", hexd))
    expect_clean(stack)


def test_check_reports_index_and_membership_id_entries_outside_their_bucket(stack):
    mid = stack.uid()
    c = linked(stack, item("AcmeShop", mid))
    cid, pid = c["id"], stack.pid("AcmeShop")
    mobile = stack.redis("HGET", ckey(cid), "mobile").decode()
    for right, field, name, arg in ((keys.ix("acme", "mobile", mobile), mobile, "IX", "mobile"),
                                    (keys.mid("acme", pid, mid), mid, "MID", pid)):
        home = keys.bucket_of(field)
        moved = keys.build(name, keys.tag(elsewhere(home)), "acme", arg)
        with planted(stack, right, moved):
            stack.redis("HDEL", right, field)
            stack.redis("HSET", moved, field, cid)
            viol = expect_violation(stack, "org acme: %s: entry \"%s\" is in bucket %d, not in "
                                    "its value's bucket %d: expected %s"
                                    % (moved, field, elsewhere(home), home, right))
            # the customer's own line names the bucket partnerd looks in
            assert any("is not indexed to it in %s" % right in l for l in about(viol, cid)), viol
        expect_clean(stack)


def test_check_names_the_bucket_of_an_index_entry_no_customer_holds(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    email = "nobody-%s@example.com" % stack.uid()
    bucket = keys.ix("acme", "email", email)
    with planted(stack, bucket):
        stack.redis("HSET", bucket, email, cid)
        expect_violation(stack, "org acme: %s maps \"%s\" to customer %d, which does not hold it"
                         % (bucket, email, cid))
    expect_clean(stack)


def test_check_reports_change_feed_entries_outside_their_customers_partition(stack):
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    ev = history(stack, cid)[0]
    wrong = elsewhere(keys.part_of_cid(cid))
    other = keys.build("FEED", keys.tag(wrong), "acme")
    with planted(stack, other):
        stack.redis("XADD", other, "*", "v", "1", "type", ev["activityType"],
                    "customerId", str(cid), "event", enc(ev))
        expect_violation(stack, "org acme: customer %d: change feed %s entry" % (cid, other),
                         "is in partition %d, not in its customer's partition %d: expected %s"
                         % (wrong, keys.part_of_cid(cid), keys.feed_of("acme", cid)))
    expect_clean(stack)


def test_check_reports_each_misplaced_entry_of_a_big_bucket_once(stack):
    # more entries than a listpack holds: HSCAN walks the bucket in steps
    bucket = keys.build("IX", keys.tag(0), "acme", "externalId")
    values = [v for v in ("X-%s-%d" % (stack.uid(), i) for i in range(400)) if keys.bucket_of(v) != 0]
    with planted(stack, bucket):
        args = []
        for v in values:
            args += [v, "1001"]
        stack.redis("HSET", bucket, *args)
        viol = expect_violation(stack, "org acme: %s: entry" % bucket)
        for v in values:
            hits = [l for l in viol if "%s: entry \"%s\" is in bucket 0," % (bucket, v) in l]
            assert len(hits) == 1, (v, hits)
        assert len([l for l in viol if "%s: entry" % bucket in l]) == len(values)
def test_check_accepts_feed_entries_of_format_3_and_reports_one_that_breaks_it(stack):
    # format 3 (docs/CHANGE-FEED.md): the activity's values as fields, always the same
    # fields in the same order; partnerd writes it
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    fkey = keys.feed_of("acme", cid)
    expect_clean(stack)
    (_, raw), = stack.redis("XREVRANGE", fkey, "+", "-", "COUNT", 1)
    f = [x.decode() for x in raw]
    assert f[0::2] == actrec.FEED3 and f[1] == "3", f
    ver = int(stack.redis("HGET", ckey(cid), "v"))

    def at(name, value, g=None):
        g = list(g or f)
        g[2 * actrec.FEED3.index(name) + 1] = value
        return g
    with planted(stack, fkey):
        stack.redis("XADD", fkey, "*", *at("customerVersion", str(ver + 1)))
        stack.redis("XADD", fkey, "*", *at("afterEndDate", "-62135596800000",
                                           at("beforeMembershipId", "m0", at("customerVersion", str(ver + 2)))))
        expect_clean(stack)
    swapped = f[:10] + f[12:14] + f[10:12] + f[14:]
    cases = [
        (swapped, "does not have exactly the fields of format 3, in their order"),
        (f[:-2], "does not have exactly the fields of format 3, in their order"),
        (f + ["event", "{}"], "does not have exactly the fields of format 3, in their order"),
        (at("type", "LINKED"), "has no valid type"),
        (at("date", ""), "has a date that is not epoch milliseconds in range"),
        (at("date", "1e12"), "has a date that is not epoch milliseconds in range"),
        (at("date", "253402300800000"), "has a date that is not epoch milliseconds in range"),
        (at("program", ""), "has an empty program"),
        (at("afterStartDate", "x"), "has a before or after date that is not epoch milliseconds in range"),
        (at("beforeEndDate", "1.5"), "has a before or after date that is not epoch milliseconds in range"),
        (at("customerId", "x1"), "has a customerId that is not a customer id"),
        (at("customerVersion", "0"), "has a customerVersion that is not a positive integer"),
        (at("seq", "-1"), "has a seq that is not an integer 0 or more"),
    ]
    for fields, text in cases:
        with planted(stack, fkey):
            stack.redis("XADD", fkey, "*", *fields)
            expect_violation(stack, "org acme: customer", "change feed %s entry" % fkey, text)
        expect_clean(stack)
    # and the order of one customer's entries, as for format 2
    with planted(stack, fkey):
        stack.redis("XADD", fkey, "*", *at("customerVersion", str(ver - 1) if ver > 1 else "1"))
        expect_violation(stack, "org acme: customer %d: change feed %s entry" % (cid, fkey),
                         "have increasing customerVersion, then seq")


def test_check_reports_history_records_that_do_not_read(stack):
    # a history entry is a compact record (docs/CHANGE-FEED.md "History entries") or the
    # JSON object of an older partnerd: check reads both, and says what is wrong with a record
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    newest = stack.redis("LINDEX", hkey(cid), 0)
    assert actrec.is_record(newest), newest
    a = actrec.load(newest, cid)
    f = actrec.record_fields(newest)
    good = actrec.record("LINK", int(f[1]), "AcmeShop", "r-1", after=tuple(f[10:15]))
    assert actrec.load(good, cid) == dict(a, requestId="r-1")
    with planted(stack, hkey(cid)):
        stack.redis("LSET", hkey(cid), 0, good)
        stack.redis("RPUSH", hkey(cid), enc(dict(a, requestId="old-json")))   # an older partnerd's
        expect_clean(stack)
    cases = [
        (good[:-1], "is a truncated activity record"),
        (good + b"x", "is an activity record with bytes after its fields"),
        (b"\x01\x01X" + good[3:], "is an activity record of no known type"),
        (actrec.record("LINK", "x", "AcmeShop", "r-1", after=tuple(f[10:15])),
         "is an activity record with a date that is not epoch milliseconds in range"),
        (actrec.record("LINK", int(f[1]), "", "r-1", after=tuple(f[10:15])),
         "is an activity record without its date or program"),
        (actrec.record("LINK", int(f[1]), "NoSuchProgram", "r-1", after=tuple(f[10:15])),
         "names no program of the org"),
    ]
    for bad, text in cases:
        with planted(stack, hkey(cid)):
            stack.redis("RPUSH", hkey(cid), bad)        # the oldest entry: matching unaffected
            expect_violation(stack, "org acme: customer %d" % cid, "history entry 1", text)
        expect_clean(stack)


def test_check_accepts_feed_entries_of_format_1_and_2_and_reports_a_malformed_version(stack):
    # format 2 (customerVersion, seq: docs/CHANGE-FEED.md) and format 1, which partnerctl
    # migrate carries over from before, are both valid, side by side
    c = linked(stack, item("AcmeShop", stack.uid()))
    cid = c["id"]
    fkey = keys.feed_of("acme", cid)
    expect_clean(stack)
    ev = enc(history(stack, cid)[0])
    v1 = ["v", "1", "type", "LINK", "customerId", str(cid), "event", ev]
    ver = int(stack.redis("HGET", ckey(cid), "v"))            # the customer's version now
    v2 = ["v", "2", "type", "LINK", "customerId", str(cid), "customerVersion", str(ver + 5), "seq", "0", "event", ev]
    with planted(stack, fkey):
        stack.redis("XADD", fkey, "*", *v1)
        stack.redis("XADD", fkey, "*", *v2)
        expect_clean(stack)
    for cver in ("0", "-1", "01", "x", "", "1.5", "99999999999999999999"):
        with planted(stack, fkey):
            stack.redis("XADD", fkey, "*", *(v2[:7] + [cver] + v2[8:]))
            expect_violation(stack, 'org acme: customer %d: program "AcmeShop": change feed %s entry' % (cid, fkey),
                             "has a customerVersion that is not a positive integer")
    for seq in ("-1", "01", "a", ""):
        with planted(stack, fkey):
            stack.redis("XADD", fkey, "*", *(v2[:9] + [seq] + v2[10:]))
            expect_violation(stack, 'org acme: customer %d: program "AcmeShop": change feed %s entry' % (cid, fkey),
                             "has a seq that is not an integer 0 or more")
    # one customer's entries of format 2 must increase in (customerVersion, seq), entry-id order
    cases = [([(ver, 0)], (ver, 0), (ver, 0)),                  # (entries planted after the link's, a
             ([(ver + 2, 0), (ver + 1, 5)], (ver + 1, 5), (ver + 2, 0)),   # violating entry, the one before it)
             ([(ver, 1), (ver, 2), (ver + 1, 0)], None, None)]
    for plant, bad, before in cases:
        with planted(stack, fkey):
            for cver, seq in plant:
                stack.redis("XADD", fkey, "*", *(v2[:7] + [str(cver), "seq", str(seq)] + v2[10:]))
            if bad:
                expect_violation(stack, "org acme: customer %d: change feed %s entry" % (cid, fkey),
                                 "(customerVersion %d, seq %d) follows entry" % bad,
                                 "(customerVersion %d, seq %d): a customer's entries must" % before,
                                 "have increasing customerVersion, then seq")
            else:
                expect_clean(stack)
    with planted(stack, fkey):
        stack.redis("XADD", fkey, "*", *(v2[:6] + v2[8:]))        # format 2 without customerVersion
        expect_violation(stack, "change feed %s entry" % fkey,
                         "does not have exactly the fields v, type, customerId, customerVersion, seq, event")
    expect_clean(stack)
