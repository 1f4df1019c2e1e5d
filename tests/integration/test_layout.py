"""The key layout version of the stored data (issue 14; src/store_layout.h): partnerd and
partnerctl read the current key layout only (keys.LAYOUT_VERSION, 3). Data of layout 1 (the
org set without the layout record, as releases before layout 2 left it), of layout 2 (the
customer locks as keys of their own) or of another version is refused with a message that
names `partnerctl migrate`, and changes nothing; `partnerctl load` on an empty Redis records
the current layout.

Each test builds its own stack: they change or empty the whole key space. The refusals at
start-up are those of another partnerd started beside the stack's."""

import json
import os
import subprocess
import time

import keys
from harness import HEALTH, LINK, Stack, partnerd_bin, srcdir, tail
from helpers import entry, item

MIGRATE = "partnerctl migrate"


def _layout_1(stack):
    """Turns the stack's data into what layout 1 looked like to the check: the org set
    without the layout record."""
    stack.redis("DEL", keys.LAYOUT)
    assert stack.redis("EXISTS", keys.ORGS) == 1


def _start_partnerd(stack):
    """partnerd on the stack's Redis; (exit status or None if still running after 5 s,
    its log)."""
    sock = os.path.join(stack.dir, "refused.sock")
    log = os.path.join(stack.dir, "refused.log")
    with open(log, "ab") as f:
        p = subprocess.Popen([partnerd_bin(), "--socket", sock, "--workers", "2", "--redis",
                              stack.redis_url], stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                             start_new_session=True)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(timeout=5)
        rc = None
    return rc, tail(log)


def test_partnerd_refuses_to_start_on_layout_1_data_naming_partnerctl_migrate():
    with Stack() as st:
        _layout_1(st)
        before = st.snapshot()
        rc, log = _start_partnerd(st)
        assert rc == 1, "partnerd on layout-1 data: exit %r, expected 1\n%s" % (rc, log)
        assert "key layout 1" in log and MIGRATE in log, "no clear refusal in the log:\n" + log
        assert st.snapshot() == before, "partnerd changed the data it refused"


def test_partnerd_refuses_to_start_on_another_layout_version():
    with Stack() as st:
        for other in ("2", "9"):
            st.redis("SET", keys.LAYOUT, other)
            rc, log = _start_partnerd(st)
            assert rc == 1, "partnerd on layout \"%s\": exit %r, expected 1\n%s" % (other, rc, log)
            assert 'key layout "%s"' % other in log and MIGRATE in log, "no clear refusal in the log:\n" + log
        st.redis("SET", keys.LAYOUT, keys.LAYOUT_VERSION)


def test_partnerd_starts_on_an_empty_redis_and_on_the_current_layout():
    with Stack(load=False) as st:
        assert st.keys() == []
        rc, log = _start_partnerd(st)
        assert rc is None, "partnerd on an empty Redis exited %r:\n%s" % (rc, log)
        st.load(st.fixtures)
        assert st.redis("GET", keys.LAYOUT) == keys.LAYOUT_VERSION.encode()
        rc, log = _start_partnerd(st)
        assert rc is None, "partnerd on current-layout data exited %r:\n%s" % (rc, log)


def test_a_new_connection_to_layout_1_data_answers_503_naming_partnerctl_migrate():
    """partnerd checks every new Redis connection: data replaced by layout-1 data behind a
    running partnerd (a Redis restarted on an old dump, here: the record deleted and the
    connections killed) is refused with 503, and served again once it is the current layout."""
    with Stack() as st:
        c = st.customer()
        body = {"linkCustomers": [entry({"id": c["id"]}, item("AcmeShop", st.uid()))]}
        first = st.post(LINK, body)
        assert first[0] == 200, first
        _layout_1(st)
        st.redis("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        before = st.snapshot()
        body = {"linkCustomers": [entry({"id": c["id"]}, item("AcmeSpare", st.uid()))]}
        status, headers, resp = st.post(LINK, body)
        assert status == 503, "expected 503 on layout-1 data, got %s %r" % (status, resp)
        msg = resp["errors"][0]["message"]
        assert "key layout 1" in msg and MIGRATE in msg, "503 message: %r" % msg
        assert headers.get("Retry-After"), "503 without Retry-After"
        assert st.get(HEALTH, auth=None)[0] == 503
        assert st.snapshot() == before, "a refused request changed the data"
        st.redis("SET", keys.LAYOUT, keys.LAYOUT_VERSION)
        deadline = time.monotonic() + 5
        while True:
            status, _, resp = st.post(LINK, body)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == 200, "not served again on the current layout: %s %r" % (status, resp)


def test_partnerctl_load_records_the_current_layout_on_an_empty_redis():
    with Stack(load=False) as st:
        path = os.path.join(st.dir, "empty.json")
        with open(path, "w") as f:
            json.dump({"orgs": []}, f)
        rc, out, err = st.ctl("load", path)
        assert rc == 0, (rc, out, err)
        assert st.redis("GET", keys.LAYOUT) == keys.LAYOUT_VERSION.encode()
        # loading again leaves it as it was; a full load keeps it
        st.load(st.fixtures)
        before = st.snapshot()
        st.load(st.fixtures)
        assert st.snapshot() == before
        assert st.redis("GET", keys.LAYOUT) == keys.LAYOUT_VERSION.encode()


def test_partnerctl_verbs_refuse_layout_1_data_and_change_nothing():
    with Stack() as st:
        _layout_1(st)
        before = st.snapshot()
        imp = os.path.join(st.dir, "customers.jsonl")
        with open(imp, "w") as f:
            f.write('{"id": 990001, "mobile": "919900990001"}\n')
        for args in (("load", st.fixtures), ("import-customers", "--org", "acme", imp),
                     ("show", "--org", "acme", "--id", "1001"), ("check",)):
            rc, out, err = st.ctl(*args)
            assert rc == 1, "partnerctl %s on layout-1 data: exit %d\n%s%s" % (args[0], rc, out, err)
            assert "key layout 1" in err and MIGRATE in err, \
                "partnerctl %s: no clear refusal: %r" % (args[0], err)
        st.redis("SET", keys.LAYOUT, "7")
        rc, out, err = st.ctl("load", st.fixtures)
        assert rc == 1 and 'key layout "7"' in err, (rc, err)
        st.redis("DEL", keys.LAYOUT)
        assert st.snapshot() == before, "a refused verb changed the data"


def test_the_scripts_tag_of_a_customer_is_layout_part_of_cid_s_tag(stack):
    """tags.lua's tag_of_cid (begin, commit, read and holds name a customer's keys with it)
    against keys.py's part_of_cid and tag (pinned to test_layout.c's vectors), run by
    Redis's Lua on ids at the edges of its doubles and of 65521."""
    with open(os.path.join(srcdir(), "src", "lua", "tags.lua")) as f:
        text = f.read()
    tags = "".join(keys.tag(p).ljust(10) for p in range(keys.LAYOUT_PARTS))
    script = text.replace("@LAYOUT_TAGS@", tags) + "\nreturn tag_of_cid(ARGV[1])\n"
    cids = [0, 1, 42, 255, 256, 65520, 65521, 65522, 382741349, 2 ** 53 + 1,
            9223372036854775807, -42, -9223372036854775808] + list(range(1000, 300000, 997))
    bad = []
    for cid in cids:
        got = stack.redis("EVAL", script, 0, str(cid))
        want = keys.tag(keys.part_of_cid(cid))
        if got.decode() != want:
            bad.append((cid, got, want))
    assert not bad, "Lua's tag_of_cid differs: %r" % bad[:5]
