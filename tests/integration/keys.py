"""The Redis key names of src/keys.h, for the tests: read from that file at import time.

src/keys.h is the one definition of the key layout (docs/DATA-MODEL.md documents it, and
tests/keys/check holds the document and src/lua/*.lua to it). This module parses its
`#define KEYS_NAME "format"  /* ARGS; text */` lines and keeps no pattern of its own, so a
key changed there changes here. For each key it provides:

  - a builder named after the define, lower case, without KEYS_ and _FMT, taking the
    format's conversions in order (their names are the ARGS of keys.h, lower case):
        cust(org, cid)  lock(org, cid)  hist(org, cid)   -> pp:{ORG:CID}:c / :lock / :h
        org(org)  progs(org)  pseq(org)  feed(org)  ix(org, kind)  mid(org, pid)
        rate(org, hex)  idem(org, hex)  import_(org, hex)  (import is a Python keyword)
        login_fail_user(hex)  login_fail_addr(hex)  membership_field(pid)   -> m:PID
    and a constant for a key without conversions: ORGS, CREDS.
    An argument may be "*" (or any text holding "*") to make a SCAN/KEYS glob:
    lock("acme", "*") is "pp:{acme:*}:lock". A KIND must be one of its listed words.
  - ALL: the glob of the whole key space ("pp:*"); LOGIN_FAIL_PREFIX: the failed-login
    counters' common prefix ("pp:login:"); of_org(org) and of_customer(org, cid): the
    globs of every key of an org (its own and its customers') and of one customer.
  - parse(key) -> (NAME, {arg: value}) or None, and match(NAME, text) -> {arg: value} or
    None: which key a name is, e.g. parse("pp:{acme:7}:lock") == ("LOCK", {"org": "acme",
    "cid": "7"}) (values are the text of the key).
  - KEYS: the parsed table, one Key per define (tests/keys/check reads it).

Where keys.h is: $PARTNERD_SRCDIR/src/keys.h, by default two directories above this file.
"""

import collections
import keyword
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))

# One define: name (without KEYS_), format, conversions [(arg, choices or None)], the
# conversion letters ("s", "d", "lld"), the suffix the scripts append (":MINUTE") or "",
# the Redis type from the comment above it (None for a field), and whether it is a field
# of a hash rather than a key (a format not under the key space's prefix).
Key = collections.namedtuple("Key", "name fmt args convs suffix type field")

TYPES = ("STRING", "HASH", "LIST", "SET", "ZSET", "STREAM")
_CONV = re.compile(r"%(lld|d|s)")


