"""Whole-request errors (SPEC §4 "Malformed structure" and "Whole-request errors"):
every one answers the JSON error envelope and applies nothing."""

import base64
import time

import harness
from harness import ACME, HEALTH, LINK, Stack
from helpers import assert_codes, assert_error, by_mobile, entry, item, link1, post_link, unchanged


def _good(stack):
    c = stack.customer()
    return c, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]}


def _refused(stack, body, http_status=400, code=None, what=""):
    with unchanged(stack):
        resp = stack.post(LINK, body)
    try:
        assert_error(resp, http_status, code)
    except AssertionError as e:
        raise AssertionError("%s%s (body sent: %r)" % (what + ": " if what else "", e, body[:200])) from None


# ---------------------------------------------------------------- JSON syntax

def test_invalid_json_is_400(stack):
    c, good = _good(stack)
    raw = harness.json.dumps(good).encode()
    cases = [
        ("truncated", raw[:-3]),
        ("empty body", b""),
        ("not JSON", b"linkCustomers=1"),
        ("single quotes", raw.replace(b'"', b"'")),
        ("trailing comma", raw[:-2] + b",]}"),
        ("trailing bytes", raw + b"x"),
        ("a second document", raw + raw),
        ("trailing NUL", raw + b"\x00"),
        ("NUL inside", raw[:10] + b"\x00" + raw[10:]),
        ("invalid UTF-8 in a string", raw.replace(c["mobile"].encode(), c["mobile"].encode() + b"\xff\xfe")),
        ("overlong UTF-8", raw.replace(b"AcmeShop", b"Acme\xc0\xafShop")),
        ("raw control character in a string", raw.replace(b"AcmeShop", b"Acme\x01Shop")),
        ("raw newline in a string", raw.replace(b"AcmeShop", b"Acme\nShop")),
        ("bad escape", raw.replace(b"AcmeShop", b"Acme\\qShop")),
    ]
    for what, body in cases:
        _refused(stack, body, 400, 400, what)


def test_trailing_whitespace_is_not_trailing_bytes(stack):
    c, good = _good(stack)
    st, _, body = stack.post(LINK, b"\n " + harness.json.dumps(good).encode() + b" \r\n\t")
    assert st == 200, (st, body)
    assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])


def test_nan_infinity_and_oversized_integers_are_400(stack):
    c = stack.customer()
    tmpl = '{"linkCustomers":[{"customer":{"id":%s},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"x"}}]}]}'
    for v in ("NaN", "Infinity", "-Infinity", "nan", "99999999999999999999", "-99999999999999999999",
              "18446744073709551616"):
        _refused(stack, (tmpl % v).encode(), 400, 400, v)
    # ... also where the value is not an identifier
    raw = ('{"linkCustomers":[{"customer":{"id":%d},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop",'
           '"customerPartnerReference":{"partnerMembershipId":"x","extra":NaN}}]}]}' % c["id"]).encode()
    _refused(stack, raw, 400, 400, "NaN in an unread field")


def test_duplicated_keys_are_400(stack):
    c, good = _good(stack)
    mob = c["mobile"]
    cases = [
        '{"linkCustomers":[],"linkCustomers":[{"customer":{"mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"d1"}}]}]}' % mob,
        '{"linkCustomers":[{"customer":{"mobile":"%s","mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"d2"}}]}]}' % (mob, mob),
        '{"linkCustomers":[{"customer":{"mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"d3"}}]}]}' % mob,
        '{"linkCustomers":[{"customer":{"mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"d4","partnerMembershipId":"d5"}}]}]}' % mob,
        '{"linkCustomers":[{"customer":{"mobile":"%s"},"customer":{"mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop","customerPartnerReference":{"partnerMembershipId":"d6"}}]}]}' % (mob, mob),
    ]
    for raw in cases:
        _refused(stack, raw.encode(), 400, 400, "duplicated key")


def test_nesting_deeper_than_32_levels_is_400(stack):
    c = stack.customer()
    deep = "[" * 40 + "]" * 40
    raw = ('{"linkCustomers":[{"customer":{"mobile":"%s"},"linkToPartnerPrograms":[{"partnerProgramName":"AcmeShop",'
           '"customerPartnerReference":{"partnerMembershipId":"deep","extra":%s}}]}]}' % (c["mobile"], deep))
    _refused(stack, raw.encode(), 400, 400, "40 nested arrays")
    _refused(stack, ("[" * 5000 + "]" * 5000).encode(), 400, 400, "5000 nested arrays")
    _refused(stack, ('{"a":' * 100 + "1" + "}" * 100).encode(), 400, 400, "100 nested objects")


# ---------------------------------------------------------------- structure

