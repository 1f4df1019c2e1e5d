#!/usr/bin/env python3
"""Redis-side cost of partnerd's write scripts, in isolation (docs/PERFORMANCE.md).

Starts its own redis-server on a free loopback port, writes 20 000 customers in the stored
format (docs/DATA-MODEL.md: identifiers, version, two compact memberships, the mobile
index), then runs ITER rounds of begin.lua + commit.lua over B random customers each, as
partnerd sends them for a RENEWAL batch, and prints Redis's own time per customer entry
(INFO commandstats: evalsha usec around each call) and the time of the commands the
scripts ran. No nginx, no partnerd: what is left after the commands is the scripts' own
cost (Lua, argument and reply conversion).

    python3 bench/scripts_micro.py [LUA_DIR] [--batch B] [--iter N] [--mode MODE]
    python3 bench/scripts_micro.py [LUA_DIR] --profile [--mode MODE] [--batch B] [--iter N]

LUA_DIR (default src/lua) lets a variant of the scripts be compared with the shipped one.

--mode: single (one redis-server, the default), replica (the same with a replica attached),
aof (appendonly yes, appendfsync everysec), cluster (one redis-server with
--cluster-enabled yes holding every slot, called as partnerd calls a cluster: round 1
found the customer, so begin.lua gets its id; one begin.lua and one commit.lua call per
key-layout partition of the batch's customers, their keys declared in KEYS, each round's
calls pipelined).

--profile runs the measured rounds on a redis-server under `valgrind --tool=callgrind`
(the data is loaded first by a plain redis-server and handed over as an RDB file), with
collection on only while Redis reads and runs a request (readQueryFromClient) and in its
event loop's beforeSleep (replies written, replication, AOF), and prints Redis's
instructions per customer entry by part: the Lua VM, ARGV creation, redis.call's argument
and reply conversion, each command's own work, call()'s bookkeeping, propagation, the
per-call checks (cluster, ACL, ...). Deterministic counts: the machine's load does not
change them. The raw file is kept (--out, default bench-out/callgrind-redis-MODE.out) for
callgrind_annotate. Needs valgrind (`scripts/install-deps valgrind`, as scripts/bench does).
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
from cluster import _port_pair_free  # noqa: E402

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
MODES = ("single", "replica", "aof", "cluster")
SCRIPTS = ("partnerd", "peer", "floor-locked", "floor")
FEED_NAMES = ("date", "program", "updateType", "requestId", "beforeMembershipId", "beforeTierName",
              "beforeTierExpiryDate", "beforeStartDate", "beforeEndDate", "afterMembershipId", "afterTierName",
              "afterTierExpiryDate", "afterStartDate", "afterEndDate")
# --script floor-locked: partnerd's two calls reduced to the commands of the lock protocol
# and of the contract, with every key name and value computed by the caller (no tags, no
# record decoding, no type checks, no holders, no program definitions in the reply).
# ARGV: token, ttl, n, then per entry: index bucket, mobile, customer hash, lock key.
FLOOR_BEGIN = """
local tok, ttl, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for e = 0, n - 1 do
  local at = 4 + 4 * e
  local cid = redis.call('HGET', ARGV[at], ARGV[at + 1])
  local snap = redis.call('HGETALL', ARGV[at + 2])
  redis.call('SET', ARGV[at + 3], tok, 'NX', 'PX', ttl)
  out[e + 1] = {cid, snap}
