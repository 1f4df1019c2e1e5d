"""docs/openapi.yaml against real responses: every route, successes and errors.

Each test makes real requests through nginx and validates every answer against the
OpenAPI document: the operation (path and method; an unknown route against the
NotFound response), the documented status, the media type, the body against the
response's JSON Schema (OpenAPI 3.1 = JSON Schema 2020-12) and every documented
header (required ones must be present; present ones must match their schema).

The validation runs in Debian's Python (/usr/bin/python3 -I) with python3-jsonschema and
python3-yaml, in a child process: the tests themselves may run under another python3
(e.g. pyenv's) that cannot see Debian's packages. When /usr/bin/python3 does not exist the
running interpreter is used. A missing validator is a failure, never a skip.
"""

import gzip
import json
import os
import subprocess
import sys

import harness
from harness import ACME, DEMO, HEALTH, LINK, basic
from helpers import FUTURE, by_mobile, entry, item
from support_model import DELINK, HISTORY, PROGRAMS, UPDATE, cancel, upd

METRICS = "/v2/partnerProgram/metrics"
SPEC = os.path.join(harness.srcdir(), "docs", "openapi.yaml")

# Runs in Debian's python: reads [spec path, cases] as JSON on stdin, prints one list of
# error strings per case as JSON on stdout.
VALIDATOR = r'''
import json, sys
from urllib.parse import parse_qsl
try:
    import yaml
    import jsonschema
    from jsonschema import Draft202012Validator, RefResolver
except ImportError as e:
    print("MISSING: %s (Debian: apt-get install python3-jsonschema python3-yaml)" % e)
    sys.exit(3)
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
spec_path, cases = json.load(sys.stdin)
with open(spec_path) as f:
    doc = yaml.safe_load(f)
resolver = RefResolver("", doc)

def deref(obj):
    while isinstance(obj, dict) and "$ref" in obj:
        obj = resolver.resolve(obj["$ref"])[1]
    return obj

def check(schema, value):
    v = Draft202012Validator(schema, resolver=resolver)
    return ["%s at /%s" % (e.message[:300], "/".join(str(p) for p in e.absolute_path))
            for e in sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))]

out = []
for c in cases:
    errs = []
    item = doc["paths"].get(c["path"], {})
    # HEAD: the path's own head operation (every GET route has one).
    op = item.get(c["method"].lower()) if c["method"].lower() in METHODS else None
    if c["path"] not in doc["paths"]:
        resp = doc["components"]["responses"]["NotFound"] if c["status"] == 404 else None
        if resp is None:
            errs.append("path %s is not in the spec and the status is %s, not 404" % (c["path"], c["status"]))
    elif op is None:
        resp = doc["components"]["responses"]["MethodNotAllowed"] if c["status"] == 405 else None
        if resp is None:
            errs.append("%s %s is not in the spec and the status is %s, not 405" % (c["method"], c["path"], c["status"]))
    else:
        resp = op["responses"].get(str(c["status"]))
        if resp is None:
            errs.append("status %s is not documented for %s %s" % (c["status"], c["method"], c["path"]))
        if 200 <= c["status"] < 300:
            # What the service accepted, the document must allow: each header and query
            # parameter sent against its schema (path-level and operation parameters).
            query = dict(parse_qsl(c.get("query", ""), keep_blank_values=True))
            sent = {"header": dict((k.lower(), v) for k, v in c.get("request_headers", {}).items()),
                    "query": query}
            for prm in item.get("parameters", []) + op.get("parameters", []):
                prm = deref(prm)
                where = sent.get(prm["in"], {})
                key = prm["name"].lower() if prm["in"] == "header" else prm["name"]
                if key not in where:
                    continue
                val = where[key]
                schema = deref(prm.get("schema", {}))
                if schema.get("type") == "integer":
                    try:
                        val = int(val)
                    except ValueError:
                        pass
                errs += ["accepted %s parameter %s=%r is refused by the document: %s"
                         % (prm["in"], prm["name"], where[key], e) for e in check(schema, val)]
    if resp is not None:
        resp = deref(resp)
        ctype = (c["headers"].get("content-type") or "")
        base = ctype.split(";")[0].strip().lower()
        media = None
        for k, m in resp.get("content", {}).items():
            if k.split(";")[0].strip().lower() == base:
                media = m
        if c["method"] == "HEAD" and not resp.get("content"):
            # A response documented without content: HEAD's own 200, no body.
            if c["body"]:
                errs.append("HEAD answered a body: %r" % c["body"][:200])
        elif media is None:
            errs.append("content type %r not documented (%s)" % (ctype, sorted(resp.get("content", {}))))
        elif c["method"] != "HEAD":
            body = c["body"]
            if base == "application/json":
                try:
                    body = json.loads(body)
                except ValueError:
                    errs.append("body is not JSON: %r" % body[:200])
                    body = None
            if body is not None:
                errs += check(media.get("schema", {}), body)
        for name, h in resp.get("headers", {}).items():
            h = deref(h)
            val = c["headers"].get(name.lower())
            if val is None:
                if h.get("required"):
                    errs.append("required header %s missing" % name)
                continue
            schema = h.get("schema", {})
            if schema.get("type") == "integer":
                try:
                    val = int(val)
                except ValueError:
                    pass
            errs += ["header %s: %s" % (name, e) for e in check(schema, val)]
    out.append(errs)
json.dump(out, sys.stdout)
'''


