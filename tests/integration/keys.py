"""The Redis key names of src/keys.h (key layout 2), for the tests: read from that file at
import time, with the partition math of src/layout.c redone in Python.

src/keys.h is the one definition of the key layout (docs/DATA-MODEL.md documents it, and
tests/keys/check holds the document and src/lua/*.lua to it). This module parses its
`#define KEYS_NAME "format"  /* ARGS; text */` lines and keeps no pattern of its own, so a
key changed there changes here. For each key it provides:

  - a builder named after the define, lower case, without KEYS_ and _FMT. A key with a
    TAG (layout 2's partition tag, src/layout.h) is built from what the caller knows; the
    builder derives the TAG itself:
        cust(org, cid)  lock(org, cid)  hist(org, cid)   TAG of the cid (part_of_cid)
                                                         -> pp:{TAG}:c:ORG:CID / lock / h
        feed(org, p)     p a partition 0..LAYOUT_PARTS-1  -> pp:{TAG}:feed:ORG
        ix(org, kind, value)        TAG of the normalised identifier (bucket_of(value))
        mid(org, pid, membership_id)   TAG of the membership id (bucket_of(id))
        rate(org, hex)  idem(org, hex)   TAG of the HEX text (bucket_of(hex))
        org(org)  progs(org)  pseq(org)  import_(org, hex)  (import is a Python keyword)
        login_fail_user(hex)  login_fail_addr(hex)  membership_field(pid)   -> m:PID
    and a constant for a key without conversions: LAYOUT ("pp:layout"), ORGS, CREDS.
    Also feeds(org) (the LAYOUT_PARTS feed partitions, in partition order), feed_of(org,
    cid) (the partition that holds customer cid's entries), and the LAYOUT_PARTS buckets
    of an index: ixs(org, kind), mids(org, pid) (read them all to see a whole index).
    An argument may be "*" (or any text holding "*") to make a SCAN/KEYS glob; a "*"
    where the TAG comes from makes the TAG "*" too: lock("acme", "*") is
    "pp:{*}:lock:acme:*", ix("acme", "email", "*") "pp:{*}:ix:acme:email", feed("acme",
    "*") every partition's. An identifier or membership id is a glob only when it is "*"
    itself: one that holds a "*" among other text is hashed like any value (and a value
    given as bytes always is). A KIND must be one of its listed words. build(NAME, *values)
    fills the format's conversions as given, TAG included (a raw name, e.g. a key planted
    in the wrong partition).
  - the layout's math, as src/layout.c computes it (tests/keys/check compares it with
    tests/unit/test_layout.c's known vectors; SipHash through libsodium when it loads,
    else in pure Python): part_of_cid(cid) ((CID mod 65521) mod
    LAYOUT_PARTS over the decimal digits), bucket_of(bytes or str) (SipHash-2-4 under
    layout.c's key, mod LAYOUT_PARTS), tag(p) (layout_find_tag: the first "p<p>.<n>" whose
    CRC16 slot lies in the middle quarter of partition p's 64 slots), part_of_tag(tag)
    (its partition, or None), hash64(bytes) (layout_hash), LAYOUT_PARTS (layout.h), and
    key_slot(key) / crc16(bytes): a key's Redis Cluster slot.
  - ALL: the glob of the whole key space ("pp:*"); LOGIN_FAIL_PREFIX: the failed-login
    counters' common prefix ("pp:login:").
  - of_org(org) and of_customer(org, cid): every key of an org (its own "pp:{ORG}:..." and
    those of its customers, indexes, feed partitions... "pp:{TAG}:KIND:ORG...") and of one
    customer (its c, lock and h keys). Layout 2 spreads them over the tags, so no glob
    says exactly which keys they are: each is a Select, a str (one glob that every such key
    matches, usable as a SCAN MATCH pattern) with a filter, want(key), that keeps exactly
    those keys. Stack.keys / snapshot / digest (harness.py) apply it: wanted(pattern, key)
    is true for any key under a plain glob. A key under an org's braces or with the org
    after its tag that is no key of keys.h (a stray key) belongs to the org too.
  - parse(key) -> (NAME, {arg: value}) or None, and match(NAME, text) -> {arg: value} or
    None: which key a name is, e.g. parse("pp:{p7.1}:lock:acme:7") == ("LOCK", {"tag":
    "p7.1", "org": "acme", "cid": "7"}) (values are the text of the key; a TAG is any
    text without braces or colons: placed_right(key) says whether it is the TAG the layout
    gives that key, where the name alone says, i.e. for a customer's keys and HEX keys).
  - KEYS: the parsed table, one Key per define (tests/keys/check reads it).

Where keys.h is: $PARTNERD_SRCDIR/src/keys.h, by default two directories above this file
(src/layout.h and src/layout.c beside it give LAYOUT_PARTS and the hash key).
"""

