"""The stored forms of an activity (docs/CHANGE-FEED.md), read back as the activity JSON
of the API: a history entry (a compact record, or the JSON object an older partnerd
wrote) and a change-feed entry (format 3's fields, or the `event` JSON of formats 1, 2).
Tests that read the store directly compare what partnerd stored with what it answered."""
import json

TYPES = {"L": "LINK", "U": "UPDATE", "D": "DELINK", "S": "RELINK_SCHEDULED", "C": "RELINK_CANCELLED"}
VALUE_KEYS = ("partnerMembershipId", "partnerTierName", "partnerTierExpiryDate",
              "membershipStartDate", "membershipEndDate")
FEED3 = ["v", "type", "customerId", "customerVersion", "seq", "date", "program", "updateType",
         "requestId", "beforeMembershipId", "beforeTierName", "beforeTierExpiryDate",
         "beforeStartDate", "beforeEndDate", "afterMembershipId", "afterTierName",
         "afterTierExpiryDate", "afterStartDate", "afterEndDate"]


def _b(x):
    return x if isinstance(x, bytes) else x.encode()


def _date(ms):
    """Epoch milliseconds (decimal text, b'' for none) as the API's date, or None."""
    if not ms:
        return None
    import datetime
    ms = int(ms)
    d = datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def _text(x):
    return None if not x else x.decode("utf-8", "surrogateescape")


def _values(f):
    if not f[0]:
        return None
    return {"partnerMembershipId": _text(f[0]), "partnerTierName": _text(f[1]),
            "partnerTierExpiryDate": _date(f[2]), "membershipStartDate": _date(f[3]),
            "membershipEndDate": _date(f[4])}


def record_fields(raw):
    """The 15 fields (bytes) of a compact record (src/activity.h)."""
    raw = _b(raw)
    assert raw[:1] in (b"\x01", b"\x02"), "not an activity record: %r" % raw[:40]
    w = 1 if raw[0] == 1 else 4
    pos, out = 1, []
    for _ in range(15):
        n = int.from_bytes(raw[pos:pos + w], "big")
        pos += w
        out.append(raw[pos:pos + n])
        assert len(out[-1]) == n, "truncated record %r" % raw
        pos += n
    assert pos == len(raw), "bytes after the record's fields: %r" % raw
    return out


def _activity(typ, f, cid):
    """f: date, program, updateType, requestId, before (5), after (5), as bytes."""
    return {"activityType": typ, "activityDate": _date(f[0]), "partnerProgramName": _text(f[1]),
            "updateType": _text(f[2]), "before": _values(f[4:9]), "after": _values(f[9:14]),
            "requestId": _text(f[3]) or "", "customerId": int(cid)}


def is_record(raw):
    return _b(raw)[:1] in (b"\x01", b"\x02")


def load(raw, cid):
    """A history entry of customer cid as the activity JSON (a dict)."""
    if not is_record(raw):
        return json.loads(raw)
    f = record_fields(raw)
    return _activity(TYPES[f[0].decode()], f[1:], cid)


def record(typ, date_ms, program, rid, update_type=None, before=None, after=None):
    """A compact record (bytes), as partnerd writes it; before / after: 5-tuples of
    (mid, tier, expiry_ms, start_ms, end_ms), None for none."""
    letter = {v: k for k, v in TYPES.items()}[typ]

    def enc(v):
        return b"" if v is None else _b(str(v)) if not isinstance(v, (bytes, str)) else _b(v)
    fields = [letter, date_ms, program, update_type, rid] + list(before or [None] * 5) + \
        list(after or [None] * 5)
    fields = [enc(x) for x in fields]
    if all(len(x) <= 255 for x in fields):
        return b"\x01" + b"".join(bytes([len(x)]) + x for x in fields)
    return b"\x02" + b"".join(len(x).to_bytes(4, "big") + x for x in fields)


def from_feed(fields):
    """A change-feed entry's fields (a dict of str keys) as the activity JSON (a dict)."""
    if fields.get("v") in ("1", "2", b"1", b"2"):
        return json.loads(fields["event"])
    f = [_b(fields[k]) for k in FEED3[5:]]
    # the date, program, updateType, requestId, then before's and after's five
    return _activity(_text(_b(fields["type"])), [f[0], f[1], f[2], f[3]] + f[4:14], fields["customerId"])
