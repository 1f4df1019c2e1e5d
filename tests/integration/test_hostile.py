"""A corpus of hostile and malformed requests (SPEC §4 "Malformed structure versus invalid
items" and "Whole-request errors", STYLE.md "Untrusted input").

Every case is its own test (test_hostile_<case>), generated from the tables below, so a
failing case is reported by name and the runner's count is the number of cases. Each
case sends a request that would change Redis if it were applied (a real customer, a free
membership id, an existing program), and asserts both its answer and, with
helpers.unchanged, that no key under pp:* changed.

Whole-request refusals (HTTP 4xx with the error envelope) come first, then well-formed
requests whose fields are of the wrong type or form (HTTP 200; the item codes
2002/2103 or the customer's 400 of SPEC §4), then client text that must stay data
(braces, Redis protocol text, NUL) and the headers (Idempotency-Key, X-Request-Id, CR/LF).
"""

import json

import activity
import harness
import keys
from harness import ACME, HEALTH, LINK, Stack
from helpers import FUTURE, assert_code, assert_error, by_mobile, entry, item, unchanged
from support_model import DELINK, HISTORY, PROGRAMS, UPDATE, check_passes, query, read_programs, uentry, upd

ROUTES = {
    LINK: ("linkCustomers", "linkToPartnerPrograms", "partnerLinkStatus"),
    UPDATE: ("customersPartnerUpdates", "partnerProgramUpdates", "updateStatus"),
    DELINK: ("deLinkCustomers", "deLinkFromPartnerPrograms", "partnerDeLinkStatus"),
}

CASES = []          # (name, function(stack)), in the order they run


def case(name):
    def deco(fn):
        CASES.append((name, fn))
        return fn
    return deco


# ---------------------------------------------------------------- builders

_SHARED = {}


def _shared(stack, linked=False):
    """One customer per stack (and one linked to AcmeAir) for the cases that must change
    nothing: a refused request leaves it as it was, so the next case can use it again
    (and if a refusal did apply something, unchanged() fails that case)."""
    key = (id(stack), linked)
    if key not in _SHARED:
        _SHARED[key] = _linked(stack) if linked else stack.customer()
    return _SHARED[key]


def _good_link(stack, program="AcmeShop", fresh=False):
    """A link body that would succeed (and change Redis) if it were applied."""
    c = stack.customer() if fresh else _shared(stack)
    it = item(program, stack.uid("H"), "Silver" if program == "AcmeAir" else None, FUTURE if program == "AcmeAir" else None)
    return c, {"linkCustomers": [entry(by_mobile(c), it)]}


def _raw_good(stack, program="AcmeShop", fresh=False):
    c, body = _good_link(stack, program, fresh)
    return c, json.dumps(body).encode()


def _linked(stack, tier="Silver"):
    """A fresh customer linked to AcmeAir (for update and delink cases)."""
    c = stack.customer()
    st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeAir", stack.uid("H"), tier, FUTURE))]})
    assert st == 200, (st, body)
    code = body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["code"]
    assert code == 200, "setup link: %r" % body
    return c


def _refused(stack, path, body, http_status, code=None, method="POST", headers=None,
             content_type="application/json", auth=ACME):
    with unchanged(stack):
        resp = stack.request(method, path, body, auth=auth, headers=headers, content_type=content_type)
    return resp, assert_error(resp, http_status, code)


