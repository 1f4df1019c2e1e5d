"""Edges of the contract that were once handled silently or wrongly (issue 12, items 6-9
and parts of 11): dates pushed outside years 0001-9999 by their offset (2103, never
clamped), supplementary memberships whose end has passed (ENDED; refused links 2003),
compressed request bodies (415), the largest customer id through partnerctl and the API,
the API prefix without its slash (JSON 404), and a store out of memory (said so)."""

import base64
import gzip
import json
import os
import threading
import time

import keys
from harness import ACME, LINK, Stack
from helpers import assert_codes, assert_error, by_mobile, entry, item, link1, unchanged
from support_model import (PROGRAMS, check_passes, delink1, iso, iso_ms, now_ms, programs_of, query,
                           read_programs, update1, upd)
from support_guarantee import HttpClient, RedisProxy, add_front, add_partnerd, any_commit


# ---------------------------------------------------------------- dates (SPEC §4, 2103)

def test_dates_pushed_outside_years_0001_9999_by_their_offset_are_2103(stack):
    c = stack.customer()
    for d in ("9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59.999-00:01"):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Gold", exp=d))
        assert_codes(st, [2103])
    for d in ("0001-01-01T00:00:00+23:59", "0001-01-01T00:00:00.000+00:01"):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid(), start=d))
        assert_codes(st, [2103])
    # the last instant of 9999 itself is fine, and reads back unchanged
    _, st = link1(stack, by_mobile(c), item("AcmeAir", stack.uid(), "Silver",
                                            exp="9999-12-31T00:00:59.999-23:59"))
    assert_codes(st, [200])
    assert programs_of(stack, c["id"])["AcmeAir"]["partnerTierExpiryDate"] == "9999-12-31T23:59:59.999Z"
    with unchanged(stack):
        _, st = update1(stack, by_mobile(c), upd("AcmeAir", "UPGRADE", "Gold", exp="9999-12-31T23:59:59-23:59"))
    assert_codes(st, [2103])


def test_supplementary_link_whose_end_falls_after_9999_is_2103_not_clamped(stack):
    c = stack.customer()
    for program, start in (("AcmePlus", "9999-06-01T00:00:00Z"), ("AcmeDays", "9999-12-15T00:00:00Z")):
        with unchanged(stack):
            _, st = link1(stack, by_mobile(c), item(program, stack.uid(), "Basic" if program == "AcmeDays" else None,
                                                    start=start))
        assert_codes(st, [2103])
        assert "9999-12-31" in st[0]["message"] and "membershipStartDate" in st[0]["message"], st[0]
    # the latest start whose end is representable: 9998-12-31T23:59:59.999Z + 12 months
    _, st = link1(stack, by_mobile(c), item("AcmePlus", stack.uid(), start="9998-12-31T23:59:59.999Z"))
    assert_codes(st, [200])
    p = programs_of(stack, c["id"])["AcmePlus"]
    assert p["membershipEndDate"] == "9999-12-31T23:59:59.999Z" and p["state"] == "PENDING", p


# ---------------------------------------------------------------- ENDED (SPEC §5)

def test_supplementary_link_that_would_already_have_ended_is_2003(stack):
    c = stack.customer()
    m = stack.uid()
    with unchanged(stack):
        _, st = link1(stack, by_mobile(c), item("AcmePlus", m, start="2020-01-01T00:00:00Z"))
    assert_codes(st, [2003])
    assert "ended" in st[0]["message"], st[0]
    assert stack.mid_holder("AcmePlus", m) is None
    # a past start whose 30-day cycle still runs is linked (ACTIVE)
    _, st = link1(stack, by_mobile(c), item("AcmeDays", stack.uid(), "Basic", start=iso(now_ms() - 29 * 86400000)))
    assert_codes(st, [200])
    assert programs_of(stack, c["id"])["AcmeDays"]["state"] == "ACTIVE"


def test_supplementary_membership_whose_end_has_passed_reads_ENDED(stack):
    c = stack.customer()
    # AcmeDays: 30-day cycle; a start 30 days minus 2 s ago ends 2 s from now
    end = now_ms() + 2000
    _, st = link1(stack, by_mobile(c), item("AcmeDays", stack.uid(), "Basic", start=iso(end - 30 * 86400000)))
    assert_codes(st, [200])
    assert programs_of(stack, c["id"])["AcmeDays"]["state"] == "ACTIVE"
    time.sleep(max(0, end - now_ms()) / 1000.0 + 0.3)
    p = programs_of(stack, c["id"])["AcmeDays"]
    assert p["state"] == "ENDED" and iso_ms(p["membershipEndDate"]) == end, p
    rc, out, err = stack.ctl("show", "--org", "acme", "--id", c["id"])
    assert rc == 0, (out, err)
    shown = [m for m in json.loads(out)["memberships"] if m["partnerProgramName"] == "AcmeDays"]
    assert shown and shown[0]["state"] == "ENDED", out


