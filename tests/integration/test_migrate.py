"""partnerctl migrate (issue 14): the data of key layout 1 moved to key layout 2, in place.

The layout-1 data is written by the tests themselves, with raw Redis commands whose key
names come from src/keys_v1.h (read with keys.parse_header, as keys.py reads src/keys.h):
customers with memberships, identifier and membership-id indexes, histories, a change
feed whose entries interleave the customers, Idempotency-Keys and rate windows with
their expiry, in two orgs. What migrate must make of it is computed here from the same
dump (expect_v2: every key where layout 2 puts it, through keys.py's builders) and
compared key by key, value by value, with what Redis holds afterwards.

The tests share one stack of their own (org reference data from ORGS, no fixture
customers); each starts from a flushed Redis with partnerd stopped, as the upgrade
procedure (docs/OPERATIONS.md) has it, and starts partnerd again when it needs it.
"""

import json
import os
import random
import re
import tempfile
import time

import keys
from harness import HEALTH, LINK, Stack, partnerctl_bin, srcdir, encode_membership
from helpers import assert_codes, item, killed_while_paused, run_on_a_tty
from support_model import check_passes, query, upd

# ---------------------------------------------------------------- layout 1 (src/keys_v1.h)

with open(os.path.join(srcdir(), "src", "keys_v1.h"), encoding="utf-8") as _f:
    V1 = dict((k.name[len("V1_"):], k) for k in keys.parse_header(_f.read(), "src/keys_v1.h"))
_CONV = re.compile(r"%(?:lld|d|s)")


def v1(name, *values):
    """Layout-1 key NAME of src/keys_v1.h with its conversions filled in order."""
    parts = _CONV.split(V1[name].fmt)
    assert len(parts) == len(values) + 1, (name, values)
    return parts[0] + "".join(str(v) + lit for v, lit in zip(values, parts[1:]))


def _v1_regex(k):
    parts = _CONV.split(k.fmt)
    rx = re.escape(parts[0])
    for (arg, _), lit in zip(k.args, parts[1:]):
        rx += "(?P<%s>[^{}:]+)" % arg.lower() + re.escape(lit)
    if k.suffix:
        rx += ":(?P<minute>[0-9]+)"
    return re.compile(rx)


_V1_RX = [(n, _v1_regex(k)) for n, k in V1.items() if not k.field]


def v1_parse(key):
    """(NAME, {arg: value}) of a layout-1 key name, or None."""
    for n, rx in _V1_RX:
        m = rx.fullmatch(key)
        if m:
            return n, m.groupdict()
    return None


# ---------------------------------------------------------------- the stack

ORGS = {"orgs": [
    {"id": org, "defaultCountryCode": "91", "nationalNumberLength": 10,
     "credentials": [{"username": org + "_api", "password": org + "_secret"}],
     "programs": [
         {"name": "Tiered", "type": "EXTERNAL", "tiers": ["Bronze", "Silver", "Gold"]},
         {"name": "Supp", "type": "SUPPLEMENTARY", "tiers": [],
          "membershipCycle": {"type": "MONTHS", "value": 12}}],
     "customers": []} for org in ("mig", "mig2")]}
AUTH = ("mig_api", "mig_secret")
_own = None
_orgs_path = None