end
return out
"""
# ARGV: token, n, feed_max, then per entry: customer hash, lock key, version read, new
# version, field, value, history key, feed key, cid, record, its 14 feed values.
FLOOR_COMMIT = """
local tok, n, fmax = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for e = 0, n - 1 do
  local a = 4 + 24 * e
  if redis.call('GET', ARGV[a + 1]) == tok and redis.call('HGET', ARGV[a], 'v') == ARGV[a + 2] then
    redis.call('HSET', ARGV[a], 'v', ARGV[a + 3], 'w', tok, ARGV[a + 4], ARGV[a + 5])
    redis.call('LPUSH', ARGV[a + 6], ARGV[a + 9])
    redis.call('XADD', ARGV[a + 7], 'MAXLEN', '~', fmax, '*', 'v', '3', 'type', 'UPDATE', 'customerId', ARGV[a + 8],
      'customerVersion', ARGV[a + 3], 'seq', '0', 'date', ARGV[a + 10], 'program', ARGV[a + 11],
      'updateType', ARGV[a + 12], 'requestId', ARGV[a + 13], 'beforeMembershipId', ARGV[a + 14],
      'beforeTierName', ARGV[a + 15], 'beforeTierExpiryDate', ARGV[a + 16], 'beforeStartDate', ARGV[a + 17],
      'beforeEndDate', ARGV[a + 18], 'afterMembershipId', ARGV[a + 19], 'afterTierName', ARGV[a + 20],
      'afterTierExpiryDate', ARGV[a + 21], 'afterStartDate', ARGV[a + 22], 'afterEndDate', ARGV[a + 23])
    redis.call('DEL', ARGV[a + 1])
    out[e + 1] = 'OK'
  else
    out[e + 1] = 'FENCED'
  end
end
return out
"""
# --script floor: the contract's commands only, in one call per batch and no lock: find the
# customer by its mobile, read its version and membership, write them, push the history
# record, append the feed entry. What any implementation of the update storing these
# formats must have Redis do. ARGV: n, feed_max, then per entry: index bucket, mobile,
# customer hash, field, value, history key, feed key, record, its 14 feed values.
FLOOR_ONE = """
local n, fmax = tonumber(ARGV[1]), ARGV[2]
local out = {}
for e = 0, n - 1 do
  local a = 3 + 22 * e
  local cid = redis.call('HGET', ARGV[a], ARGV[a + 1])
  local cur = redis.call('HMGET', ARGV[a + 2], 'v', ARGV[a + 3])
  local nv = tostring((tonumber(cur[1]) or 0) + 1)
  redis.call('HSET', ARGV[a + 2], 'v', nv, ARGV[a + 3], ARGV[a + 4])
  redis.call('LPUSH', ARGV[a + 5], ARGV[a + 7])
  redis.call('XADD', ARGV[a + 6], 'MAXLEN', '~', fmax, '*', 'v', '3', 'type', 'UPDATE', 'customerId', cid,
    'customerVersion', nv, 'seq', '0', 'date', ARGV[a + 8], 'program', ARGV[a + 9],
    'updateType', ARGV[a + 10], 'requestId', ARGV[a + 11], 'beforeMembershipId', ARGV[a + 12],
    'beforeTierName', ARGV[a + 13], 'beforeTierExpiryDate', ARGV[a + 14], 'beforeStartDate', ARGV[a + 15],
    'beforeEndDate', ARGV[a + 16], 'afterMembershipId', ARGV[a + 17], 'afterTierName', ARGV[a + 18],
    'afterTierExpiryDate', ARGV[a + 19], 'afterStartDate', ARGV[a + 20], 'afterEndDate', ARGV[a + 21])
  out[e + 1] = 'OK'
end
return out
"""


def lua_text(lua_dir, name):
    """The script as Redis runs it: each "--#include NAME.lua" line replaced by that file of
    the same directory (what scripts/embed-lua does for partnerd), and the partition tags
    put in for tags.lua's placeholder (what store.c does when it loads the scripts)."""
    with open(os.path.join(lua_dir, name)) as f:
        lines = f.read().splitlines(True)
    text = "".join(lua_text(lua_dir, ln[len("--#include "):].strip()) if ln.startswith("--#include ")
                   else ln for ln in lines)
    return text.replace("@LAYOUT_TAGS@", "".join(t.ljust(10) for t in keys.tags()))


