/*
 * store_keys: the key layout table and a matcher of key names against its patterns (see
 * store_keys.h). The patterns are keys.h's formats, so the table cannot drift from them.
 */
#include <stdio.h>
#include <string.h>

#include "ident.h"
#include "keys.h"
#include "layout.h"
#include "store_keys.h"

const char *const store_ident_name[STORE_NIDENTS] = { "mobile", "email", "externalId" };

#define P(...) { __VA_ARGS__ }

const struct store_key_def store_key_defs[STORE_NKEYS] = {
	[STORE_KEY_LAYOUT] = { KEYS_LAYOUT, "string", P(STORE_PART_NONE) },
	[STORE_KEY_ORGS] = { KEYS_ORGS, "set", P(STORE_PART_NONE) },
	[STORE_KEY_CREDS] = { KEYS_CREDS, "hash", P(STORE_PART_NONE) },
	[STORE_KEY_LOGIN_USER] = { KEYS_LOGIN_FAIL_USER_FMT, "string", P(STORE_PART_HEX32) },
	[STORE_KEY_LOGIN_ADDR] = { KEYS_LOGIN_FAIL_ADDR_FMT, "string", P(STORE_PART_HEX32) },
	[STORE_KEY_ORG] = { KEYS_ORG_FMT, "hash", P(STORE_PART_ORG) },
	[STORE_KEY_PROGS] = { KEYS_PROGS_FMT, "hash", P(STORE_PART_ORG) },
	[STORE_KEY_PSEQ] = { KEYS_PSEQ_FMT, "string", P(STORE_PART_ORG) },
	[STORE_KEY_IX] = { KEYS_IX_FMT, "hash", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_IDENT) },
	[STORE_KEY_MID] = { KEYS_MID_FMT, "hash", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_PID) },
	[STORE_KEY_CUST] = { KEYS_CUST_FMT, "hash", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_LOCK] = { KEYS_LOCK_FMT, "string", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_HIST] = { KEYS_HIST_FMT, "list", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_FEED] = { KEYS_FEED_FMT, "stream", P(STORE_PART_TAG, STORE_PART_ORG) },
	/* a rate window: KEYS_RATE_FMT, then ":MINUTE" */
	[STORE_KEY_RATE] = { KEYS_RATE_FMT ":%s", "string",
	                     P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_HEX32, STORE_PART_DIGITS) },
	[STORE_KEY_IDEM] = { KEYS_IDEM_FMT, "hash", P(STORE_PART_TAG, STORE_PART_ORG, STORE_PART_HEX32) },
	[STORE_KEY_IMPORT] = { KEYS_IMPORT_FMT, "hash", P(STORE_PART_ORG, STORE_PART_HEX) },
};

int
store_key_tagged(enum store_key kind)
{
	return kind >= 0 && kind < STORE_NKEYS && store_key_defs[kind].part[0] == STORE_PART_TAG;
}

/* Length of the run of s[0..n) made of the bytes of set. */
static size_t
span(const char *s, size_t n, const char *set)
{
	size_t i = 0;

	while (i < n && s[i] != '\0' && strchr(set, s[i]) != NULL)
		i++;
	return i;
}

#define ORG_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

/*
 * Matches one part at k[0..n): the bytes it takes, or 0 when it does not fit. Fills the
 * part's value in out.
 */