import binascii
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


def path(name="keys.h"):
    """src/NAME of the source tree (keys.h, layout.h, layout.c)."""
    top = os.environ.get("PARTNERD_SRCDIR") or os.path.dirname(os.path.dirname(HERE))
    return os.path.join(top, "src", name)


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


# ---- the partition math of src/layout.c (layout 2) ------------------------------------

def _layout_constants():
    """LAYOUT_PARTS (layout.h), SipHash's key (layout.c's hash_key) and part_of_cid's
    modulus (layout.h's LAYOUT_CID_MOD, 65521 when it has none), read from the sources
    like the key formats."""
    with open(path("layout.h"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^#define\s+LAYOUT_PARTS\s+([0-9]+)", text, re.M)
    if not m:
        raise ValueError("%s: no `#define LAYOUT_PARTS N`" % path("layout.h"))
    with open(path("layout.c"), encoding="utf-8") as f:
        k = re.search(r'\bhash_key\[[^\]]*\]\s*=\s*"([^"\\]{16})"', f.read())
    if not k:
        raise ValueError("%s: no 16-character `hash_key[...] = \"...\"`" % path("layout.c"))
    mod = re.search(r"^#define\s+LAYOUT_CID_MOD\s+([0-9]+)", text, re.M)
    return int(m.group(1)), k.group(1).encode(), int(mod.group(1)) if mod else 65521


LAYOUT_PARTS, _HASH_KEY, CID_MOD = _layout_constants()   # CID_MOD: part_of_cid's prime


def _layout_version():
    """LAYOUT_VERSION of layout.h: what pp:layout holds for the data this tree writes."""
    with open(path("layout.h"), encoding="utf-8") as f:
        m = re.search(r"^#define\s+LAYOUT_VERSION\s+([0-9]+)", f.read(), re.M)
    if not m:
        raise ValueError("%s: no `#define LAYOUT_VERSION N`" % path("layout.h"))
    return m.group(1)


LAYOUT_VERSION = _layout_version()      # text, as pp:layout holds it ("3")
CLUSTER_SLOTS = 16384
_M64 = (1 << 64) - 1


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & _M64


def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & _M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash24(key, data):
    """SipHash-2-4 of data under a 16-byte key, as a 64-bit integer (libsodium's
    crypto_shorthash_siphash24 read little-endian, as layout_hash does)."""
    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:16], "little")
    v0, v1 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d
    v2, v3 = k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573
    n = len(data)
    tail = data[n - n % 8:] + bytes(7 - n % 8) + bytes([n & 0xff])
    for blk in [data[i:i + 8] for i in range(0, n - n % 8, 8)] + [tail]:
        m = int.from_bytes(blk, "little")
        v3 ^= m
        v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
        v0 ^= m
    v2 ^= 0xff
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def _bytes(v):
    return v if isinstance(v, bytes) else str(v).encode("utf-8")