def _stack():
    global _own, _orgs_path
    if _own is None:
        fd, _orgs_path = tempfile.mkstemp(prefix="partnerd-migrate-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(ORGS, f)
        _own = Stack(fixtures=_orgs_path)
        _own.start()
    return _own


def _partnerd_running(stack):
    return any(n == "partnerd-0" for n, _ in stack.procs)


def fresh_layout1(stack):
    """partnerd stopped, Redis flushed, the orgs loaded, then made layout 1 (pp:layout
    deleted: the org reference data has the same keys in both layouts)."""
    if _partnerd_running(stack):
        stack.stop_proc("partnerd-0")
    stack.redis("FLUSHALL")
    stack.load(_orgs_path)
    stack.redis("DEL", keys.LAYOUT)


def serve(stack):
    """partnerd started again (upgraded: the same binary) and healthy."""
    if not _partnerd_running(stack):
        stack._start_partnerd(0)
    deadline = time.monotonic() + 10
    while True:
        st, _, body = stack.get(HEALTH, auth=None)
        if st == 200:
            return
        assert time.monotonic() < deadline, "partnerd not healthy after migrate: %r\n%s" % (
            body, stack.logs())
        time.sleep(0.05)


def migrate(stack, *args, timeout=600):
    return stack.ctl("migrate", *args, timeout=timeout)


# ---------------------------------------------------------------- layout-1 data

T0 = 1764800000000          # 2025-12-03T22:13:20Z: every stored time is from here


def iso(ms):
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def _pids(stack, org):
    return dict((p, json.loads(stack.redis("HGET", keys.progs(org), p))["pid"])
                for p in ("Tiered", "Supp"))


def write_layout1(stack, org, cids, feed_base=T0):
    """Layout-1 customers cids of org: identifiers (some without email), a Tiered
    membership for even ids, a Supp one for multiples of 3, their membership-id index
    entries, a LINK activity per membership in the history (newest first) and in the
    org's feed, whose entries interleave the customers (each customer's in its order)
    and carry explicit ids from feed_base on (the same data gives the same ids); then a
    few Idempotency-Keys and a rate window, with their expiry. Deterministic."""
    pids = _pids(stack, org)
    cmds, events = [], []
    for cid in cids:
        mobile = "91%010d" % (6000000000 + cid)
        h = ["id", cid, "mobile", mobile, "externalId", "X-%s-%d" % (org, cid)]
        ix = [("mobile", mobile), ("externalId", "X-%s-%d" % (org, cid))]
        if cid % 5:
            email = "c%d@%s.example" % (cid, org)
            h += ["email", email]
            ix.append(("email", email))
        for kind, val in ix:
            cmds.append(("HSET", v1("IX", org, kind), val, cid))
        acts = []
        for prog, want in (("Tiered", cid % 2 == 0), ("Supp", cid % 3 == 0)):
            if not want:
                continue
            lk = T0 + cid
            m = {"mid": "%s-%d" % (prog[0], cid), "tier": "Silver" if prog == "Tiered" else None,
                 "exp": None, "start": lk, "end": lk + 365 * 86400000 if prog == "Supp" else None,
                 "lk": lk, "up": lk, "rl": None}
            h += [keys.membership_field(pids[prog]), encode_membership(m)]
            cmds.append(("HSET", v1("MID", org, pids[prog]), m["mid"], cid))
            acts.append(json.dumps({
                "activityType": "LINK", "activityDate": iso(lk), "partnerProgramName": prog,
                "updateType": None, "before": None,
                "after": {"partnerMembershipId": m["mid"], "partnerTierName": m["tier"],
                          "partnerTierExpiryDate": None, "membershipStartDate": iso(m["start"]),
                          "membershipEndDate": iso(m["end"])},
                "requestId": "mig-%d" % cid, "customerId": cid}, separators=(",", ":")))
        h += ["v", len(acts), "w", "%032x" % cid]
        cmds.append(("HSET", v1("CUST", org, cid)) + tuple(h))
        if acts:
            cmds.append(("LPUSH", v1("HIST", org, cid)) + tuple(acts))
        for k, a in enumerate(acts):
            events.append(((k, random.Random(cid * 7919 + k).random()), cid, a))
    events.sort(key=lambda e: e[0])
    for n, (_, cid, a) in enumerate(events):
        cmds.append(("XADD", v1("FEED", org), "%d-%d" % (feed_base + n // 3, n % 3), "v", "1",
                     "type", "LINK", "customerId", cid, "event", a))
    for n in range(3):
        hx = "%032x" % (0xabc0 + n * 977 + len(org))
        cmds.append(("HSET", v1("IDEM", org, hx), "f", "ff" * 16, "s", "done", "t", "00" * 16,
                     "st", "200", "b", '{"linkCustomers":[]}'))
        cmds.append(("PEXPIRE", v1("IDEM", org, hx), 86400000))
    rate = v1("RATE", org, "%032x" % 0x5eed) + ":29413333"
    cmds += [("SET", rate, "7"), ("EXPIRE", rate, 120)]
    stack.redis("PING")
    for i in range(0, len(cmds), 5000):
        for r in stack._redis.pipeline(cmds[i:i + 5000]):
            assert not isinstance(r, Exception), r
    return len(events)


# ---------------------------------------------------------------- dumps

def _text(v):
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else v


def dump(stack):
    """{key: (type, value, expires)} of the pp:* key space: a hash as a dict, a list or a
    stream as a list (a stream's entries as (id, fields)), a string as text; expires is
    whether the key has a TTL (a TTL's value changes while the test runs)."""
    ks, cursor = [], b"0"
    while True:
        cursor, batch = stack.redis("SCAN", cursor, "MATCH", keys.ALL, "COUNT", 5000)
        ks += [_text(k) for k in batch]
        if cursor in (b"0", "0"):
            break
    ks = sorted(set(ks))
    r = stack._redis
    types = [_text(t) for t in r.pipeline([("TYPE", k) for k in ks])]
    read = {"hash": ("HGETALL",), "list": ("LRANGE", 0, -1), "stream": ("XRANGE", "-", "+"),
            "string": ("GET",), "set": ("SMEMBERS",)}
    vals = r.pipeline([(read[t][0], k) + read[t][1:] for k, t in zip(ks, types)])
    ttls = r.pipeline([("PTTL", k) for k in ks])
    out = {}
    for k, t, v, ttl in zip(ks, types, vals, ttls):
        if t == "hash":
            v = dict((_text(v[i]), _text(v[i + 1])) for i in range(0, len(v), 2))
        elif t == "list":
            v = [_text(x) for x in v]
        elif t == "stream":
            v = [(_text(e[0]), tuple(_text(x) for x in e[1])) for e in v]
        elif t == "set":
            v = sorted(_text(x) for x in v)
        else:
            v = _text(v)
        out[k] = (t, v, ttl > 0)
    return out


def expect_v2(before):
    """What migrate makes of a layout-1 dump, key by key (keys.py's layout-2 builders)."""
    out = {}
    for k, (t, v, ttl) in before.items():
        p = v1_parse(k)
        name, a = p if p else (None, {})
        if name in ("CUST", "HIST"):
            out[getattr(keys, name.lower())(a["org"], a["cid"])] = (t, v, ttl)
        elif name in ("IX", "MID"):
            for f, val in v.items():
                nk = keys.ix(a["org"], a["kind"], f) if name == "IX" else keys.mid(a["org"], a["pid"], f)
                out.setdefault(nk, ("hash", {}, False))[1][f] = val
        elif name == "FEED":
            for e in v:
                cid = dict(zip(e[1][::2], e[1][1::2]))["customerId"]
                out.setdefault(keys.feed_of(a["org"], cid), ("stream", [], False))[1].append(e)
        elif name == "IDEM":
            out[keys.idem(a["org"], a["hex"])] = (t, v, ttl)
        elif name == "RATE":
            out[keys.rate(a["org"], a["hex"]) + ":" + a["minute"]] = (t, v, ttl)
        else:
            assert name in (None, "ORGS", "CREDS", "ORG", "PROGS", "PSEQ", "IMPORT"), k
            out[k] = (t, v, ttl)
    out[keys.LAYOUT] = ("string", keys.LAYOUT_VERSION, False)
    return out


def assert_dump(got, want):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, "missing keys %r ..., unexpected keys %r ..." % (
        missing[:5], extra[:5])
    bad = [k for k in want if got[k] != want[k]]
    assert not bad, "%d keys differ, e.g. %s:\n got  %r\n want %r" % (
        len(bad), bad[0], got[bad[0]], want[bad[0]])


SUMMARY = re.compile(r"(\d+) customer\(s\), (\d+) history\(ies\), (\d+) Idempotency-Key\(s\), "
                     r"(\d+) rate window\(s\) renamed; (\d+) identifier and (\d+) membership-id "
                     r"index entries into buckets; (\d+) feed entries into partitions "
                     r"\((\d+) of them copied by an earlier run\); ([0-9.]+) s")


def counts(out):
    m = SUMMARY.search(out)
    assert m, out
    return tuple(int(x) for x in m.groups()[:-1]) + (float(m.group(9)),)


# ---------------------------------------------------------------- tests

def test_migrate_moves_every_key_where_layout_2_puts_it_and_partnerd_serves_it():
    stack = _stack()
    fresh_layout1(stack)
    nfeed = write_layout1(stack, "mig", range(1, 301)) + write_layout1(stack, "mig2", range(1, 51))
    before = dump(stack)
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    assert "key layout %s recorded" % keys.LAYOUT_VERSION in out, out
    # customers, histories, idem, rate; ix, mid; feed, again
    n_hist = sum(1 for c in range(1, 301) if c % 2 == 0 or c % 3 == 0) + \
        sum(1 for c in range(1, 51) if c % 2 == 0 or c % 3 == 0)
    n_ix = sum(2 + (c % 5 != 0) for c in range(1, 301)) + sum(2 + (c % 5 != 0) for c in range(1, 51))
    got = counts(out)
    assert got[:8] == (350, n_hist, 6, 2, n_ix, nfeed, nfeed, 0), out
    after = dump(stack)
    assert_dump(after, expect_v2(before))
    assert not [k for k in after if v1_parse(k) and v1_parse(k)[0] not in
                ("ORGS", "CREDS", "ORG", "PROGS", "PSEQ", "IMPORT")]
    check_passes(stack)
    # partnerd serves the migrated customers: reads by an identifier, and an update
    serve(stack)
    st, _, body = stack.get(query("/v2/partnerProgram/customerPartnerPrograms",
                                  identifierName="mobile", identifierValue="6000000012"), auth=AUTH)
    assert st == 200 and body["customer"]["id"] == 12, body
    progs = dict((p["partnerProgramName"], p) for p in body["partnerPrograms"])
    assert progs["Tiered"]["partnerMembershipId"] == "T-12" and progs["Supp"]["partnerMembershipId"] == "S-12", body
    st, _, body = stack.get(query("/v2/partnerProgram/customerActivityHistory",
                                  identifierName="email", identifierValue="c12@mig.example"), auth=AUTH)
    assert st == 200 and body["total"] == 2, body
    last = stack.redis("XREVRANGE", keys.feed_of("mig", 12), "+", "-", "COUNT", 1)[0][0]
    st, _, body = stack.post("/v2/partnerProgram/customerPartnerProgramUpdate",
                             {"customersPartnerUpdates": [{"customer": {"externalId": "X-mig-12"},
                              "partnerProgramUpdates": [upd("Tiered", "UPGRADE", "Gold")]}]}, auth=AUTH)
    assert st == 200, body
    assert_codes([body["customersPartnerUpdates"][0]["partnerProgramUpdates"][0]["updateStatus"]], [200])
    new = stack.redis("XRANGE", keys.feed_of("mig", 12), "(" + _text(last), "+")
    # (format 3: the activity's values as fields, docs/CHANGE-FEED.md)
    assert len(new) == 1 and dict(zip(new[0][1][0::2], new[0][1][1::2]))[b"updateType"] == b"UPGRADE", new
    # a membership id held before the migration is still held (2101), found in its bucket
    body = stack.post(LINK, {"linkCustomers": [{"customer": {"id": 13},
                      "linkToPartnerPrograms": [item("Tiered", "T-12", "Bronze")]}]}, auth=AUTH)[2]
    assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [2101])
    check_passes(stack)
    # a second run: nothing to do, nothing changed
    _, digest = stack.digest()
    rc, out, err = migrate(stack)
    assert rc == 0 and "nothing to do" in out, out + err
    assert stack.digest()[1] == digest


def test_migrate_refuses_while_a_layout_1_lock_exists_and_on_an_unknown_layout():
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 21))
    stack.redis("SET", v1("LOCK", "mig", 7), "ab" * 16, "PX", 60000)
    _, digest = stack.digest()
    rc, out, err = migrate(stack)
    assert rc == 1, out + err
    assert "a partnerd is serving" in err and v1("LOCK", "mig", 7) in err and "nothing was changed" in err, err
    assert stack.digest()[1] == digest
    stack.redis("SET", keys.LAYOUT, "7")
    _, digest = stack.digest()
    rc, out, err = migrate(stack)
    assert rc == 1 and 'key layout "7"' in err and "nothing was changed" in err, out + err
    assert stack.digest()[1] == digest
    stack.redis("DEL", keys.LAYOUT, v1("LOCK", "mig", 7))
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    # an empty Redis: nothing to do, and no layout recorded (partnerctl load does that)
    stack.redis("FLUSHALL")
    rc, out, err = migrate(stack)
    assert rc == 0 and "nothing to do" in out, out + err
    assert stack.redis("DBSIZE") == 0


