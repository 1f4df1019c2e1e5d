"""A linearizability checker for partnerd's API (SPEC §4, §5; issue 15).

Pure: no I/O, no clock. The recorder (recorder.py) turns each HTTP request into one
operation per customer entry (entries of different customers are independent, SPEC §4) and
hands them here.

An operation (`Op`) touches one customer: a write (link / update / delink, its items in
order) or a read (customerPartnerPrograms, customerActivityHistory). Its outcome is
  - "ok":       the answer came and every item's code is known; the effect (the items the
                model says succeed) applied at one instant between invocation and completion.
                An item answered 2010 or 2001 beside 200 items (the codes in `wild`) did
                nothing on its own: the model skips it (partnerd answers a 2101 that leaned on
                another customer's claim of the request, whose commit did not apply, so);
  - "noeffect": some item answered 2010 or 2001 and none 200 (nothing of the entry applied): nothing
                changed; the other items' codes must match the rules at one instant of the
                interval (an entry that never got its customer's lock answers 2010 for every
                item, a fenced commit 2010 for the items that would have succeeded);
  - "unknown":  a timeout, a 502/504 (or a 503 that is not partnerd's: its own means nothing applied and the recorder leaves the entry out), a transport error, or items answering 2011: the entry
                may have applied at any instant after its invocation, or never.
Reads with an answer must be explained by the state at one instant of their interval; reads
without one are dropped by the recorder.

The model (`Model`) is the org as SPEC §4 describes it for the data the recorder uses: per
customer its memberships (membership id, tier, tier expiry, start when given, pending relink)
and its history (count and newest activities); membership-id holders per program are derived
from the memberships (a customer holds its current id and its pending relink's id).
Dates: the recorder only sends expiries and starts years ahead and links without a start
(server's "now"), so no state changes with the clock during a run (PENDING stays PENDING,
no relink becomes due, nothing expires); the model has no clock. A server-chosen value
(the start of a link sent without one) is not compared.

The search (`check`) is Wing & Gong's, with Lowe's / Porcupine's memoisation of
(linearized set, model state): a depth-first search over which pending operation takes
effect next, where an operation may go next only if it was invoked before every other
not-yet-linearized operation that must have taken effect completed. Histories are split into
independent parts first: customers coupled through a membership id of one program are
checked together (connected components of customers by the ids their operations name).

On a violation, `shrink` looks for a small failing sub-history (see there) and `explain`
prints it for a person.
"""

import bisect
import datetime
import time

INF = float("inf")

CANCEL = "MEMBERSHIP_RELINKING_CANCELLED"
HIST_KEEP = 10          # newest activities the model keeps per customer (reads use limit <= this)


def to_ms(v):
    """An ISO 8601 date-time (as SPEC §4 allows, or as the read routes answer) -> ms, None -> None."""
    if v is None:
        return None
    s = v.strip().replace(" ", "")
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    # fractions longer than microseconds: cut (the tests' dates have at most ms)
    if "." in s:
        head, rest = s.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        s = head + "." + (frac + "000000")[:6] + tz
    d = datetime.datetime.fromisoformat(s)
    return int(round(d.timestamp() * 1000))


# ---------------------------------------------------------------- operations

class Op:
    """One customer's part of one request. items: for writes, normalised tuples (see
    norm_item); codes: the customer code followed by the item codes (None when no answer);
    result: for reads, the normalised answer (see norm_programs / norm_history)."""

    __slots__ = ("id", "cid", "kind", "items", "inv", "ret", "outcome", "codes", "result",
                 "limit", "req", "resp", "thread", "wild")

    def __init__(self, id, cid, kind, inv, ret, outcome, items=(), codes=None, result=None,
                 limit=None, req=None, resp=None, thread=None, wild=None):
        assert kind in ("link", "update", "delink", "programs", "history"), kind
        assert outcome in ("ok", "noeffect", "unknown"), outcome
        self.id, self.cid, self.kind = id, cid, kind
        self.items = tuple(items)
        self.inv = inv
        self.ret = INF if outcome == "unknown" else ret
        self.outcome = outcome
        self.codes = None if codes is None else tuple(codes)
        self.result = result
        self.limit = limit
        self.req, self.resp, self.thread = req, resp, thread
        # the codes an item may answer whatever the rules say (2010, 2001, 2011): a set
        self.wild = frozenset([wild] if isinstance(wild, int) else wild or ())

    @property
    def is_read(self):
        return self.kind in ("programs", "history")

    def copy(self, **kw):
        d = dict((k, getattr(self, k)) for k in self.__slots__)
        if d["outcome"] == "unknown":
            d["ret"] = INF
        d.update(kw)
        return Op(**d)

    @property
    def light(self):
        """A read, or a write known to have changed nothing: removing it from a history can
        only remove constraints."""
        return self.is_read or self.outcome == "noeffect" or \
            (self.outcome == "ok" and self.codes is not None and 200 not in self.codes[1:])

    def as_unknown(self):
        """The same write, its outcome forgotten: it may have applied (any time after its
        invocation) or not."""
        return self.copy(outcome="unknown", ret=INF, codes=None, wild=None)