def _sodium_siphash():
    """libsodium's crypto_shorthash_siphash24 through ctypes (what layout.c calls; ~20
    times faster than siphash24 above, for the benches' millions of values), or None when
    libsodium cannot be loaded or disagrees with siphash24 on a few values."""
    try:
        import ctypes
        import ctypes.util
        lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
        f = lib.crypto_shorthash_siphash24
        f.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p]
        f.restype = ctypes.c_int
        out = ctypes.create_string_buffer(8)

        def h(key, data):
            f(out, data, len(data), key)
            return int.from_bytes(out.raw, "little")
        for v in (b"", b"acme", b"a\0b", bytes(range(40))):
            if h(_HASH_KEY, v) != siphash24(_HASH_KEY, v):
                return None
        return h
    except (OSError, AttributeError):
        return None


_FAST = _sodium_siphash()


def hash64(value):
    """layout_hash: SipHash-2-4 of the bytes (a str: its UTF-8) under layout.c's key."""
    if _FAST is not None:
        return _FAST(_HASH_KEY, _bytes(value))
    return siphash24(_HASH_KEY, _bytes(value))


def bucket_of(value):
    """layout_bucket_of: the partition of a value (an identifier, a membership id, a HEX
    text): hash64(value) mod LAYOUT_PARTS."""
    return hash64(value) % LAYOUT_PARTS


def part_of_cid(cid):
    """layout_part_of_cid: (CID mod 65521) mod LAYOUT_PARTS, over the decimal digits of
    the id's text (Horner; a leading "-" skipped), as the scripts compute it."""
    s = _bytes(cid).decode("ascii")
    if not re.fullmatch(r"-?[0-9]+", s):
        raise ValueError("part_of_cid: %r is no customer id" % (cid,))
    h = 0
    for d in s.lstrip("-"):
        h = (h * 10 + ord(d) - 48) % CID_MOD
    return h % LAYOUT_PARTS


def crc16(data):
    """Redis Cluster's CRC16 (XMODEM) of bytes."""
    return binascii.crc_hqx(_bytes(data), 0)


def key_slot(key):
    """The cluster slot of a key name (its hash tag's, when it has one)."""
    k = _bytes(key)
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % CLUSTER_SLOTS


def find_tag(p, np=None):
    """layout_find_tag: the first "p<p>.<n>" (n < 65536) whose slot lies in the middle
    quarter of partition p's slot range, or None."""
    np = np or LAYOUT_PARTS
    if np == 0 or np > 1024 or np & (np - 1) or not 0 <= p < np:
        return None
    w = CLUSTER_SLOTS // np
    win = w // 4
    lo = p * w + (w - win) // 2
    for n in range(65536):
        t = "p%d.%d" % (p, n)
        if lo <= binascii.crc_hqx(t.encode(), 0) % CLUSTER_SLOTS < lo + win:
            return t
    return None


_TAGS = []


def tags():
    """The LAYOUT_PARTS tags, partition order (computed on first use, ~0.1 s)."""
    if not _TAGS:
        got = [find_tag(p) for p in range(LAYOUT_PARTS)]
        if None in got:
            raise ValueError("no tag for partition %d" % got.index(None))
        _TAGS.extend(got)
    return list(_TAGS)


def tag(p):
    """layout_tag: the tag of partition p (0 <= p < LAYOUT_PARTS)."""
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p < LAYOUT_PARTS:
        raise ValueError("tag: partition %r is not 0..%d" % (p, LAYOUT_PARTS - 1))
    return tags()[p]


def part_of_tag(t):
    """The partition whose tag is t, or None."""
    if isinstance(t, bytes):
        t = t.decode("utf-8", "replace")
    m = re.fullmatch(r"p([0-9]+)\.[0-9]+", t)
    p = int(m.group(1)) if m else -1
    return p if 0 <= p < LAYOUT_PARTS and tags()[p] == t else None


# ---- builders --------------------------------------------------------------------------

def literal_prefix(k):
    """The format's text before its first conversion."""
    return _CONV.split(k.fmt)[0]