def test_migrate_brings_layout_2_to_3_once_no_layout_2_lock_is_left():
    """Layout 3 keeps a customer's lock in its hash (src/lua/lock.lua): from layout 2 no data
    moves, but a layout-2 lock key (a partnerd of the older release holding a customer)
    refuses the step, naming it, and changes nothing; once it is gone, layout 3 is recorded
    and partnerd serves the data."""
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 21))
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    stack.redis("SET", keys.LAYOUT, "2")        # layout 2 named every key as layout 3 does
    lock = keys.lock("mig", 7)
    stack.redis("SET", lock, "ab" * 16, "PX", 60000)
    _, digest = stack.digest()
    rc, out, err = migrate(stack)
    assert rc == 1, out + err
    assert "key layout 2" in err and lock in err and "stop every such partnerd" in err and \
        "nothing was changed" in err, err
    assert stack.digest()[1] == digest
    stack.redis("DEL", lock)
    _, digest = stack.digest()
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    assert "key layout %s recorded (from key layout 2" % keys.LAYOUT_VERSION in out, out
    assert stack.redis("GET", keys.LAYOUT) == keys.LAYOUT_VERSION.encode()
    after = stack.digest()[1]
    assert set(k for k in set(after) | set(digest) if after.get(k) != digest.get(k)) == {keys.LAYOUT}
    check_passes(stack)
    rc, out, err = migrate(stack)
    assert rc == 0 and "nothing to do" in out, out + err
    serve(stack)
    st, _, body = stack.post("/v2/partnerProgram/customerPartnerProgramUpdate",
                             {"customersPartnerUpdates": [{"customer": {"id": 12},
                              "partnerProgramUpdates": [upd("Tiered", "UPGRADE", "Gold")]}]}, auth=AUTH)
    assert st == 200, body
    assert_codes([body["customersPartnerUpdates"][0]["partnerProgramUpdates"][0]["updateStatus"]], [200])
    assert stack.redis("HGET", keys.cust("mig", 12), "lock") is None, "the update left its lock"
    check_passes(stack)


