/*
 * store_keys: the key layout table and a matcher of key names against its patterns (see
 * store_keys.h). The patterns are keys.h's formats, so the table cannot drift from them.
 */
#include <stdio.h>
#include <string.h>

#include "ident.h"
#include "keys.h"
#include "store_keys.h"

const char *const store_ident_name[STORE_NIDENTS] = { "mobile", "email", "externalId" };

#define P(...) { __VA_ARGS__ }

const struct store_key_def store_key_defs[STORE_NKEYS] = {
	[STORE_KEY_ORGS] = { KEYS_ORGS, "set", P(STORE_PART_NONE) },
	[STORE_KEY_CREDS] = { KEYS_CREDS, "hash", P(STORE_PART_NONE) },
	[STORE_KEY_LOGIN_USER] = { KEYS_LOGIN_FAIL_USER_FMT, "string", P(STORE_PART_HEX32) },
	[STORE_KEY_LOGIN_ADDR] = { KEYS_LOGIN_FAIL_ADDR_FMT, "string", P(STORE_PART_HEX32) },
	[STORE_KEY_ORG] = { KEYS_ORG_FMT, "hash", P(STORE_PART_ORG) },
	[STORE_KEY_PROGS] = { KEYS_PROGS_FMT, "hash", P(STORE_PART_ORG) },
	[STORE_KEY_PSEQ] = { KEYS_PSEQ_FMT, "string", P(STORE_PART_ORG) },
	[STORE_KEY_IX] = { KEYS_IX_FMT, "hash", P(STORE_PART_ORG, STORE_PART_IDENT) },
	[STORE_KEY_MID] = { KEYS_MID_FMT, "hash", P(STORE_PART_ORG, STORE_PART_PID) },
	[STORE_KEY_CUST] = { KEYS_CUST_FMT, "hash", P(STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_LOCK] = { KEYS_LOCK_FMT, "string", P(STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_HIST] = { KEYS_HIST_FMT, "list", P(STORE_PART_ORG, STORE_PART_CID) },
	[STORE_KEY_FEED] = { KEYS_FEED_FMT, "stream", P(STORE_PART_ORG) },
	/* a rate window: KEYS_RATE_FMT, then ":MINUTE" */
	[STORE_KEY_RATE] = { KEYS_RATE_FMT ":%s", "string",
	                     P(STORE_PART_ORG, STORE_PART_HEX32, STORE_PART_DIGITS) },
	[STORE_KEY_IDEM] = { KEYS_IDEM_FMT, "hash", P(STORE_PART_ORG, STORE_PART_HEX32) },
	[STORE_KEY_IMPORT] = { KEYS_IMPORT_FMT, "hash", P(STORE_PART_ORG, STORE_PART_HEX) },
};

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
	size_t m = 0;
	int64_t v;
	int i;

	switch (part) {
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
		return n >= 32 && span(k, 32, "0123456789abcdef") == 32 ? 32 : 0;
	case STORE_PART_HEX:
		return span(k, n, "0123456789abcdef");
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
		if (argi == 3 || (m = match_part(def->part[argi++], k + at, len - at, out)) == 0)
			return 0;
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
store_key_tag_org(const char *k, size_t len, char org[65])
{
	struct store_key_parts p;
	size_t m;

	if (len < 5 || memcmp(k, "pp:{", 4) != 0)
		return -1;
	m = match_part(STORE_PART_ORG, k + 4, len - 4, &p);
	if (m == 0)
		return -1;
	k += 4 + m;
	len -= 4 + m;
	if (len > 0 && k[0] == ':') {
		size_t c = match_part(STORE_PART_CID, k + 1, len - 1, &p);

		if (c == 0)
			return -1;
		k += 1 + c;
		len -= 1 + c;
	}
	if (len < 2 || k[0] != '}' || k[1] != ':')
		return -1;
	memcpy(org, p.org, sizeof(p.org));
	return 0;
}

const char *
store_key_name(char *buf, size_t sz, enum store_key kind, const char *org, int64_t id)
{
	const struct store_key_def *d = &store_key_defs[kind];

	buf[0] = '\0';
	if (d->part[0] == STORE_PART_NONE) {
		snprintf(buf, sz, "%s", d->pattern);
	} else if (d->part[0] != STORE_PART_ORG) {
		return buf;
	} else if (d->part[1] == STORE_PART_NONE) {
		snprintf(buf, sz, d->pattern, org);
	} else if (d->part[1] == STORE_PART_CID) {
		snprintf(buf, sz, d->pattern, org, (long long)id);
	} else if (d->part[1] == STORE_PART_PID) {
		snprintf(buf, sz, d->pattern, org, (int)id);
	} else if (d->part[1] == STORE_PART_IDENT && id >= 0 && id < STORE_NIDENTS) {
		snprintf(buf, sz, d->pattern, org, store_ident_name[id]);
	}
	return buf;
}
