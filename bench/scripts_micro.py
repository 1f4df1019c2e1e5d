#!/usr/bin/env python3
"""Redis-side cost of partnerd's write scripts, in isolation (docs/PERFORMANCE.md).

Starts its own redis-server on a free loopback port, writes 20 000 customers in the stored
format (docs/DATA-MODEL.md: identifiers, version, two compact memberships, the mobile
index), then runs ITER rounds of begin.lua + commit.lua over B random customers each, as
partnerd sends them for a RENEWAL batch, and prints Redis's own time per customer entry
(INFO commandstats: evalsha usec around each call) and the time of the commands the
scripts ran. No nginx, no partnerd: what is left after the commands is the scripts' own
cost (Lua, argument and reply conversion).

    python3 bench/scripts_micro.py [LUA_DIR] [--batch B] [--iter N]

LUA_DIR (default src/lua) lets a variant of the scripts be compared with the shipped one.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import keys  # noqa: E402  (partnerd's key names, read from src/keys.h)
import activity  # noqa: E402  (the compact activity record partnerd's commit takes)
from harness import Redis, free_port  # noqa: E402

N = 20000
ORG = "mb"
# Customers ARGV[1] .. ARGV[2]; the field names come from src/keys.h: the memberships of
# programs 1 and 2 in ARGV[3] and ARGV[4]; then per customer the key names of key layout 2
# (loader_names: keys.py derives the tags, Lua has no SipHash): its hash and the bucket of
# its mobile.
LOADER = """
local f1, f2 = ARGV[3], ARGV[4]
local lo = tonumber(ARGV[1])
for c = lo, tonumber(ARGV[2]) do
  local mob = string.format('917%09d', c)
  local at = 5 + 2 * (c - lo)
  redis.call('HSET', ARGV[at], 'id', c, 'mobile', mob, 'email', 'c' .. c .. '@x.example',
    'externalId', 'X' .. c, 'v', 1,
    f1, '9:P1-' .. string.format('%06d', c) .. ',6:Silver,w2jgc1c0,,,loyw3v28,loyw3v28',
    f2, '9:P2-' .. string.format('%06d', c) .. ',6:Silver,w2jgc1c0,,,loyw3v28,loyw3v28')
  redis.call('HSET', ARGV[at + 1], mob, c)
end
"""


def loader_names(lo, hi):
    """LOADER's ARGV[5..]: per customer its hash and its mobile's index bucket."""
    out = []
    for c in range(lo, hi + 1):
        out += [keys.cust(ORG, c), keys.ix(ORG, "mobile", "917%09d" % c)]
    return out


PROG = '{"pid":1,"type":"EXTERNAL","tiers":["Bronze","Silver","Gold"],"cycle":null,"expiresAt":null}'
# the activity as partnerd's commit takes it: a compact record (src/activity.h)
_V = ("P1-000001", "Silver", 2022062400000, 1700000000000, None)
EVENT = activity.record("UPDATE", 1795000106000, "UpdProg", "0123456789abcdef0123456789abcdef",
                        update_type="RENEWAL", before=_V, after=_V)


def lua_text(lua_dir, name):
    """The script as Redis runs it: each "--#include NAME.lua" line replaced by that file of
    the same directory (what scripts/embed-lua does for partnerd), and the partition tags
    put in for tags.lua's placeholder (what store.c does when it loads the scripts)."""
    with open(os.path.join(lua_dir, name)) as f:
        lines = f.read().splitlines(True)
    text = "".join(lua_text(lua_dir, ln[len("--#include "):].strip()) if ln.startswith("--#include ")
                   else ln for ln in lines)
    return text.replace("@LAYOUT_TAGS@", "".join(t.ljust(10) for t in keys.tags()))


def main():
    ap = argparse.ArgumentParser(prog="bench/scripts_micro.py")
    ap.add_argument("lua_dir", nargs="?", default=os.path.join(TOP, "src", "lua"))
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--iter", type=int, default=200)
    args = ap.parse_args()
    port, d = free_port(), tempfile.mkdtemp(prefix="partnerd-scripts-")
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d], stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(100):
            try:
                r = Redis(port, timeout=60)
                r("PING")
                break
            except OSError:
                time.sleep(0.05)
        r("HSET", keys.progs(ORG), "UpdProg", PROG)
        for lo in range(1, N + 1, 5000):
            r("EVAL", LOADER, 0, lo, lo + 4999, keys.membership_field(1), keys.membership_field(2),
              *loader_names(lo, lo + 4999))
        sha = {k: r("SCRIPT", "LOAD", lua_text(args.lua_dir, k + ".lua")).decode()
               for k in ("begin", "commit")}

        def evalsha_usec():
            for line in r("INFO", "commandstats").decode().splitlines():
                if line.startswith("cmdstat_evalsha:"):
                    return int(line.split("usec=")[1].split(",")[0])
            return 0

        rng = random.Random(1)
        spent = {"begin": 0, "commit": 0}
        r("CONFIG", "RESETSTAT")
        B = args.batch
        for it in range(args.iter):
            cids = rng.sample(range(1, N + 1), B)
            tok = "%032x" % it
            a = [ORG, tok, 5000, keys.rate(ORG, "0" * 32), 0, B]
            for c in cids:
                mob = "917%09d" % c         # (kind, value, its bucket's tag), (program, mid, tag)
                a += [1, "mobile", mob, keys.tag(keys.bucket_of(mob)), 1, "UpdProg", "", ""]
            u0 = evalsha_usec()
            rep = r("EVALSHA", sha["begin"], 0, *a)
            spent["begin"] += evalsha_usec() - u0
            vers = {}
            for e in rep:
                h = dict(zip(e[2][::2], e[2][1::2]))
                vers[int(e[1])] = h[b"v"].decode()
            a = [tok, B, 100, 10000 // keys.LAYOUT_PARTS + 1, 0]   # keep_locks 0
            for c in cids:
                a += [keys.cust(ORG, c), keys.lock(ORG, c), vers[c], c, keys.hist(ORG, c), keys.feed_of(ORG, c), 1,
                      keys.membership_field(1),
                      "9:P1-%06d,6:Silver,w2jgc1c%d,,,loyw3v28,loyw3v28" % (c, it % 10), 0, 0, 0, 1, "UPDATE", EVENT]
            a += ["", "", ""]               # no Idempotency-Key: idem_key, idem_token, idem_ttl_ms
            u0 = evalsha_usec()
            rep = r("EVALSHA", sha["commit"], 0, *a)
            spent["commit"] += evalsha_usec() - u0
            if not all(x == b"OK" for x in rep):
                raise SystemExit("commit refused: %r" % rep[:3])
        inner = {}
        for line in r("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_") and not line.startswith(("cmdstat_evalsha", "cmdstat_info", "cmdstat_config")):
                name, rest = line[8:].split(":", 1)
                inner[name] = int(rest.split("usec=")[1].split(",")[0])
        n = args.iter * B
        tot = spent["begin"] + spent["commit"]
        print("Redis time per customer entry (batches of %d, %d batches): begin.lua %.2f us, commit.lua %.2f us, "
              "total %.2f us" % (B, args.iter, spent["begin"] / n, spent["commit"] / n, tot / n))
        print("  of which the commands the scripts ran: %.2f us %s" % (
            sum(inner.values()) / n,
            json.dumps({k: round(v / n, 2) for k, v in sorted(inner.items(), key=lambda kv: -kv[1])})))
        print("  scripts' own cost (Lua, argument and reply conversion): %.2f us" % ((tot - sum(inner.values())) / n))
    finally:
        p.terminate()
        p.wait(30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