def test_migrate_leaves_a_feed_entry_without_customer_and_finishes_once_it_is_gone():
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 41))
    bad = stack.redis("XADD", v1("FEED", "mig"), "*", "v", "1", "type", "LINK", "event", "{}")
    before = dump(stack)
    rc, out, err = migrate(stack, "--batch", "7")
    assert rc == 1 and "not finished" in out, out + err
    assert _text(bad) in err and "no customer id" in err and "run migrate again" in err, err
    assert stack.redis("EXISTS", keys.LAYOUT) == 0
    assert stack.redis("XRANGE", v1("FEED", "mig"), "-", "+") == [[bad, [b"v", b"1", b"type", b"LINK",
                                                                          b"event", b"{}"]]]
    stack.redis("XDEL", v1("FEED", "mig"), bad)
    del before[v1("FEED", "mig")][1][-1]
    rc, out, err = migrate(stack, "--batch", "7")
    assert rc == 0, out + err
    assert_dump(dump(stack), expect_v2(before))


def test_migrate_finishes_with_values_found_in_both_places():
    # migrate copies and deletes a batch in one MULTI/EXEC, so its own crash never leaves a
    # value in two places; a value written there by hand (or by a tool that copies first)
    # is accepted: feed entries in their partitions and still in the old feed, index
    # entries in their buckets and still in the old index; and a customer hash renamed
    # with its history not.
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 61))
    before = dump(stack)
    copied = stack.redis("XRANGE", v1("FEED", "mig"), "-", "+", "COUNT", 10)
    for eid, fields in copied:
        cid = dict(zip(fields[::2], fields[1::2]))[b"customerId"].decode()
        stack.redis("XADD", keys.feed_of("mig", cid), eid, *fields)
    old = v1("IX", "mig", "mobile")
    for c in range(1, 6):
        mobile = "91%010d" % (6000000000 + c)
        stack.redis("HSET", keys.ix("mig", "mobile", mobile), mobile, stack.redis("HGET", old, mobile))
    stack.redis("RENAME", v1("CUST", "mig", 6), keys.cust("mig", 6))
    rc, out, err = migrate(stack, "--batch", "4")
    assert rc == 0, out + err
    got = counts(out)
    assert got[0] == 59 and got[7] == 10, out          # 59 customers renamed, 10 entries found copied
    assert_dump(dump(stack), expect_v2(before))