def path():
    top = os.environ.get("PARTNERD_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
    return os.path.join(top, "src", "keys.h")


def parse_header(text, where="src/keys.h"):
    """The Key list of a keys.h text. Raises ValueError naming the line when a KEYS_ define
    does not have the shape keys.h promises (so that no key is silently skipped)."""
    out = []
    typ = None
    for m in re.finditer(r"/\*.*?\*/|^[ \t]*#[ \t]*define[ \t]+KEYS_[^\n]*", text, re.S | re.M):
        tok = m.group(0)
        line = text.count("\n", 0, m.start()) + 1
        if tok.startswith("/*"):
            # A comment block that starts with a Redis type sets the type of the defines
            # that follow it; any other block ends it.
            t = re.match(r"/\*\s*([A-Z]+):", tok)
            typ = t.group(1) if t and t.group(1) in TYPES else None
            continue
        d = re.match(r'\s*#\s*define\s+KEYS_(\w+)\s+"([^"\\%]*(?:%[a-z]+[^"\\%]*)*)"\s*'
                     r'(?:/\*(.*?)\*/)?\s*$', tok)
        if not d:
            raise ValueError("%s:%d: not `#define KEYS_NAME \"format\"  /* ARGS */`: %s"
                             % (where, line, tok.strip()))
        name, fmt, comment = d.group(1), d.group(2), (d.group(3) or "").strip()
        if name.endswith("_FMT"):
            name = name[:-4]
        convs = _CONV.findall(fmt)
        if len(convs) != fmt.count("%"):
            raise ValueError("%s:%d: KEYS_%s: only %%s, %%d and %%lld are understood: %r"
                             % (where, line, name, fmt))
        argtext, _, rest = comment.partition(";")
        args = []
        if convs:
            for a in argtext.split(","):
                a = a.strip()
                am = re.fullmatch(r"([A-Z]+)(?:=([A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*))?", a)
                if not am:
                    raise ValueError("%s:%d: KEYS_%s: the comment must name the conversions "
                                     "(e.g. /* ORG, CID */), found %r" % (where, line, name, comment))
                args.append((am.group(1), tuple(am.group(2).split("|")) if am.group(2) else None))
        if len(args) != len(convs):
            raise ValueError("%s:%d: KEYS_%s: %d conversions, %d names in the comment %r"
                             % (where, line, name, len(convs), len(args), comment))
        sm = re.search(r'"(:[A-Z]+)" follows', rest)
        out.append(Key(name, fmt, tuple(args), tuple(convs), sm.group(1) if sm else "", typ, False))
    if not out:
        raise ValueError("%s: no KEYS_ define found" % where)
    # The key space's prefix is what every define but the hash fields starts with: the
    # fields are the defines whose name says so (..._FIELD).
    prefix = os.path.commonprefix([k.fmt for k in out if not k.name.endswith("_FIELD")])
    if not prefix:
        raise ValueError("%s: the keys share no prefix" % where)
    return [k._replace(field=not k.fmt.startswith(prefix)) for k in out]


def load():
    with open(path(), encoding="utf-8") as f:
        return parse_header(f.read(), path())


KEYS = load()
BY_NAME = dict((k.name, k) for k in KEYS)
PREFIX = os.path.commonprefix([k.fmt for k in KEYS if not k.field])       # "pp:"
ALL = PREFIX + "*"


def literal_prefix(k):
    """The format's text before its first conversion."""
    return _CONV.split(k.fmt)[0]


def build(name, *values):
    """Key (or field) NAME of keys.h with its conversions filled by values in order."""
    k = BY_NAME[name]
    if len(values) != len(k.args):
        raise TypeError("%s takes %s" % (builder_name(k), ", ".join(a.lower() for a, _ in k.args)))
    parts = _CONV.split(k.fmt)          # literal, conv, literal, conv, ..., literal
    out = [parts[0]]
    for i, ((arg, choices), v) in enumerate(zip(k.args, values)):
        s = str(v.decode() if isinstance(v, bytes) else v)
        if "*" not in s:
            if parts[2 * i + 1] in ("d", "lld") and not re.fullmatch(r"-?[0-9]+", s):
                raise ValueError("%s: %s must be an integer, got %r" % (builder_name(k), arg.lower(), v))
            if choices and s not in choices:
                raise ValueError("%s: %s must be one of %s, got %r"
                                 % (builder_name(k), arg.lower(), "|".join(choices), v))
        out.append(s)
        out.append(parts[2 * i + 2])
    return "".join(out)


def builder_name(k):
    n = k.name.lower()
    return n + "_" if keyword.iskeyword(n) else n


def _make_builder(k):
    def builder(*values):
        return build(k.name, *values)
    builder.__name__ = builder_name(k)
    builder.__doc__ = "%s with %s (src/keys.h KEYS_%s)" % (
        k.fmt, ", ".join(a for a, _ in k.args), k.name)
    return builder


for _k in KEYS:
    if _k.args:
        globals()[builder_name(_k)] = _make_builder(_k)
    else:
        globals()[_k.name] = _k.fmt
del _k


def _regex(k):
    parts = _CONV.split(k.fmt)
    rx = [re.escape(parts[0])]
    for i, (arg, choices) in enumerate(k.args):
        if choices:
            rx.append("(?P<%s>%s)" % (arg.lower(), "|".join(re.escape(c) for c in choices)))
        elif parts[2 * i + 1] == "s":
            rx.append("(?P<%s>[^{}:]+)" % arg.lower())
        else:
            rx.append("(?P<%s>-?[0-9]+)" % arg.lower())
        rx.append(re.escape(parts[2 * i + 2]))
    if k.suffix:                        # ":MINUTE": the scripts' part, absent in the base
        rx.append("(?:%s(?P<%s>[^{}:]+))?" % (re.escape(k.suffix[0]), k.suffix[1:].lower()))
    return re.compile("".join(rx))


_REGEX = dict((k.name, _regex(k)) for k in KEYS)


def match(name, text):
    """{arg: value} when text is key (or field) NAME of keys.h, else None (bytes accepted)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = _REGEX[name].fullmatch(text)
    return m.groupdict() if m else None


def parse(key):
    """(NAME, {arg: value}) of the key named key, or None when it is no key of keys.h."""
    for k in KEYS:
        if not k.field:
            got = match(k.name, key)
            if got is not None:
                return k.name, got
    return None


def org_of(key):
    """The org a key belongs to (its ORG), or None (a global key or no key of keys.h)."""
    p = parse(key)
    return p[1].get("org") if p else None


# Globs over several keys, derived from the formats: a customer's keys are KEYS_CUST's with
# another last part, an org's keys start with KEYS_ORG's text up to the org id.
def of_customer(org, cid):
    """Glob of every key of customer cid of org ("pp:{ORG:CID}:*")."""
    s = build("CUST", org, cid)
    return s[:s.rindex(":") + 1] + "*"


def of_org(org):
    """Glob of every key of org: its own ("pp:{ORG}...") and its customers' ("pp:{ORG:...")."""
    return literal_prefix(BY_NAME["ORG"]) + org + "[}:]*"


LOGIN_FAIL_PREFIX = os.path.commonprefix(
    [literal_prefix(k) for k in KEYS if k.name.startswith("LOGIN_FAIL_")])   # "pp:login:"