def norm_item(kind, it):
    """A request item (JSON dict) -> the tuple the model reads."""
    name = it.get("partnerProgramName")
    if kind == "link":
        ref = it.get("customerPartnerReference") or {}
        return (name, ref.get("partnerMembershipId"), ref.get("partnerTierName"),
                to_ms(ref.get("partnerTierExpiryDate")), to_ms(ref.get("membershipStartDate")))
    if kind == "update":
        d = it.get("updateDetails") or {}
        return (name, it.get("updateType"), d.get("updatedTierName"), to_ms(d.get("updatedTierExpiryDate")))
    return (name,)


def _values(v):
    if v is None:
        return None
    return (v.get("partnerMembershipId"), v.get("partnerTierName"), to_ms(v.get("partnerTierExpiryDate")),
            to_ms(v.get("membershipStartDate")))


def norm_programs(body):
    """A customerPartnerPrograms answer -> (customer code, ((program, mid, tier, expiry, start,
    state, relink values or None), ...)) sorted by program."""
    code = body["customer"]["status"]["code"]
    rows = []
    for p in body["partnerPrograms"]:
        rows.append((p["partnerProgramName"], p["partnerMembershipId"], p["partnerTierName"],
                     to_ms(p["partnerTierExpiryDate"]), to_ms(p["membershipStartDate"]), p["state"],
                     _values(p["pendingRelink"])))
    return (code, tuple(sorted(rows, key=lambda r: r[0])))


def norm_history(body):
    """A customerActivityHistory answer -> (total, ((activityType, program), ...) newest first)."""
    return (body["total"], tuple((a["activityType"], a["partnerProgramName"]) for a in body["activities"]))


# ---------------------------------------------------------------- the model