def build(name, *values):
    """Key (or field) NAME of keys.h with its conversions filled by values in order (a
    TAG too: the raw format; the builders below derive the TAG)."""
    k = BY_NAME[name]
    if len(values) != len(k.args):
        raise TypeError("build(%r, ...) takes %s" % (name, ", ".join(a.lower() for a, _ in k.args)))
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
            if arg == "TAG" and re.search(r"[{}:]", s):
                raise ValueError("%s: a tag holds no brace or colon, got %r" % (builder_name(k), v))
        out.append(s)
        out.append(parts[2 * i + 2])
    return "".join(out)


# Where each tagged key's TAG comes from (keys.h's comments say it in words): the argument
# of keys.h's it is computed from, or one the builder takes after keys.h's own (VALUE, a
# membership id, a partition). A TAGged key missing here stops the import: say where its
# TAG comes from.
_TAG_FROM = {
    "CUST": ("CID", part_of_cid), "LOCK": ("CID", part_of_cid), "HIST": ("CID", part_of_cid),
    "RATE": ("HEX", bucket_of), "IDEM": ("HEX", bucket_of),
    "IX": ("+value", bucket_of), "MID": ("+membership_id", bucket_of),
    "FEED": ("+p", None),
}


def _tag_text(src, fn, v):
    s = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    # a glob: a CID or HEX holding "*" (neither can hold one), or a value (an identifier, a
    # membership id, a partition) that is "*" itself; a value holding "*" is hashed
    if (s == "*" or ("*" in s and src in ("CID", "HEX"))) and not isinstance(v, bytes):
        return "*"
    if fn is None:                      # a partition number
        if isinstance(v, bool) or not re.fullmatch(r"[0-9]+", s):
            raise ValueError("feed: p must be a partition 0..%d or \"*\", got %r" % (LAYOUT_PARTS - 1, v))
        return tag(int(s))
    return tag(fn(v))


def builder_name(k):
    n = k.name.lower()
    return n + "_" if keyword.iskeyword(n) else n


def _make_builder(k):
    names = [a for a, _ in k.args]
    if "TAG" not in names:
        def builder(*values):
            return build(k.name, *values)
        sig = ", ".join(a.lower() for a in names)
    else:
        if k.name not in _TAG_FROM:
            raise ValueError("keys.py: KEYS_%s has a TAG: say in _TAG_FROM where it comes from" % k.name)
        src, fn = _TAG_FROM[k.name]
        rest = [a for a in names if a != "TAG"]
        if not src.startswith("+") and src not in rest:
            raise ValueError("keys.py: KEYS_%s's TAG comes from %s, which it does not have" % (k.name, src))
        sig = ", ".join([a.lower() for a in rest] + ([src[1:]] if src.startswith("+") else []))
        nargs = len(rest) + src.startswith("+")

        def builder(*values):
            if len(values) != nargs:
                raise TypeError("%s takes %s" % (builder_name(k), sig))
            given = dict(zip(rest, values))
            t = _tag_text(src, fn, values[-1] if src.startswith("+") else given[src])
            return build(k.name, *[t if a == "TAG" else given[a] for a in names])
    builder.__name__ = builder_name(k)
    builder.__doc__ = "%s(%s): %s (src/keys.h KEYS_%s)" % (builder_name(k), sig, k.fmt, k.name)
    return builder


for _k in KEYS:
    if _k.args:
        globals()[builder_name(_k)] = _make_builder(_k)
    else:
        globals()[_k.name] = _k.fmt
del _k


def feeds(org):
    """The LAYOUT_PARTS partitions of org's change feed, partition order."""
    return [feed(org, p) for p in range(LAYOUT_PARTS)]     # noqa: F821 (built above)


def feed_of(org, cid):
    """The feed partition that holds customer cid's entries."""
    return feed(org, part_of_cid(cid))                      # noqa: F821


def mids(org, pid):
    """The LAYOUT_PARTS buckets of program pid's membership-id claims, partition order."""
    return [build("MID", tag(p), org, pid) for p in range(LAYOUT_PARTS)]