def test_migrate_leaves_a_key_whose_layout_2_name_is_taken_and_says_so():
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 31))
    before = dump(stack)
    stack.redis("HSET", keys.cust("mig", 5), "id", "5", "planted", "1")
    rc, out, err = migrate(stack)
    assert rc == 1 and "not finished" in out, out + err
    assert "%s: not moved: its layout-2 name %s exists already" % (v1("CUST", "mig", 5), keys.cust("mig", 5)) in err, err
    assert "1 problem(s)" in err and "run migrate again" in err, err
    assert stack.redis("EXISTS", keys.LAYOUT) == 0
    assert stack.redis("HGET", v1("CUST", "mig", 5), "mobile") is not None
    assert stack.redis("EXISTS", v1("CUST", "mig", 4), v1("IX", "mig", "email"), v1("FEED", "mig")) == 0
    stack.redis("DEL", keys.cust("mig", 5))
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    assert_dump(dump(stack), expect_v2(before))


def _killed_mid_way(stack, cond, what):
    """Runs migrate (small batches) until cond() holds, holds every write (CLIENT PAUSE
    WRITE: migrate's next write waits), SIGKILLs it there and lets writes go again."""
    argv = [partnerctl_bin(), "--redis", stack.redis_url, "migrate", "--batch", "100"]
    killed_while_paused(argv, cond, what, lambda: stack.redis("CLIENT", "PAUSE", 10000, "WRITE"),
                        lambda: stack.redis("CLIENT", "UNPAUSE"), timeout=60)