class Server:
    """A redis-server of its own (port, directory), optionally under callgrind."""

    def __init__(self, d, mode, port=None, callgrind=None, replicaof=None):
        # a cluster node also listens on port + 10000 (its bus): cluster.py's pair
        self.port, self.d = port or (_port_pair_free() if mode == "cluster" else free_port()), d
        os.makedirs(d, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if mode == "aof" else "no", "--appendfsync", "everysec",
                "--dir", d, "--dbfilename", "dump.rdb"]
        if mode == "cluster":
            argv += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        if replicaof:
            argv += ["--replicaof", "127.0.0.1", str(replicaof)]
        if callgrind:
            argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + callgrind,
                    "--collect-atstart=no", "--toggle-collect=readQueryFromClient",
                    "--toggle-collect=beforeSleep"] + argv
        with open(os.path.join(d, "redis.log"), "ab") as log:
            self.p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        for _ in range(1200):
            try:
                self.r = Redis(self.port, timeout=600)
                self.r("PING")
                break
            except Exception:
                if self.p.poll() is not None:
                    with open(os.path.join(d, "redis.log"), errors="replace") as f:
                        tail = "".join(f.readlines()[-5:])
                    raise SystemExit("redis-server exited: %s\n%s" % (" ".join(argv), tail))
                time.sleep(0.05)
        else:
            raise SystemExit("redis-server did not answer: %s" % " ".join(argv))
        while b"loading:1" in self.r("INFO", "persistence"):
            time.sleep(0.1)

    def info(self, section):
        return dict(ln.split(":", 1) for ln in self.r("INFO", section).decode().splitlines() if ":" in ln)

    def stop(self):
        self.p.terminate()
        self.p.wait(300)


def load(r, mode):
    if mode == "cluster":
        r("CLUSTER", "ADDSLOTSRANGE", 0, keys.CLUSTER_SLOTS - 1)
        while b"cluster_state:ok" not in r("CLUSTER", "INFO"):
            time.sleep(0.05)
    r("HSET", keys.progs(ORG), "UpdProg", PROG)
    for lo in range(1, N + 1, 5000):
        names = loader_names(lo, lo + 4999)
        if mode == "cluster":   # every key is local: the loader's undeclared keys are allowed
            pass
        r("EVAL", LOADER, 0, lo, lo + 4999, keys.membership_field(1), keys.membership_field(2), *names)


def commit_entry(c, ver, it):
    # (key layout 3: the lock is the hash's field; scripts of layout 2 given as LUA_DIR took
    # the lock key after the hash)
    return [keys.cust(ORG, c), ver, c, keys.hist(ORG, c), keys.feed_of(ORG, c), 1,
            keys.membership_field(1),
            "9:P1-%06d,6:Silver,w2jgc1c%d,,,loyw3v28,loyw3v28" % (c, it % 10), 0, 0, 0, 1, "UPDATE", EVENT]


def load_scripts(r, args):
    """The SHA1s of the scripts --script runs."""
    if args.script == "partnerd":
        texts = {k: lua_text(args.lua_dir, k + ".lua") for k in ("begin", "commit")}
    elif args.script == "peer":
        text = ""
        for name in ("common.redis.lua", "update.redis.lua"):   # as bench/peer/peer.lua loads it
            with open(os.path.join(TOP, "bench", "peer", name)) as f:
                text += f.read()
        texts = {"peer": text.replace("@LAYOUT_TAGS@", "".join(t.ljust(10) for t in keys.tags()))}
    elif args.script == "floor-locked":
        texts = {"begin": FLOOR_BEGIN, "commit": FLOOR_COMMIT}
    else:
        texts = {"floor": FLOOR_ONE}
    return {k: r("SCRIPT", "LOAD", v).decode() for k, v in texts.items()}


FIELDS = [x.decode() for x in activity.record_fields(EVENT)]   # the record's 15 fields


