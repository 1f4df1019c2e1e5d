"""The API reference page (issue 17): docs/openapi.yaml rendered by `make api-docs`
(scripts/build-api-docs) and served by nginx/partnerd-docs.conf at /v2/partnerProgram/docs.

The browser test drives Debian's headless Chromium over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4, no websocket): it loads the
page from the stack's nginx, waits for Redoc to hydrate it, and fails on any console error,
uncaught exception, failed load, or request to anything but the stack's own origin (every
other host name resolves to nothing: `--host-resolver-rules`), and unless every route of
docs/openapi.yaml appears in the rendered text. The screenshot is kept as
BUILDDIR/tests/integration/api-docs.png (next to `$PARTNERD_API_HTML`'s docs/ dir).
$CHROMIUM names the browser (default: chromium in PATH); a missing one fails.
"""

import base64
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time

import harness

DOCS = "/v2/partnerProgram/docs"
ARTEFACT = "api-docs.png"


def openapi_routes():
    """{path: [method, ...]} of docs/openapi.yaml (its `paths:` keys, two spaces in, and
    their operations, four spaces in)."""
    with open(os.path.join(harness.srcdir(), "docs", "openapi.yaml")) as f:
        text = f.read()
    body = re.search(r"^paths:\n(.*?)(?=^\S)", text, re.S | re.M).group(1)
    routes, path = {}, None
    for line in body.splitlines():
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            path = m.group(1)
            routes[path] = []
        m = re.match(r"^    (get|put|post|delete|options|head|patch|trace):\s*$", line)
        if m and path:
            routes[path].append(m.group(1))
    assert len(routes) >= 5 and all(routes.values()), "routes read from docs/openapi.yaml: %r" % routes
    return routes