def test_top_level_key_missing_not_an_array_or_empty_is_400(stack):
    c, good = _good(stack)
    e = good["linkCustomers"][0]
    for body in ({}, {"linkCustomer": [e]}, {"LinkCustomers": [e]}, {"linkCustomers": None},
                 {"linkCustomers": e}, {"linkCustomers": "x"}, {"linkCustomers": 1}, {"linkCustomers": []},
                 [e], "linkCustomers", 1, None, {"customersPartnerUpdates": [e]}):
        _refused(stack, harness.json.dumps(body).encode(), 400, 400, repr(body)[:60])


def test_entry_or_item_not_an_object_is_400(stack):
    c, good = _good(stack)
    e = good["linkCustomers"][0]
    for bad in (1, "x", None, [], True):
        _refused(stack, harness.json.dumps({"linkCustomers": [e, bad]}).encode(), 400, 400, "entry %r" % bad)
        _refused(stack, harness.json.dumps({"linkCustomers": [entry(by_mobile(c), item("AcmeShop", "ok-1"), bad)]}).encode(),
                 400, 400, "item %r" % bad)


def test_customer_missing_null_or_not_an_object_is_400(stack):
    c, good = _good(stack)
    items = [item("AcmeShop", stack.uid())]
    ok = good["linkCustomers"][0]
    for cust in ("missing", None, "x", c["mobile"], int(c["mobile"]), [by_mobile(c)], True):
        e = {"linkToPartnerPrograms": items}
        if cust != "missing":
            e["customer"] = cust
        _refused(stack, harness.json.dumps({"linkCustomers": [ok, e]}).encode(), 400, 400, "customer %r" % (cust,))


def test_item_list_missing_not_an_array_or_empty_is_400(stack):
    c, good = _good(stack)
    ok = good["linkCustomers"][0]
    for lst in ("missing", None, [], {}, item("AcmeShop", "x"), "AcmeShop"):
        e = {"customer": by_mobile(c)}
        if lst != "missing":
            e["linkToPartnerPrograms"] = lst
        _refused(stack, harness.json.dumps({"linkCustomers": [ok, e]}).encode(), 400, 400, "item list %r" % (lst,))
    # the item list of another route is not this route's
    _refused(stack, harness.json.dumps({"linkCustomers": [ok, {"customer": by_mobile(c),
             "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeShop"}]}]}).encode(), 400, 400, "wrong list name")


def test_a_structural_fault_anywhere_applies_nothing_of_the_good_entries(stack):
    c, good = _good(stack)
    body = {"linkCustomers": [good["linkCustomers"][0], {"customer": by_mobile(c)}]}
    _refused(stack, harness.json.dumps(body).encode(), 400, 400)
    assert stack.membership(c["id"], "AcmeShop") is None
    _, st = link1(stack, by_mobile(c), item("AcmeShop", stack.uid()))
    assert_codes(st, [200])


# ---------------------------------------------------------------- HTTP level

def test_unknown_route_is_404(stack):
    c, good = _good(stack)
    for path in ("/v2/partnerProgram/linkCustomers", "/v2/partnerProgram/", "/v2/partnerProgram/linkcustomer",
                 "/v2/partnerProgram/linkCustomer/extra"):
        with unchanged(stack):
            resp = stack.post(path, good)
        assert_error(resp, 404)
    assert_error(stack.get("/v2/partnerProgram/nothing"), 404)
    assert_error(stack.get("/elsewhere"), 404)


def test_query_string_does_not_change_the_route(stack):
    c, good = _good(stack)
    st, _, body = stack.post(LINK + "?x=1", good)
    assert st == 200, (st, body)
    assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])


def test_wrong_method_is_405_with_allow(stack):
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        with unchanged(stack):
            resp = stack.request(method, LINK, b"{}" if method != "GET" else None)
        assert_error(resp, 405)
        allow = resp[1].get("Allow") or ""
        assert [m.strip() for m in allow.split(",")] == ["POST"], "%s: Allow %r" % (method, allow)
    resp = stack.request("POST", HEALTH, b"{}", auth=None)
    assert_error(resp, 405)
    assert "GET" in (resp[1].get("Allow") or ""), resp[1].get("Allow")


def test_content_type_other_than_json_is_415(stack):
    c, good = _good(stack)
    raw = harness.json.dumps(good).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                  "text/json", "multipart/form-data; boundary=x", None):
        with unchanged(stack):
            resp = stack.post(LINK, raw, content_type=ctype)
        try:
            assert_error(resp, 415)
        except AssertionError as e:
            raise AssertionError("Content-Type %r: %s" % (ctype, e)) from None


def test_json_content_type_with_parameters_is_accepted(stack):
    for ctype in ("application/json; charset=utf-8", "application/json;charset=UTF-8"):
        c, good = _good(stack)
        st, _, body = stack.post(LINK, good, content_type=ctype)
        assert st == 200, "%r: %s %r" % (ctype, st, body)
        assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])