static size_t
match_part(enum store_key_part part, const char *k, size_t n, struct store_key_parts *out)
{
	size_t m = 0, len;
	int64_t v;
	int i;

	switch (part) {
	case STORE_PART_TAG:
		/* "p<p>.<n>": p a partition with no leading zero, and the whole the tag of p */
		m = span(k, n, "p0123456789.");
		if (m < 4 || k[0] != 'p' || !(k[1] >= '0' && k[1] <= '9') || (k[1] == '0' && k[2] != '.'))
			return 0;
		for (v = 0, i = 1; i < (int)m && k[i] >= '0' && k[i] <= '9' && v < LAYOUT_PARTS; i++)
			v = v * 10 + (k[i] - '0');
		if (v >= LAYOUT_PARTS)
			return 0;
		{
			const char *t = layout_tag((unsigned)v, &len);

			if (len > n || memcmp(k, t, len) != 0 || (len < n && k[len] != '}'))
				return 0;
		}
		out->tagged = 1;
		out->part = (unsigned)v;
		return len;
	case STORE_PART_ORG:
		m = span(k, n, ORG_CHARS);
		if (m == 0 || m >= sizeof(out->org))
			return 0;
		memcpy(out->org, k, m);
		out->org[m] = '\0';
		return ident_valid_org(out->org) ? m : 0;
	case STORE_PART_CID:
	case STORE_PART_PID:
		m = span(k, n, "0123456789");
		if (ident_parse_cid(k, m, &v) < 0 || (part == STORE_PART_PID && v > 0x7fffffff))
			return 0;
		if (part == STORE_PART_CID)
			out->cid = v;
		else
			out->pid = (int)v;
		return m;
	case STORE_PART_IDENT:
		for (i = 0; i < STORE_NIDENTS; i++) {
			m = strlen(store_ident_name[i]);
			if (m <= n && memcmp(k, store_ident_name[i], m) == 0) {
				out->ident = i;
				return m;
			}
		}
		return 0;
	case STORE_PART_HEX32:
	case STORE_PART_HEX:
		m = part == STORE_PART_HEX ? span(k, n, "0123456789abcdef") :
		    n >= 32 && span(k, 32, "0123456789abcdef") == 32 ? 32 : 0;
		out->hex_len = m;       /* hex_at: set by match() */
		return m;
	case STORE_PART_DIGITS:
		return span(k, n, "0123456789");
	case STORE_PART_NONE:
		break;
	}
	return 0;
}

/* 1 when k[0..len) fits def's pattern (its parts into out). */
static int
match(const struct store_key_def *def, const char *k, size_t len, struct store_key_parts *out)
{
	const char *f = def->pattern;
	size_t at = 0, m;
	int argi = 0;

	while (*f != '\0') {
		if (*f != '%') {
			if (at == len || k[at] != *f)
				return 0;
			at++;
			f++;
			continue;
		}
		/* %s, %d or %lld: the kind's next part */
		f += f[1] == 'l' ? 4 : 2;
		if (argi == STORE_KEY_MAXPARTS ||
		    (m = match_part(def->part[argi++], k + at, len - at, out)) == 0)
			return 0;
		if (def->part[argi - 1] == STORE_PART_HEX32 || def->part[argi - 1] == STORE_PART_HEX)
			out->hex_at = at;
		at += m;
	}
	return at == len;
}

int
store_key_classify(const char *k, size_t len, struct store_key_parts *out)
{
	int kind;

	memset(out, 0, sizeof(*out));
	for (kind = 0; kind < STORE_NKEYS; kind++)
		if (match(&store_key_defs[kind], k, len, out))
			return kind;
	return -1;
}

int
store_key_home(const char *k, size_t len, int kind, const struct store_key_parts *p)
{
	switch (kind) {
	case STORE_KEY_CUST:
	case STORE_KEY_LOCK:
	case STORE_KEY_HIST:
		return (int)layout_part_of_cid(p->cid);
	case STORE_KEY_RATE:
	case STORE_KEY_IDEM:
		if (p->hex_at + p->hex_len > len)
			return -1;
		return (int)layout_bucket_of(k + p->hex_at, p->hex_len);
	default:
		return -1;
	}
}

int
store_key_placed(const char *k, size_t len, int kind, const struct store_key_parts *p)
{
	int home = store_key_home(k, len, kind, p);

	return home < 0 || p->part == (unsigned)home;
}

const char *
store_key_retag(char *buf, size_t sz, const char *k, size_t len, unsigned part)
{
	struct store_key_parts p;
	size_t m, tlen;
	const char *t;

	buf[0] = '\0';
	if (part >= LAYOUT_PARTS || len < 6 || memcmp(k, "pp:{", 4) != 0)
		return buf;
	m = match_part(STORE_PART_TAG, k + 4, len - 4, &p);
	if (m == 0 || 4 + m >= len || k[4 + m] != '}')
		return buf;
	t = layout_tag(part, &tlen);
	if (len - m + tlen >= sz)
		return buf;
	snprintf(buf, sz, "pp:{%s%.*s", t, (int)(len - 4 - m), k + 4 + m);
	return buf;
}