def validator_python():
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Recorder:
    """Collects (request, response) pairs; validate() checks them all in one child process."""

    def __init__(self, stack):
        self.stack = stack
        self.cases = []

    def call(self, method, path, body=None, auth=ACME, headers=None, content_type="application/json",
             expect=None):
        st, hdrs, parsed = self.stack.request(method, path, body, auth=auth, headers=headers,
                                              content_type=content_type if body is not None else None)
        self._add(method, path, st, hdrs, parsed, expect, headers)
        return st, hdrs, parsed

    def raw(self, method, path, data, expect=None):
        st, hdrs, body = self.stack.raw(data)
        self._add(method, path, st, hdrs, body, expect)
        return st, hdrs, body

    def _add(self, method, path, st, hdrs, parsed, expect, request_headers=None):
        if expect is not None:
            assert st == expect, "%s %s: HTTP %s, expected %s: %r" % (method, path, st, expect, parsed)
        if isinstance(parsed, (bytes, bytearray)):
            text = parsed.decode("utf-8", "replace")
        else:
            text = json.dumps(parsed)
        path, _, query = path.partition("?")
        self.cases.append({"method": method, "path": path, "query": query, "status": st,
                           "request_headers": dict(request_headers or {}),
                           "headers": dict((k.lower(), v) for k, v in hdrs.items()), "body": text})

    def validate(self):
        assert self.cases, "no responses recorded"
        assert os.path.exists(SPEC), "OpenAPI document missing: %s" % SPEC
        py = validator_python()
        p = subprocess.run([py, "-I", "-B", "-c", VALIDATOR], input=json.dumps([SPEC, self.cases]).encode(),
                           capture_output=True, timeout=120)
        out = p.stdout.decode("utf-8", "replace")
        assert p.returncode == 0, "the OpenAPI validator (%s) failed (exit %d): %s%s" \
            % (py, p.returncode, out, p.stderr.decode("utf-8", "replace")[-2000:])
        results = json.loads(out)
        bad = ["%s %s -> %s: %s\n      body %s" % (c["method"], c["path"], c["status"], "; ".join(e),
                                                 c["body"][:300])
               for c, e in zip(self.cases, results) if e]
        assert not bad, "%d of %d responses do not match docs/openapi.yaml:\n    %s" \
            % (len(bad), len(self.cases), "\n    ".join(bad))
        return len(self.cases)


# ---------------------------------------------------------------- tests