class Model:
    """programs: {name: {"supp": bool, "tiers": [lowest..highest]}}.

    A customer's state: (memberships, history count, newest activities) where memberships is
    a sorted tuple of (program, (mid, tier, expiry, start, relink)) and relink is None or
    (mid, tier, expiry, start). A component's state: a tuple of customer states, in the order
    of the component's customer list."""

    EMPTY = ((), 0, ())

    def __init__(self, programs):
        self.programs = dict((k, {"supp": bool(v.get("supp")), "tiers": tuple(v.get("tiers") or ())})
                             for k, v in programs.items())

    # -- writes ------------------------------------------------------------

    def apply(self, state, pos, op):
        """Runs op's items on customer number pos of state. Returns (codes, new state): codes
        as the API answers them (customer code first), new state with the successful items
        applied (the same object when none succeeded)."""
        ms, hcount, hlast = state[pos]
        mem = dict(ms)
        acts = []
        codes = [1000]
        seen = set()
        for k, it in enumerate(op.items):
            name = it[0]
            if name in seen:
                codes.append(2102)
                continue
            P = self.programs.get(name)
            if P is None:
                codes.append(2006)
                continue
            seen.add(name)
            if op.outcome == "ok" and op.codes is not None and op.codes[1 + k] in op.wild:
                codes.append(op.codes[1 + k])       # answered on its own: applied nothing
                continue
            fn = {"link": self._link, "update": self._update, "delink": self._delink}[op.kind]
            code, act = fn(state, pos, mem, P, it)
            codes.append(code)
            if act:
                acts.append((act, name))
        if not acts:
            return tuple(codes), state
        hlast = tuple(reversed(acts))[:HIST_KEEP] + hlast
        cust = (tuple(sorted(mem.items())), hcount + len(acts), hlast[:HIST_KEEP])
        return tuple(codes), state[:pos] + (cust,) + state[pos + 1:]

    @staticmethod
    def _held_by_other(state, pos, name, mid):
        for k, (ms, _, _) in enumerate(state):
            if k == pos:
                continue
            for pname, m in ms:
                if pname == name and (m[0] == mid or (m[4] is not None and m[4][0] == mid)):
                    return True
        return False

    def _link(self, state, pos, mem, P, it):
        name, mid, tier, exp, start = it
        cur = mem.get(name)
        relink = False
        if cur is not None:
            if not (P["supp"] and start is not None):     # every start the recorder sends is future
                return 2005, None
            if cur[4] is not None:
                return 2005, None
            relink = True
        if not mid:
            return 2002, None
        if self._held_by_other(state, pos, name, mid):
            return 2101, None
        if P["tiers"]:
            if not tier:
                return 2002, None
            if tier not in P["tiers"]:
                return 2007, None
        elif tier is not None:
            return 2007, None
        vals = (mid, tier if P["tiers"] else None, exp, start)
        if relink:
            mem[name] = cur[:4] + (vals,)
            return 200, "RELINK_SCHEDULED"
        mem[name] = vals + (None,)
        return 200, "LINK"

    def _update(self, state, pos, mem, P, it):
        name, utype, tier, exp = it
        cur = mem.get(name)
        if cur is None:
            return 2004, None
        if utype == CANCEL:
            if cur[4] is None:
                return 2105, None
            mem[name] = cur[:4] + (None,)
            return 200, "RELINK_CANCELLED"
        if utype not in ("UPGRADE", "DOWNGRADE", "RENEWAL", "RENEW"):
            return 2009, None
        if not tier:
            return 2002, None
        if not P["tiers"] or tier not in P["tiers"]:
            return 2007, None
        ci, ni = P["tiers"].index(cur[1]), P["tiers"].index(tier)
        if (utype == "UPGRADE" and ni <= ci) or (utype == "DOWNGRADE" and ni >= ci) or \
                (utype in ("RENEWAL", "RENEW") and ni != ci):
            return 2104, None
        mem[name] = (cur[0], tier, exp if exp is not None else cur[2], cur[3], cur[4])
        return 200, "UPDATE"

    def _delink(self, state, pos, mem, P, it):
        name = it[0]
        if name not in mem:
            return 2004, None
        del mem[name]
        return 200, "DELINK"

    # -- reads -------------------------------------------------------------

    def explains(self, state, pos, op):
        """True when op's read answer is what customer pos of state shows."""
        ms, hcount, hlast = state[pos]
        if op.kind == "history":
            total, acts = op.result
            return total == hcount and acts == hlast[:op.limit if op.limit is not None else HIST_KEEP]
        code, rows = op.result
        if code != 1000 or len(rows) != len(ms):
            return False
        for row, (name, m) in zip(rows, ms):
            if row[0] != name or not self._row_matches(row, m):
                return False
        return True

    @staticmethod
    def _row_matches(row, m):
        rname, rmid, rtier, rexp, rstart, rstate, rrl = row
        mid, tier, exp, start, rl = m
        if (rmid, rtier, rexp) != (mid, tier, exp):
            return False
        if start is not None and rstart != start:
            return False
        if rstate != ("PENDING" if start is not None else "ACTIVE"):
            return False
        if (rl is None) != (rrl is None):
            return False
        if rl is not None and rl != rrl:
            return False
        return True

    def may_explain(self, state, pos, op, progs, nacts):
        """False when no sequence of writes to customer pos that changes only the programs
        in `progs` and adds at most `nacts` activities can bring its state from `state` to
        one that explains read op (a necessary condition only: True proves nothing)."""
        ms, hcount, hlast = state[pos]
        if op.kind == "history":
            total, acts = op.result
            k = total - hcount          # the activities added before the read
            if k < 0 or k > nacts:
                return False
            for _, name in acts[:k]:
                if name not in progs:
                    return False
            limit = op.limit if op.limit is not None else HIST_KEEP
            # the newest activities are pushed in front of the ones there now
            return k >= limit or acts[k:] == hlast[:limit - k]
        code, rows = op.result
        if code != 1000:
            return False
        have = dict(ms)
        shown = dict((r[0], r) for r in rows)
        for name in set(have) | set(shown):
            if name in progs:
                continue
            m, row = have.get(name), shown.get(name)
            if m is None or row is None:
                if m is not row:
                    return False
            elif not self._row_matches(row, m):
                return False
        return True


# ---------------------------------------------------------------- splitting