def other_rounds(r, sha, script, batch, iters, around):
    """ITER batches of B entries of the peer's script (one call per entry, a batch's calls
    pipelined, as bench/peer/peer.lua sends them) or of the floors (one or two calls per
    batch); returns the calls made per script."""
    rng = random.Random(1)
    calls = {}
    fmax = 10000 // keys.LAYOUT_PARTS + 1
    for it in range(iters):
        cids = rng.sample(range(1, N + 1), batch)
        tok = "%032x" % it
        mobs = ["917%09d" % c for c in cids]
        val = ["9:P1-%06d,6:Silver,w2jgc1c%d,,,loyw3v28,loyw3v28" % (c, it % 10) for c in cids]
        if script == "peer":
            cmds = []
            for c, mob in zip(cids, mobs):   # a RENEWAL of UpdProg to Silver (tiers Bronze, Silver, Gold)
                cmds.append(["EVALSHA", sha["peer"], 0, ORG, 1795000106000, tok, tok, 100, fmax, 1, "mobile", mob,
                             keys.ix(ORG, "mobile", mob), 1, "UpdProg", 1, "RENEWAL", 0, 0, 3, "Bronze", "Silver",
                             "Gold", 2, 0, 1800000000000 + it, 0])
            reps = around("peer", lambda: r.pipeline(cmds))
            if not all(isinstance(x, list) and x[0] == 1000 and x[5] == 200 for x in reps):
                raise SystemExit("peer refused: %r" % (reps[:2],))
            calls["peer"] = calls.get("peer", 0) + len(cmds)
            continue
        if script == "floor":
            a = ["EVALSHA", sha["floor"], 0, batch, fmax]
            for c, mob, v in zip(cids, mobs, val):
                a += [keys.ix(ORG, "mobile", mob), mob, keys.cust(ORG, c), keys.membership_field(1), v,
                      keys.hist(ORG, c), keys.feed_of(ORG, c), EVENT] + FIELDS[1:]
            around("floor", lambda: r(*a))
            calls["floor"] = calls.get("floor", 0) + 1
            continue
        a = ["EVALSHA", sha["begin"], 0, tok, 5000, batch]
        for c, mob in zip(cids, mobs):
            a += [keys.ix(ORG, "mobile", mob), mob, keys.cust(ORG, c), keys.lock(ORG, c)]
        rep = around("begin", lambda: r(*a))
        a = ["EVALSHA", sha["commit"], 0, tok, batch, fmax]
        for c, v, e in zip(cids, val, rep):
            h = dict(zip(e[1][::2], e[1][1::2]))
            ver = h[b"v"].decode()
            a += [keys.cust(ORG, c), keys.lock(ORG, c), ver, int(ver) + 1, keys.membership_field(1), v,
                  keys.hist(ORG, c), keys.feed_of(ORG, c), c, EVENT] + FIELDS[1:]
        rep = around("commit", lambda: r(*a))
        if not all(x == b"OK" for x in rep):
            raise SystemExit("floor commit refused: %r" % (rep[:3],))
        calls["begin"] = calls.get("begin", 0) + 1
        calls["commit"] = calls.get("commit", 0) + 1
    return calls


def rounds(r, sha, mode, batch, iters, around=None, script="partnerd"):
    """ITER batches of begin + commit; around(name, fn) wraps each round's calls (timing)."""
    around = around or (lambda name, fn: fn())
    if script != "partnerd":
        return other_rounds(r, sha, script, batch, iters, around)
    rng = random.Random(1)
    calls = {"begin": 0, "commit": 0}
    for it in range(iters):
        cids = rng.sample(range(1, N + 1), batch)
        tok = "%032x" % it
        if mode != "cluster":
            groups = [cids]
        else:                       # one call per partition, as store_write.c makes them
            by = {}
            for c in cids:
                by.setdefault(keys.part_of_cid(c), []).append(c)
            groups = list(by.values())
        begins = []
        for g in groups:
            if mode != "cluster":
                a = ["EVALSHA", sha["begin"], 0, ORG, tok, 5000, keys.rate(ORG, "0" * 32), 0, len(g)]
                for c in g:
                    mob = "917%09d" % c     # (kind, value, its bucket's tag), (program, mid, tag)
                    a += [1, "mobile", mob, keys.tag(keys.bucket_of(mob)), 1, "UpdProg", "", ""]
            else:
                ks = []
                for c in g:
                    ks += [keys.cust(ORG, c)]
                a = ["EVALSHA", sha["begin"], len(ks)] + ks + [ORG, tok, 5000, "", 0, len(g)]
                for c in g:
                    a += [1, "id", c, "", 0]
            begins.append(a)
        calls["begin"] += len(begins)
        reps = around("begin", lambda: r.pipeline(begins))
        vers = {}
        for g, rep in zip(groups, reps):
            if not isinstance(rep, list):
                raise SystemExit("begin failed: %r" % (rep,))
            # an answer per entry (then, since 2026-12-05, the programs' definitions: older
            # scripts given as LUA_DIR have no such last element)
            for e in rep[:len(g)]:
                h = dict(zip(e[2][::2], e[2][1::2]))
                vers[int(e[1])] = h[b"v"].decode()
        commits = []
        fmax = 10000 // keys.LAYOUT_PARTS + 1
        for g in groups:
            a = [tok, len(g), 100, fmax, 0]   # keep_locks 0
            for c in g:
                a += commit_entry(c, vers[c], it)
            a += ["", "", ""]               # no Idempotency-Key: idem_key, idem_token, idem_ttl_ms
            if mode != "cluster":
                commits.append(["EVALSHA", sha["commit"], 0] + a)
            else:
                ks = []
                for c in g:
                    ks += [keys.cust(ORG, c), keys.hist(ORG, c)]
                ks.append(keys.feed_of(ORG, g[0]))
                commits.append(["EVALSHA", sha["commit"], len(ks)] + ks + a)
        calls["commit"] += len(commits)
        reps = around("commit", lambda: r.pipeline(commits))
        for rep in reps:
            if not isinstance(rep, list) or not all(x == b"OK" for x in rep):
                raise SystemExit("commit refused: %r" % (rep,))
    return calls