# ---------------------------------------------------------------- Content-Encoding (SPEC §4, 415)

def test_request_body_with_a_content_encoding_other_than_identity_is_415(stack):
    c = stack.customer()
    body = json.dumps({"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]}).encode()
    cases = [(gzip.compress(body), "gzip"),       # really compressed: was 400 "not valid UTF-8"
             (body, "gzip"),                      # labelled only: was processed
             (body, "br"), (body, "deflate"), (body, "identity, gzip"), (body, "x-unknown")]
    for data, enc in cases:
        with unchanged(stack):
            resp = stack.post(LINK, data, headers={"Content-Encoding": enc})
        b = assert_error(resp, 415)
        msg = b["errors"][0]["message"]
        shown = enc.split(",")[-1].strip()
        assert shown in msg and "uncompressed" in msg, "%s: %r" % (enc, msg)
    # a repeated header: every one counts
    raw = (b"POST " + LINK.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
           b"Authorization: Basic " + base64.b64encode(("%s:%s" % ACME).encode()) + b"\r\n"
           b"Content-Type: application/json\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\n"
           b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with unchanged(stack):
        st, _, rb = stack.raw(raw)
    assert st == 415, (st, rb)
    # identity, in any case, is no encoding at all
    for enc in ("identity", "IDENTITY", " Identity "):
        data = json.dumps({"linkCustomers": [entry(by_mobile(c), item("AcmeAir", stack.uid(), "Gold"))]}).encode()
        st, _, rb = stack.post(LINK, data, headers={"Content-Encoding": enc})
        assert st == 200, (enc, st, rb)
        assert_codes([rb["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])
        _, sts = delink1(stack, by_mobile(c), "AcmeAir")
        assert_codes(sts, [200])


# ---------------------------------------------------------------- the API prefix without its slash

def test_api_prefix_without_slash_is_the_json_404(stack):
    for method in ("POST", "GET", "PUT"):
        for path in ("/v2/partnerProgram", "/v2/partnerProgram?x=1"):
            body = b"{}" if method != "GET" else None
            resp = stack.request(method, path, body)
            assert resp[1].get("Location") is None, (method, path, resp[1].get("Location"))
            assert_error(resp, 404)


# ---------------------------------------------------------------- customer id 2^63 - 1

MAX_ID = 9223372036854775807


def test_load_names_itself_when_the_store_refuses_a_read():
    """A stored key of the wrong type stops `partnerctl load` before it writes anything,
    with a message that names the verb, the org and the customer, as before the store
    layer (issue 13)."""
    doc = {"orgs": [{"id": "ldmsg", "defaultCountryCode": "91", "nationalNumberLength": 10,
                     "credentials": [{"username": "ldmsg_api", "password": "ldmsg_secret"}],
                     "programs": [{"name": "P", "type": "EXTERNAL", "tiers": []}],
                     "customers": [{"id": 1, "email": "one@ldmsg.example"},
                                   {"id": 2, "email": "two@ldmsg.example"}]}]}
    st = Stack(fixtures=None)
    try:
        st.start()
        path = os.path.join(st.dir, "ldmsg.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        assert st.ctl("load", path)[0] == 0
        st.redis("DEL", keys.cust("ldmsg", 2))
        st.redis("SET", keys.cust("ldmsg", 2), "not a hash")
        before = st.digest()[0]
        rc, out, err = st.ctl("load", path)
        assert rc == 1, (rc, out, err)
        assert "partnerctl: load: org ldmsg: customer 2: unexpected reply to HMGET: WRONGTYPE" in err, err
        assert st.digest()[0] == before
    finally:
        st.stop()


def test_customer_id_int64_max_loads_shows_reads_and_links():
    doc = {"orgs": [{"id": "edges", "defaultCountryCode": "91", "nationalNumberLength": 10,
                     "credentials": [{"username": "edges_api", "password": "edges_secret"}],
                     "programs": [{"name": "P", "type": "EXTERNAL", "tiers": []}],
                     "customers": [{"id": MAX_ID, "mobile": "919555000001", "email": "max@edges.example"}]}]}
    st = Stack(fixtures=None)
    try:
        st.start()
        path = os.path.join(st.dir, "edges.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        rc, out, err = st.ctl("load", path)
        assert rc == 0, "load refused id 2^63-1: %s%s" % (out, err)
        before = st.digest()[0]
        rc, out, err = st.ctl("load", path)
        assert rc == 0 and st.digest()[0] == before, (out, err)
        rc, out, err = st.ctl("show", "--org", "edges", "--id", str(MAX_ID))
        assert rc == 0 and json.loads(out)["id"] == MAX_ID, (rc, out, err)
        auth = ("edges_api", "edges_secret")
        body = read_programs(st, "id", str(MAX_ID), auth=auth)
        assert body["customer"]["id"] == MAX_ID and body["customer"]["status"]["code"] == 1000, body
        _, sts = link1(st, {"id": MAX_ID}, item("P", "MAXID-1"), auth=auth)
        assert_codes(sts, [200])
        assert [p["partnerProgramName"] for p in read_programs(st, "mobile", "919555000001", auth=auth)
                ["partnerPrograms"]] == ["P"]
        # one more is beyond int64: still refused, by load and by import-customers
        for bad in ("9223372036854775808", "18446744073709551616"):
            with open(path, "w") as f:
                f.write(json.dumps(doc).replace(str(MAX_ID), bad))
            before = st.digest()[0]
            rc, out, err = st.ctl("load", path)
            assert rc != 0 and "9223372036854775807" in out + err, (bad, rc, out, err)
            assert st.digest()[0] == before
        lines = os.path.join(st.dir, "imp.jsonl")
        with open(lines, "w") as f:
            f.write('{"id": %d, "email": "max2@edges.example"}\n' % (MAX_ID - 1))
            f.write('{"id": 9223372036854775808, "email": "over@edges.example"}\n')
        rc, out, err = st.ctl("import-customers", "--org", "edges", lines)
        assert rc == 1 and "imp.jsonl:2: rejected" in err and "1 imported" in out, (rc, out, err)
        assert read_programs(st, "id", str(MAX_ID - 1), auth=auth)["customer"]["status"]["code"] == 1000
        st_, _, b = st.get(query(PROGRAMS, identifierName="id", identifierValue="9223372036854775808"), auth=auth)
        assert_error((st_, _, b), 400)
        check_passes(st)
    finally:
        st.stop()


# ---------------------------------------------------------------- a store out of memory

def _used_memory(st):
    info = st.redis("INFO", "memory").decode()
    return int([l for l in info.split("\r\n") if l.startswith("used_memory:")][0].split(":")[1])


def _oom_said(msg):
    return "out of memory" in msg and "retry later" in msg and "maxmemory" in msg


def test_store_out_of_memory_is_said_on_writes_and_reads():
    """Redis at maxmemory (noeviction) refuses writes with -OOM: the answers say so instead
    of "stored data could not be read" (begin), "a stored key has an unexpected type"
    (commit) or "unavailable" (Idempotency-Key claim, rate-limited read)."""
    for args in ([], ["--rate-limit", "100000"]):
        st = Stack(partnerd_args=args)
        proxy = None
        try:
            st.start()
            st.redis("CONFIG", "SET", "maxmemory-policy", "noeviction")
            # (a) memory runs out between begin and commit (a Redis proxy holds the commit
            # script call of a second partnerd): the commit's write is refused
            proxy = RedisProxy(st.redis_port)
            front = HttpClient(add_front(st, "nginx-stall", [
                add_partnerd(st, "partnerd-stall", ["--redis-timeout-ms", "10000"], redis_url=proxy.url)]),
                auth=ACME, timeout=30)
            proxy.arm(any_commit("acme"))
            got = {}

            def stalled():
                got["r"] = front.post(LINK, {"linkCustomers": [entry({"id": 1011}, item("AcmeShop", "OOM-1"))]})
            t = threading.Thread(target=stalled)
            t.start()
            assert proxy.held.wait(15), "the commit never reached the proxy: %r" % got
            st.redis("CONFIG", "SET", "maxmemory", str(_used_memory(st) // 2))
            proxy.release()
            t.join()
            s, b = got["r"].status, got["r"].resp
            assert s == 200, (args, got["r"])
            it = b["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]
            assert it["code"] == 2001 and _oom_said(it["message"]), (args, it)
            with unchanged(st):
                # (b) a write while at maxmemory
                s, _, b = st.post(LINK, {"linkCustomers": [entry({"id": 1012}, item("AcmeShop", "OOM-2"))]})
                if s == 200:
                    it = b["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]
                    assert it["code"] == 2001 and _oom_said(it["message"]), (args, it)
                else:
                    e = assert_error((s, _, b), 503)
                    assert _oom_said(e["errors"][0]["message"]), (args, e)
                # (c) with an Idempotency-Key (its claim is a write)
                resp = st.post(LINK, {"linkCustomers": [entry({"id": 1012}, item("AcmeShop", "OOM-3"))]},
                               headers={"Idempotency-Key": "oom-k1"})
                e = assert_error(resp, 503)
                assert _oom_said(e["errors"][0]["message"]) and resp[1].get("Retry-After"), (args, e)
                # (d) a read: without a rate limit it writes nothing and is served
                resp = st.get(query(PROGRAMS, identifierName="id", identifierValue="1011"))
                if args:
                    e = assert_error(resp, 503)
                    assert _oom_said(e["errors"][0]["message"]), (args, e)
                else:
                    assert resp[0] == 200 and resp[2]["customer"]["status"]["code"] == 1000, resp
            st.redis("CONFIG", "SET", "maxmemory", "0")
            _, sts = link1(st, {"id": 1012}, item("AcmeShop", "OOM-4"))
            assert_codes(sts, [200])
        finally:
            if proxy is not None:
                proxy.close()
            st.stop()