def test_killed_migrate_resumes_to_the_state_of_a_full_run():
    stack = _stack()
    fresh_layout1(stack)
    n = 12000
    nfeed = write_layout1(stack, "mig", range(1, n + 1))
    before = dump(stack)
    want = expect_v2(before)
    sample = [keys.cust("mig", c) for c in range(1, n + 1, n // 50)]

    def customers_half_moved():
        moved = sum(stack._redis.pipeline([("EXISTS", k) for k in sample]))
        return 5 <= moved <= len(sample) - 5

    ix = v1("IX", "mig", "mobile")

    def index_half_moved():
        return 0 < stack.redis("HLEN", ix) < n * 3 // 4

    feed = v1("FEED", "mig")

    def feed_half_moved():
        return 0 < stack.redis("XLEN", feed) < nfeed * 3 // 4

    stack.redis("PING")
    for cond, what in ((customers_half_moved, "in the customer keys"),
                       (index_half_moved, "in the indexes"), (feed_half_moved, "in the feed")):
        _killed_mid_way(stack, cond, what)
        assert stack.redis("EXISTS", keys.LAYOUT) == 0, "layout 2 recorded by a killed run"
    rc, out, err = migrate(stack)
    assert rc == 0, out + err
    print("    # resumed run after 3 kills: %r" % (counts(out),))
    assert_dump(dump(stack), want)
    check_passes(stack)


def test_migrate_progress_bar_only_on_a_terminal():
    stack = _stack()
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 501))
    p, tty = run_on_a_tty([partnerctl_bin(), "--redis", stack.redis_url, "migrate", "--batch", "50"],
                          timeout=120)
    assert p.returncode == 0, p.stdout
    assert b"\r" in tty and b"migrate: keys" in tty and b"migrate: feeds" in tty and b"100%" in tty, tty
    # and not on a pipe
    fresh_layout1(stack)
    write_layout1(stack, "mig", range(1, 51))
    rc, out, err = migrate(stack)
    assert rc == 0 and "\r" not in err and "\r" not in out, out + err


def test_migrate_usage_and_help():
    stack = _stack()
    rc, out, err = stack.ctl("migrate", "--batch", "0")
    assert rc == 2 and "--batch must be from 1" in err, out + err
    rc, out, err = stack.ctl("migrate", "extra")
    assert rc == 2 and "usage:" in err, out + err
    rc, out, err = stack.ctl("migrate", "--help")
    assert rc == 0 and "migrate [--batch N]" in out, out + err
    rc, out, err = stack.ctl("--help")
    assert rc == 0 and "migrate" in out, out + err