def artefact_dir():
    d = os.path.join(os.path.dirname(os.path.dirname(harness.api_html())), "tests", "integration")
    os.makedirs(d, exist_ok=True)
    return d


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe."""

    def __init__(self):
        exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe, "chromium not found ($CHROMIUM, or Debian's chromium package: scripts/install-deps)"
        self.profile = tempfile.mkdtemp(prefix="partnerd-chromium-")
        to_r, self.to_w = os.pipe()        # commands: chromium reads fd 3
        self.from_r, from_w = os.pipe()    # replies and events: chromium writes fd 4
        hi_r = os.dup(to_r)
        hi_w = os.dup(from_w)
        for fd in (to_r, from_w):
            os.close(fd)

        def fds():
            harness._die_with_parent()
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        argv = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,2000", "--user-data-dir=" + self.profile,
                "--remote-debugging-pipe", "about:blank"]
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     preexec_fn=fds, pass_fds=(3, 4), start_new_session=True)
        os.close(hi_r)
        os.close(hi_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read_message(self, deadline):
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("chromium: no DevTools message in time\n" + self.tail())
            r, _, _ = select.select([self.from_r], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self.from_r, 1 << 20)
                if not chunk:
                    raise AssertionError("chromium closed its DevTools pipe\n" + self.tail())
                self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        m = {"id": mid, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        data = json.dumps(m).encode() + b"\0"
        while data:
            data = data[os.write(self.to_w, data):]
        deadline = time.monotonic() + timeout
        while True:
            r = self._read_message(deadline)
            if r.get("id") == mid:
                assert "error" not in r, "DevTools %s: %r" % (method, r["error"])
                return r.get("result", {})
            self.events.append(r)

    def pump(self, secs):
        """Collects events for secs seconds."""
        deadline = time.monotonic() + secs
        while True:
            try:
                self.events.append(self._read_message(deadline))
            except AssertionError:
                if time.monotonic() >= deadline and self.proc.poll() is None:
                    return
                raise

    def tail(self):
        self.log.flush()
        return harness.tail(os.path.join(self.profile, "chromium.log"))

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except (AssertionError, OSError):
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            for fd in (self.to_w, self.from_r):
                os.close(fd)
            self.log.close()
            shutil.rmtree(self.profile, ignore_errors=True)


def load_page(url):
    """Loads url; returns (the text of each operation, problems, request urls, png bytes,
    the number of operations rendered)."""
    b = Browser()
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Runtime", "Log", "Page", "Network"):
            b.call(dom + ".enable", session=s)
        nav = b.call("Page.navigate", {"url": url}, session=s)
        assert not nav.get("errorText"), "navigation failed: %r" % nav
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == s
                      for e in b.events):
            assert time.monotonic() < deadline, "no load event within 30 s"
            b.pump(0.2)
        # Redoc hydrates after load: wait until its operations are in the DOM, then a quiet second.
        ops = 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ops = b.call("Runtime.evaluate", {"expression":
                         "document.querySelectorAll('[data-section-id^=\"tag/\"][data-section-id*=\"/operation/\"]').length",
                         "returnByValue": True}, session=s)["result"].get("value", 0)
            if ops:
                break
            b.pump(0.2)
        b.pump(1.0)
        # The visible text of each rendered operation (its endpoint names the method and path).
        text = b.call("Runtime.evaluate", {"expression": "Array.from(document.querySelectorAll("
                                           "'[data-section-id^=\"tag/\"][data-section-id*=\"/operation/\"]'), e => e.innerText)",
                                           "returnByValue": True}, session=s)["result"].get("value", [])
        png = base64.b64decode(b.call("Page.captureScreenshot", {"format": "png"}, session=s)["data"])
        problems, urls = [], []
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                problems.append("console.%s: %s" % (p["type"], " ".join(
                    str(a.get("value", a.get("description", ""))) for a in p.get("args", []))))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                problems.append("exception: %s %s" % (d.get("text"), d.get("exception", {}).get("description", "")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                problems.append("log: %s (%s)" % (p["entry"].get("text"), p["entry"].get("url", "")))
            elif m == "Network.loadingFailed":
                problems.append("load failed: %s %s" % (p.get("errorText"), p.get("requestId")))
            elif m == "Network.requestWillBeSent":
                urls.append(p.get("request", {}).get("url", ""))
        return text, problems, urls, png, ops
    finally:
        b.close()


def test_api_reference_page_is_served_as_html(stack):
    st, h, body = stack.get(DOCS, auth=None)
    assert st == 200, "GET %s: %s %.200r (is %s built? make api-docs)" % (DOCS, st, body, harness.api_html())
    assert h.get("Content-Type", "").split(";")[0].strip() == "text/html", h.get("Content-Type")
    assert isinstance(body, bytes) and body.lstrip().lower().startswith(b"<!doctype html"), body[:100]
    with open(harness.api_html(), "rb") as f:
        assert body == f.read()
    # Nothing on the page comes from elsewhere (scripts/build-api-docs inlines Redoc).
    assert not re.search(rb"<(script|link|img)\b[^>]*\b(src|href)=\"?(https?:)?//", body, re.I)
    st, h, body = stack.request("HEAD", DOCS, auth=None, content_type=None)
    assert st == 200 and body in (b"", None, ""), (st, body)


def test_api_reference_page_leaves_other_routes_to_partnerd(stack):
    # Only the exact URI is the page: a POST is the JSON 405 (nginx's static module: with the
    # page in place), neighbours are partnerd's 404.
    st, h, body = stack.request("POST", DOCS, body={}, auth=None)
    assert st == 405 and body["errors"][0]["code"] == 405, (st, body)
    for path in (DOCS + "/", DOCS + "x", DOCS + ".html"):
        st, h, body = stack.get(path)
        assert st == 404 and h.get("Content-Type", "").startswith("application/json"), (path, st, body)
        assert body["errors"][0]["code"] == 404, (path, body)
    st, _, _ = stack.get(harness.HEALTH, auth=None)
    assert st == 200


def test_api_reference_page_renders_every_route_in_chromium(stack):
    url = "http://127.0.0.1:%d%s" % (stack.http_port, DOCS)
    text, problems, urls, png, ops = load_page(url)
    shot = os.path.join(artefact_dir(), ARTEFACT)
    with open(shot, "wb") as f:
        f.write(png)
    print("    # screenshot: %s (%d bytes), %d operations rendered, %d requests"
          % (shot, len(png), ops, len(urls)))
    assert png.startswith(b"\x89PNG") and len(png) > 10000, "screenshot too small: %d bytes" % len(png)
    assert not problems, "the page logged errors:\n  " + "\n  ".join(problems)
    origin = "http://127.0.0.1:%d/" % stack.http_port
    foreign = [u for u in urls if not u.startswith((origin, "data:", "blob:", "about:"))]
    assert not foreign, "the page fetched from elsewhere: %r" % foreign
    routes = openapi_routes()
    want = sum(len(m) for m in routes.values())
    assert ops == want == len(text), "operations rendered: %d (%d texts), in docs/openapi.yaml: %d" % (
        ops, len(text), want)
    # Each route shown by as many operations as it has methods, each with its method.
    missing = []
    for path, methods in routes.items():
        shown = [t for t in text if re.search(r"(?m)^\s*%s\s*$" % re.escape(path), t)]
        for method in methods:
            if not any(re.search(r"(?m)^\s*%s\s*$" % method, t, re.I) for t in shown):
                missing.append("%s %s" % (method.upper(), path))
    assert not missing, "routes missing from the rendered page: %r" % missing