def test_body_over_one_mebibyte_is_413_and_exactly_one_mebibyte_is_accepted(stack):
    c, good = _good(stack)
    raw = harness.json.dumps(good).encode()
    with unchanged(stack):
        resp = stack.post(LINK, raw + b" " * (1024 * 1024 + 1 - len(raw)))
    assert_error(resp, 413)
    st, _, body = stack.post(LINK, raw + b" " * (1024 * 1024 - len(raw)))
    assert st == 200, "a body of exactly 1 MiB: %s %r" % (st, body)
    assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])
    with unchanged(stack):
        resp = stack.post(LINK, b"x" * (3 * 1024 * 1024))
    assert_error(resp, 413)


def _raw_request(stack, headers, body):
    auth = base64.b64encode(b"acme_api:acme_secret").decode()
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic %s\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n%s\r\n" % (LINK, auth, headers))
    st, hdrs, raw = stack.raw(head.encode() + body)
    try:
        parsed = harness.json.loads(raw)
    except ValueError:
        parsed = raw
    return st, hdrs, parsed


def test_post_without_content_length_is_411(stack):
    c, good = _good(stack)
    with unchanged(stack):
        resp = _raw_request(stack, "", harness.json.dumps(good).encode())
    assert_error(resp, 411)
    with unchanged(stack):
        resp = _raw_request(stack, "", b"")
    assert_error(resp, 411)


def test_chunked_body_is_decoded_and_processed(stack):
    # SPEC: 411 is for "no length"; a chunked body is framed, and the shipped nginx
    # config buffers it and hands partnerd its decoded length. Either answer keeps the
    # contract (200 and applied, or 411 and nothing applied); anything else does not.
    c, good = _good(stack)
    raw = harness.json.dumps(good).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 50]), raw[i:i + 50]) for i in range(0, len(raw), 50)) + b"0\r\n\r\n"
    digest = stack.digest()[0]
    st, hdrs, body = _raw_request(stack, "Transfer-Encoding: chunked\r\n", chunked)
    if st == 411:
        assert_error((st, hdrs, body), 411)
        assert stack.digest()[0] == digest
        return
    assert st == 200, "chunked POST: %s %r" % (st, body)
    assert_codes([body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])
    assert stack.membership(c["id"], "AcmeShop") is not None


def test_every_error_answer_uses_the_json_envelope(stack):
    # 401, 404, 405, 411, 413, 415 and 400 all checked by assert_error elsewhere; here the
    # envelope's message is also a real sentence, not a placeholder.
    resp = stack.post(LINK, b"{", auth=ACME)
    body = assert_error(resp, 400)
    assert len(body["errors"][0]["message"]) >= 5, body


# ---------------------------------------------------------------- Redis unreachable

def test_redis_unreachable_answers_503_with_retry_after_then_recovers():
    st = Stack(partnerd_args=["--redis-timeout-ms", "500"])
    try:
        st.start()
        c = {"mobile": "919000001011"}
        body = {"linkCustomers": [entry(c, item("AcmeShop", "R-1"))]}
        s, _, b = st.post(LINK, body)       # warms the credential cache
        assert s == 200, (s, b)
        assert st.stop_proc("redis-server") is not None
        for auth, what in ((ACME, "cached credential"), (harness.GLOBEX, "credential not seen before")):
            t0 = time.monotonic()
            resp = st.post(LINK, {"linkCustomers": [entry(c, item("AcmeShop", "R-2"))]}, auth=auth)
            took = time.monotonic() - t0
            assert_error(resp, 503)
            ra = resp[1].get("Retry-After")
            assert ra is not None and ra.strip().isdigit() and int(ra) >= 1, "%s: Retry-After %r" % (what, ra)
            assert took < 5, "%s: the 503 took %.1f s with --redis-timeout-ms 500" % (what, took)
        s, h, b = st.get(HEALTH, auth=None)
        assert s == 503, "health with Redis down: %s %r" % (s, b)
        # Redis comes back (empty): partnerd reconnects by itself
        st.restart_redis()
        st.load(st.fixtures)
        deadline = time.monotonic() + 15
        while True:
            s, _, b = st.get(HEALTH, auth=None)
            if s == 200:
                break
            assert time.monotonic() < deadline, "health still %s %r 15 s after Redis came back" % (s, b)
            time.sleep(0.2)
        # Every worker thread has its own connection and reconnect backoff (at most 1 s):
        # a request may still meet a worker that has not retried yet, and fail fast.
        deadline = time.monotonic() + 5
        while True:
            s, _, b = st.post(LINK, {"linkCustomers": [entry(c, item("AcmeShop", "R-3"))]})
            if s == 200 or time.monotonic() > deadline:
                break
            assert_error((s, _, b), 503)
            time.sleep(0.2)
        assert s == 200, (s, b)
        assert_codes([b["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]], [200])
    finally:
        st.stop()