def timed(args, d):
    srv = Server(d, args.mode)
    rep = None
    try:
        r = srv.r
        load(r, args.mode)
        if args.mode == "replica":
            rep = Server(os.path.join(d, "replica"), "single", replicaof=srv.port)
            while srv.info("replication").get("slave0", "").find("state=online") < 0:
                time.sleep(0.1)
        sha = load_scripts(r, args)

        def evalsha_usec():
            for line in r("INFO", "commandstats").decode().splitlines():
                if line.startswith("cmdstat_evalsha:"):
                    return int(line.split("usec=")[1].split(",")[0])
            return 0

        spent = {}

        def around(name, fn):
            u0 = evalsha_usec()
            out = fn()
            spent[name] = spent.get(name, 0) + evalsha_usec() - u0
            return out

        r("CONFIG", "RESETSTAT")
        calls = rounds(r, sha, args.mode, args.batch, args.iter, around, args.script)
        inner = {}
        for line in r("INFO", "commandstats").decode().splitlines():
            if line.startswith("cmdstat_") and not line.startswith(("cmdstat_evalsha", "cmdstat_info", "cmdstat_config")):
                name, rest = line[8:].split(":", 1)
                inner[name] = int(rest.split("usec=")[1].split(",")[0])
        n = args.iter * args.batch
        tot = sum(spent.values())
        print("Redis time per customer entry (%s, %s, batches of %d, %d batches; calls per batch %s): %s, total %.2f us" % (
            args.script, args.mode, args.batch, args.iter, calls_text(calls, args.iter),
            ", ".join("%s %.2f us" % (k, v / n) for k, v in spent.items()), tot / n))
        print("  of which the commands the scripts ran: %.2f us %s" % (
            sum(inner.values()) / n,
            json.dumps({k: round(v / n, 2) for k, v in sorted(inner.items(), key=lambda kv: -kv[1])})))
        print("  scripts' own cost (Lua, argument and reply conversion): %.2f us" % ((tot - sum(inner.values())) / n))
    finally:
        if rep:
            rep.stop()
        srv.stop()


# --profile: the callgrind file's costs by function, and the parts of the breakdown.

def parse_callgrind(path):
    """Self cost per function, and inclusive cost and count per call arc (caller, callee), Ir
    only. Callgrind's recursion levels (call'2: a command run by a script's redis.call inside
    the EVALSHA's call()) are merged into their function; arcs of a function to itself are
    dropped (their cost is inside the outer call's)."""
    names, selfc, arcs, counts = {}, {}, {}, {}
    fn = cfn = None
    pending = None

    def name(v):
        if v.startswith("("):
            i = v.index(")")
            key, rest = v[:i + 1], v[i + 1:].strip()
            if rest:
                names[key] = rest
            v = names[key]
        return v.split("'")[0]

    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c0 = line[0]
            if c0.isdigit() or c0 in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending is not None:
                    if fn != cfn:
                        arcs[(fn, cfn)] = arcs.get((fn, cfn), 0) + cost
                        counts[(fn, cfn)] = counts.get((fn, cfn), 0) + pending
                    pending = None
                else:
                    selfc[fn] = selfc.get(fn, 0) + cost
                continue
            k, _, v = line.partition("=")
            if k == "fn":
                fn = name(v)
            elif k == "cfn":
                cfn = name(v)
            elif k == "calls":
                pending = int(v.split()[0])
    return selfc, arcs, counts