def test_openapi_validator_is_available():
    py = validator_python()
    p = subprocess.run([py, "-I", "-B", "-c", "import jsonschema, yaml; jsonschema.Draft202012Validator"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, "%s cannot import jsonschema and yaml (Debian: apt-get install " \
        "python3-jsonschema python3-yaml): %s" % (py, p.stderr.decode("utf-8", "replace")[-500:])


def test_openapi_document_is_valid_and_names_every_route():
    code = r'''
import json, sys, yaml
from jsonschema import Draft202012Validator
doc = yaml.safe_load(open(sys.argv[1]))
assert doc["openapi"].startswith("3.1"), doc["openapi"]
for name, s in doc["components"]["schemas"].items():
    Draft202012Validator.check_schema(s)
methods = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
print(json.dumps(sorted("%s %s" % (m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in methods)))
'''
    p = subprocess.run([validator_python(), "-I", "-B", "-c", code, SPEC], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode("utf-8", "replace")[-2000:]
    ops = json.loads(p.stdout)
    base = "/v2/partnerProgram/"
    want = sorted(["POST %slinkCustomer" % base, "POST %scustomerPartnerProgramUpdate" % base,
                   "POST %sdeLinkCustomer" % base, "GET %scustomerPartnerPrograms" % base,
                   "GET %scustomerActivityHistory" % base, "GET %shealth" % base, "GET %smetrics" % base,
                   # every GET route answers HEAD (SPEC §6 health "GET only" means: no write method)
                   "HEAD %scustomerPartnerPrograms" % base, "HEAD %scustomerActivityHistory" % base,
                   "HEAD %shealth" % base, "HEAD %smetrics" % base])
    assert ops == want, "operations in docs/openapi.yaml: %r, expected %r" % (ops, want)


def test_openapi_write_routes_match_spec(stack):
    r = Recorder(stack)
    c1, c2 = stack.customers(2)
    mid = stack.uid()
    # linkCustomer: successes, item failures, customer failures
    r.call("POST", LINK, {"linkCustomers": [
        entry(by_mobile(c1), item("AcmeAir", mid, "Bronze", FUTURE), item("AcmeShop", stack.uid()),
              item("NoSuchProgram", stack.uid()), item("AcmeAir", stack.uid(), "Silver"),
              item("AcmePlus", stack.uid(), start="2099-01-01T00:00:00Z")),
        entry({"mobile": "000000000"}, item("AcmeShop", stack.uid())),
        entry({"mobile": c1["mobile"], "id": c2["id"]}, item("AcmeShop", stack.uid())),
        entry({}, item("AcmeShop", stack.uid())),
        entry(by_mobile(c2), item("AcmeAir", mid, "Gold"), item(None), item("AcmeAir", None, "Gold", "bad-date"))]},
        headers={"X-Request-Id": "openapi-link-1"}, expect=200)
    # customerPartnerProgramUpdate
    r.call("POST", UPDATE, {"customersPartnerUpdates": [
        {"customer": by_mobile(c1), "partnerProgramUpdates": [
            upd("AcmeAir", "UPGRADE", "Silver", FUTURE), upd("AcmeAir", "SIDEWAYS", "Gold"),
            upd("AcmeShop", "UPGRADE", "Gold"), cancel("AcmePlus"), upd("Nope", "RENEW", "Gold")]},
        {"customer": {"email": "nobody@example.invalid"}, "partnerProgramUpdates": [cancel("AcmePlus")]}]},
        expect=200)
    # deLinkCustomer (mobile as a JSON number)
    r.call("POST", DELINK, {"deLinkCustomers": [
        {"customer": {"mobile": int(c1["mobile"])}, "deLinkFromPartnerPrograms": [
            {"partnerProgramName": "AcmeShop"}, {"partnerProgramName": "AcmeShop"},
            {"partnerProgramName": "Nope"}]},
        {"customer": by_mobile(c2), "deLinkFromPartnerPrograms": [{"partnerProgramName": "AcmeShop"}]}]},
        expect=200)
    r.validate()


def test_openapi_idempotency_matches_spec():
    # Its own stack: the idempotency records stay out of the shared stack's key space.
    with harness.Stack() as stack:
        r = Recorder(stack)
        c1, c2 = stack.customers(2)
        r.call("POST", LINK, {"linkCustomers": [entry(by_mobile(c2), item("AcmeShop", stack.uid()))]},
               expect=200)
        # first, replay (Idempotent-Replayed: true), another body (422), a bad key (400)
        key = "openapi-" + stack.uid()
        body = {"deLinkCustomers": [{"customer": by_mobile(c2), "deLinkFromPartnerPrograms": [
            {"partnerProgramName": "AcmeShop"}]}]}
        r.call("POST", DELINK, body, headers={"Idempotency-Key": key}, expect=200)
        _, hdrs, _ = r.call("POST", DELINK, body, headers={"Idempotency-Key": key}, expect=200)
        assert hdrs.get("Idempotent-Replayed") == "true", dict(hdrs)
        r.call("POST", DELINK, {"deLinkCustomers": [{"customer": by_mobile(c1), "deLinkFromPartnerPrograms": [
            {"partnerProgramName": "AcmeAir"}]}]}, headers={"Idempotency-Key": key}, expect=422)
        r.call("POST", LINK, {"linkCustomers": []}, headers={"Idempotency-Key": "bad key"}, expect=400)
        # A key with a space inside is a valid key (printable ASCII, 0x20-0x7e): applied, then replayed.
        spaced = "openapi spaced " + stack.uid()
        body = {"linkCustomers": [entry(by_mobile(c1), item("AcmeShop", stack.uid()))]}
        r.call("POST", LINK, body, headers={"Idempotency-Key": spaced}, expect=200)
        _, hdrs, _ = r.call("POST", LINK, body, headers={"Idempotency-Key": spaced}, expect=200)
        assert hdrs.get("Idempotent-Replayed") == "true", dict(hdrs)
        # Over 255 characters: 400, whatever the body.
        r.call("POST", LINK, body, headers={"Idempotency-Key": "k" * 256}, expect=400)
        r.validate()


def test_openapi_whole_request_errors_match_spec(stack):
    r = Recorder(stack)
    c = stack.customer()
    good = {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]}
    r.call("POST", LINK, good, auth=None, expect=401)
    r.call("POST", LINK, good, auth=("acme_api", "wrong"), expect=401)
    r.call("POST", LINK, b"{not json", expect=400)
    r.call("POST", LINK, b'{"linkCustomers": [], "linkCustomers": []}', expect=400)
    r.call("POST", UPDATE, {"customersPartnerUpdates": "x"}, expect=400)
    r.call("POST", DELINK, {"deLinkCustomers": [{"customer": by_mobile(c), "deLinkFromPartnerPrograms": [
        {"partnerProgramName": "P%d" % i} for i in range(51)]}]}, expect=400)
    r.call("POST", LINK, good, content_type="text/plain", expect=415)
    r.call("POST", LINK, b"x" * (1024 * 1024 + 10), expect=413)
    r.raw("POST", LINK, b"POST " + LINK.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
          + basic(*ACME).encode() + b"\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
          expect=411)
    # A chunked body is no 411: nginx decodes it and the request is processed (200).
    c2 = stack.customer()
    raw = json.dumps({"linkCustomers": [entry(by_mobile(c2), item("AcmeShop", stack.uid()))]}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(raw[i:i + 40]), raw[i:i + 40]) for i in range(0, len(raw), 40))
    r.raw("POST", LINK, b"POST " + LINK.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: "
          + basic(*ACME).encode() + b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
          + b"Connection: close\r\n\r\n" + chunked + b"0\r\n\r\n", expect=200)
    # A compressed body: SPEC §4 says 415 (validated as whatever the service answers).
    r.call("POST", LINK, gzip.compress(json.dumps(good).encode()), headers={"Content-Encoding": "gzip"})
    for path in (LINK, UPDATE, DELINK):
        r.call("GET", path, expect=405)
    for path in (PROGRAMS, HISTORY, HEALTH, METRICS):
        r.call("POST", path, {}, expect=405)
    r.call("DELETE", HEALTH, auth=None, expect=405)
    r.call("HEAD", LINK, expect=405)
    r.call("GET", "/v2/partnerProgram/noSuchRoute", expect=404)
    r.call("GET", "/v2/partnerProgram/linkCustomer/extra", expect=404)
    r.call("POST", "/v2/partnerProgram/", good, expect=404)
    r.call("POST", "/v2/partnerProgram", good, expect=404)   # no redirect to the slash (nginx)
    r.validate()


def test_openapi_read_and_operations_routes_match_spec(stack):
    r = Recorder(stack)
    c = stack.customer()
    mid = stack.uid()
    # a membership with a pending relink, one PENDING, one tiered
    stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmePlus", mid),
                                              item("AcmeDays", stack.uid(), "Basic", start="2099-01-01T00:00:00Z"),
                                              item("AcmeAir", stack.uid(), "Gold", FUTURE))]})
    stack.post(LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmePlus", stack.uid(),
                                                                 start="2098-01-01T00:00:00+05:30"))]})
    stack.post(UPDATE, {"customersPartnerUpdates": [{"customer": by_mobile(c), "partnerProgramUpdates": [
        upd("AcmeAir", "DOWNGRADE", "Silver", FUTURE)]}]})
    q = "?identifierName=%s&identifierValue=%s"
    for name, value in (("mobile", c["mobile"]), ("id", c["id"]), ("email", c.get("email", ""))):
        if value:
            _, _, body = r.call("GET", PROGRAMS + q % (name, value), expect=200)
    assert any(p["pendingRelink"] for p in body["partnerPrograms"]), body
    r.call("GET", PROGRAMS + q % ("id", 999999999), expect=200)
    r.call("GET", PROGRAMS + q % ("mobile", "12"), expect=400)
    r.call("GET", PROGRAMS + "?identifierName=phone&identifierValue=1", expect=400)
    r.call("GET", PROGRAMS, expect=400)
    r.call("GET", PROGRAMS + q % ("id", c["id"]), auth=None, expect=401)
    _, _, body = r.call("GET", HISTORY + q % ("id", c["id"]) + "&limit=100", expect=200)
    assert body["total"] >= 4, body
    r.call("GET", HISTORY + q % ("mobile", c["mobile"]) + "&partnerProgramName=AcmeAir&limit=1&offset=1",
           expect=200)
    r.call("GET", HISTORY + q % ("id", 999999999), expect=200)
    r.call("GET", HISTORY + q % ("id", c["id"]) + "&limit=0", expect=400)
    r.call("GET", HISTORY + q % ("id", c["id"]) + "&offset=-1", expect=400)
    r.call("GET", HEALTH, auth=None, expect=200)
    r.call("HEAD", HEALTH, auth=None, expect=200)
    r.call("HEAD", PROGRAMS + q % ("id", c["id"]), expect=200)
    r.call("HEAD", PROGRAMS + q % ("mobile", "12"), expect=400)
    r.call("HEAD", HISTORY + q % ("id", c["id"]) + "&limit=2", expect=200)
    r.call("HEAD", HISTORY + q % ("id", c["id"]), auth=None, expect=401)
    r.call("HEAD", METRICS, auth=None, expect=200)
    _, hdrs, text = r.call("GET", METRICS, auth=None, expect=200)
    r.call("GET", PROGRAMS + q % ("id", c["id"]), auth=DEMO, expect=200)
    r.validate()


