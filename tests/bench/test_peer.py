"""The equal-work peer of scripts/bench (bench/peer/: nginx + Lua) stores what partnerd stores.

Not part of `make check` (the peer needs Debian's libnginx-mod-http-lua, lua-nginx-redis and
lua-cjson, which only scripts/bench installs): run it by hand after building, e.g.
    scripts/install-deps libnginx-mod-http-lua lua-nginx-redis lua-cjson
    PARTNERD_BIN=build/src/partnerd PARTNERCTL_BIN=build/src/partnerctl python3 tests/bench/test_peer.py
It prints PASS/FAIL per test and, last, `N passed, M failed` (exit 1 when one failed).
A real stack (redis-server, partnerd, nginx of tests/integration/harness.py) and the peer's
nginx on the same Redis: two fixture customers get the same link through partnerd, then the
same update requests, one through partnerd and one through the peer; the answers (codes,
messages, shape), the stored membership values, the history and feed entries and the version
bumps must agree, but for what differs by nature (customer, membership id, times, request id).
The same for links and delinks (SPEC 4.1 and 4.3): two fresh customers get the same link and
delink requests, through partnerd and through the peer; the membership-id index entries too.
"""

import json
import os
import signal
import subprocess
import sys
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "bench"))
import activity  # noqa: E402  (the stored forms of an activity, read back as its JSON)
import harness  # noqa: E402
import keys  # noqa: E402
from harness import ACME, Stack, free_port  # noqa: E402
from helpers import FUTURE, by_mobile, item, link1  # noqa: E402

import bench  # noqa: E402  (write_peer_conf)

UPDATE = "/v2/partnerProgram/customerPartnerProgramUpdate"
LATER = "2031-06-30T10:00:00.250Z"