def components(ops):
    """Lists of ops whose customers are coupled through a membership id of one program (the
    ids their link items name), each list with its customers: [(cids, ops)]."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    for op in ops:
        find(("c", op.cid))
        if op.kind == "link":
            for it in op.items:
                if it[1]:
                    union(("c", op.cid), ("m", it[0], it[1]))
    groups = {}
    for op in ops:
        groups.setdefault(find(("c", op.cid)), []).append(op)
    out = []
    for g in groups.values():
        cids = sorted(set(o.cid for o in g))
        out.append((cids, g))
    out.sort(key=lambda x: x[0])
    return out


# ---------------------------------------------------------------- the search

class Result:
    """ok: True (linearizable), False (not), None (search budget exhausted: inconclusive).
    steps: states expanded; stuck: for a violation, the ops of the longest linearized prefix
    found and the ops that could not go next there."""

    def __init__(self, ok, steps, prefix=(), stuck=()):
        self.ok, self.steps, self.prefix, self.stuck = ok, steps, prefix, stuck

    def __bool__(self):
        return self.ok is True


def _codes_match(got, want, wild):
    if got is None:
        return True
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if g != w and g not in wild:
            return False
    return True


def check_component(model, cids, ops, max_steps=None, max_seconds=None):
    """Wing & Gong search with memoisation over one component's operations. It gives up
    (Result.ok None) after max_steps search states or max_seconds, when given.

    The linearized set is kept as (lo, rel): every operation before index lo (in invocation
    order) is linearized, and bit k of rel says whether operation lo + k is. Real-time order
    keeps rel as narrow as the concurrency (plus unknown operations not yet placed), so each
    step costs about the window's width, not the history's length. Model states are interned
    (one small number per distinct state), so the memo's keys are (lo, rel, state number) and
    each operation is run on each state at most once.

    Operations that change nothing (reads, writes whose items all failed, writes that applied
    nothing) are never branched on: whenever one may go next and the current state explains
    it, it goes next at once (`close`). That loses no order: in any serial order that
    completes the history from here, the same operation can be moved to the front (it may go
    next, it is explained here, it changed no state where it was, and moving an operation
    earlier never breaks the real-time order of the others), so a search state and its
    closure are both completable or both not. The search branches only on writes that
    applied something and on unknown ones."""
    ops = sorted(ops, key=lambda o: (o.inv, o.ret))
    n = len(ops)
    pos_of = dict((c, k) for k, c in enumerate(cids))
    pos = [pos_of[o.cid] for o in ops]
    inv = [o.inv for o in ops]
    ret = [o.ret for o in ops]
    definite = [o.outcome != "unknown" for o in ops]
    # pure: explained without a change of state or not at all (see Op.light)
    pure = [o.light for o in ops]
    is_read = [o.is_read for o in ops]
    # The parts of the state an operation's answer depends on, and the parts a write may
    # still change when it goes, as bit masks over (customer, program): bit
    # pos * len(programs) + k. A write may change its customer's programs whose items
    # answered 200 (an unknown write: any of its items), and adds at most that many
    # activities. An item's answer depends on its customer's membership of its program, and
    # for a link on every customer's (who holds the id). A read depends on its customer.
    prog_names = sorted(set(it[0] for o in ops for it in o.items if it[0] is not None) | set(model.programs))
    prog_bit = dict((name, k) for k, name in enumerate(prog_names))
    width = len(prog_names)
    every = [sum(1 << (q * width + k) for q in range(len(cids))) for k in range(width)]
    cust_mask = [((1 << width) - 1) << (q * width) for q in range(len(cids))]
    eff, nact, deps = [], [], []
    for o, p in zip(ops, pos):
        if o.is_read or o.outcome == "noeffect":
            names = ()
        elif o.outcome == "ok" and o.codes is not None and len(o.codes) == len(o.items) + 1:
            names = [it[0] for it, c in zip(o.items, o.codes[1:]) if c == 200]
        else:
            names = [it[0] for it in o.items]
        eff.append(sum(1 << (p * width + prog_bit[x]) for x in set(names) if x in prog_bit))
        nact.append(len(names))
        if o.is_read:
            deps.append(cust_mask[p])
        else:
            d = 0
            for it in o.items:
                k = prog_bit.get(it[0])
                if k is not None:
                    d |= every[k] if o.kind == "link" else 1 << (p * width + k)
            deps.append(d)
    hopeless_memo = {}
    # How many of a customer's newest activities a history read still to go can show:
    # a read with `limit` that answered `total` sees, of today's newest, the first
    # limit - (total - count now), older ones pushed out by the activities added before it.
    # suf[q][x]: the largest limit - total over customer q's history reads at index >= x.
    suf = []
    for q in range(len(cids)):
        row = [-INF] * (n + 1)
        for x in range(n - 1, -1, -1):
            row[x] = row[x + 1]
            o = ops[x]
            if pos[x] == q and o.kind == "history":
                lim = o.limit if o.limit is not None else HIST_KEEP
                row[x] = max(row[x], lim - o.result[0])
        suf.append(row)
    canon_memo = {}
    hreads = [[x for x in range(n) if pos[x] == q and ops[x].kind == "history"] for q in range(len(cids))]
    states = [tuple(Model.EMPTY for _ in cids)]
    sid_of = {states[0]: 0}
    moves = {}             # (i, state number) -> state number after op i, or None: cannot go there
    seen = set()
    steps = 0

    def intern(state):
        k = sid_of.get(state)
        if k is None:
            k = sid_of[state] = len(states)
            states.append(state)
        return k

    def move(i, sid):
        """The state after op i taken at state sid (for an unknown op: applied), or None when
        its answer does not match there (an unknown op: when applying it changes nothing)."""
        key = (i, sid)
        r = moves.get(key, -1)
        if r != -1:
            return r
        o = ops[i]
        state = states[sid]
        r = None
        if o.is_read:
            if model.explains(state, pos[i], o):
                r = sid
        else:
            codes, ns = model.apply(state, pos[i], o)
            if o.outcome == "ok":
                if codes == o.codes:
                    r = intern(ns)
            elif o.outcome == "noeffect":
                if _codes_match(o.codes, codes, o.wild):
                    r = sid
            elif ns is not state and _codes_match(o.codes, codes, o.wild):
                r = intern(ns)
        moves[key] = r
        return r

    def canon(lo, rel, sid):
        """(True, _) when a history read still to go (anywhere later) can never be
        explained: it answered fewer activities than the customer has now (counts only
        grow), or the older of its activities are not the customer's newest now (new ones
        only go in front). Else (False, sid'): sid' is state sid with each customer's newest
        activities cut to those a history read still to go can show (of today's newest, a
        read with `limit` that answered `total` sees limit - (total - count now)): states
        that differ only in older ones (the order in which concurrent writes were taken)
        have the same future, and become one state for the memo."""
        state = states[sid]
        need = []
        cut = False
        for q, (ms, hcount, hlast) in enumerate(state):
            row = suf[q]
            k = 0
            hr = hreads[q]
            for t in range(bisect.bisect_left(hr, lo), len(hr)):
                x = hr[t]
                if row[x] + hcount <= k:        # no read from here on sees more
                    break
                if (rel >> (x - lo)) & 1:
                    continue
                o = ops[x]
                limit = o.limit if o.limit is not None else HIST_KEEP
                total, acts = o.result
                new = total - hcount
                if new < 0 or (new < limit and acts[new:] != hlast[:limit - new]):
                    return True, None
                if limit - new > k:
                    k = limit - new
            k = min(k, HIST_KEEP)
            need.append(k)
            if len(hlast) > k:
                cut = True
        if not cut:
            return False, sid
        key = (sid, tuple(need))
        r = canon_memo.get(key)
        if r is None:
            r = canon_memo[key] = intern(tuple((ms, hcount, hlast[:k])
                                               for (ms, hcount, hlast), k in zip(state, need)))
        return False, r

    def minret_of(lo, rel):
        m = INF
        i = lo
        while i < n and inv[i] < m:
            if definite[i] and not (rel >> (i - lo)) & 1 and ret[i] < m:
                m = ret[i]
            i += 1
        return m

    def add(lo, rel, i):
        rel |= 1 << (i - lo)
        while rel & 1:
            rel >>= 1
            lo += 1
        return lo, rel

    def close(lo, rel, sid):
        """Takes every pure operation that may go next and that state sid explains, until
        none is left. One pass: taking one changes no state (those that did not fit still do
        not) and only lets more operations go next (later ones in invocation order)."""
        minret = minret_of(lo, rel)
        i = lo
        while i < n and inv[i] < minret:
            if pure[i] and (i >= lo and not (rel >> (i - lo)) & 1) and move(i, sid) is not None:
                lo, rel = add(lo, rel, i)
                if ret[i] == minret:
                    minret = minret_of(lo, rel)
            i += 1
        return lo, rel, minret

    def hopeless(lo, rel, sid, minret):
        """True when an operation that must take effect (a read or a definite write) may go
        next but does not fit state sid, and nothing it depends on can change before it must
        go: no write still to go that was invoked before it completed changes any part of
        the state its answer depends on (for a read: nor enough of it, Model.may_explain).
        Its answer will never fit, so no serial order completes from here: cutting the
        search state loses nothing. After `close` the pure operations that may go next and
        are still there are exactly those that do not fit."""
        cand = []
        end = -INF
        i = lo
        while i < n and inv[i] < minret:
            if definite[i] and not (rel >> (i - lo)) & 1 and (pure[i] or move(i, sid) is None):
                cand.append(i)
                if ret[i] > end:
                    end = ret[i]
            i += 1
        if not cand:
            return False
        # the writes still to go invoked before the last candidate completed, in invocation
        # order, with running unions of what they change and counts of activities per customer
        js, invs, pre = [], [], [0]
        pk = [[0] for _ in cids]
        j = lo
        while j < n and inv[j] < end:
            if eff[j] and not (rel >> (j - lo)) & 1:
                js.append(j)
                invs.append(inv[j])
                pre.append(pre[-1] | eff[j])
                for q, row in enumerate(pk):
                    row.append(row[-1] + (nact[j] if pos[j] == q else 0))
            j += 1
        for i in cand:
            e = bisect.bisect_left(invs, ret[i])      # js[:e]: invoked before i completed
            p = pos[i]
            if eff[i]:
                t = bisect.bisect_left(js, i)
                if t < e and js[t] == i:               # not itself
                    pend = pre[t]
                    for u in range(t + 1, e):
                        pend |= eff[js[u]]
                else:
                    pend = pre[e]
            else:
                pend = pre[e]
            if not pend & deps[i]:
                return True
            if is_read[i]:
                k = pk[p][e]
                mine = (pend & cust_mask[p]) >> (p * width)
                key = (i, sid, mine, k)
                r = hopeless_memo.get(key)
                if r is None:
                    progs = frozenset(x for x, b in prog_bit.items() if (mine >> b) & 1)
                    r = hopeless_memo[key] = not model.may_explain(states[sid], p, ops[i], progs, k)
                if r:
                    return True
        return False

    def children(lo, rel, sid, minret):
        """The states one write further (closed), in the order the search tries them:
        unknown operations taken as never applied first (what most of them are: it costs
        nothing and lets the window move on), then the definite writes by completion time
        (the one that must take effect soonest first: fewer wrong turns to back out of when
        an operation with a long interval overlaps short ones), then unknown operations
        applied."""
        never, definite_, applied = [], [], []
        i = lo
        while i < n and inv[i] < minret:
            if not pure[i] and not (rel >> (i - lo)) & 1:
                nlo, nrel = add(lo, rel, i)
                ns = move(i, sid)
                if definite[i]:
                    if ns is not None:
                        definite_.append((ret[i], i, (nlo, nrel, ns)))
                else:
                    never.append((nlo, nrel, sid))
                    if ns is not None:
                        applied.append((nlo, nrel, ns))
            i += 1
        definite_.sort(key=lambda x: (x[0], x[1]))
        return never + [c for _, _, c in definite_] + applied

    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    gave_up = False
    first = close(0, 0, 0)
    dead, sid = canon(first[0], first[1], 0)
    first = first + (0 if dead else sid,)
    best = (-1, first)
    stack = [] if dead else [first]
    seen.add((first[0], first[1], first[3]))
    while stack:
        lo, rel, minret, sid = node = stack.pop()
        if minret == INF:           # no operation that must take effect is left
            return Result(True, steps)
        steps += 1
        depth = lo + bin(rel).count("1")
        if depth > best[0]:
            best = (depth, node)
        if (max_steps is not None and steps > max_steps) or \
                (deadline is not None and steps & 255 == 1 and time.monotonic() > deadline):
            gave_up = True
            break
        for clo, crel, csid in reversed(children(lo, rel, sid, minret)):
            clo, crel, cmin = close(clo, crel, csid)
            dead, csid = canon(clo, crel, csid)
            if dead:
                continue
            k = (clo, crel, csid)
            if k not in seen:
                seen.add(k)
                if not hopeless(clo, crel, csid, cmin):
                    stack.append((clo, crel, cmin, csid))
    _, (lo, rel, minret, sid) = best

    def lin(i):
        return i < lo or (rel >> (i - lo)) & 1

    prefix = [ops[i] for i in range(n) if lin(i)]
    stuck = [ops[i] for i in range(n) if not lin(i) and inv[i] < minret]
    return Result(None if gave_up else False, steps, prefix, stuck)


class Report:
    def __init__(self):
        self.components = 0
        self.ops = 0
        self.steps = 0
        self.seconds = 0.0         # the search (shrinking excluded)
        self.shrink_seconds = 0.0
        self.violations = []       # [(cids, Result, (kept ops, ghosts), ops in the part)]
        self.inconclusive = []     # [(cids, Result)]
        self.parts = []            # [(cids, operations, steps, seconds)] per part searched
        self.lost_acks = []        # [(cids, [ops])]: excuse_lost_acks

    @property
    def ok(self):
        return not self.violations and not self.inconclusive


def check(model, ops, max_steps=None, shrink_seconds=30.0, max_seconds=300.0):
    """Checks a whole history (a list of Op), component by component. Returns a Report.
    The search gives up on a part (INCONCLUSIVE) after max_steps search states in it, or
    when the whole search (shrinking excluded) has taken max_seconds."""
    t0 = time.monotonic()
    rep = Report()
    for cids, cops in components(ops):
        rep.components += 1
        rep.ops += len(cops)
        left = None
        if max_seconds is not None:
            left = max(0.0, max_seconds - (time.monotonic() - t0 - rep.shrink_seconds))
        t1 = time.monotonic()
        r = check_component(model, cids, cops, max_steps, left)
        rep.parts.append((cids, len(cops), r.steps, time.monotonic() - t1))
        rep.steps += r.steps
        if r.ok is None:
            rep.inconclusive.append((cids, r))
        elif r.ok is False:
            t1 = time.monotonic()
            small = shrink(model, cids, cops, seconds=shrink_seconds)
            rep.shrink_seconds += time.monotonic() - t1
            rep.violations.append((cids, r, small, len(cops)))
    rep.seconds = time.monotonic() - t0 - rep.shrink_seconds
    return rep


# ---------------------------------------------------------------- lost acknowledgements

def excuse_lost_acks(model, ops, rep, kills, lag=1.0, max_seconds=60.0):
    """After a failover that may lose acknowledged writes (a master killed without its
    writes paused: Redis Cluster replicates asynchronously), tells Redis's loss apart from
    partnerd's bugs. kills: the times of such kills. For each violating part of rep, the
    writes acknowledged (an item 200) within `lag` seconds before a kill are the
    candidates: taken as unknown (applied or not), does the part pass? If not, the
    violation stays. If it does, each candidate is given its acknowledgement back, one at a
    time in invocation order, and keeps it when the part still passes: those that cannot
    keep it are counted as lost acknowledged writes (a greedy, not a minimum, set). A lost
    write that a read saw before the kill cannot be explained this way (the state would go
    back): it stays a violation. Changes rep: its violations lose the excused parts,
    rep.lost_acks gets [(cids, [ops])]. Returns the number of lost acknowledged writes."""
    if not rep.violations or not kills:
        return 0
    comps = dict((tuple(c), o) for c, o in components(ops))
    still = []
    for v in rep.violations:
        cids = v[0]
        cops = comps[tuple(cids)]
        cand = [o for o in cops if not o.is_read and o.outcome == "ok" and o.codes and 200 in o.codes[1:]
                and any(t - lag <= o.ret <= t for t in kills)]
        cand.sort(key=lambda o: o.inv)
        if not cand:
            still.append(v)
            continue
        ids = set(id(o) for o in cand)
        base = [o for o in cops if id(o) not in ids]
        if check_component(model, cids, base + [o.as_unknown() for o in cand], None, max_seconds).ok is not True:
            still.append(v)
            continue
        kept, gone = [], []
        for k, o in enumerate(cand):
            trial = base + kept + [o] + [x.as_unknown() for x in gone + cand[k + 1:]]
            if check_component(model, cids, trial, None, max_seconds).ok is True:
                kept.append(o)
            else:
                gone.append(o)
        rep.lost_acks.append((cids, gone))
    rep.violations = still
    return sum(len(g) for _, g in rep.lost_acks)


# ---------------------------------------------------------------- shrinking

def _fails(model, cids, ops, max_steps, max_seconds=None):
    return check_component(model, cids, ops, max_steps, max_seconds).ok is False


def shrink(model, cids, ops, max_steps=50000, seconds=60.0):
    """A small sub-history that still fails. Returns (kept ops, ghosts): the ghosts are the
    removed writes that could have applied, put back as unknown (each may have applied at any
    time after its invocation, or not), and kept + ghosts fails: whatever the removed writes
    did, the kept operations cannot be explained. A removal is accepted only when that still
    holds, so the failure shown never comes from a write having been taken away.

      1. Suffix cut: the shortest prefix by invocation time that fails, with the removed
         writes invoked before the prefix's last completion as ghosts (a write invoked after
         every kept operation completed cannot explain any of them: it is simply dropped).
      2. Reads and writes known to have applied nothing (`Op.light`), removed in chunks of
         halving size (removing them can never make a history fail).
      3. The remaining writes one by one, newest first, each made a ghost.
    Each search is bounded by max_steps and by the time left (an inconclusive search refuses
    the removal); the whole shrink stops after `seconds`."""
    deadline = time.monotonic() + seconds
    cur = sorted(ops, key=lambda o: o.inv)

    def fails(keep, ghosts):
        return _fails(model, cids, list(keep) + list(ghosts), max_steps,
                      max(0.01, deadline - time.monotonic()))

    def cut(k):
        keep = cur[:k]
        last = max([o.ret for o in keep if o.ret != INF] or [keep[-1].inv])
        ghosts = [o.as_unknown() for o in cur[k:] if not o.light and o.inv < last]
        return keep, ghosts

    # 1. suffix cut (binary search on the prefix length)
    lo, hi = 1, len(cur)
    best = (cur, [])
    while lo < hi and time.monotonic() < deadline:
        mid = (lo + hi) // 2
        keep, ghosts = cut(mid)
        if fails(keep, ghosts):
            best, hi = (keep, ghosts), mid
        else:
            lo = mid + 1
    cur, ghosts = best

    # 2. reads and no-effect writes, in chunks
    n = 2
    while time.monotonic() < deadline:
        light = [o for o in cur if o.light]
        if not light:
            break
        size = max(1, (len(light) + n - 1) // n)
        removed = False
        for i in range(0, len(light), size):
            if time.monotonic() >= deadline:
                break
            gone = set(id(o) for o in light[i:i + size])
            keep = [o for o in cur if id(o) not in gone]
            if keep and fails(keep, ghosts):
                cur, removed = keep, True
                n = max(n - 1, 2)
                break
        if not removed:
            if size == 1:
                break
            n = min(len(light), n * 2)

    # 3. writes, one at a time, newest first
    for o in sorted([o for o in cur if not o.light], key=lambda o: -o.inv):
        if time.monotonic() >= deadline:
            break
        keep = [x for x in cur if x is not o]
        g = ghosts + [o if o.outcome == "unknown" else o.as_unknown()]
        if keep and fails(keep, g):
            cur, ghosts = keep, g
    return cur, ghosts


# ---------------------------------------------------------------- for people

def _fmt_t(t, t0):
    return "   inf" if t == INF else "%6.3f" % (t - t0)


def describe(op):
    if op.kind == "programs":
        code, rows = op.result
        shown = ["%s(mid=%s tier=%s%s%s)" % (r[0], r[1], r[2], " " + r[5] if r[5] != "ACTIVE" else "",
                                             " relink=%s/%s" % (r[6][0], r[6][1]) if r[6] else "")
                 for r in rows]
        return "read programs -> %s" % (", ".join(shown) or "(none)")
    if op.kind == "history":
        total, acts = op.result
        return "read history -> total %d, newest %s" % (total, ", ".join("%s %s" % a for a in acts) or "-")
    parts = []
    for it in op.items:
        if op.kind == "link":
            s = "link %s mid=%s" % (it[0], it[1])
            if it[2]:
                s += " tier=%s" % it[2]
            if it[4] is not None:
                s += " start=+future"
        elif op.kind == "update":
            s = "%s %s" % ("cancel relink" if it[1] == CANCEL else it[1], it[0])
            if it[2]:
                s += " -> %s" % it[2]
        else:
            s = "delink %s" % it[0]
        parts.append(s)
    if op.outcome == "unknown" and op.codes is None:
        ans = "no answer (%s)" % (op.resp or "unknown")
    else:
        ans = " ".join(str(c) for c in op.codes[1:]) if op.codes else "?"
        if op.outcome == "unknown":
            ans += " (in doubt)"
    return "%s -> %s" % ("; ".join(parts), ans)


def explain(ops, cids=None, t0=None):
    """The operations as a table a person can read: start and end (seconds from t0), thread,
    customer, what was asked, what was answered."""
    ops = sorted(ops, key=lambda o: o.inv)
    if t0 is None:
        t0 = ops[0].inv if ops else 0.0
    lines = []
    if cids:
        lines.append("customers %s" % ", ".join(str(c) for c in cids))
    lines.append("  %6s %6s  %-4s %-9s %s" % ("start", "end", "thr", "customer", "operation -> answer"))
    for o in ops:
        lines.append("  %s %s  %-4s %-9s %s%s" % (_fmt_t(o.inv, t0), _fmt_t(o.ret, t0),
                                                  "" if o.thread is None else o.thread, o.cid, describe(o),
                                                  "  [req %s]" % o.req if o.req else ""))
    return "\n".join(lines)


def format_report(rep, t0=None):
    out = ["linearizability: %d operations in %d independent parts, %d search steps, checked in %.2f s%s"
           % (rep.ops, rep.components, rep.steps, rep.seconds,
              " (and %.1f s shrinking)" % rep.shrink_seconds if rep.violations else "")]
    for cids, r in rep.inconclusive:
        out.append("INCONCLUSIVE: customers %s: search gave up after %d steps (its step or time budget)"
                   % (cids, r.steps))
        if r.stuck:
            first = min(o.inv for o in r.stuck)
            out.append("  it got no further than %d operations in order; %d could go next there, the first "
                       "started at %s s" % (len(r.prefix), len(r.stuck),
                                            _fmt_t(first, t0 if t0 is not None else first).strip()))
    for cids, r, small, total in rep.violations:
        out.append("VIOLATION: customers %s cannot be put in any serial order that respects real time." % (cids,))
        kept, ghosts = small
        out.append("smallest failing sub-history found: %d of the part's %d operations, and %d writes taken "
                   "out of it that may or may not have applied (any time after their start), which cannot "
                   "explain it either:" % (len(kept), total, len(ghosts)))
        out.append(explain(kept, cids, t0))
        out.append("in the whole part, %d operations could be ordered; none of these could go next:" % len(r.prefix))
        out.append(explain(r.stuck, None, t0))
    for cids, lost in rep.lost_acks:
        out.append("LOST ACKNOWLEDGED WRITES (a failover without the writes paused; Redis Cluster's "
                   "asynchronous replication, not counted as violations): customers %s, %d writes "
                   "acknowledged before the kill that the reads after it contradict:" % (cids, len(lost)))
        out.append(explain(lost, None, t0))
    if rep.ok:
        out.append("0 violations")
    return "\n".join(out)
