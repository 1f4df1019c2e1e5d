"""The key layout, checked once: src/keys.h against docs/DATA-MODEL.md and src/lua/*.lua.

src/keys.h defines every Redis key (tests/integration/keys.py parses it; this check uses
the same parser). Fails when:
  - a KEYS_* key is not in DATA-MODEL.md's key tables with the same pattern (conversions
    named as keys.h's comment names them, a KIND=a|b|c word as one row per word, a
    `":X" follows` suffix appended) and the same Redis type;
  - a key pattern of DATA-MODEL.md's tables is no KEYS_* key;
  - a field format of keys.h (m:PID) is not documented in the key table of a hash;
  - a Lua script builds a key, or a prefix of one, that no documented key has: every
    concatenation `'pp:...' .. x .. '...'` (through locals such as `prefix`, `tag`), every
    literal and match pattern naming a key, every suffix `key .. ':' .. x` appended to a
    key from ARGV (it must be a suffix keys.h declares, and each declared suffix must be
    appended by some script), every field name a script builds (`'m:' .. pid`), and every
    `pp:...` pattern a script's comments mention;
  - a test of tests/integration, or a bench/*.py script, writes a key name (or the m:PID
    field) as a literal instead of building it with tests/integration/keys.py (a string
    that starts with the key space's prefix "pp:", or with "m:%");
  - keys.py's partition math (tag, hash64, part_of_cid, bucket_of, the tags' fingerprint)
    gives another value than a known vector of tests/unit/test_layout.c (the C side's pins:
    they are read from that file, so a layout change there must be made here too).
Then it proves that it can fail: each check runs again on copies of the sources
with one thing broken (a key renamed in keys.h, a row dropped from DATA-MODEL.md, a type
changed, a script building an undocumented key...) and must report it.

Prints `ok: ...` / `FAIL: ...` per check and `N passed, M failed` last; exit 1 on a failure.
"""