# Top-level commands of the harness itself (not the workload), left out of the total.
HARNESS = ("scriptCommand", "infoCommand", "pingCommand", "clusterCommand", "replconfCommand", "configCommand")


def breakdown(selfc, arcs, counts, n):
    """Instructions per customer entry by part (rows of (part, Ir per entry)); n entries.
    Functions Debian's redis-server does not export (static ones: luaRedisGenericCommand,
    the Lua VM) are found by what they call."""
    def into(b, callers=None):
        return sum(v for (x, y), v in arcs.items() if y == b and (callers is None or x in callers))

    def out(a, callees=None):
        return sum(v for (x, y), v in arcs.items() if x == a and (callees is None or y in callees))

    harness = out("call", HARNESS)
    total = sum(selfc.values()) - harness
    cmds = {y: v for (x, y), v in arcs.items()
            if x == "call" and y.endswith("Command") and y != "evalShaCommand" and y not in HARNESS}
    ncalls = sum(v for (x, y), v in counts.items() if y == "scriptCall")
    nested_call = into("call", ["scriptCall"])
    rc_fns = set(x for (x, y) in arcs if y == "scriptCall")          # the redis.call C function(s)
    redis_call_fn = sum(into(x) for x in rc_fns)
    scriptcall = into("scriptCall")
    parse_reply = into("parseReply", rc_fns)
    lua_pcall = into("lua_pcall", ["luaCallFunction"])
    luacallfn = into("luaCallFunction")
    lcf_callees = set(y for (x, y) in arcs if x == "luaCallFunction" and not y.startswith("lua_"))
    argv_fns = [y for y in lcf_callees if ("lua_rawseti" in [b for (a, b) in arcs if a == y])]
    argv = sum(arcs[("luaCallFunction", y)] for y in argv_fns)
    ret = sum(arcs[("luaCallFunction", y)] for y in lcf_callees if y not in argv_fns)
    evalsha = out("call", ["evalShaCommand"])
    top_call = into("call", ["processCommand"]) - harness
    propagate = into("propagatePendingCommands") + into("alsoPropagate")
    proc_cmd = into("processCommand") - harness
    read_total = selfc.get("readQueryFromClient", 0) + out("readQueryFromClient") - harness
    before = selfc.get("beforeSleep", 0) + out("beforeSleep")
    writes = out("beforeSleep", ["handleClientsWithPendingWritesUsingThreads", "handleClientsWithPendingWrites"])
    aof = out("beforeSleep", ["flushAppendOnlyFile"])
    cluster_checks = into("getNodeByQuery", rc_fns | {"scriptCall"})
    rows = [
        ("redis.call()s per customer entry (count)", ncalls * 1.0),
        ("Lua VM: the scripts' own code (with string, struct, cjson library calls)", lua_pcall - redis_call_fn),
        ("ARGV and KEYS tables built (luaCreateArray)", argv),
        ("the script's return value converted to RESP (luaReplyToRedisReply)", ret),
        ("rest of luaCallFunction (hooks, GC step)", luacallfn - lua_pcall - argv - ret),
        ("redis.call: arguments from Lua to Redis strings, registry, error handling",
         redis_call_fn - scriptcall - parse_reply),
        ("redis.call: the command's RESP reply parsed into Lua values (parseReply)", parse_reply),
        ("redis.call: scriptCall's checks (command lookup, ACL, cluster, OOM, write flags)", scriptcall - nested_call),
        ("  of which cluster slot checks (getNodeByQuery)", cluster_checks),
        ("redis.call: call()'s bookkeeping (stats, slowlog, latency, propagation list)",
         nested_call - sum(cmds.values())),
        ("  of which alsoPropagate (effects queued for AOF/replicas)", into("alsoPropagate")),
    ]
    for k, v in sorted(cmds.items(), key=lambda kv: -kv[1]):
        rows.append(("command %s (%.2f calls)" % (k[:-len("Command")].upper(),
                                                   counts.get(("call", k), 0) / n), v))
    rows += [
        ("EVALSHA's own (script lookup, run set-up: evalShaCommand - luaCallFunction)", evalsha - luacallfn),
        ("top-level call() of EVALSHA: bookkeeping and propagation of the effects", top_call - evalsha),
        ("  of which propagatePendingCommands (MULTI/EXEC, AOF buffer, replication feed)",
         into("propagatePendingCommands")),
        ("processCommand's checks (lookup, ACL, cluster routing of KEYS, ...)", proc_cmd - top_call),
        ("request read, RESP parsed into argv", read_total - proc_cmd),
        ("replies and replica stream written (handleClientsWithPendingWrites)", writes),
        ("AOF written (flushAppendOnlyFile)", aof),
        ("rest of beforeSleep", before - writes - aof),
    ]
    return total, rows, ncalls