class Peer:
    def __init__(self, stack):
        self.stack = stack
        self.port = free_port()
        path = bench.write_peer_conf(stack.dir, self.port, stack.redis_port, [(ACME[0], ACME[1], "acme")])
        log = open(os.path.join(stack.dir, "peer-nginx.log"), "ab")
        self.p = subprocess.Popen(["nginx", "-c", path, "-p", stack.dir + "/", "-e",
                                   os.path.join(stack.dir, "peer-nginx-error.log"), "-g", "daemon off;"],
                                  stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        for _ in range(200):
            try:
                if self.post_raw("GET", "/v2/partnerProgram/health")[0] == 200:
                    return
            except OSError:
                pass
            assert self.p.poll() is None, self.errlog()
            time.sleep(0.05)
        raise AssertionError("the peer's nginx did not answer: " + self.errlog())

    def errlog(self):
        try:
            with open(os.path.join(self.stack.dir, "peer-nginx-error.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def post_raw(self, method, path, body=None, auth=ACME):
        import base64
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
        try:
            c.request(method, path, body=None if body is None else json.dumps(body).encode(), headers=h)
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGQUIT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


def pd_update(stack, entries):
    st, _, body = stack.post(UPDATE, {"customersPartnerUpdates": entries})
    assert st == 200, body
    return body


def peer_update(peer, entries):
    st, _, body = peer.post_raw("POST", UPDATE, {"customersPartnerUpdates": entries})
    assert st == 200, (body, peer.errlog())
    return json.loads(body)


def linked_pair(stack):
    """Two fixture customers with the same AcmeAir Silver membership (through partnerd)."""
    a, b = stack.customers(2)
    for c in (a, b):
        _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Silver", FUTURE))
        assert [s["code"] for s in st] == [200], st
    return a, b


def ident(c, how):
    return {"mobile": {"mobile": c["mobile"][2:]}, "id": {"id": c["id"]}, "email": {"email": c["email"]},
            "all": {"id": c["id"], "mobile": c["mobile"], "externalId": c["externalId"]}}[how]


def strip_customer(resp):
    for e in resp["customersPartnerUpdates"]:
        e["customer"] = e["customer"]["status"]
    return resp


def state(stack, c):
    r = stack.redis
    ck, hk = keys.cust("acme", c["id"]), keys.hist("acme", c["id"])
    pid = stack.pid("AcmeAir")
    m = harness.decode_membership(r("HGET", ck, keys.membership_field(pid)))
    v = int(r("HGET", ck, "v"))
    hist = [activity.load(x, c["id"]) for x in r("LRANGE", hk, 0, -1)]
    feed = [dict(zip(f[0::2], f[1::2])) for _, f in r("XRANGE", keys.feed_of("acme", c["id"]), "-", "+")]
    feed = [{k.decode(): x.decode() for k, x in f.items()} for f in feed if f[b"customerId"] == str(c["id"]).encode()]
    # each entry as its format's common part and its activity (format 3: from its fields,
    # formats 1 and 2: its event JSON; docs/CHANGE-FEED.md)
    feed = [dict({k: f[k] for k in ("v", "type", "customerId", "customerVersion", "seq") if k in f},
                 event=activity.from_feed(f)) for f in feed]
    return m, v, hist, feed


def neutral_event(ev, c, m):
    ev = json.loads(json.dumps(ev))
    assert ev["customerId"] == c["id"]
    for side in ("before", "after"):
        if ev[side]:
            assert ev[side]["partnerMembershipId"] == m["mid"]
            ev[side]["partnerMembershipId"] = "MID"
            ev[side]["membershipStartDate"] = "START"
    for k in ("activityDate", "requestId", "customerId"):
        ev[k] = k
    return ev


def neutral_record(raw, m):
    """A history record's 15 fields (bytes), but for what differs by nature: the date, the
    request id, the membership id and start date of before and after."""
    f = activity.record_fields(raw)
    for k in (1, 4):
        f[k] = b"X"
    for side in (5, 10):
        if f[side]:
            assert f[side] == m["mid"].encode(), (f, m)
            f[side], f[side + 3] = b"MID", b"START"
    return f


def test_the_same_updates_store_the_same(both):
    stack, peer = both
    a, b = linked_pair(stack)
    _, va0, ha0, fa0 = state(stack, a)
    _, vb0, hb0, fb0 = state(stack, b)
    steps = [
        [{"partnerProgramName": "AcmeAir", "updateType": "UPGRADE",
          "updateDetails": {"updatedTierName": "Gold", "updatedTierExpiryDate": LATER}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEW",
          "updateDetails": {"updatedTierName": "Gold", "updatedTierExpiryDate": "2032-01-01T00:00:00+05:30"}},
         {"partnerProgramName": "AcmeAir", "updateType": "DOWNGRADE",
          "updateDetails": {"updatedTierName": "Bronze"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "UPGRADE", "updateDetails": {"updatedTierName": "Bronze"}},
         {"partnerProgramName": "NoSuchProgram", "updateType": "RENEWAL", "updateDetails": {"updatedTierName": "Gold"}},
         {"partnerProgramName": "AcmeShop", "updateType": "RENEWAL", "updateDetails": {"updatedTierName": "Gold"}},
         {"partnerProgramName": "AcmeAir", "updateType": "RENEWAL", "updateDetails": {"updatedTierName": "Gold"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "SIDEWAYS", "updateDetails": {"updatedTierName": "Gold"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL",
          "updateDetails": {"updatedTierName": "Gold", "updatedTierExpiryDate": "2031-02-30T00:00:00Z"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL",
          "updateDetails": {"updatedTierName": "Gold", "updatedTierExpiryDate": "2020-01-01T00:00:00Z"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL", "updateDetails": {"updatedTierName": "Platinum"}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL", "updateDetails": {}}],
        [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL"}],
        [{"partnerProgramName": "AcmeAir"}],
        [{"updateType": "RENEWAL"}],
        [{"partnerProgramName": "AcmeAir", "updateType": "DOWNGRADE", "updateDetails": {"updatedTierName": "Bronze"}}],
    ]
    codes = []
    for k, items in enumerate(steps):
        how = ("mobile", "id", "email", "all")[k % 4]
        ra = pd_update(stack, [{"customer": ident(a, how), "partnerProgramUpdates": items}])
        rb = peer_update(peer, [{"customer": ident(b, how), "partnerProgramUpdates": items}])
        assert rb["customersPartnerUpdates"][0]["customer"]["id"] == b["id"]
        assert strip_customer(rb) == strip_customer(ra), (items, rb, ra)
        codes.append([i["updateStatus"]["code"] for i in ra["customersPartnerUpdates"][0]["partnerProgramUpdates"]])
    # the steps reach the checks of SPEC 4.2 (a run where everything answered 200 would prove little)
    assert codes == [[200], [200, 2102], [2104, 2006, 2004, 2102], [2009], [2103], [2003], [2007], [2002],
                     [2002], [2002], [2002], [200]], codes
    ma, va, ha, fa = state(stack, a)
    mb, vb, hb, fb = state(stack, b)
    assert va - va0 == vb - vb0 == 3
    assert len(ha) - len(ha0) == len(hb) - len(hb0) == 3
    assert len(fa) - len(fa0) == len(fb) - len(fb0) == 3
    for m in (ma, mb):
        assert m["tier"] == "Bronze" and m["exp"] == 1956508200000, m   # 2032-01-01T00:00:00+05:30
    assert {k: ma[k] for k in ("tier", "exp", "end", "rl")} == {k: mb[k] for k in ("tier", "exp", "end", "rl")}, (ma, mb)
    assert (ma["start"] == ma["lk"]) == (mb["start"] == mb["lk"]), (ma, mb)
    assert mb["lk"] < mb["up"] and ma["lk"] < ma["up"], (ma, mb)
    # the compact value has the same layout (only the membership id and the times differ)
    ra_, rb_ = (stack.redis("HGET", keys.cust("acme", c["id"]), keys.membership_field(stack.pid("AcmeAir")))
                for c in (a, b))
    assert ra_.count(b",") == rb_.count(b","), (ra_, rb_)
    for x, y in zip(ha[:3], hb[:3]):
        assert neutral_event(y, b, mb) == neutral_event(x, a, ma)
        assert list(x) == list(y)                    # the same keys in the same order
    # the same stored bytes: both histories' new entries are compact records (not JSON), of
    # the same variant and fields, but for what differs by nature
    raws = [stack.redis("LRANGE", keys.hist("acme", c["id"]), 0, 2) for c in (a, b)]
    for x, y in zip(*raws):
        assert activity.is_record(x) and activity.is_record(y), (x, y)
        assert x[:1] == y[:1], (x, y)
        assert neutral_record(y, mb) == neutral_record(x, ma), (y, x)
    for x, y in zip(fa[-3:], fb[-3:]):
        assert list(x) == list(y)
        # both write feed format 3
        assert x["v"] == y["v"] == "3" and x["type"] == y["type"] == "UPDATE" and x["seq"] == y["seq"]
        assert int(y["customerVersion"]) - vb0 == int(x["customerVersion"]) - va0
        assert neutral_event(y["event"], b, mb) == neutral_event(x["event"], a, ma)
    # the feed entries have the same fields in the same order (format 3's 19)
    raw_feeds = []
    for c in (a, b):
        ents = stack.redis("XRANGE", keys.feed_of("acme", c["id"]), "-", "+")
        raw_feeds.append([f for _, f in ents if dict(zip(f[0::2], f[1::2]))[b"customerId"] == str(c["id"]).encode()][-3:])
    for x, y in zip(*raw_feeds):
        assert [k.decode() for k in x[0::2]] == [k.decode() for k in y[0::2]] == activity.FEED3, (x, y)
    # the activity is stored alike in the history and the feed: the feed entry's fields are
    # the history record's
    assert fb[-1]["event"] == hb[0] and fa[-1]["event"] == ha[0]
    for raw, fl in ((raws[0][0], raw_feeds[0][-1]), (raws[1][0], raw_feeds[1][-1])):
        assert activity.record_fields(raw)[1:] == fl[11::2], (raw, fl)
    rc, out, err = stack.ctl("check", "--org", "acme")
    assert rc == 0, out + err


def test_customer_outcomes_and_batches(both):
    stack, peer = both
    a, b = linked_pair(stack)
    c = stack.customer()
    renew = [{"partnerProgramName": "AcmeAir", "updateType": "RENEWAL",
              "updateDetails": {"updatedTierName": "Silver", "updatedTierExpiryDate": LATER}}]
    for entries_a, entries_b in (
            ([{"customer": {"mobile": "919999999999"}, "partnerProgramUpdates": renew}],) * 2,
            ([{"customer": {"mobile": a["mobile"], "email": c["email"]}, "partnerProgramUpdates": renew}],
             [{"customer": {"mobile": b["mobile"], "email": c["email"]}, "partnerProgramUpdates": renew}]),
            ([{"customer": {"mobile": "12"}, "partnerProgramUpdates": renew}],) * 2,
            ([{"customer": {}, "partnerProgramUpdates": renew}],) * 2,
            # a batch: the same customer twice (the later entry sees the earlier), a stranger
            ([{"customer": by_mobile(a), "partnerProgramUpdates": renew},
              {"customer": {"id": 99999999}, "partnerProgramUpdates": renew},
              {"customer": by_mobile(a), "partnerProgramUpdates": [
                  {"partnerProgramName": "AcmeAir", "updateType": "UPGRADE", "updateDetails": {"updatedTierName": "Gold"}}]}],
             [{"customer": by_mobile(b), "partnerProgramUpdates": renew},
              {"customer": {"id": 99999999}, "partnerProgramUpdates": renew},
              {"customer": by_mobile(b), "partnerProgramUpdates": [
                  {"partnerProgramName": "AcmeAir", "updateType": "UPGRADE", "updateDetails": {"updatedTierName": "Gold"}}]}])):
        ra, rb = pd_update(stack, entries_a), peer_update(peer, entries_b)
        assert strip_customer(rb) == strip_customer(ra), (rb, ra)
    assert state(stack, a)[0]["tier"] == state(stack, b)[0]["tier"] == "Gold"
    # whole-request refusals and authentication
    st, hdrs, body = peer.post_raw("POST", UPDATE, {"customersPartnerUpdates": []})
    assert st == 400 and json.loads(body)["errors"][0]["code"] == 400
    st, hdrs, body = peer.post_raw("POST", UPDATE, {"customersPartnerUpdates": renew}, auth=("acme_api", "wrong"))
    assert st == 401 and hdrs.get("WWW-Authenticate") == 'Basic realm="partnerProgram"'
    rc, out, err = stack.ctl("check", "--org", "acme")
    assert rc == 0, out + err


def test_peer_bucket_of_is_layout_bucket_of(both):
    """The peer's SipHash-2-4 (LuaJIT) finds the index buckets partnerd writes: every
    fixture mobile, email and externalId resolves through the peer (8015 would say not)."""
    stack, peer = both
    fx = [c for o in stack.fixture()["orgs"] if o["id"] == "acme" for c in o["customers"]][:60]
    entries = []
    for c in fx:
        cust = {k: c[k] for k in ("mobile", "email", "externalId") if c.get(k)}
        entries.append({"customer": cust, "partnerProgramUpdates": [{"partnerProgramName": "NoSuchProgram"}]})
    got = []
    for k in range(0, len(entries), 50):
        r = peer_update(peer, entries[k:k + 50])
        got += [e["customer"]["status"]["code"] for e in r["customersPartnerUpdates"]]
    assert got == [1000] * len(entries), got


LINK = "/v2/partnerProgram/linkCustomer"
DELINK = "/v2/partnerProgram/deLinkCustomer"


def both_post(stack, peer, path, top, body_a, body_b):
    """The same request (but for the customer and membership ids) through partnerd (body_a)
    and the peer (body_b); both answers, their customer objects reduced to their status."""
    st, _, ra = stack.post(path, {top: body_a})
    assert st == 200, ra
    st, _, rb = peer.post_raw("POST", path, {top: body_b})
    assert st == 200, (rb, peer.errlog())
    rb = json.loads(rb)
    for r in (ra, rb):
        for e in r[top]:
            e["customer"] = e["customer"]["status"]
    return ra, rb


def history_records(stack, c):
    return stack.redis("LRANGE", keys.hist("acme", c["id"]), 0, -1)


def feed_entries(stack, c):
    ents = stack.redis("XRANGE", keys.feed_of("acme", c["id"]), "-", "+")
    return [f for _, f in ents if dict(zip(f[0::2], f[1::2]))[b"customerId"] == str(c["id"]).encode()]


def neutral_link_record(raw, t0):
    """A history record's fields but for what differs by nature between the two customers:
    the date, the request id, the membership ids (each side has its own), a start that is
    the link's own time (one since t0, epoch ms)."""
    f = activity.record_fields(raw)
    for k in (1, 4, 5, 10):
        f[k] = b"X" if f[k] else b""
    for k in (8, 13):
        if f[k] and t0 <= int(f[k]) <= t0 + 600000:
            f[k] = b"NOW"
    return f


def test_the_same_links_and_delinks_store_the_same(both):
    """Links and delinks through partnerd (customer a) and the peer (customer b), item by item
    through the checks of SPEC 4.1 and 4.3: the same answers (codes, messages, shapes), the
    same membership values, membership-id index entries, history records and feed entries
    (format 3), but for what differs by nature; partnerctl check passes."""
    stack, peer = both
    t0 = int(time.time() * 1000) - 1000
    a, b, holder = stack.customers(3)
    held = stack.uid("H")
    _, st = link1(stack, by_mobile(holder), item("AcmeAir", held, "Silver", FUTURE))
    assert [x["code"] for x in st] == [200], st
    day = 86400
    recent = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 2 * day))
    uid = stack.uid("P")
    long_name = "N" * 129

    def mid(side, k):
        return "%s-%s-%d" % (uid, side, k)

    # (items with {M} for the side's membership id, the expected codes)
    steps = [
        ([item("AcmeAir", held, "Silver", FUTURE)], [2101]),
        ([item("AcmeAir", "{M}", "Silver", FUTURE), item("AcmeShop", "{M}"),
          item("AcmeAir", "{M}", "Gold")], [200, 200, 2102]),
        ([item("AcmeAir", "{M}", "Gold", FUTURE)], [2005]),
        ([item("NoSuchProgram", "{M}"), item("AcmeOld", "{M}", "Bronze")], [2006, 2006]),
        ([item("AcmeSpare", ref=False), item("AcmePlus", ref="x")], [2002, 2002]),
        ([item("AcmeSpare", "{M}", exp="2031-02-30T00:00:00Z"), item("AcmePlus", "{M}", start="yesterday")],
         [2103, 2103]),
        ([item("AcmeSpare"), item("AcmePlus", "{M}", tier="Gold")], [2002, 2007]),
        ([item("AcmeDays", "{M}")], [2002]),
        ([item("AcmeDays", "{M}", "Nope")], [2007]),
        ([item("AcmeSpare", "{M}", exp="2020-01-01T00:00:00Z"), item("AcmePlus", "{M}", start="2024-02-29T10:00:00Z")],
         [2003, 2003]),
        ([item(long_name, "{M}"), item("AcmeSpare", "M" * 129)], [2002, 2002]),
        ([item(None, "{M}"), item("AcmePlus", "{M}", start=recent), item("AcmeDays", "{M}", "Premium", FUTURE, recent),
          item("AcmeLater", "{M}")], [2002, 200, 200, 200]),
        ([item("AcmeSpare", "{M}", start="2031-01-01T00:00:00+05:30")], [200]),
    ]
    n = 0
    codes = []
    for items, want in steps:
        sides = []
        for side in ("a", "b"):
            its = json.loads(json.dumps(items))
            for it in its:
                ref = it.get("customerPartnerReference")
                if isinstance(ref, dict) and ref.get("partnerMembershipId") == "{M}":
                    n += 1
                    ref["partnerMembershipId"] = mid(side, n)
            sides.append(its)
        ra, rb = both_post(stack, peer, LINK, "linkCustomers",
                           [{"customer": by_mobile(a), "linkToPartnerPrograms": sides[0]}],
                           [{"customer": by_mobile(b), "linkToPartnerPrograms": sides[1]}])
        assert rb == ra, (items, rb, ra)
        got = [i["partnerLinkStatus"]["code"] for i in ra["linkCustomers"][0]["linkToPartnerPrograms"]]
        codes.append(got)
        assert got == want, (items, got, want)
    # the stored memberships: the same values but for the membership ids and the link times
    for name in ("AcmeAir", "AcmeShop", "AcmePlus", "AcmeDays", "AcmeLater", "AcmeSpare"):
        pid = stack.pid(name)
        va, vb = (stack.redis("HGET", keys.cust("acme", c["id"]), keys.membership_field(pid)) for c in (a, b))
        ma, mb = harness.decode_membership(va), harness.decode_membership(vb)
        assert {k: ma[k] for k in ("tier", "exp", "end", "rl")} == {k: mb[k] for k in ("tier", "exp", "end", "rl")}, \
            (name, va, vb)
        assert (ma["start"] == ma["lk"]) == (mb["start"] == mb["lk"]), (name, va, vb)
        assert va.count(b",") == vb.count(b","), (va, vb)
        # the membership-id index names the customer
        for c, m in ((a, ma), (b, mb)):
            assert stack.redis("HGET", keys.mid("acme", pid, m["mid"]), m["mid"]) == str(c["id"]).encode(), (name, m)
    # the history records and feed entries of the links
    ha, hb = history_records(stack, a), history_records(stack, b)
    assert len(ha) == len(hb) == 6, (ha, hb)
    for x, y in zip(ha, hb):
        assert activity.is_record(x) and activity.is_record(y) and x[:1] == y[:1], (x, y)
        assert neutral_link_record(x, t0) == neutral_link_record(y, t0), (x, y)
    fa, fb = feed_entries(stack, a), feed_entries(stack, b)
    assert len(fa) == len(fb) == 6
    for x, y, hx, hy in zip(fa, fb, reversed(ha), reversed(hb)):
        assert [k.decode() for k in x[0::2]] == [k.decode() for k in y[0::2]] == activity.FEED3, (x, y)
        assert x[1::2][:2] == y[1::2][:2] == [b"3", b"LINK"], (x, y)
        assert activity.record_fields(hx)[1:] == x[11::2] and activity.record_fields(hy)[1:] == y[11::2]
        assert x[7::2][:2] == y[7::2][:2], (x, y)      # customerVersion, seq: the same steps
    mids_a = [activity.record_fields(r)[10] for r in ha]
    mids_b = [activity.record_fields(r)[10] for r in hb]

    # delinks: the checks of SPEC 4.3, the same customer twice in one request
    dsteps = [
        ([{"partnerProgramName": "AcmeAir"}, {"partnerProgramName": "AcmeAir"}], [200, 2102]),
        ([{"partnerProgramName": "AcmeAir"}], [2004]),
        ([{"partnerProgramName": "NoSuchProgram"}, {}, {"partnerProgramName": long_name}], [2006, 2002, 2002]),
        ([{"partnerProgramName": p} for p in ("AcmeShop", "AcmePlus", "AcmeDays", "AcmeLater")], [200] * 4),
    ]
    for items, want in dsteps:
        ra, rb = both_post(stack, peer, DELINK, "deLinkCustomers",
                           [{"customer": {"id": a["id"]}, "deLinkFromPartnerPrograms": items}],
                           [{"customer": {"id": b["id"]}, "deLinkFromPartnerPrograms": items}])
        assert rb == ra, (items, rb, ra)
        got = [i["partnerDeLinkStatus"]["code"] for i in ra["deLinkCustomers"][0]["deLinkFromPartnerPrograms"]]
        assert got == want, (items, got, want)
    # the same customer twice in one request: the later entry sees the earlier's delink
    twice = [{"partnerProgramName": "AcmeSpare"}]
    ra, rb = both_post(stack, peer, DELINK, "deLinkCustomers",
                       [{"customer": by_mobile(a), "deLinkFromPartnerPrograms": twice},
                        {"customer": {"id": a["id"]}, "deLinkFromPartnerPrograms": twice}],
                       [{"customer": by_mobile(b), "deLinkFromPartnerPrograms": twice},
                        {"customer": {"id": b["id"]}, "deLinkFromPartnerPrograms": twice}])
    assert rb == ra, (rb, ra)
    assert [e["deLinkFromPartnerPrograms"][0]["partnerDeLinkStatus"]["code"] for e in ra["deLinkCustomers"]] == [200, 2004]
    for c, mids in ((a, mids_a), (b, mids_b)):
        h = stack.redis("HGETALL", keys.cust("acme", c["id"]))
        assert not [k for k in h[0::2] if k.startswith(b"m:")], h
        for name, m in zip(("AcmeSpare", "AcmeLater", "AcmeDays", "AcmePlus", "AcmeShop", "AcmeAir"), mids):
            assert stack.redis("HGET", keys.mid("acme", stack.pid(name), m.decode()), m) is None, (name, m)
    ha2, hb2 = history_records(stack, a), history_records(stack, b)
    assert len(ha2) == len(hb2) == 12
    for x, y in zip(ha2[:6], hb2[:6]):
        assert activity.record_fields(x)[0] == activity.record_fields(y)[0] == b"D", (x, y)
        assert neutral_link_record(x, t0) == neutral_link_record(y, t0), (x, y)
    fa, fb = feed_entries(stack, a), feed_entries(stack, b)
    assert len(fa) == len(fb) == 12
    for x, y in zip(fa[6:], fb[6:]):
        assert x[1::2][:2] == y[1::2][:2] == [b"3", b"DELINK"] and x[7::2][:2] == y[7::2][:2], (x, y)
    va, vb = (int(stack.redis("HGET", keys.cust("acme", c["id"]), "v")) for c in (a, b))
    assert va == vb, (va, vb)
    rc, out, err = stack.ctl("check", "--org", "acme")
    assert rc == 0, out + err


def main():
    sys.dont_write_bytecode = True
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    with Stack() as stack:
        peer = Peer(stack)
        try:
            for name, f in tests:
                try:
                    f((stack, peer))
                    print("PASS: " + name, flush=True)
                    passed += 1
                except Exception:
                    print("FAIL: " + name, flush=True)
                    traceback.print_exc()
                    failed += 1
            if failed:
                print("the peer's error log:\n" + peer.errlog())
        finally:
            peer.stop()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