import ast
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.environ.get("PARTNERD_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.dont_write_bytecode = True      # keep the source tree clean (and distcheck's read-only)

try:
    import keys  # noqa: E402  (the parser of src/keys.h; it reads the file when imported)
except (OSError, ValueError) as e:
    print("FAIL: tests/integration/keys.py reads src/keys.h\n    %s\n0 passed, 1 failed" % e)
    sys.exit(1)

VAR = "\0"                          # a value computed at run time, in a Lua-built name
SEP = re.compile(r"([{}:])")


# ---- docs/DATA-MODEL.md ----------------------------------------------------------------

def doc_keys(doc):
    """{pattern: (type, contents)} of every row of DATA-MODEL.md's key tables (the tables
    whose header starts with `| key | type |`)."""
    out = {}
    in_table = False
    for line in doc.splitlines():
        if re.match(r"\|\s*key\s*\|\s*type\s*\|", line):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or re.match(r"\|\s*-", line):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        if not m:
            raise ValueError("DATA-MODEL.md: a key table row without a `pattern`: %s" % line)
        if m.group(1) in out:
            raise ValueError("DATA-MODEL.md: %s documented twice" % m.group(1))
        out[m.group(1)] = (cells[1] if len(cells) > 1 else "", "|".join(cells[2:]))
    return out


def expected_patterns(k):
    """The DATA-MODEL.md patterns of keys.h key k: its conversions replaced by their
    names (a KIND=a|b|c word by each word), its suffix appended."""
    pats = [""]
    for i, part in enumerate(re.split(r"%(?:lld|d|s)", k.fmt)):
        pats = [p + part for p in pats]
        if i < len(k.args):
            name, choices = k.args[i]
            pats = [p + c for p in pats for c in (choices or (name,))]
    return [p + k.suffix for p in pats]


def check_doc(klist, doc):
    """Problems between keys.h's keys and DATA-MODEL.md's key tables."""
    probs = []
    rows = doc_keys(doc)
    want = {}
    for k in klist:
        if k.field:
            continue
        if k.type is None:
            probs.append("keys.h: KEYS_%s has no type (a comment above it starting `TYPE:`)" % k.name)
        for i, (name, _) in enumerate(k.args):
            conv = k.convs[i]
            if (name == "CID" and conv != "lld") or (name == "PID" and conv != "d") or \
               (name not in ("CID", "PID") and conv != "s"):
                probs.append("keys.h: KEYS_%s: %s is %%%s (CID is %%lld, PID %%d, the rest %%s)"
                             % (k.name, name, conv))
        for p in expected_patterns(k):
            want[p] = k
    for p, k in sorted(want.items()):
        if p not in rows:
            probs.append("KEYS_%s (%s) is not in DATA-MODEL.md's key tables as `%s`" % (k.name, k.fmt, p))
        elif k.type is not None and rows[p][0] != k.type:
            probs.append("`%s`: DATA-MODEL.md says %s, keys.h KEYS_%s says %s"
                         % (p, rows[p][0], k.name, k.type))
    for p in sorted(set(rows) - set(want)):
        probs.append("DATA-MODEL.md documents `%s`, which is no KEYS_* key of keys.h" % p)
    for k in klist:
        if k.field:
            for p in expected_patterns(k):
                if not any("`%s`" % p in contents for t, contents in rows.values() if t == "HASH"):
                    probs.append("keys.h field KEYS_%s (%s): `%s` is in no hash's row of "
                                 "DATA-MODEL.md" % (k.name, k.fmt, p))
    return probs


# ---- the Lua scripts -------------------------------------------------------------------

_LUA_TOKEN = re.compile(r"""
      (?P<comment>--[^\n]*)
    | (?P<str>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<concat>\.\.(?!\.))
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<open>[(\[])
    | (?P<close>[)\]])
    | (?P<nl>\n)
    | (?P<other>.)
    """, re.X | re.S)


def lua_tokens(text):
    """(kind, text, line) for Lua text: comments, strings (their value), `..`, dotted names,
    brackets and other single characters (blanks dropped). A long string or comment
    ([[...]]) is not understood: reported."""
    out = []
    line = 1
    pos = 0
    while pos < len(text):
        m = _LUA_TOKEN.match(text, pos)
        kind, tok = m.lastgroup, m.group(0)
        if (kind == "comment" and tok.startswith("--[[")) or text.startswith("[[", pos):
            raise ValueError("line %d: long strings and comments are not understood by "
                             "tests/keys/check" % line)
        if kind == "str":
            tok = re.sub(r"\\(.)", r"\1", tok[1:-1])
        if kind == "nl":
            line += 1
        elif kind != "other" or not tok.isspace():
            out.append((kind, tok, line))
        pos = m.end()
    return out


def _term_end(code, i):
    """The index after the term of a concatenation starting at code[i] (a string, or a
    name with the calls and indexes that follow it), or None."""
    if code[i][0] == "str":
        return i + 1
    if code[i][0] != "name":
        return None
    j = i + 1
    while j < len(code) and code[j][0] == "open":
        depth = 0
        while j < len(code):
            depth += {"open": 1, "close": -1}.get(code[j][0], 0)
            j += 1
            if depth == 0:
                break
    return j


def lua_chains(toks):
    """Concatenations and lone string literals of a script: [(terms, line, bound)], terms
    a list of ("str", value) / ("name", text), bound the local the chain is assigned to.
    What a call or index holds is scanned too (`redis.call('GET', 'pp:' .. x)`)."""
    chains = []
    code = [t for t in toks if t[0] != "comment"]
    taken = set()
    for i in range(len(code)):
        if i in taken:
            continue
        end = _term_end(code, i)
        if end is None:
            continue
        terms = [(code[i][0], " ".join(t[1] for t in code[i:end]))]
        while end + 1 < len(code) and code[end][0] == "concat":
            nxt = _term_end(code, end + 1)
            if nxt is None:
                break
            taken.add(end + 1)
            terms.append((code[end + 1][0], " ".join(t[1] for t in code[end + 1:nxt])))
            end = nxt
        bound = None
        if i >= 3 and code[i - 1][1] == "=" and code[i - 3][1] == "local" and code[i - 2][0] == "name":
            bound = code[i - 2][1]
        if len(terms) > 1 or code[i][0] == "str":
            chains.append((terms, code[i][2], bound))
    return chains


def key_tokens(s):
    """A key name or pattern as tokens: separators `{`, `}`, `:` and the parts between."""
    return [t for t in SEP.split(s) if t != ""]


def doc_tokens(pattern):
    """A DATA-MODEL.md pattern's tokens, its placeholders (ORG, CID, HEX...) as VAR."""
    return [VAR if re.fullmatch(r"[A-Z]+", t) else t for t in key_tokens(pattern)]


def tokens_fit(lua, doc, whole):
    """Whether a Lua-built name (tokens, VAR for run-time values) fits a documented
    pattern: the same separators and literals; a run-time value where the pattern has a
    placeholder or a word (ix:KIND has one row per word). whole: all of it, else a prefix."""
    if len(lua) > len(doc) or (whole and len(lua) != len(doc)):
        return False
    for a, b in zip(lua, doc):
        if a == b:
            continue
        if a == VAR and b not in ("{", "}", ":"):
            continue
        return False
    return True


def check_lua(klist, doc, scripts):
    """Problems between the key names the scripts build and the documented keys.
    scripts: {file name: text}."""
    probs = []
    pats = [doc_tokens(p) for p in doc_keys(doc)]
    prefix = os.path.commonprefix([k.fmt for k in klist if not k.field])
    fields = [k for k in klist if k.field]
    suffixes = dict((k.suffix, k) for k in klist if k.suffix)
    used_suffixes = set()
    for name, text in sorted(scripts.items()):
        try:
            toks = lua_tokens(text)
        except ValueError as e:
            probs.append("%s: %s" % (name, e))
            continue
        for kind, tok, line in toks:
            if kind == "comment":
                for p in re.findall(r"%s[A-Za-z0-9_{}:*]*[A-Za-z0-9_}*]" % re.escape(prefix), tok):
                    if not any(tokens_fit(doc_tokens(p.replace("*", "X")), d, True) for d in pats):
                        probs.append("%s:%d: a comment names `%s`, which DATA-MODEL.md does not "
                                     "document" % (name, line, p))
        bound = {}
        for terms, line, var in lua_chains(toks):
            text_of = []
            for kind, tok in terms:
                if kind == "str":
                    text_of.append(tok)
                elif tok in bound:
                    text_of.append(bound[tok])
                else:
                    text_of.append(VAR)
            built = "".join(text_of)
            lone = len(terms) == 1
            if lone and built.startswith("^" + prefix):
                # a Lua match pattern taking a key apart: its captures, and the sets and
                # classes it skips (`{[^}]*}`: any tag), are run-time values
                built = re.sub(r"\((?:[^()%]|%.)*\)", VAR, built[1:]).rstrip("$")
                built = re.sub(r"\[\^?(?:%.|[^\]%])+\][*+-]?|%[a-zA-Z][*+-]?|\.[*+-]", VAR, built)
            if built.startswith(prefix):
                if var is not None:
                    bound[var] = built
                whole = var is None or not built.endswith(tuple("{:"))
                if not any(tokens_fit(key_tokens(built), d, whole) for d in pats):
                    probs.append("%s:%d: builds %s`%s`, which DATA-MODEL.md does not document"
                                 % (name, line, "" if whole else "the prefix ",
                                    built.replace(VAR, "*")))
            elif built.startswith(VAR + ":") and not lone:
                # a suffix appended to a key the script was given (ARGV)
                got = [s for s in suffixes
                       if tokens_fit(key_tokens(built[1:]), doc_tokens(s), True)]
                if got:
                    used_suffixes.update(got)
                else:
                    probs.append("%s:%d: appends `%s` to a key; keys.h declares no such suffix "
                                 "(`\":X\" follows`)" % (name, line, built[1:].replace(VAR, "*")))
            elif not lone:
                for k in fields:
                    lit = keys.literal_prefix(k)
                    if built.startswith(lit) and not any(
                            tokens_fit(key_tokens(built), doc_tokens(p), True) for p in expected_patterns(k)):
                        probs.append("%s:%d: builds the field `%s`, not keys.h's %s"
                                     % (name, line, built.replace(VAR, "*"), k.fmt))
    for s in sorted(set(suffixes) - used_suffixes):
        probs.append("keys.h: KEYS_%s says `\"%s\" follows`, but no script appends it"
                     % (suffixes[s].name, s))
    return probs


# ---- the integration tests ------------------------------------------------------------

def _docstrings(tree):
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


_test_memo = {}


def _test_file(name, text, starts):
    """The problems of one test file (remembered: the self-tests break one file at a time)."""
    memo = (name, text, starts)
    if memo in _test_memo:
        return _test_memo[memo]
    probs = []
    try:
        tree = ast.parse(text, name)
    except SyntaxError as e:
        probs.append("%s: %s" % (name, e))
        tree = None
    docs = _docstrings(tree) if tree else set()
    for node in ast.walk(tree) if tree else ():
        if not isinstance(node, ast.Constant) or id(node) in docs:
            continue
        v = node.value
        if isinstance(v, bytes):
            v = v.decode("latin-1")
        if isinstance(v, str) and v.startswith(starts):
            probs.append("%s:%d: the key name %r written by hand: build it with "
                         "tests/integration/keys.py" % (name, node.lineno, v))
    _test_memo[memo] = probs
    return probs


def check_tests(klist, tests):
    """Problems: key names written as literals in the tests. tests: {file name: text}."""
    prefix = os.path.commonprefix([k.fmt for k in klist if not k.field])
    starts = tuple([prefix] + [keys.literal_prefix(k) + "%" for k in klist if k.field])
    probs = []
    for name, text in sorted(tests.items()):
        probs += _test_file(name, text, starts)
    return probs


# ---- keys.py's partition math against test_layout.c's vectors ------------------------

_C_INT = {"INT64_MAX": str(2 ** 63 - 1), "INT64_MIN": str(-2 ** 63)}


def _c_string(lit):
    """The bytes of a C string literal's text (the escapes test_layout.c uses)."""
    return re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m.group(1), 8)]) if m.group(1)[:1].isdigit()
                  else {b"n": b"\n", b"t": b"\t"}.get(m.group(1), m.group(1)), lit.encode())