def profile(args, d):
    if not shutil.which("valgrind"):
        raise SystemExit("scripts_micro.py --profile needs valgrind: scripts/install-deps valgrind")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    srv = Server(d, args.mode)
    try:
        load(srv.r, args.mode)
        srv.r("SAVE")
    finally:
        srv.stop()
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        os.unlink(out)
    port = srv.port
    for attempt in range(3):   # the port (or a cluster node's bus port, +10000) may be taken
        try:                   # meanwhile: then a new one (a cluster node announces it anew)
            srv = Server(d, args.mode, port=port, callgrind=out)
            break
        except SystemExit:
            if attempt == 2:
                raise
            port = free_port()
    rep = None
    try:
        r = srv.r
        if args.mode == "cluster":
            while b"cluster_state:ok" not in r("CLUSTER", "INFO"):
                time.sleep(0.1)
        if args.mode == "replica":
            rep = Server(os.path.join(d, "replica"), "single", replicaof=srv.port)
            while srv.info("replication").get("slave0", "").find("state=online") < 0:
                time.sleep(0.2)
        sha = load_scripts(r, args)
        t0 = time.time()
        calls = rounds(r, sha, args.mode, args.batch, args.iter, None, args.script)
        took = time.time() - t0
        if args.mode == "replica":   # the replica has it all: the stream was written
            want = srv.info("replication")["master_repl_offset"]
            while rep.info("replication").get("slave_repl_offset") != want:
                time.sleep(0.2)
    finally:
        if rep:
            rep.stop()
        srv.stop()
    selfc, arcs, counts = parse_callgrind(out)
    n = args.iter * args.batch
    total, rows, _ = breakdown(selfc, arcs, counts, n)
    print("redis-server instructions per customer entry (%s, %s, batches of %d, %d batches; calls per batch %s; "
          "%.0f s under callgrind): %.0f" % (
              args.script, args.mode, args.batch, args.iter, calls_text(calls, args.iter), took, total / n))
    for p, v in rows:
        print(("  %-90s %8.2f" if p.endswith("(count)") else "  %-90s %8.0f") % (p, v / n))
    print("  (raw: %s; callgrind_annotate --inclusive=yes %s)" % (out, out))


def calls_text(calls, iters):
    return ", ".join("%s %.2f" % (k, v / iters) for k, v in calls.items())


def main():
    ap = argparse.ArgumentParser(prog="bench/scripts_micro.py")
    ap.add_argument("lua_dir", nargs="?", default=os.path.join(TOP, "src", "lua"))
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--iter", type=int, default=None, help="batches (default 200; 20 with --profile)")
    ap.add_argument("--mode", choices=MODES, default="single")
    ap.add_argument("--script", choices=SCRIPTS, default="partnerd",
                    help="partnerd's begin.lua + commit.lua (from LUA_DIR), the equal-work peer's "
                         "bench/peer/update.redis.lua, or a floor (the contract's commands with or without the lock)")
    ap.add_argument("--profile", action="store_true", help="count instructions under callgrind")
    ap.add_argument("--out", default=None, help="--profile's callgrind file")
    args = ap.parse_args()
    if args.iter is None:
        args.iter = 20 if args.profile else 200
    if args.out is None:
        args.out = os.path.join(TOP, "bench-out", "callgrind-redis-%s.out" % args.mode)
    d = tempfile.mkdtemp(prefix="partnerd-scripts-")
    try:
        (profile if args.profile else timed)(args, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