def _raw(stack, head_lines, body=b"", path=LINK, method="POST", auth=True):
    """A request written byte for byte on a socket (headers may hold anything)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1", "Connection: close"]
    if auth:
        lines.append("Authorization: " + harness.basic(*ACME))
    head = ("\r\n".join(lines) + "\r\n").encode() + head_lines + b"\r\n"
    st, hdrs, raw = stack.raw(head + body)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw
    return st, hdrs, parsed


def _outcome(resp, path, n_items=None):
    """(customer status code, [item codes]) of a 200 answer with one entry."""
    st, hdrs, body = resp
    top, items_key, status_key = ROUTES[path]
    assert st == 200, "HTTP %s, body %r" % (st, body)
    assert isinstance(body, dict) and set(body) == {top, "warnings"}, body
    e = body[top][0]
    codes = [i[status_key]["code"] for i in e[items_key]]
    if n_items is not None:
        assert len(codes) == n_items, body
    return e["customer"]["status"]["code"], codes


def _item_refused(stack, path, body, cust_code, item_codes):
    """A well-formed request whose items (or customer) fail: 200, the codes, nothing stored."""
    with unchanged(stack):
        resp = stack.post(path, body)
    got_c, got_i = _outcome(resp, path, len(item_codes))
    assert (got_c, got_i) == (cust_code, list(item_codes)), \
        "customer %s items %r, expected customer %s items %r; answer %r" % (
            got_c, got_i, cust_code, list(item_codes), resp[2])
    return resp


def _nested(levels):
    """levels nested JSON arrays: '[[...]]'."""
    return "[" * levels + "]" * levels


# ---------------------------------------------------------------- JSON syntax: 400

def _syntax_case(name, mutate, code=400, program="AcmeShop"):
    @case(name)
    def _t(stack):
        c, raw = _raw_good(stack, program)
        body = mutate(raw, c)
        _refused(stack, LINK, body, 400, code)


_syntax_case("invalid_json_unclosed_object", lambda r, c: r[:-1])
_syntax_case("invalid_json_bare_word", lambda r, c: b"partner")
_syntax_case("invalid_json_empty_body", lambda r, c: b"")
_syntax_case("invalid_json_only_whitespace", lambda r, c: b" \r\n\t ")
_syntax_case("invalid_json_single_quotes", lambda r, c: r.replace(b'"', b"'"))
_syntax_case("invalid_json_unquoted_key", lambda r, c: r.replace(b'"linkCustomers"', b"linkCustomers"))
_syntax_case("invalid_json_comment", lambda r, c: b"/* x */" + r)
_syntax_case("invalid_json_bad_escape", lambda r, c: r.replace(b'"AcmeShop"', b'"Acme\\xShop"'))
_syntax_case("trailing_bytes_after_document", lambda r, c: r + b"garbage")
_syntax_case("trailing_second_document", lambda r, c: r + b"{}")
_syntax_case("trailing_comma_in_array", lambda r, c: r[:-2] + b",]}")
_syntax_case("embedded_nul_between_tokens", lambda r, c: r[:1] + b"\x00" + r[1:])
_syntax_case("embedded_nul_raw_inside_string", lambda r, c: r.replace(b"AcmeShop", b"Acme\x00Shop"))
_syntax_case("embedded_nul_after_document", lambda r, c: r + b"\x00")
_syntax_case("utf8_overlong_two_bytes", lambda r, c: r.replace(b"AcmeShop", b"Acme\xc0\xafShop"))
_syntax_case("utf8_overlong_three_bytes", lambda r, c: r.replace(b"AcmeShop", b"Acme\xe0\x80\xafShop"))
_syntax_case("utf8_overlong_four_bytes", lambda r, c: r.replace(b"AcmeShop", b"Acme\xf0\x80\x80\xafShop"))
_syntax_case("utf8_encoded_surrogate", lambda r, c: r.replace(b"AcmeShop", b"Acme\xed\xa0\x80Shop"))
_syntax_case("utf8_lead_byte_f5", lambda r, c: r.replace(b"AcmeShop", b"Acme\xf5\x80\x80\x80Shop"))
_syntax_case("utf8_above_u10ffff", lambda r, c: r.replace(b"AcmeShop", b"Acme\xf4\x90\x80\x80Shop"))
_syntax_case("utf8_byte_ff", lambda r, c: r.replace(b"AcmeShop", b"Acme\xffShop"))
_syntax_case("utf8_lone_continuation_byte", lambda r, c: r.replace(b"AcmeShop", b"Acme\x80Shop"))
_syntax_case("utf8_truncated_sequence", lambda r, c: r.replace(b"AcmeShop", b"AcmeShop\xe2\x82"))
_syntax_case("utf8_invalid_in_object_key", lambda r, c: r.replace(b'"customer"', b'"customer", "\xc3":1, "x"'))
_syntax_case("raw_control_character_0x01_in_string", lambda r, c: r.replace(b"AcmeShop", b"Acme\x01Shop"))
_syntax_case("raw_tab_in_string", lambda r, c: r.replace(b"AcmeShop", b"Acme\tShop"))
_syntax_case("raw_cr_lf_in_string", lambda r, c: r.replace(b"AcmeShop", b"Acme\r\nShop"))
_syntax_case("raw_control_character_0x1f_in_key", lambda r, c: r.replace(b'"customer"', b'"customer","k\x1f":1,"x"'))
_syntax_case("nan_in_unread_field",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"extra":NaN,"partnerMembershipId"'))
_syntax_case("infinity_in_unread_field",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"extra":Infinity,"partnerMembershipId"'))
_syntax_case("negative_infinity_in_unread_field",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"extra":-Infinity,"partnerMembershipId"'))
_syntax_case("nan_as_customer_id", lambda r, c: r.replace(b'"customer": {', b'"customer": {"id": NaN, '))
_syntax_case("integer_past_64_bits_unread_field",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"extra":18446744073709551616,"partnerMembershipId"'))
_syntax_case("integer_past_64_bits_as_customer_id",
             lambda r, c: r.replace(b'"customer": {', b'"customer": {"id": 9223372036854775808, '))
_syntax_case("negative_integer_past_64_bits_as_customer_id",
             lambda r, c: r.replace(b'"customer": {', b'"customer": {"id": -9223372036854775809, '))
_syntax_case("integer_past_64_bits_as_mobile",
             lambda r, c: r.replace(b'"mobile": "%s"' % c["mobile"].encode(), b'"mobile": 99999999999999999999'))
_syntax_case("duplicated_key_top_level",
             lambda r, c: b'{"linkCustomers":[],' + r[1:])
_syntax_case("duplicated_key_nested_in_reference",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"partnerMembershipId":"dup-x","partnerMembershipId"'))
_syntax_case("duplicated_key_in_customer",
             lambda r, c: r.replace(b'"customer": {', b'"customer": {"mobile": "%s", ' % c["mobile"].encode()))
_syntax_case("duplicated_key_via_unicode_escape_top_level",
             lambda r, c: b'{"\\u006cinkCustomers":[],' + r[1:])
_syntax_case("duplicated_key_via_unicode_escape_nested",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"partnerMembership\\u0049d":"dup-y","partnerMembershipId"'))
_syntax_case("nesting_33_levels",
             lambda r, c: r.replace(b'"partnerMembershipId"', b'"extra":' + _nested(27).encode() + b',"partnerMembershipId"'))
_syntax_case("nesting_5000_levels", lambda r, c: _nested(5000).encode())


@case("lone_surrogate_escape_is_refused_or_never_names_a_program")
def _t(stack):
    # "\ud800" is JSON syntax but no Unicode text: SPEC's "not valid UTF-8" reads as 400.
    # json-c decodes it to U+FFFD; then the name is at least no existing program (2006).
    c, raw = _raw_good(stack)
    body = raw.replace(b'"AcmeShop"', b'"AcmeShop\\ud800"')
    with unchanged(stack):
        st, hdrs, ans = stack.post(LINK, body)
    if st == 400:
        assert_error((st, hdrs, ans), 400)
    else:
        assert _outcome((st, hdrs, ans), LINK) == (1000, [2006]), ans
        print("    # lone surrogate escape \\ud800: accepted as U+FFFD (%r), item 2006"
              % ans["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerProgramName"])


@case("nesting_32_levels_is_accepted")
def _t(stack):
    # root{ linkCustomers[ entry{ items[ item{ reference{ extra: 26 arrays: 6 + 26 = 32 levels
    c, raw = _raw_good(stack, fresh=True)
    body = raw.replace(b'"partnerMembershipId"', b'"extra":' + _nested(26).encode() + b',"partnerMembershipId"')
    resp = stack.post(LINK, body)
    assert _outcome(resp, LINK) == (1000, [200]), resp[2]
    assert stack.membership(c["id"], "AcmeShop") is not None


# ---------------------------------------------------------------- structure: 400 / 2008

def _structure_case(name, path, make, code=400):
    @case(name)
    def _t(stack):
        body = make(stack)
        _refused(stack, path, json.dumps(body).encode(), 400, code)


_structure_case("structure_link_top_level_is_array", LINK, lambda s: [_good_link(s)[1]])
_structure_case("structure_link_top_level_key_of_another_route", LINK,
                lambda s: {"deLinkCustomers": _good_link(s)[1]["linkCustomers"]})
_structure_case("structure_link_customer_is_array", LINK,
                lambda s: {"linkCustomers": [{"customer": [by_mobile(_shared(s))],
                                              "linkToPartnerPrograms": [item("AcmeShop", s.uid())]}]})
_structure_case("structure_link_item_is_string", LINK,
                lambda s: {"linkCustomers": [entry(by_mobile(_shared(s)), item("AcmeShop", s.uid()), "AcmeShop")]})
_structure_case("structure_update_empty_list", UPDATE, lambda s: {"customersPartnerUpdates": []})
_structure_case("structure_update_customer_null", UPDATE,
                lambda s: {"customersPartnerUpdates": [{"customer": None, "partnerProgramUpdates": [upd("AcmeAir", "RENEWAL", "Silver")]}]})
_structure_case("structure_update_items_not_array", UPDATE,
                lambda s: {"customersPartnerUpdates": [{"customer": by_mobile(_shared(s, True)),
                                                        "partnerProgramUpdates": upd("AcmeAir", "UPGRADE", "Gold")}]})
_structure_case("structure_delink_item_not_object", DELINK,
                lambda s: {"deLinkCustomers": [{"customer": by_mobile(_shared(s, True)),
                                                "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeAir"}, 7]}]})
_structure_case("structure_delink_items_empty", DELINK,
                lambda s: {"deLinkCustomers": [{"customer": by_mobile(_shared(s, True)), "deLinkFromPartnerPrograms": []}]})
_structure_case("limit_51_customers_is_2008", LINK,
                lambda s: {"linkCustomers": [entry(by_mobile(_shared(s)), item("AcmeShop", s.uid()))]
                           + [entry({"id": 999000 + k}, item("AcmeShop", s.uid())) for k in range(50)]}, 2008)
_structure_case("limit_51_items_is_2008", LINK,
                lambda s: {"linkCustomers": [entry(by_mobile(_shared(s)), item("AcmeShop", s.uid()),
                                                   *[item("P%d" % k, s.uid()) for k in range(50)])]}, 2008)
_structure_case("limit_51_items_on_delink_is_2008", DELINK,
                lambda s: {"deLinkCustomers": [{"customer": by_mobile(_shared(s, True)),
                                                "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeAir"}]
                                                + [{"partnerProgramName": "P%d" % k} for k in range(50)]}]}, 2008)


# ---------------------------------------------------------------- HTTP level

@case("body_over_1_mib_is_413_from_nginx")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw + b" " * (1024 * 1024 + 1 - len(raw)), 413)


@case("body_of_8_mib_is_413")
def _t(stack):
    _refused(stack, LINK, b"[" * (8 * 1024 * 1024), 413)


@case("content_type_text_plain_is_415")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 415, content_type="text/plain")


@case("content_type_missing_is_415")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 415, content_type=None)


@case("content_type_json_prefix_lookalike_is_415")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 415, content_type="application/json-patch+json")


@case("missing_content_length_is_411")
def _t(stack):
    c, raw = _raw_good(stack)
    with unchanged(stack):
        resp = _raw(stack, b"Content-Type: application/json\r\n", raw)
    assert_error(resp, 411)


@case("content_length_shorter_than_body_is_not_applied_twice")
def _t(stack):
    # Content-Length cuts the JSON short: the truncated document is invalid (400); the
    # rest of the bytes must not be read as a request of their own.
    c, raw = _raw_good(stack)
    with unchanged(stack):
        resp = _raw(stack, b"Content-Type: application/json\r\nContent-Length: 10\r\n", raw)
    assert_error(resp, 400)


@case("wrong_method_get_on_link_is_405_allow_post")
def _t(stack):
    resp, _ = _refused(stack, LINK, None, 405, method="GET")
    assert resp[1].get("Allow") == "POST", resp[1].get("Allow")


@case("wrong_method_put_on_update_is_405_allow_post")
def _t(stack):
    resp, _ = _refused(stack, UPDATE, b"{}", 405, method="PUT")
    assert resp[1].get("Allow") == "POST", resp[1].get("Allow")


@case("wrong_method_delete_on_delink_is_405_allow_post")
def _t(stack):
    resp, _ = _refused(stack, DELINK, b"{}", 405, method="DELETE")
    assert resp[1].get("Allow") == "POST", resp[1].get("Allow")


@case("wrong_method_post_on_read_route_is_405_allow_get")
def _t(stack):
    resp, _ = _refused(stack, PROGRAMS + "?identifierName=id&identifierValue=1011", b"{}", 405)
    assert (resp[1].get("Allow") or "").split(",")[0].strip() == "GET", resp[1].get("Allow")


@case("unknown_route_is_404")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, "/v2/partnerProgram/unlinkEverything", raw, 404)
    _refused(stack, "/v2/partnerProgram/../partnerProgram/unlinkEverything", raw, 404)
    _refused(stack, "/v2/partnerProgram/linkCustomer.json", raw, 404)


@case("path_with_encoded_nul_is_400_json_from_nginx")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, "/v2/partnerProgram/linkCustomer%00", raw, 400)


@case("path_traversal_to_link_route_is_routed_normally_or_404")
def _t(stack):
    # nginx normalises "/v2/x/../partnerProgram/linkCustomer" before routing; either the
    # request reaches the link route (and is applied once) or it is a 404 with nothing applied.
    c, raw = _raw_good(stack, fresh=True)
    before = stack.digest()[0]
    st, hdrs, body = stack.post("/v2/x/../partnerProgram/linkCustomer", raw)
    if st == 404:
        assert_error((st, hdrs, body), 404)
        assert stack.digest()[0] == before
    else:
        assert _outcome((st, hdrs, body), LINK) == (1000, [200]), body


@case("no_credentials_is_401_before_the_body_is_looked_at")
def _t(stack):
    resp, _ = _refused(stack, LINK, b"{not json", 401, auth=None)
    assert resp[1].get("WWW-Authenticate") == 'Basic realm="partnerProgram"', resp[1]


@case("authorization_of_4_kib_garbage_is_401")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 401, auth=None, headers={"Authorization": "Basic " + "QUJD" * 1024})


@case("header_value_with_bare_cr_is_400_json_from_nginx")
def _t(stack):
    c, raw = _raw_good(stack)
    with unchanged(stack):
        resp = _raw(stack, b"Content-Type: application/json\r\nContent-Length: %d\r\nX-Request-Id: a\rb\r\n" % len(raw), raw)
    assert_error(resp, 400)


@case("header_value_with_nul_is_400_json_from_nginx")
def _t(stack):
    c, raw = _raw_good(stack)
    with unchanged(stack):
        resp = _raw(stack, b"Content-Type: application/json\r\nContent-Length: %d\r\nIdempotency-Key: a\x00b\r\n" % len(raw), raw)
    assert_error(resp, 400)


@case("header_line_with_lf_only_injection_does_not_add_a_request")
def _t(stack):
    # "X-Request-Id: a\nContent-Length: 0": nginx accepts bare LF line ends, so this is two
    # header lines; the request must then be refused for its conflicting/short length or
    # processed once, never split into two requests.
    c, raw = _raw_good(stack, fresh=True)
    before = stack.digest()[0]
    st, hdrs, body = _raw(stack, b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                          b"X-Request-Id: a\nContent-Length: 0\r\n" % len(raw), raw)
    if st == 200:
        assert _outcome((st, hdrs, body), LINK) == (1000, [200]), body
    else:
        assert_error((st, hdrs, body), st)
        assert st == 400, (st, body)
        assert stack.digest()[0] == before
    print("    # X-Request-Id: a<LF>Content-Length: 0 -> HTTP %s" % st)


@case("idempotency_key_of_256_chars_is_400")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 400, headers={"Idempotency-Key": "k" * 256})


@case("idempotency_key_of_4000_chars_is_400")
def _t(stack):
    c, raw = _raw_good(stack)
    _refused(stack, LINK, raw, 400, headers={"Idempotency-Key": "k" * 4000})


@case("idempotency_key_of_255_chars_is_accepted")
def _t(stack):
    c, raw = _raw_good(stack, fresh=True)
    key = stack.uid("I") + "k" * 240
    key = key[:255]
    resp = stack.post(LINK, raw, headers={"Idempotency-Key": key})
    assert _outcome(resp, LINK) == (1000, [200]), resp[2]
    resp2 = stack.post(LINK, raw, headers={"Idempotency-Key": key})
    assert resp2[1].get("Idempotent-Replayed") == "true", resp2[1]
    assert resp2[2] == resp[2]


@case("idempotency_key_with_non_ascii_bytes_is_400")
def _t(stack):
    c, raw = _raw_good(stack)
    with unchanged(stack):
        resp = _raw(stack, b"Content-Type: application/json\r\nContent-Length: %d\r\nIdempotency-Key: \xc3\xa9t\xc3\xa9\r\n" % len(raw), raw)
    assert_error(resp, 400)


@case("idempotency_key_with_redis_protocol_and_braces_is_hashed_not_a_key_name")
def _t(stack):
    c, raw = _raw_good(stack, fresh=True)
    key = "{x}*1 $8 FLUSHALL " + stack.uid()
    n_before = len(stack.keys("*"))
    resp = stack.post(LINK, raw, headers={"Idempotency-Key": key})
    assert _outcome(resp, LINK) == (1000, [200]), resp[2]
    names = stack.keys("*")
    assert len(names) >= n_before, "keys vanished: %d -> %d" % (n_before, len(names))
    bad = [k for k in names if "FLUSHALL" in k or "{x}" in k]
    assert not bad, "client text in key names: %r" % bad


@case("x_request_id_of_1000_chars_is_truncated_to_128_and_echoed")
def _t(stack):
    c, raw = _raw_good(stack, fresh=True)
    rid = ("R%s-" % stack.uid()) + "x" * 1000
    st, hdrs, body = stack.post(LINK, raw, headers={"X-Request-Id": rid})
    assert _outcome((st, hdrs, body), LINK) == (1000, [200]), body
    got = hdrs.get("X-Request-Id") or ""
    assert 1 <= len(got) <= 128, "X-Request-Id echoed with %d chars" % len(got)
    assert all(0x20 < ord(ch) < 0x7f for ch in got), repr(got)
    assert got == rid[:len(got)], "echo %r is not a prefix of the sent id" % got[:40]
    acts = activity.load(stack.redis("LINDEX", keys.hist("acme", c["id"]), 0), c["id"])
    assert acts["requestId"] == got, (acts["requestId"], got)


@case("x_request_id_with_spaces_quotes_and_backslashes_is_sanitised")
def _t(stack):
    c, raw = _raw_good(stack, fresh=True)
    st, hdrs, body = stack.post(LINK, raw, headers={"X-Request-Id": 'a b"c\\d\te{f}'})
    assert _outcome((st, hdrs, body), LINK) == (1000, [200]), body
    got = hdrs.get("X-Request-Id") or ""
    assert got and all(0x20 < ord(ch) < 0x7f and ch not in '"\\' for ch in got), repr(got)


@case("x_request_id_on_an_error_answer_is_sanitised_too")
def _t(stack):
    resp, _ = _refused(stack, LINK, b"{", 400, headers={"X-Request-Id": "e" * 300})
    got = resp[1].get("X-Request-Id") or ""
    assert 1 <= len(got) <= 128, len(got)


# ---------------------------------------------------------------- wrong types: customer 400

def _customer_case(name, make_customer, path=LINK):
    @case(name)
    def _t(stack):
        if path == LINK:
            c = _shared(stack)
            body = {"linkCustomers": [entry(make_customer(c), item("AcmeShop", stack.uid("H")))]}
        elif path == UPDATE:
            c = _shared(stack, True)
            body = {"customersPartnerUpdates": [uentry(make_customer(c), upd("AcmeAir", "UPGRADE", "Gold"))]}
        else:
            c = _shared(stack, True)
            body = {"deLinkCustomers": [{"customer": make_customer(c),
                                         "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeAir"}]}]}
        _item_refused(stack, path, body, 400, [400])


def _with(c, **kw):
    d = by_mobile(c)
    d.update(kw)
    return d


_customer_case("customer_id_as_string", lambda c: {"id": str(c["id"])})
_customer_case("customer_id_as_float", lambda c: {"id": float(c["id"])})
_customer_case("customer_id_as_bool", lambda c: {"id": True})
_customer_case("customer_id_as_array", lambda c: {"id": [c["id"]]})
_customer_case("customer_id_as_object", lambda c: {"id": {"id": c["id"]}})
_customer_case("customer_id_zero", lambda c: {"id": 0})
_customer_case("customer_id_negative", lambda c: {"id": -c["id"]})
_customer_case("customer_id_as_string_next_to_a_good_mobile", lambda c: _with(c, id=str(c["id"])))
_customer_case("customer_mobile_as_bool", lambda c: {"mobile": True})
_customer_case("customer_mobile_as_object", lambda c: {"mobile": {"n": c["mobile"]}})
_customer_case("customer_mobile_as_float", lambda c: {"mobile": float(c["mobile"])})
_customer_case("customer_mobile_as_array", lambda c: {"mobile": [c["mobile"]]})
_customer_case("customer_mobile_with_letters", lambda c: {"mobile": c["mobile"][:-1] + "x"})
_customer_case("customer_mobile_5_digits", lambda c: {"mobile": "12345"})
_customer_case("customer_mobile_16_digits", lambda c: {"mobile": "1234567890123456"})
_customer_case("customer_mobile_negative_number", lambda c: {"mobile": -int(c["mobile"])})
_customer_case("customer_email_as_number", lambda c: {"email": 12345})
_customer_case("customer_email_as_bool_next_to_a_good_mobile", lambda c: _with(c, email=False))
_customer_case("customer_external_id_as_number", lambda c: {"externalId": 1011})
_customer_case("customer_external_id_as_object", lambda c: {"externalId": {}})
_customer_case("customer_all_identifiers_empty_strings",
               lambda c: {"id": "", "mobile": "", "email": "", "externalId": ""})
_customer_case("customer_all_identifiers_null",
               lambda c: {"id": None, "mobile": None, "email": None, "externalId": None})
_customer_case("customer_empty_object", lambda c: {})
_customer_case("customer_only_unknown_fields", lambda c: {"phone": c["mobile"], "ID": c["id"]})
_customer_case("update_customer_id_as_string", lambda c: {"id": str(c["id"])}, UPDATE)
_customer_case("update_customer_mobile_as_bool", lambda c: {"mobile": True}, UPDATE)
_customer_case("delink_customer_id_as_float", lambda c: {"id": c["id"] + 0.5}, DELINK)
_customer_case("delink_customer_email_as_number", lambda c: {"email": 7}, DELINK)


@case("customer_id_int64_max_is_well_formed_and_unknown_8015")
def _t(stack):
    body = {"linkCustomers": [entry({"id": 9223372036854775807}, item("AcmeShop", stack.uid("H")))]}
    _item_refused(stack, LINK, body, 8015, [8015])


# ---------------------------------------------------------------- wrong types: item codes

def _link_item_case(name, make_item, code):
    @case(name)
    def _t(stack):
        c = _shared(stack)
        body = {"linkCustomers": [entry(by_mobile(c), make_item(stack))]}
        _item_refused(stack, LINK, body, 1000, [code])


_link_item_case("link_program_name_as_number", lambda s: {"partnerProgramName": 7,
                "customerPartnerReference": {"partnerMembershipId": s.uid("H")}}, 2002)
_link_item_case("link_program_name_as_array", lambda s: {"partnerProgramName": ["AcmeShop"],
                "customerPartnerReference": {"partnerMembershipId": s.uid("H")}}, 2002)
_link_item_case("link_program_name_empty", lambda s: item("", s.uid("H")), 2002)
_link_item_case("link_program_name_missing", lambda s: item(None, s.uid("H")), 2002)
_link_item_case("link_reference_as_string", lambda s: item("AcmeShop", ref="M-1"), 2002)
_link_item_case("link_reference_as_array", lambda s: item("AcmeShop", ref=[{"partnerMembershipId": "M-1"}]), 2002)
_link_item_case("link_reference_null", lambda s: item("AcmeShop", ref=None), 2002)
_link_item_case("link_membership_id_as_number", lambda s: item("AcmeShop", 12345), 2002)
_link_item_case("link_membership_id_as_object", lambda s: item("AcmeShop", {"id": "x"}), 2002)
_link_item_case("link_membership_id_empty", lambda s: item("AcmeShop", ""), 2002)
_link_item_case("link_tier_as_number", lambda s: item("AcmeAir", s.uid("H"), 2, FUTURE), 2002)
_link_item_case("link_tier_empty_on_tiered_program", lambda s: item("AcmeAir", s.uid("H"), "", FUTURE), 2002)
_link_item_case("link_tier_unknown_case", lambda s: item("AcmeAir", s.uid("H"), "silver", FUTURE), 2007)
_link_item_case("link_expiry_as_number", lambda s: item("AcmeAir", s.uid("H"), "Silver", 1893456000000), 2103)
_link_item_case("link_expiry_as_bool", lambda s: item("AcmeAir", s.uid("H"), "Silver", True), 2103)
_link_item_case("link_expiry_not_a_calendar_date", lambda s: item("AcmeAir", s.uid("H"), "Silver", "2031-02-29T00:00:00Z"), 2103)
_link_item_case("link_expiry_without_zone", lambda s: item("AcmeAir", s.uid("H"), "Silver", "2031-01-01T00:00:00"), 2103)
_link_item_case("link_expiry_with_nul_escape", lambda s: item("AcmeAir", s.uid("H"), "Silver", "2031-01-01T00:00:00Z\u0000"), 2103)
_link_item_case("link_start_as_object", lambda s: item("AcmePlus", s.uid("H"), start={"d": 1}), 2103)
_link_item_case("link_start_with_10_fraction_digits", lambda s: item("AcmePlus", s.uid("H"), start="2031-01-01T00:00:00.0123456789Z"), 2103)


def _update_item_case(name, make_item, code):
    @case(name)
    def _t(stack):
        c = _shared(stack, True)
        body = {"customersPartnerUpdates": [uentry(by_mobile(c), make_item(stack))]}
        _item_refused(stack, UPDATE, body, 1000, [code])


_update_item_case("update_program_name_as_number", lambda s: {"partnerProgramName": 1, "updateType": "UPGRADE",
                  "updateDetails": {"updatedTierName": "Gold"}}, 2002)
_update_item_case("update_type_as_number", lambda s: {"partnerProgramName": "AcmeAir", "updateType": 1,
                  "updateDetails": {"updatedTierName": "Gold"}}, 2002)
_update_item_case("update_type_lowercase", lambda s: upd("AcmeAir", "upgrade", "Gold"), 2009)
_update_item_case("update_type_with_nul_escape", lambda s: upd("AcmeAir", "UPGRADE\u0000", "Gold"), 2009)
_update_item_case("update_details_as_string", lambda s: upd("AcmeAir", "UPGRADE", details="Gold"), 2002)
_update_item_case("update_details_as_array", lambda s: upd("AcmeAir", "UPGRADE", details=[{"updatedTierName": "Gold"}]), 2002)
_update_item_case("update_tier_as_number", lambda s: upd("AcmeAir", "UPGRADE", 3), 2002)
_update_item_case("update_expiry_as_number", lambda s: upd("AcmeAir", "UPGRADE", "Gold", 1893456000000), 2103)
_update_item_case("update_expiry_bad_offset", lambda s: upd("AcmeAir", "UPGRADE", "Gold", "2031-01-01T00:00:00+24:00"), 2103)


@case("delink_program_name_as_number_is_2002")
def _t(stack):
    c = _shared(stack, True)
    body = {"deLinkCustomers": [{"customer": by_mobile(c), "deLinkFromPartnerPrograms": [{"partnerProgramName": 5}]}]}
    _item_refused(stack, DELINK, body, 1000, [2002])


@case("delink_program_name_null_is_2002")
def _t(stack):
    c = _shared(stack, True)
    body = {"deLinkCustomers": [{"customer": by_mobile(c), "deLinkFromPartnerPrograms": [{"partnerProgramName": None}]}]}
    _item_refused(stack, DELINK, body, 1000, [2002])


# ---------------------------------------------------------------- client text stays data

RESP_TEXT = "{x}\r\n*1\r\n$8\r\nFLUSHALL\r\n"


def _keys_without(stack, needles):
    names = stack.keys("*")
    bad = [k for k in names if any(n in k for n in needles)]
    assert not bad, "client text in key names: %r" % bad[:5]
    return names


@case("membership_id_with_braces_and_redis_protocol_is_stored_and_read_back_verbatim")
def _t(stack):
    c = stack.customer()
    mid = RESP_TEXT + stack.uid("H")
    n_before = len(stack.keys("*"))
    st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", mid))]})
    assert _outcome((st, _, body), LINK) == (1000, [200]), body
    names = _keys_without(stack, ("FLUSHALL", "{x}", "\r"))
    assert len(names) >= n_before, "keys vanished (FLUSHALL run?): %d -> %d" % (n_before, len(names))
    progs = {p["partnerProgramName"]: p for p in read_programs(stack, "id", str(c["id"]))["partnerPrograms"]}
    assert progs["AcmeShop"]["partnerMembershipId"] == mid, repr(progs["AcmeShop"]["partnerMembershipId"])
    assert stack.membership(c["id"], "AcmeShop")["mid"] == mid
    assert stack.mid_holder("AcmeShop", mid) == c["id"]
    # the same id for another customer: held (2101), nothing changed
    c2 = _shared(stack)
    _item_refused(stack, LINK, {"linkCustomers": [entry(by_mobile(c2), item("AcmeShop", mid))]}, 1000, [2101])


@case("membership_id_with_escaped_nul_is_stored_and_echoed")
def _t(stack):
    c = stack.customer()
    mid = "a\u0000b-" + stack.uid("H")
    st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", mid))]})
    assert _outcome((st, _, body), LINK) == (1000, [200]), body
    got = {p["partnerProgramName"]: p for p in read_programs(stack, "id", str(c["id"]))["partnerPrograms"]}
    assert got["AcmeShop"]["partnerMembershipId"] == mid, repr(got["AcmeShop"]["partnerMembershipId"])
    assert stack.redis("HGET", keys.mid("acme", stack.pid("AcmeShop"), mid), mid.encode()) == str(c["id"]).encode()
    # a membership id differing only after the NUL is another id
    other = stack.customer()
    st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(other), item("AcmeShop", "a\u0000c-" + mid[4:]))]})
    assert _outcome((st, _, body), LINK) == (1000, [200]), body


@case("program_name_with_braces_and_redis_protocol_is_unknown_2006")
def _t(stack):
    c = _shared(stack)
    body = {"linkCustomers": [entry(by_mobile(c), item("{acme}" + RESP_TEXT, stack.uid("H")))]}
    _item_refused(stack, LINK, body, 1000, [2006])
    _keys_without(stack, ("FLUSHALL",))


@case("program_name_that_is_a_key_suffix_is_unknown_2006")
def _t(stack):
    c = _shared(stack)
    body = {"linkCustomers": [entry(by_mobile(c), item("progs", stack.uid("H")), item("1", stack.uid("H")))]}
    _item_refused(stack, LINK, body, 1000, [2006, 2006])


@case("email_with_redis_protocol_is_an_unknown_customer_8015")
def _t(stack):
    body = {"linkCustomers": [entry({"email": "x@y" + RESP_TEXT}, item("AcmeShop", stack.uid("H")))]}
    resp = _item_refused(stack, LINK, body, 8015, [8015])
    assert resp[2]["linkCustomers"][0]["customer"]["email"] == "x@y" + RESP_TEXT, resp[2]


@case("external_id_that_looks_like_a_hash_tag_is_an_unknown_customer_8015")
def _t(stack):
    body = {"linkCustomers": [entry({"externalId": "{acme:1011}"}, item("AcmeShop", stack.uid("H")))]}
    _item_refused(stack, LINK, body, 8015, [8015])


@case("external_id_of_another_key_name_is_an_unknown_customer_8015")
def _t(stack):
    body = {"linkCustomers": [entry({"externalId": keys.cust("acme", 1011)}, item("AcmeShop", stack.uid("H")))]}
    _item_refused(stack, LINK, body, 8015, [8015])


@case("tier_name_with_redis_protocol_is_unknown_2007")
def _t(stack):
    c = _shared(stack)
    body = {"linkCustomers": [entry(by_mobile(c), item("AcmeAir", stack.uid("H"), "Gold" + RESP_TEXT, FUTURE))]}
    _item_refused(stack, LINK, body, 1000, [2007])


@case("membership_id_of_900_kb_is_2002_naming_the_limit")
def _t(stack):
    # SPEC §4 "Sizes and encodings": at most 128 bytes; a longer one fails its item with 2002.
    c = stack.customer()
    mid = "L" + stack.uid("H") + "y" * (900 * 1024)
    before = stack.digest()[0]
    st, hdrs, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", mid))]}, timeout=60)
    assert st == 200, (st, body)
    assert _outcome((st, hdrs, body), LINK) == (1000, [2002]), body["linkCustomers"][0]
    msg = body["linkCustomers"][0]["linkToPartnerPrograms"][0]["partnerLinkStatus"]["message"]
    assert "partnerMembershipId" in msg and "128" in msg, msg
    assert stack.digest()[0] == before, "refused but Redis changed"
    # and the service is fine afterwards
    st, _, h = stack.get(HEALTH, auth=None)
    assert st == 200, (st, h)
    c2, raw = _raw_good(stack, fresh=True)
    assert _outcome(stack.post(LINK, raw), LINK) == (1000, [200])


@case("read_route_identifier_with_redis_protocol_is_unknown_8015")
def _t(stack):
    with unchanged(stack):
        st, _, body = stack.get(query(PROGRAMS, identifierName="email", identifierValue="a" + RESP_TEXT))
    assert st == 200, (st, body)
    assert_code(body["customer"]["status"], 8015)
    assert body["partnerPrograms"] == [], body


@case("read_route_identifier_with_percent_encoded_nul_is_400_or_8015")
def _t(stack):
    with unchanged(stack):
        st, hdrs, body = stack.get(PROGRAMS + "?identifierName=email&identifierValue=a%00b")
    if st == 400:
        assert_error((st, hdrs, body), 400)
    else:
        assert st == 200 and body["customer"]["status"]["code"] == 8015, (st, body)


@case("history_route_limit_past_64_bits_is_400")
def _t(stack):
    with unchanged(stack):
        resp = stack.get(query(HISTORY, identifierName="id", identifierValue="1011", limit="99999999999999999999"))
    assert_error(resp, 400)


@case("link_supplementary_start_before_1900_ended_long_ago_is_2003")
def _t(stack):
    # fuzz finding: dates_add_cycle read before its month table for starts before 1900
    # (tests/fuzz/corpus/crash-link-supp-start-before-1900.json). A far-past start is a
    # valid date-time, but start + 12 months has long passed: SPEC §5 refuses a link that
    # would already have ended (2003), which needs that end computed. The arithmetic itself
    # (1016-12-31 + 12 months = 1017-12-31, ...) is tests/unit/test_dates.c's.
    for start in ("1016-12-31T23:59:59Z", "1800-03-31T12:00:00Z", "1899-01-31T00:00:00Z"):
        c = stack.customer()
        with unchanged(stack):
            st, _, body = stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmePlus", stack.uid("H"), start=start))]})
        assert _outcome((st, _, body), LINK) == (1000, [2003]), body


# ---------------------------------------------------------------- partnerd's own body cap

def test_hostile_partnerd_max_body_2048_answers_413_itself_and_accepts_2048():
    """partnerd --max-body 2048 behind nginx's 1 MiB: partnerd's own cap answers."""
    st = Stack(partnerd_args=["--max-body", "2048"])
    try:
        st.start()
        c = {"mobile": "919000001299"}
        raw = json.dumps({"linkCustomers": [entry(c, item("AcmeShop", "CAP-1"))]}).encode()
        with unchanged(st):
            resp = st.post(LINK, raw + b" " * (2049 - len(raw)))
        body = assert_error(resp, 413)
        assert "2048" in body["errors"][0]["message"], "413 not from partnerd? %r" % body
        resp = st.post(LINK, raw + b" " * (2048 - len(raw)))
        assert _outcome(resp, LINK) == (1000, [200]), resp[2]
        with unchanged(st):
            resp = st.post(LINK, b"{" + b" " * 100000 + b"}")
        assert_error(resp, 413)
    finally:
        st.stop()


# ---------------------------------------------------------------- one test per case

def _make_test(name, fn):
    def t(stack):
        fn(stack)
    t.__name__ = t.__qualname__ = "test_hostile_" + name
    t.__doc__ = fn.__doc__
    return t


_names = set()
for _name, _fn in CASES:
    assert _name not in _names, "duplicate case name %s" % _name
    _names.add(_name)
    globals()["test_hostile_" + _name] = _make_test(_name, _fn)
del _name, _fn, _t


def test_hostile_stored_data_invariants_hold_after_the_corpus(stack):
    """partnerctl check: what the accepted hostile cases stored is valid data."""
    check_passes(stack, org="acme")