def check_vectors(text):
    """Problems between keys.py's layout math and the known vectors of test_layout.c."""
    probs = []
    found = dict(tag=0, hash=0, part=0, bucket=0, fingerprint=0)
    for m in re.finditer(r'CHECK_EQ_STR\(layout_tag\(([0-9]+), NULL\), "([^"]*)"\)', text):
        found["tag"] += 1
        if keys.tag(int(m.group(1))) != m.group(2):
            probs.append("keys.tag(%s) is %r, test_layout.c pins %r" % (m.group(1), keys.tag(int(m.group(1))), m.group(2)))
    for m in re.finditer(r'CHECK\(layout_hash\("((?:[^"\\]|\\.)*)", ([0-9]+)\) == UINT64_C\((0x[0-9a-fA-F]+)\)\)', text):
        found["hash"] += 1
        v = _c_string(m.group(1))[:int(m.group(2))]
        if keys.hash64(v) != int(m.group(3), 16):
            probs.append("keys.hash64(%r) is 0x%016x, test_layout.c pins %s" % (v, keys.hash64(v), m.group(3)))
        if keys.siphash24(keys._HASH_KEY, v) != int(m.group(3), 16):     # the pure-Python one too
            probs.append("keys.siphash24(%r) is 0x%016x, test_layout.c pins %s"
                         % (v, keys.siphash24(keys._HASH_KEY, v), m.group(3)))
    for m in re.finditer(r'CHECK_EQ_INT\(layout_part_of_cid\((-?[0-9]+|INT64_MAX|INT64_MIN)\), ([0-9]+)\)', text):
        found["part"] += 1
        cid = _C_INT.get(m.group(1), m.group(1))
        if keys.part_of_cid(cid) != int(m.group(2)):
            probs.append("keys.part_of_cid(%s) is %d, test_layout.c pins %s" % (cid, keys.part_of_cid(cid), m.group(2)))
    for m in re.finditer(r'CHECK_EQ_INT\(layout_bucket_of\("((?:[^"\\]|\\.)*)", ([0-9]+)\), ([0-9]+)\)', text):
        found["bucket"] += 1
        v = _c_string(m.group(1))[:int(m.group(2))]
        if keys.bucket_of(v) != int(m.group(3)):
            probs.append("keys.bucket_of(%r) is %d, test_layout.c pins %s" % (v, keys.bucket_of(v), m.group(3)))
    m = re.search(r"fp = fp \* 1000003u \^ layout_hash\(t, len\);.*?CHECK\(fp == UINT64_C\((0x[0-9a-fA-F]+)\)\)",
                  text, re.S)
    if m:
        found["fingerprint"] += 1
        fp = 0
        for t in keys.tags():
            fp = ((fp * 1000003) & (2 ** 64 - 1)) ^ keys.hash64(t)
        if fp != int(m.group(1), 16):
            probs.append("keys.tags()' fingerprint is 0x%016x, test_layout.c pins %s" % (fp, m.group(1)))
    for what, n in sorted(found.items()):
        if n == 0:
            probs.append("tests/unit/test_layout.c: no %s vector found (the shapes this check reads: "
                         "update tests/keys/check_keys.py)" % what)
    return probs


