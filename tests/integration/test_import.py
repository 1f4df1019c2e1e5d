"""partnerctl import-customers (SPEC §3): bulk customer import from JSON Lines or CSV,
streamed and pipelined, validated like `partnerctl load`, resumable from a checkpoint.

Every test uses org `imports` (data/orgs.json: program ImpShop; customers 1 and 2 hold
held1@/held2@imports.example, IMP-HELD-1/2 and mobiles 916600000001/2) and its own range
of customer ids (the test's number times 100000), so the tests do not disturb each other
or the other orgs. Files are written to the stack's directory.
"""

import hashlib
import os
import re
import subprocess
import time

import keys
from harness import Stack, partnerctl_bin
from helpers import assert_codes, item, killed_while_paused, link1, run_on_a_tty, unchanged

# The imports add tens of thousands of customers: they get a stack of their own, so that
# the shared stack's key space (compared around every refused request of other modules)
# stays small. Started at the first test of this module, stopped at exit.
_own = None


def _stack():
    global _own
    if _own is None:
        _own = Stack()
        _own.start()
    return _own

ORG = "imports"
AUTH = ("imports_api", "imports_secret")
SUMMARY = re.compile(r"(\d+) line\(s\) read, (\d+) imported \((\d+) new, (\d+) changed, "
                     r"(\d+) unchanged\), (\d+) rejected")


# ---------------------------------------------------------------- helpers

def cust(cid, **over):
    """A customer line of range cid: mobile 95XXXXXXXX (national: the org adds 91)."""
    c = {"id": cid, "mobile": "95%08d" % (cid % 10 ** 8), "email": "c%d@imp.example" % cid,
         "externalId": "IMP-%d" % cid}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def stored(c):
    """The customer hash an imported line c leaves (v aside)."""
    out = {"id": str(c["id"])}
    for k in ("email", "externalId"):
        if c.get(k):
            out[k] = c[k]
    if c.get("mobile"):
        m = str(c["mobile"])
        out["mobile"] = "91" + m if len(m) == 10 else m
    return out


def write(stack, name, lines):
    import json
    path = os.path.join(stack.dir, name)
    with open(path, "w") as f:
        for l in lines:
            f.write((l if isinstance(l, str) else json.dumps(l)) + "\n")
    return path


def run_import(stack, path, *args):
    """(exit status, summary counts or None, stdout, stderr)."""
    rc, out, err = stack.ctl("import-customers", "--org", ORG, *(list(args) + [path]))
    m = SUMMARY.search(out)
    counts = tuple(int(x) for x in m.groups()) if m else None
    return rc, counts, out, err


def chash(stack, cid):
    raw = stack.redis("HGETALL", keys.cust(ORG, cid))
    return {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}


def holder(stack, kind, value):
    v = stack.redis("HGET", keys.ix(ORG, kind, value), value)
    return None if v is None else int(v)


def assert_imported(stack, lines, v="0"):
    """Each line's customer is stored exactly so, and every identifier indexes to it."""
    bad = []
    for c in lines:
        want = dict(stored(c), v=v)
        got = chash(stack, c["id"])
        if got != want:
            bad.append("customer %d: %r, expected %r" % (c["id"], got, want))
        for k in ("mobile", "email", "externalId"):
            if k in want and holder(stack, k, want[k]) != c["id"]:
                bad.append("customer %d: %s index %r -> %r" % (c["id"], k, want[k],
                                                             holder(stack, k, want[k])))
    assert not bad, "\n".join(bad[:10])