def ixs(org, kind):
    """The LAYOUT_PARTS buckets of org's index of identifier kind, partition order."""
    return [build("IX", tag(p), org, kind) for p in range(LAYOUT_PARTS)]


# ---- parsing ---------------------------------------------------------------------------

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


def placed_right(key):
    """Whether key carries the TAG the layout gives it: True or False for a key whose TAG
    its own name determines (a customer's keys, RATE, IDEM: computed from its CID or HEX),
    True for an untagged key and a valid tag of a key whose TAG comes from a value not in
    its name (IX, MID, FEED), None for no key of keys.h."""
    p = parse(key)
    if p is None:
        return None
    name, a = p
    if "tag" not in a:
        return True
    src, fn = _TAG_FROM[name]
    if src.startswith("+"):
        return part_of_tag(a["tag"]) is not None
    return a["tag"] == tag(fn(a[src.lower()]))


def org_of(key):
    """The org a key belongs to (its ORG), or None (a global key or no key of keys.h)."""
    p = parse(key)
    return p[1].get("org") if p else None


# ---- sets of keys: a glob and a filter ---------------------------------------------------

class Select(str):
    """A set of keys no glob names exactly: the str is a glob every such key matches (a
    SCAN MATCH pattern), want(key) keeps exactly those keys."""

    def __new__(cls, glob, want, what):
        s = str.__new__(cls, glob)
        s.want = want
        s.what = what
        return s

    def __repr__(self):
        return "<%s: %s>" % (self.what, str.__str__(self))


def wanted(pattern, key):
    """Whether a key that SCAN MATCH pattern returned is one pattern means (a Select's
    filter; any key for a plain glob)."""
    want = getattr(pattern, "want", None)
    return want is None or want(key.decode("utf-8", "replace") if isinstance(key, bytes) else key)


def _of_customer_kinds():
    return [k.name for k in KEYS if not k.field and any(a == "CID" for a, _ in k.args)]


def of_customer(org, cid):
    """Every key of customer cid of org (the kinds of keys.h with a CID: c, lock, h): a
    Select, glob "pp:{TAG}:*:ORG:CID"."""
    org, cid = str(org), str(cid)
    kinds = _of_customer_kinds()
    glob = build(kinds[0], tag(part_of_cid(cid)), *[
        org if a == "ORG" else cid for a, _ in BY_NAME[kinds[0]].args if a != "TAG"])
    glob = glob.replace(":%s:%s:%s" % (literal_kind(kinds[0]), org, cid), ":*:%s:%s" % (org, cid))

    def want(k):
        p = parse(k)
        return p is not None and p[0] in kinds and p[1]["org"] == org and p[1]["cid"] == cid
    return Select(glob, want, "the keys of customer %s of %s" % (cid, org))


def literal_kind(name):
    """The word after a tagged key's tag ("c" of pp:{TAG}:c:ORG:CID)."""
    return _CONV.split(BY_NAME[name].fmt)[2].strip("}:").split(":")[0]


def of_org(org):
    """Every key of org: its own ("pp:{ORG}:...") and those named after a tag
    ("pp:{TAG}:KIND:ORG..."), stray keys of those shapes included: a Select, glob
    "pp:{*ORG*"."""
    org = str(org)
    own = build("ORG", org)
    own = own[:own.index(org) + len(org) + 1]                   # "pp:{ORG}"
    after = re.compile(r"%s[^{}]*\}:[^:]+:%s(?::|$)" % (re.escape(literal_prefix(BY_NAME["ORG"])),
                                                        re.escape(org)))

    def want(k):
        o = org_of(k)
        if o is not None:
            return o == org
        return k.startswith(own) or after.match(k) is not None
    return Select(literal_prefix(BY_NAME["ORG"]) + "*" + org + "*", want, "the keys of org %s" % org)


LOGIN_FAIL_PREFIX = os.path.commonprefix(
    [literal_prefix(k) for k in KEYS if k.name.startswith("LOGIN_FAIL_")])   # "pp:login:"