# ---- keys.py's builders and selections ------------------------------------------------

def check_builders():
    """Problems with keys.py's builders: each key's TAG is the one layout 2 gives it, parse
    takes every built name back, globs and the Selects of of_org / of_customer keep exactly
    their keys."""
    probs = []
    hexa = "0123456789abcdef" * 2
    t = keys.tag
    want = [
        (keys.cust("acme", 42), "CUST", t(keys.part_of_cid(42))),
        (keys.lock("acme", 42), "LOCK", t(keys.part_of_cid(42))),
        (keys.hist("acme", 65563), "HIST", t(keys.part_of_cid(65563))),
        (keys.feed("acme", 7), "FEED", t(7)),
        (keys.feed_of("acme", 42), "FEED", t(keys.part_of_cid(42))),
        (keys.ix("acme", "email", "a@b.nl"), "IX", t(keys.bucket_of("a@b.nl"))),
        (keys.mid("acme", 3, "M-1"), "MID", t(keys.bucket_of("M-1"))),
        (keys.idem("acme", hexa), "IDEM", t(keys.bucket_of(hexa))),
        (keys.rate("acme", hexa), "RATE", t(keys.bucket_of(hexa))),
    ]
    for name, kind, tag in want:
        p = keys.parse(name)
        if p is None or p[0] != kind or p[1].get("tag") != tag or p[1].get("org") != "acme" \
                or keys.placed_right(name) is not True:
            probs.append("keys.py: %s parses as %r, placed_right %r; want %s with tag %s"
                         % (name, p, keys.placed_right(name), kind, tag))
    for name in (keys.org("acme"), keys.LAYOUT, keys.ORGS, keys.import_("acme", "0a")):
        if keys.parse(name) is None:
            probs.append("keys.py: %s does not parse" % name)
    wrong = keys.build("CUST", t((keys.part_of_cid(42) + 1) % keys.LAYOUT_PARTS), "acme", 42)
    if keys.placed_right(wrong) is not False:
        probs.append("keys.py: placed_right(%s) is not False" % wrong)
    if keys.lock("acme", "*") != keys.build("LOCK", "*", "acme", "*") or "{*}" not in keys.feed("acme", "*"):
        probs.append("keys.py: a \"*\" argument does not make the tag \"*\"")
    if keys.mid("acme", 1, "*3\r\n$3*") != keys.build("MID", t(keys.bucket_of("*3\r\n$3*")), "acme", 1):
        probs.append("keys.py: a membership id holding \"*\" is not hashed to its bucket")
    if len(set(keys.feeds("acme"))) != keys.LAYOUT_PARTS or len(set(keys.mids("acme", 1))) != keys.LAYOUT_PARTS:
        probs.append("keys.py: feeds / mids do not name %d distinct keys" % keys.LAYOUT_PARTS)
    sel = keys.of_customer("acme", 42)
    ins = [keys.cust("acme", 42), keys.lock("acme", 42), keys.hist("acme", 42)]
    outs = [keys.cust("acme", 43), keys.cust("acmex", 42), keys.build("MID", keys.tag(keys.part_of_cid(42)), "acme", 42),
            keys.feed_of("acme", 42)]
    for k in ins + outs:
        if keys.wanted(sel, k) != (k in ins) or (k in ins and not _glob_match(str(sel), k)):
            probs.append("keys.py: of_customer(\"acme\", 42) %s %s" % ("misses" if k in ins else "takes", k))
    sel = keys.of_org("acme")
    ins = [keys.org("acme"), keys.cust("acme", 1), keys.feed("acme", 0), keys.ix("acme", "mobile", "+31"),
           keys.rate("acme", hexa) + ":123", keys.build("CUST", "p0.1", "acme", 5)]
    outs = [keys.org("acmex"), keys.cust("acmex", 1), keys.feed("xacme", 0), keys.ORGS, keys.LAYOUT]
    for k in ins + outs:
        if keys.wanted(sel, k) != (k in ins) or (k in ins and not _glob_match(str(sel), k)):
            probs.append("keys.py: of_org(\"acme\") %s %s" % ("misses" if k in ins else "takes", k))
    return probs