def checkpoint_key(path):
    """pp:{ORG}:import:HEX as docs/DATA-MODEL.md defines it."""
    st = os.stat(path)
    ident = (os.path.realpath(path).encode() + b"\0" + str(st.st_size).encode() + b"\0" +
             b"%d.%09d" % (st.st_mtime_ns // 10 ** 9, st.st_mtime_ns % 10 ** 9))
    return keys.import_(ORG, hashlib.blake2b(ident, digest_size=16).hexdigest())


# ---------------------------------------------------------------- formats

def test_import_jsonl_creates_customers_with_indexes_and_no_checkpoint_left():
    stack = _stack()
    lines = [cust(100000 + i) for i in range(1, 3001)]
    lines[5]["mobile"] = int(lines[5]["mobile"])            # a mobile as a JSON number
    lines[6]["mobile"] = "+91 " + lines[6]["mobile"]        # with country code and spaces
    lines[7].pop("externalId")
    path = write(stack, "t1.jsonl", lines)
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0, out + err
    assert counts == (3000, 3000, 3000, 0, 0, 0), out
    assert err == "", err                                    # no bar: stderr is no terminal
    lines[6]["mobile"] = lines[6]["mobile"][4:]
    assert_imported(stack, lines)
    assert "externalId" not in chash(stack, 100008)
    assert stack.redis("EXISTS", checkpoint_key(path)) == 0


def test_import_csv_with_header_in_any_order_and_quoted_fields():
    stack = _stack()
    rows = [cust(200000 + i) for i in range(1, 2001)]
    rows[0]["email"] = 'odd,"quoted"@imp.example'
    rows[1].pop("mobile")
    text = ["externalId,id,email,mobile"]
    for c in rows:
        q = lambda s: '"%s"' % s.replace('"', '""') if ("," in s or '"' in s) else s
        text.append(",".join([q(c.get("externalId", "")), str(c["id"]), q(c["email"]),
                              c.get("mobile", "")]))
    path = write(stack, "t2.csv", text)
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0, out + err
    assert counts == (2000, 2000, 2000, 0, 0, 0), out
    assert_imported(stack, rows)


def test_import_from_stdin_reads_json_lines():
    stack = _stack()
    lines = [cust(210000 + i) for i in range(1, 11)]
    import json
    p = subprocess.run([partnerctl_bin(), "--redis", stack.redis_url, "import-customers",
                        "--org", ORG, "-"], input="".join(json.dumps(c) + "\n" for c in lines).encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert SUMMARY.search(p.stdout.decode()).groups()[:3] == ("10", "10", "10")
    assert_imported(stack, lines)


# ---------------------------------------------------------------- rejected lines

def test_import_rejects_bad_lines_with_line_number_and_reason_and_exits_1():
    stack = _stack()
    good = [cust(300000 + i) for i in range(1, 2001)]
    lines = list(good)
    bad = {                     # line number -> (line, words the reason must contain)
        3: ('{"id": 0, "email": "z0@imp.example"}', "id must be an integer from 1 to 9223372036854775807"),
        10: ('{"id": 399001, "mobile": "12ab"}', "mobile"),
        20: ('not json', "JSON"),
        30: ('{"id": 399002, "email": 5}', "email is not a string"),
        40: ('{"id": 399003, "nickname": "x"}', "unknown key"),
        50: ('{"id": 399004, "email": "held1@imports.example"}', "held by customer 1"),
        60: ('{"id": "399005"}', "id must be an integer from 1 to 9223372036854775807"),
        1500: ('[1, 2]', "not an object"),
    }
    for n in sorted(bad):
        lines.insert(n - 1, bad[n][0])
    path = write(stack, "t3.jsonl", lines)
    rc, counts, out, err = run_import(stack, path)
    assert rc == 1, out + err
    assert counts == (2008, 2000, 2000, 0, 0, 8), out
    reported = [l for l in err.splitlines() if ": rejected: " in l]
    assert len(reported) == 8, err
    for (n, (_, why)), l in zip(sorted(bad.items()), reported):
        assert ("t3.jsonl:%d: rejected: " % n) in l and why in l, "line %d: %r" % (n, l)
    assert_imported(stack, good)
    for cid in (399001, 399002, 399003, 399004, 399005):
        assert chash(stack, cid) == {}, cid
    assert holder(stack, "email", "held1@imports.example") == 1


def test_import_rejects_a_later_line_reusing_an_identifier_of_the_file():
    stack = _stack()
    a, b, c = cust(400001), cust(400002), cust(400003)
    lines = [a, dict(b, email=a["email"]),                     # line 2: a's email
             c, cust(400004, externalId=c["externalId"]),      # line 4: c's externalId
             cust(400005, mobile=a["mobile"])]                 # line 5: a's mobile
    path = write(stack, "t4.jsonl", lines)
    rc, counts, out, err = run_import(stack, path, "--batch", "2")   # across batches too
    assert rc == 1, out + err
    assert counts == (5, 2, 2, 0, 0, 3), out
    for n, cid, what in ((2, 400002, "email"), (4, 400004, "externalId"), (5, 400005, "mobile")):
        assert re.search(r"t4\.jsonl:%d: rejected: customer %d: %s .* already held by customer "
                         % (n, cid, what), err), err
    assert_imported(stack, [a, c])
    for cid in (400002, 400004, 400005):
        assert chash(stack, cid) == {}


# ---------------------------------------------------------------- upsert semantics

def test_reimporting_the_same_file_writes_nothing():
    stack = _stack()
    lines = [cust(500000 + i) for i in range(1, 2001)]
    path = write(stack, "t5.jsonl", lines)
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0 and counts[2] == 2000, out + err
    with unchanged(stack):
        rc, counts, out, err = run_import(stack, path)
    assert rc == 0, out + err
    assert counts == (2000, 2000, 0, 0, 2000, 0), out


def test_import_identifier_change_bumps_v_and_moves_the_index_entries():
    stack = _stack()
    a, b, c, d = (cust(600000 + i) for i in range(1, 5))
    path = write(stack, "t6a.jsonl", [a, b, c, d])
    assert run_import(stack, path)[0] == 0
    a2 = dict(a, email="new-a@imp.example")
    b2 = {k: v for k, v in b.items() if k != "mobile"}          # mobile removed
    c2 = dict(c, externalId="IMP-C-NEW")                         # frees c's old externalId ...
    e = cust(600005, externalId=c["externalId"])                 # ... which a later line takes
    path = write(stack, "t6b.jsonl", [a2, b2, d, c2, e])
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0, out + err
    assert counts == (5, 5, 1, 3, 1, 0), out
    assert_imported(stack, [a2, b2, c2], v="1")
    assert_imported(stack, [d, e], v="0")
    assert holder(stack, "email", a["email"]) is None
    assert holder(stack, "mobile", "91" + b["mobile"]) is None
    assert "mobile" not in chash(stack, b["id"])


def test_import_line_cannot_take_an_identifier_a_later_line_frees():
    stack = _stack()
    a = cust(610001)
    assert run_import(stack, write(stack, "t7a.jsonl", [a]))[0] == 0
    early = cust(610002, email=a["email"])                       # a still holds it here
    path = write(stack, "t7b.jsonl", [early, dict(a, email="moved@imp.example")])
    rc, counts, out, err = run_import(stack, path)
    assert rc == 1 and counts == (2, 1, 0, 1, 0, 1), out + err
    assert "t7b.jsonl:1: rejected: customer 610002" in err, err
    assert holder(stack, "email", a["email"]) is None
    assert chash(stack, 610002) == {}


def test_import_moves_identifiers_after_the_script_cache_was_flushed():
    """An old identifier leaves its index through hdel_if.lua. A script cache emptied while
    an import runs (SCRIPT FLUSH; a failover behind a proxy that keeps the connection)
    must not fail the batches after it: their other writes and their checkpoint commit in
    the same MULTI/EXEC, so the old index entries would stay behind, skipped by --resume."""
    stack = _stack()
    lines = [cust(620000 + i) for i in range(1, 1001)]
    assert run_import(stack, write(stack, "t7c.jsonl", lines))[0] == 0
    moved = [dict(c, email="moved-%d@imp.example" % c["id"]) for c in lines]
    path = write(stack, "t7d.jsonl", moved)
    key = checkpoint_key(path)
    argv = [partnerctl_bin(), "--redis", stack.redis_url, "import-customers", "--org", ORG,
            "--batch", "10", path]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while stack.redis("HGET", key, "line") is None:
            assert p.poll() is None, "the import ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 30 s"
        # Hold the import's next EXEC while the cache is emptied: later batches meet it.
        stack.redis("CLIENT", "PAUSE", 10000, "WRITE")
        try:
            assert p.poll() is None, "the import finished before the script cache was flushed"
            stack.redis("SCRIPT", "FLUSH")
        finally:
            stack.redis("CLIENT", "UNPAUSE")
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (out + err).decode()
    m = SUMMARY.search(out.decode())
    assert m and tuple(int(x) for x in m.groups()) == (1000, 1000, 0, 1000, 0, 0), out
    assert_imported(stack, moved, v="1")
    stale = [c["id"] for c in lines if holder(stack, "email", c["email"]) is not None]
    assert not stale, "old email index entries left for customers %r" % stale[:10]


# ---------------------------------------------------------------- resume

def test_failed_import_resumes_after_the_last_committed_batch():
    stack = _stack()
    lines = [cust(700000 + i) for i in range(1, 1001)]
    path = write(stack, "t8.jsonl", lines)
    trap = keys.cust(ORG, 700450)
    stack.redis("SET", trap, "not a hash")                       # batch 401-500 fails
    try:
        rc, counts, out, err = run_import(stack, path, "--batch", "100")
        assert rc == 1 and counts is None, out + err
        assert "lines 401-500 failed" in err and "--resume" in err, err
        cp = stack.redis("HGETALL", checkpoint_key(path))
        cp = {cp[i].decode(): cp[i + 1].decode() for i in range(0, len(cp), 2)}
        assert cp["line"] == "400" and cp["new"] == "400", cp
        assert chash(stack, 700401) == {}
    finally:
        stack.redis("DEL", trap)
    rc, counts, out, err = run_import(stack, path, "--resume", "--batch", "100")
    assert rc == 0, out + err
    assert counts == (1000, 1000, 1000, 0, 0, 0), out
    assert "resumed after line 400 (byte %d)" % int(cp["offset"]) in out, out
    assert_imported(stack, lines)
    assert stack.redis("EXISTS", checkpoint_key(path)) == 0


def test_killed_import_resumes_to_the_state_of_a_full_import():
    stack = _stack()
    lines = [cust(800000 + i) for i in range(1, 20001)]
    path = write(stack, "t9.jsonl", lines)
    key = checkpoint_key(path)
    argv = [partnerctl_bin(), "--redis", stack.redis_url, "import-customers", "--org", ORG,
            "--batch", "50", path]
    # Every write held (the import's next EXEC waits) once it checkpointed: the kill lands mid-way.
    killed_while_paused(argv, lambda: stack.redis("HGET", key, "line") is not None,
                        "its first checkpoint", lambda: stack.redis("CLIENT", "PAUSE", 10000, "WRITE"),
                        lambda: stack.redis("CLIENT", "UNPAUSE"))
    at = int(stack.redis("HGET", key, "line"))
    assert 0 < at < 20000, at
    # On a cluster a batch is three rounds, not one transaction (docs/OPERATIONS.md): the
    # batch the kill cut may be partly written, and those customers resume as unchanged.
    cluster = stack.cluster is not None
    assert chash(stack, 800000 + at) != {}
    assert cluster or chash(stack, 800000 + at + 1) == {}
    rc, counts, out, err = run_import(stack, path, "--resume", "--batch", "50")
    assert rc == 0, out + err
    if cluster:
        new, unchanged = counts[2], counts[4]
        assert counts[:2] == (20000, 20000) and counts[3] == counts[5] == 0, out
        assert new + unchanged == 20000 and unchanged <= 50, out
    else:
        assert counts == (20000, 20000, 20000, 0, 0, 0), out
    assert "resumed after line %d" % at in out, out
    assert_imported(stack, lines)
    assert stack.redis("EXISTS", key) == 0
    # Without --resume a checkpoint is ignored: the whole file again, all unchanged.
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0 and counts == (20000, 20000, 0, 0, 20000, 0), out + err


# ---------------------------------------------------------------- the rest

def test_imported_customer_is_linked_through_the_api():
    stack = _stack()
    c = cust(900001)
    assert run_import(stack, write(stack, "t10.jsonl", [c]))[0] == 0
    mid = stack.uid()
    got, st = link1(stack, {"mobile": c["mobile"]}, item("ImpShop", mid), auth=AUTH)
    assert got["id"] == c["id"] and got["email"] == c["email"], got
    assert_codes(st, [200])
    assert stack.membership(c["id"], "ImpShop", org=ORG)["mid"] == mid
    # importing the customer again keeps its membership
    assert run_import(stack, write(stack, "t10b.jsonl", [dict(c, email="relinked@imp.example")]))[0] == 0
    assert stack.membership(c["id"], "ImpShop", org=ORG)["mid"] == mid
    assert chash(stack, c["id"])["v"] == "2"                     # link 1, identifier change 2


def test_import_progress_bar_only_on_a_terminal():
    stack = _stack()
    path = write(stack, "t11.jsonl", [cust(910000 + i) for i in range(1, 501)])
    p, tty = run_on_a_tty([partnerctl_bin(), "--redis", stack.redis_url, "import-customers",
                           "--org", ORG, path], timeout=60)
    assert p.returncode == 0, p.stdout
    assert b"\r" in tty and b"lines/s" in tty and b"100%" in tty, tty


def test_import_default_batch_keeps_index_commands_few():
    """Key layout 2 spreads each identifier index over 256 bucket hashes: a batch reads and
    writes each bucket it touches with one command, so small batches cost up to 3 x 256
    reads and as many writes per batch on top of one HMGET and one HSET per customer (issue
    14 follow-up: import had become 2-3 x slower). The default batch keeps that overhead
    small: at most 2.4 HMGET + HSET calls per customer for a 20 000-customer file (batches
    of 1000 made it ~3.5)."""
    stack = _stack()
    n = 20000
    path = write(stack, "t13.jsonl", [cust(1300000 + i) for i in range(1, n + 1)])
    stack.redis("CONFIG", "RESETSTAT")
    rc, counts, out, err = run_import(stack, path)
    assert rc == 0 and counts == (n, n, n, 0, 0, 0), out + err
    stats = stack.redis("INFO", "commandstats").decode()
    calls = {m.group(1): int(m.group(2))
             for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", stats)}
    per = (calls.get("hmget", 0) + calls.get("hset", 0)) / n
    assert per <= 2.4, "%.2f HMGET + HSET per customer: %r" % (per, calls)


def test_import_unknown_org_usage_and_help():
    stack = _stack()
    path = write(stack, "t12.jsonl", [cust(920001)])
    rc, out, err = stack.ctl("import-customers", "--org", "no-such-org", path)
    assert rc == 2 and "unknown org" in err, out + err
    rc, out, err = stack.ctl("import-customers", path)
    assert rc == 2 and "usage:" in err, out + err
    rc, out, err = stack.ctl("import-customers", "--help")
    assert rc == 0 and "import-customers --org ORG" in out, out + err
    rc, out, err = stack.ctl("--help")
    assert rc == 0 and "import-customers" in out, out + err
    assert chash(stack, 920001) == {}


def test_check_passes_after_the_imports():
    stack = _stack()
    rc, out, err = stack.ctl("check", "--org", ORG)
    assert rc == 0, out + err