int
store_key_tag_org(const char *k, size_t len, char org[65])
{
	struct store_key_parts p;
	size_t m, w;

	if (len < 5 || memcmp(k, "pp:{", 4) != 0)
		return -1;
	k += 4;
	len -= 4;
	/* "pp:{TAG}:WORD:ORG" ending there or followed by ':' */
	m = match_part(STORE_PART_TAG, k, len, &p);
	if (m > 0 && len > m + 1 && k[m] == '}' && k[m + 1] == ':') {
		const char *r = k + m + 2;
		size_t rn = len - m - 2, o;

		w = span(r, rn, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
		if (w > 0 && w < rn && r[w] == ':') {
			o = match_part(STORE_PART_ORG, r + w + 1, rn - w - 1, &p);
			if (o > 0 && (w + 1 + o == rn || r[w + 1 + o] == ':')) {
				memcpy(org, p.org, sizeof(p.org));
				return 0;
			}
		}
	}
	/* "pp:{ORG}:" and something */
	m = match_part(STORE_PART_ORG, k, len, &p);
	if (m == 0 || len < m + 3 || k[m] != '}' || k[m + 1] != ':')
		return -1;
	memcpy(org, p.org, sizeof(p.org));
	return 0;
}

/* The name of kind in partition part (LAYOUT_PARTS: every partition, the tag "*") with
 * org and id (both checked by the callers). */
static const char *
name_tagged(char *buf, size_t sz, const struct store_key_def *d, unsigned part, const char *org,
            int64_t id)
{
	const char *t = part == LAYOUT_PARTS ? "*" : layout_tag(part, NULL);

	switch (d->part[2]) {
	case STORE_PART_NONE:
		snprintf(buf, sz, d->pattern, t, org);
		break;
	case STORE_PART_CID:
		snprintf(buf, sz, d->pattern, t, org, (long long)id);
		break;
	case STORE_PART_PID:
		snprintf(buf, sz, d->pattern, t, org, (int)id);
		break;
	case STORE_PART_IDENT:
		snprintf(buf, sz, d->pattern, t, org, store_ident_name[id]);
		break;
	default:
		break;
	}
	return buf;
}

/* 1 when id is in range for the kind's id part (p: its index in the parts). */
static int
id_ok(const struct store_key_def *d, int p, int64_t id)
{
	switch (d->part[p]) {
	case STORE_PART_NONE:
		return 1;
	case STORE_PART_CID:
		return 1;
	case STORE_PART_PID:
		return id > 0 && id <= 0x7fffffff;
	case STORE_PART_IDENT:
		return id >= 0 && id < STORE_NIDENTS;
	default:
		return 0;
	}
}

const char *
store_key_name(char *buf, size_t sz, enum store_key kind, const char *org, int64_t id)
{
	const struct store_key_def *d = &store_key_defs[kind];

	buf[0] = '\0';
	if (d->part[0] == STORE_PART_NONE) {
		snprintf(buf, sz, "%s", d->pattern);
	} else if (d->part[0] == STORE_PART_ORG) {
		if (d->part[1] == STORE_PART_NONE)
			snprintf(buf, sz, d->pattern, org);
	} else if (kind == STORE_KEY_FEED) {
		if (id >= 0 && id < LAYOUT_PARTS)
			name_tagged(buf, sz, d, (unsigned)id, org, 0);
	} else if (d->part[2] == STORE_PART_CID) {
		name_tagged(buf, sz, d, layout_part_of_cid(id), org, id);
	} else if ((kind == STORE_KEY_IX || kind == STORE_KEY_MID) && id_ok(d, 2, id)) {
		name_tagged(buf, sz, d, LAYOUT_PARTS, org, id);       /* every bucket: {*} */
	}
	return buf;
}

const char *
store_key_name_at(char *buf, size_t sz, enum store_key kind, unsigned part, const char *org,
                  int64_t id)
{
	const struct store_key_def *d = &store_key_defs[kind];

	if (d->part[0] != STORE_PART_TAG)
		return store_key_name(buf, sz, kind, org, id);
	buf[0] = '\0';
	if (part < LAYOUT_PARTS && d->part[3] == STORE_PART_NONE && id_ok(d, 2, id))
		name_tagged(buf, sz, d, part, org, id);
	return buf;
}