def test_openapi_rate_limit_and_unavailable_match_spec():
    # 429: its own stack with --rate-limit; 503 and nginx's 502: Redis, then partnerd, stopped.
    with harness.Stack(partnerd_args=["--rate-limit", "3"], load=True) as stack:
        r = Recorder(stack)
        q = PROGRAMS + "?identifierName=id&identifierValue=1011"
        statuses = [r.call("GET", q)[0] for _ in range(6)]
        assert 429 in statuses, "no 429 after 6 requests with --rate-limit 3: %r" % statuses
        c = stack.customer()
        st = r.call("POST", LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]})[0]
        assert st == 429, st
        stack.stop_proc("redis-server")
        r.call("GET", HEALTH, auth=None, expect=503)
        r.call("POST", LINK, {"linkCustomers": [entry(by_mobile(c), item("AcmeShop", stack.uid()))]},
               auth=GLOBEX_NEW, expect=503)
        r.call("GET", q, auth=GLOBEX_NEW, expect=503)
        stack.stop_proc("partnerd-0", timeout=15)
        r.call("GET", HEALTH, auth=None, expect=502)
        r.validate()


# A credential partnerd has not cached: with Redis down, authenticating it needs Redis (503).
GLOBEX_NEW = ("globex_api", "globex_secret")