def _glob_match(glob, key):
    """Redis's glob (* and ? only, as the selections use them)."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)
    return re.fullmatch(rx, key, re.S) is not None


# ---- the whole check, and proof that it can fail --------------------------------------

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sources():
    header = read(os.path.join(TOP, "src", "keys.h"))
    doc = read(os.path.join(TOP, "docs", "DATA-MODEL.md"))
    scripts = dict((os.path.basename(p), read(p))
                   for p in sorted(glob.glob(os.path.join(TOP, "src", "lua", "*.lua"))))
    tests = dict((os.path.basename(p), read(p))
                 for p in sorted(glob.glob(os.path.join(TOP, "tests", "integration", "*.py")))
                 if os.path.basename(p) != "keys.py")
    # the bench scripts build their key names with keys.py too (named bench/X.py)
    tests.update(("bench/" + os.path.basename(p), read(p))
                 for p in sorted(glob.glob(os.path.join(TOP, "bench", "*.py"))))
    return header, doc, scripts, tests


def problems(header, doc, scripts, tests):
    """Every disagreement among the sources, as messages."""
    try:
        klist = keys.parse_header(header)
    except ValueError as e:
        return [str(e)]
    try:
        return check_doc(klist, doc) + check_lua(klist, doc, scripts) + check_tests(klist, tests)
    except ValueError as e:
        return [str(e)]


def replace_once(text, old, new, where):
    if text.count(old) < 1:
        raise AssertionError("the self-test's %r is no longer in %s: update tests/keys/check_keys.py"
                             % (old, where))
    return text.replace(old, new, 1)


# (what is broken, function (header, doc, scripts, tests) -> broken copies, a text the
# report must hold)
def _lua(name, old, new):
    def f(h, d, s, t):
        s = dict(s)
        s[name] = replace_once(s[name], old, new, name)
        return h, d, s, t
    return f


def _lua_re(rx, repl, every=False):
    """Breaks the first script (by name) where regex rx matches, its first match replaced
    by repl; every: each match of every script. (The scripts' exact text is theirs: the
    breaks look for the construct, not for one line.)"""
    def f(h, d, s, t):
        s = dict(s)
        hit = False
        for name in sorted(s):
            new, n = re.subn(rx, repl, s[name], count=0 if every else 1)
            if n:
                s[name] = new
                hit = True
                if not every:
                    break
        if not hit:
            raise AssertionError("the self-test's /%s/ is in no script of src/lua: update "
                                 "tests/keys/check_keys.py" % rx)
        return h, d, s, t
    return f


def _hdr(old, new):
    return lambda h, d, s, t: (replace_once(h, old, new, "keys.h"), d, s, t)


def _doc(old, new):
    return lambda h, d, s, t: (h, replace_once(d, old, new, "DATA-MODEL.md"), s, t)


def _test(name, old, new):
    def f(h, d, s, t):
        t = dict(t)
        t[name] = replace_once(t[name], old, new, name)
        return h, d, s, t
    return f


BREAKS = [
    ("a key renamed in keys.h only", _hdr('"pp:{%s}:h:%s:%lld"', '"pp:{%s}:hist:%s:%lld"'),
     "KEYS_HIST"),
    ("a key's conversion renamed in keys.h only", _hdr("/* TAG, ORG, PID */", "/* TAG, ORG, PROG */"),
     "pp:{TAG}:mid:ORG:PROG"),
    ("a new key in keys.h, undocumented",
     _hdr("#endif", "/* SET: x. */\n#define KEYS_X_FMT \"pp:{%s}:x\"  /* ORG */\n#endif"), "KEYS_X"),
    ("a key in keys.h without a type",
     _hdr("/* STREAM: one partition of the org's change feed", "/* one partition of the org's change feed"),
     "KEYS_FEED has no type"),
    ("a key in keys.h whose comment names no conversions",
     _hdr('"pp:{%s}:feed:%s"      /* TAG, ORG */', '"pp:{%s}:feed:%s"'), "must name the conversions"),
    ("CID written with %d in keys.h", _hdr('"pp:{%s}:lock:%s:%lld"', '"pp:{%s}:lock:%s:%d"'), "CID is %d"),
    ("the layout marker missing from DATA-MODEL.md", _doc("| `pp:layout` |", "| `pp:layouts` |"),
     "KEYS_LAYOUT"),
    ("a key table row dropped from DATA-MODEL.md", _doc("| `pp:{TAG}:feed:ORG` |", "| `pp:{TAG}:fed:ORG` |"),
     "`pp:{TAG}:feed:ORG`"),
    ("a partitioned key documented with its layout-1 name",
     _doc("| `pp:{TAG}:mid:ORG:PID` |", "| `pp:{ORG}:mid:PID` |"), "`pp:{TAG}:mid:ORG:PID`"),
    ("an undocumented-in-C key in DATA-MODEL.md",
     _doc("| `pp:{ORG}:pseq` |", "| `pp:{ORG}:spare` | SET | x |\n| `pp:{ORG}:pseq` |"),
     "pp:{ORG}:spare"),
    ("a type changed in DATA-MODEL.md", _doc("| `pp:{TAG}:h:ORG:CID` | LIST |", "| `pp:{TAG}:h:ORG:CID` | SET |"),
     "DATA-MODEL.md says SET"),
    ("the rate key's suffix dropped from DATA-MODEL.md",
     _doc("`pp:{TAG}:rate:ORG:HEX:MINUTE`", "`pp:{TAG}:rate:ORG:HEX`"), "KEYS_RATE"),
    ("the membership field undocumented", _doc("`m:PID` (one field per membership", "(one field per membership"),
     "KEYS_MEMBERSHIP_FIELD"),
    ("a script building a customer's key of another kind", _lua_re(r"\}:c:'", "}:cust:'"), "builds"),
    ("a script building an index bucket's key of another shape", _lua_re(r"\}:ix:'", "}:index:'"), "builds"),
    ("a script building a customer's key in layout 1",
     _lua_re(r"'pp:\{' \.\. (\w+\([^()]*\)|\w+) \.\. '\}:c:' \.\. org \.\. ':' \.\. (\w+)",
             r"'pp:{' .. org .. ':' .. \2 .. '}:c'"), "builds"),
    ("a script with an undocumented prefix in a local", _lua_re(r"local (\w+) = 'pp:\{' \.\. ", r"local \1 = 'pp:[' .. "),
     "the prefix"),
    ("a script's key pattern", _lua_re(r"'\^pp:\{([^']*)\}:mid:", r"'^pp:{\1}:mids:"), "builds"),
    ("a script appending another suffix", _lua_re(r"(ARGV\[\d+\]) \.\. ':' \.\. math\.floor", r"\1 .. ':m:' .. math.floor"),
     "appends"),
    ("no script appending the declared suffix",
     _lua_re(r"(\w+(?:\[\d+\])?) \.\. ':' \.\. math\.floor", r"\1 + math.floor", every=True),
     "no script appends it"),
    ("a script building another field", _lua_re(r"'m:' \.\. (\w+)", r"'m:' .. \1 .. ':x'"), "the field"),
    ("a script's comment naming an undocumented key",
     _lua_re(r"\A", "-- see pp:{TAG}:mids:ORG:PID\n"), "a comment names"),
    ("a test writing a key name by hand",
     _test("test_link.py", 'keys.hist("acme", c["id"])', '"pp:{p0.239}:h:acme:%d" % c["id"]'), "test_link.py"),
    ("a test writing the membership field by hand",
     _test("test_stored.py", 'keys.membership_field(stack.pid(program))', '"m:%d" % stack.pid(program)'),
     "test_stored.py"),
    ("a bench script writing a key name by hand",
     _test("bench/history_bounds.py", 'keys.feed_of("max", cid)', '"pp:{p0.239}:feed:max"'),
     "bench/history_bounds.py"),
    ("a test writing a key name as bytes",
     _test("support_indoubt.py", 'keys.hist(org, cid).encode()', 'b"pp:{p1.1118}:h:%s:%d" % (org.encode(), cid)'),
     "support_indoubt.py"),
]

# The same for the vectors: test_layout.c with one pin changed must be reported.
VECTOR_BREAKS = [
    ("a tag pinned otherwise", r'(CHECK_EQ_STR\(layout_tag\(0, NULL\), ")[^"]*"', r'\1p0.0"', "keys.tag(0)"),
    ("a customer's partition pinned otherwise", r"(CHECK_EQ_INT\(layout_part_of_cid\(42\), )([0-9]+)",
     lambda m: m.group(1) + str((int(m.group(2)) + 1) % 256), "keys.part_of_cid(42)"),
    ("a bucket pinned otherwise", r'(CHECK_EQ_INT\(layout_bucket_of\("a@b.nl", 6\), )([0-9]+)',
     lambda m: m.group(1) + str((int(m.group(2)) + 1) % 256), "keys.bucket_of(b'a@b.nl')"),
    ("the hash pinned otherwise", r'(layout_hash\("acme", 4\) == UINT64_C\(0x)[0-9a-fA-F]', r"\g<1>f",
     "keys.hash64(b'acme')"),
]


def count(header):
    try:
        return len(keys.parse_header(header))
    except ValueError:
        return 0


def main():
    passed = failed = 0

    def report(ok, what, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok: %s" % what)
        else:
            failed += 1
            print("FAIL: %s%s" % (what, ("\n    " + detail.replace("\n", "\n    ")) if detail else ""))

    header, doc, scripts, tests = sources()
    vectors = read(os.path.join(TOP, "tests", "unit", "test_layout.c"))
    found = problems(header, doc, scripts, tests)
    report(not found, "src/keys.h, docs/DATA-MODEL.md, src/lua/*.lua, tests/integration/*.py and "
           "bench/*.py agree on the key layout (%d keys and fields, %d scripts, %d test and bench files)"
           % (count(header), len(scripts), len(tests)),
           "\n".join(found))
    if not scripts:
        report(False, "src/lua/*.lua found")
    found = check_builders()
    report(not found, "tests/integration/keys.py's builders give each key its layout-2 tag; parse, "
           "of_org and of_customer keep exactly their keys", "\n".join(found))
    found = check_vectors(vectors)
    report(not found, "tests/integration/keys.py's partition math gives tests/unit/test_layout.c's "
           "known vectors (tags, SipHash, customer partitions, buckets)", "\n".join(found))
    for what, rx, repl, expect in VECTOR_BREAKS:
        broken, n = re.subn(rx, repl, vectors, count=1)
        got = check_vectors(broken) if n else ["(the self-test's /%s/ is not in test_layout.c)" % rx]
        report(n == 1 and any(expect in p for p in got), "the check catches %s" % what,
               "expected a problem mentioning %r, got:\n%s" % (expect, "\n".join(got) or "(none)"))
    for what, brk, expect in BREAKS:
        try:
            got = problems(*brk(header, doc, scripts, tests))
        except AssertionError as e:
            report(False, "the check catches %s" % what, str(e))
            continue
        report(any(expect in p for p in got), "the check catches %s" % what,
               "expected a problem mentioning %r, got:\n%s" % (expect, "\n".join(got) or "(none)"))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
