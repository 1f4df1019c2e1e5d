/*
 * rules_codec: the stored forms of the rules' types (see rules_codec.h). Pure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "rules_codec.h"
#include "xmalloc.h"

/* ---- stored JSON ---------------------------------------------------------------------- */

/*
 * Parses s[0..len) into a new tree (the caller puts it), or NULL. strict: json-c's strict
 * mode, UTF-8 validated and the whole input consumed (what partnerctl requires of stored
 * JSON); else json-c's defaults, as partnerd reads stored values (trailing bytes ignored).
 */
static struct json_object *
json_parse(const char *s, size_t len, int strict)
{
	struct json_tokener *tok;
	struct json_object *o;

	if (len > INT32_MAX)
		return NULL;
	tok = strict ? json_tokener_new_ex(32) : json_tokener_new();
	if (tok == NULL)
		abort();
	if (strict)
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o != NULL && strict && (json_tokener_get_error(tok) != json_tokener_success ||
	                            json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* The member key of o (borrowed; NULL when absent, a JSON null, or o is no object). */
static struct json_object *
member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

static int
is_int(struct json_object *o)
{
	return o != NULL && json_object_is_type(o, json_type_int);
}

/* 1 when o is null (or absent) or a JSON integer. */
static int
null_or_int(struct json_object *o)
{
	return o == NULL || is_int(o);
}

/* 1 when o is an object with exactly the n given keys (in any order). */
static int
keys_exactly(struct json_object *o, const char *const *keys, int n)
{
	struct json_object *v;
	int i;

	if (!json_object_is_type(o, json_type_object) || json_object_object_length(o) != n)
		return 0;
	for (i = 0; i < n; i++)
		if (!json_object_object_get_ex(o, keys[i], &v))
			return 0;
	return 1;
}

/* An integer member in ms, or RULES_NONE when absent or of another type. */
static int64_t
get_ms(struct json_object *o, const char *key)
{
	struct json_object *v = member(o, key);

	return is_int(v) ? json_object_get_int64(v) : RULES_NONE;
}

/* The strict readers' refusal: the reason in why. Returns -1. */
static int
refuse(char *why, size_t whysz, const char *reason)
{
	snprintf(why, whysz, "%s", reason);
	return -1;
}

/* ---- program definitions -------------------------------------------------------------- */

/* The lenient reading of a parsed definition into p (empty). Returns 0 or -1. */
static int
program_read(struct json_object *root, struct rules_program *p)
{
	struct json_object *v, *c;
	size_t i, n;

	if (!json_object_is_type(root, json_type_object) || !is_int(v = member(root, "pid")))
		return -1;
	p->pid = json_object_get_int(v);
	if ((v = member(root, "type")) != NULL && json_object_is_type(v, json_type_string))
		p->supplementary = strcmp(json_object_get_string(v), "SUPPLEMENTARY") == 0;
	if ((v = member(root, "tiers")) != NULL && json_object_is_type(v, json_type_array)) {
		n = json_object_array_length(v);
		for (i = 0; i < n && i < RULES_MAX_TIERS; i++) {
			struct json_object *t = json_object_array_get_idx(v, i);

			p->tier_len[i] = (size_t)json_object_get_string_len(t);
			p->tiers[i] = xmemdup(json_object_get_string(t), p->tier_len[i]);
		}
		p->ntiers = i;
	}
	if ((c = member(root, "cycle")) != NULL && json_object_is_type(c, json_type_object)) {
		const char *unit = "";

		/* a null unit has no string: read as any unit but DAYS (it crashed partnerd) */
		if ((v = member(c, "unit")) != NULL)
			unit = json_object_get_string(v);
		p->cycle_unit = strcmp(unit, "DAYS") == 0 ? DATES_DAYS : DATES_MONTHS;
		if (json_object_object_get_ex(c, "value", &v))
			p->cycle_n = json_object_get_int(v);
		p->has_cycle = p->cycle_n > 0;
	}
	p->expires_at = get_ms(root, "expiresAt");
	p->found = 1;
	return 0;
}

/* A JSON integer from 1 to 2^31 - 1. */
static int
positive_int32(struct json_object *o)
{
	return is_int(o) && json_object_get_int64(o) >= 1 && json_object_get_int64(o) <= INT32_MAX;
}

/* The string of o, or "" when o is no string. */
static const char *
string_or_empty(struct json_object *o)
{
	return json_object_is_type(o, json_type_string) ? json_object_get_string(o) : "";
}

/* The strict shape of a cycle that is not null, on a program of type type. */
static int
cycle_check(struct json_object *cycle, const char *type, char *why, size_t whysz)
{
	static const char *const keys[] = { "unit", "value" };
	const char *unit;

	if (!keys_exactly(cycle, keys, 2))
		return refuse(why, whysz, "has a cycle without exactly the keys unit, value");
	unit = string_or_empty(member(cycle, "unit"));
	if ((strcmp(unit, "DAYS") != 0 && strcmp(unit, "MONTHS") != 0) ||
	    !positive_int32(member(cycle, "value")))
		return refuse(why, whysz, "has a bad cycle");
	if (strcmp(type, "SUPPLEMENTARY") != 0)
		return refuse(why, whysz, "has a cycle but is not SUPPLEMENTARY");
	return 0;
}

/* The strict shape of a definition (docs/DATA-MODEL.md), checked in this order. */
static int
program_check(struct json_object *o, char *why, size_t whysz)
{
	static const char *const keys[] = { "pid", "type", "tiers", "cycle", "expiresAt" };
	struct json_object *tiers, *cycle;
	const char *type;
	size_t i;

	if (!keys_exactly(o, keys, 5))
		return refuse(why, whysz, "does not have exactly the keys pid, type, tiers, cycle, expiresAt");
	if (!positive_int32(member(o, "pid")))
		return refuse(why, whysz, "has a bad pid");
	type = string_or_empty(member(o, "type"));
	if (strcmp(type, "EXTERNAL") != 0 && strcmp(type, "SUPPLEMENTARY") != 0)
		return refuse(why, whysz, "has a bad type");
	tiers = member(o, "tiers");
	if (!json_object_is_type(tiers, json_type_array))
		return refuse(why, whysz, "has tiers that are not an array");
	for (i = 0; i < json_object_array_length(tiers); i++) {
		struct json_object *t = json_object_array_get_idx(tiers, i);

		if (!json_object_is_type(t, json_type_string) || json_object_get_string_len(t) == 0)
			return refuse(why, whysz, "has a tier that is not a non-empty string");
	}
	if ((cycle = member(o, "cycle")) != NULL && cycle_check(cycle, type, why, whysz) != 0)
		return -1;
	if (!null_or_int(member(o, "expiresAt")))
		return refuse(why, whysz, "has an expiresAt that is neither null nor an integer");
	return 0;
}

/* Both readers: the strict one checks the shape before the lenient reading. */
static int
program_parse(const char *json, size_t len, int strict, struct rules_program *p, char *why,
              size_t whysz)
{
	struct json_object *root = json_parse(json, len, strict);
	int rc = -1;

	memset(p, 0, sizeof(*p));
	p->expires_at = RULES_NONE;
	if (root == NULL) {
		if (strict)
			refuse(why, whysz, "is not valid JSON");
		return -1;
	}
	if (!strict || program_check(root, why, whysz) == 0)
		rc = program_read(root, p);
	json_object_put(root);
	if (rc != 0) {
		rules_program_free(p);
		p->expires_at = RULES_NONE;
	}
	return rc;
}

int
rules_program_parse(const char *json, size_t len, struct rules_program *p)
{
	return program_parse(json, len, 0, p, NULL, 0);
}

int
rules_program_parse_strict(const char *json, size_t len, struct rules_program *p, char *why,
                           size_t whysz)
{
	return program_parse(json, len, 1, p, why, whysz);
}

void
rules_program_free(struct rules_program *p)
{
	size_t i;

	for (i = 0; i < p->ntiers; i++)
		free(p->tiers[i]);
	memset(p, 0, sizeof(*p));
}

void
rules_program_copy(struct rules_program *dst, const struct rules_program *src)
{
	size_t i;

	*dst = *src;
	for (i = 0; i < src->ntiers; i++)
		dst->tiers[i] = xmemdup(src->tiers[i], src->tier_len[i]);
}

int
rules_program_tier(const struct rules_program *p, const char *t, size_t tlen)
{
	size_t i;

	if (t == NULL)
		return -1;
	for (i = 0; i < p->ntiers; i++)
		if (p->tier_len[i] == tlen && (tlen == 0 || memcmp(p->tiers[i], t, tlen) == 0))
			return (int)i;
	return -1;
}

/* ---- membership values: memory -------------------------------------------------------- */

void
rules_values_free(struct rules_values *v)
{
	free(v->mid);
	free(v->tier);
	memset(v, 0, sizeof(*v));
}

void
rules_values_copy(struct rules_values *dst, const struct rules_values *src)
{
	*dst = *src;
	dst->mid = src->mid ? xmemdup(src->mid, src->mid_len) : NULL;
	dst->tier = src->tier ? xmemdup(src->tier, src->tier_len) : NULL;
}

void
rules_membership_free(struct rules_membership *m)
{
	rules_values_free(&m->v);
	rules_values_free(&m->rl);
	memset(m, 0, sizeof(*m));
}

/* ---- membership values: the compact format ------------------------------------------- */

/*
 * The stored value is the compact text of docs/DATA-MODEL.md ("Membership value"):
 *
 *     LEN:MID,TIER,EXP,START,END,LK,UP[,LEN:MID,TIER,EXP,START,END]
 *
 * TIER is "-" (none) or LEN:bytes; times are base-36 ms, empty for none; the top-level
 * START is empty when it equals LK. Values written by an older partnerd are JSON objects
 * (first byte '{') and are still read.
 */

/* A decoding position: the bytes p..end are left. */
struct dec {
	const char *p, *end;
};

/* Consumes the byte c; -1 when the next byte is something else or there is none. */
static int
dec_sep(struct dec *d, char c)
{
	if (d->p == d->end || *d->p != c)
		return -1;
	d->p++;
	return 0;
}

/* LEN ":" bytes: decimal length without leading zeros (but "0"), then that many bytes. */
static int
dec_str(struct dec *d, const char **s, size_t *n)
{
	const char *q = d->p;
	size_t len = 0;

	if (q == d->end || *q < '0' || *q > '9')
		return -1;
	if (*q == '0' && q + 1 < d->end && q[1] >= '0' && q[1] <= '9')
		return -1;
	while (q < d->end && *q >= '0' && *q <= '9') {
		len = len * 10 + (size_t)(*q - '0');
		if (len > (size_t)(d->end - d->p))
			return -1;      /* longer than the whole rest: runs past the end */
		q++;
	}
	d->p = q;
	if (dec_sep(d, ':') != 0 || len > (size_t)(d->end - d->p))
		return -1;
	*s = d->p;
	*n = len;
	d->p += len;
	return 0;
}

static int
b36_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	return -1;
}

/*
 * A base-36 number up to the next ',' or the end (not consumed): *v = RULES_NONE when
 * empty. Only the encoder's form: lowercase, no leading zeros, no "-0", and within
 * -(2^63 - 1) .. 2^63 - 1 (INT64_MIN is RULES_NONE).
 */
static int
dec_num(struct dec *d, int64_t *v)
{
	const char *q = d->p;
	uint64_t u = 0;
	int neg = 0, digit;

	if (q == d->end || *q == ',') {
		*v = RULES_NONE;
		return 0;
	}
	if (*q == '-') {
		neg = 1;
		q++;
	}
	if (q == d->end || b36_digit(*q) < 0 || (*q == '0' && (neg ||
	    (q + 1 < d->end && b36_digit(q[1]) >= 0))))
		return -1;
	for (; q < d->end && *q != ','; q++) {
		if ((digit = b36_digit(*q)) < 0)
			return -1;
		if (u > ((uint64_t)INT64_MAX - (uint64_t)digit) / 36)
			return -1;
		u = u * 36 + (uint64_t)digit;
	}
	d->p = q;
	*v = neg ? -(int64_t)u : (int64_t)u;
	return 0;
}

/*
 * LEN:MID,TIER,EXP,START,END into v (owned strings). top: START may be empty, which sets
 * *start_omitted (the caller fills it in from LK); in a relink START is required.
 */
static int
dec_values(struct dec *d, struct rules_values *v, int top, int *start_omitted)
{
	const char *s;
	size_t n;

	if (dec_str(d, &s, &n) != 0 || n == 0 || dec_sep(d, ',') != 0)
		return -1;
	v->mid = xmemdup(s, n);
	v->mid_len = n;
	if (d->p < d->end && *d->p == '-') {
		d->p++;
	} else {
		if (dec_str(d, &s, &n) != 0)
			return -1;
		v->tier = xmemdup(s, n);
		v->tier_len = n;
	}
	if (dec_sep(d, ',') != 0 || dec_num(d, &v->exp) != 0 || dec_sep(d, ',') != 0 ||
	    dec_num(d, &v->start) != 0 || dec_sep(d, ',') != 0 || dec_num(d, &v->end) != 0)
		return -1;
	if (v->start == RULES_NONE) {
		if (!top)
			return -1;
		*start_omitted = 1;
	}
	return 0;
}

static int
membership_decode(const char *val, size_t len, struct rules_membership *m)
{
	struct dec d = { val, val + len };
	int omitted = 0;

	if (dec_values(&d, &m->v, 1, &omitted) != 0 || dec_sep(&d, ',') != 0 ||
	    dec_num(&d, &m->linked_on) != 0 || dec_sep(&d, ',') != 0 ||
	    dec_num(&d, &m->updated_on) != 0)
		return -1;
	if (omitted) {
		if (m->linked_on == RULES_NONE)
			return -1;
		m->v.start = m->linked_on;
	}
	if (d.p == d.end)
		return 0;
	if (dec_sep(&d, ',') != 0 || dec_values(&d, &m->rl, 0, NULL) != 0 || d.p != d.end)
		return -1;
	m->has_relink = 1;
	return 0;
}

/* ---- membership values: the JSON of an older partnerd (read only) -------------------- */

static int
get_str(struct json_object *o, const char *key, char **out, size_t *len)
{
	struct json_object *v;

	*out = NULL;
	*len = 0;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*len = (size_t)json_object_get_string_len(v);
	*out = xmemdup(json_object_get_string(v), *len);
	return 0;
}

static int
values_parse(struct json_object *o, struct rules_values *v)
{
	/* mid non-empty, as in the compact format, so that every value read re-encodes. */
	if (get_str(o, "mid", &v->mid, &v->mid_len) != 0 || v->mid == NULL || v->mid_len == 0)
		return -1;
	if (get_str(o, "tier", &v->tier, &v->tier_len) != 0)
		return -1;
	v->exp = get_ms(o, "exp");
	v->start = get_ms(o, "start");
	v->end = get_ms(o, "end");
	return v->start == RULES_NONE ? -1 : 0;
}

/* The strict reader's check: exactly the keys of the old format, with their types. */
static int
legacy_shape(struct json_object *m, char *why, size_t whysz)
{
	static const char *const keys[] = { "mid", "tier", "exp", "start", "end", "lk", "up", "rl" };
	static const char *const rkeys[] = { "mid", "tier", "exp", "start", "end" };
	struct json_object *rl;

	if (!keys_exactly(m, keys, 8))
		return refuse(why, whysz, "does not have exactly the keys mid, tier, exp, start, end, lk, up, rl");
	if (!null_or_int(member(m, "exp")) || !is_int(member(m, "start")) ||
	    !null_or_int(member(m, "end")) || !is_int(member(m, "lk")) || !is_int(member(m, "up")))
		return refuse(why, whysz, "has a time that is not an integer (exp, start, end, lk, up)");
	if ((rl = member(m, "rl")) == NULL)
		return 0;
	if (!keys_exactly(rl, rkeys, 5))
		return refuse(why, whysz, "has a pending relink without exactly the keys mid, tier, exp, start, end");
	if (!null_or_int(member(rl, "exp")) || !is_int(member(rl, "start")) ||
	    !null_or_int(member(rl, "end")))
		return refuse(why, whysz, "has a pending relink time that is not an integer");
	return 0;
}

/* -1: not a membership value; -2 (strict only): JSON of the wrong shape, why says how. */
static int
membership_parse_json(const char *json, size_t len, int strict, struct rules_membership *m,
                      char *why, size_t whysz)
{
	struct json_object *root = json_parse(json, len, strict), *rl;
	int rc = -1;

	if (root == NULL || !json_object_is_type(root, json_type_object))
		goto out;
	if (values_parse(root, &m->v) != 0)
		goto out;
	m->linked_on = get_ms(root, "lk");
	m->updated_on = get_ms(root, "up");
	if (json_object_object_get_ex(root, "rl", &rl) && rl != NULL) {
		if (!json_object_is_type(rl, json_type_object) || values_parse(rl, &m->rl) != 0)
			goto out;
		m->has_relink = 1;
	}
	rc = strict && legacy_shape(root, why, whysz) != 0 ? -2 : 0;
out:
	json_object_put(root);
	return rc;
}

/* Both readers: they differ in legacy JSON only (the compact format is strict). */
static int
membership_parse(const char *val, size_t len, int strict, struct rules_membership *m,
                 char *why, size_t whysz)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->v.exp = m->v.start = m->v.end = RULES_NONE;
	m->linked_on = m->updated_on = RULES_NONE;
	if (len > 0 && val[0] == '{')
		rc = membership_parse_json(val, len, strict, m, why, whysz);
	else
		rc = membership_decode(val, len, m);
	if (rc != 0)
		rules_membership_free(m);
	return rc;
}

int
rules_membership_parse(const char *val, size_t len, struct rules_membership *m)
{
	return membership_parse(val, len, 0, m, NULL, 0);
}

int
rules_membership_parse_strict(const char *val, size_t len, struct rules_membership *m,
                              char *why, size_t whysz)
{
	return membership_parse(val, len, 1, m, why, whysz);
}

/* ---- membership values: encoding ------------------------------------------------------ */

/* Appends ms in base 36 (nothing for RULES_NONE). */
static char *
put_b36(char *d, int64_t ms)
{
	static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	char tmp[16];
	size_t n = 0;
	uint64_t u;

	if (ms == RULES_NONE)
		return d;
	if (ms < 0) {
		*d++ = '-';
		u = (uint64_t)0 - (uint64_t)ms;
	} else {
		u = (uint64_t)ms;
	}
	do {
		tmp[n++] = digits[u % 36];
		u /= 36;
	} while (u != 0);
	while (n > 0)
		*d++ = tmp[--n];
	return d;
}

/* Appends LEN ":" bytes. */
static char *
put_str(char *d, const char *s, size_t n)
{
	d += sprintf(d, "%zu:", n);
	if (n > 0)
		memcpy(d, s, n);
	return d + n;
}

/* LEN:MID,TIER,EXP,START,END; START left empty when omit_start. */
static char *
put_values(char *d, const struct rules_values *v, int omit_start)
{
	d = put_str(d, v->mid, v->mid_len);
	*d++ = ',';
	if (v->tier != NULL)
		d = put_str(d, v->tier, v->tier_len);
	else
		*d++ = '-';
	*d++ = ',';
	d = put_b36(d, v->exp);
	*d++ = ',';
	if (!omit_start)
		d = put_b36(d, v->start);
	*d++ = ',';
	return put_b36(d, v->end);
}

char *
rules_membership_encode(const struct rules_membership *m, size_t *len_out)
{
	/* Per values: 2 lengths (20 digits + ':') and 3 times (14) with separators. */
	size_t cap = m->v.mid_len + m->v.tier_len + m->rl.mid_len + m->rl.tier_len + 256;
	char *out = malloc(cap), *d;

	if (out == NULL)
		abort();
	d = put_values(out, &m->v, m->linked_on != RULES_NONE && m->v.start == m->linked_on);
	*d++ = ',';
	d = put_b36(d, m->linked_on);
	*d++ = ',';
	d = put_b36(d, m->updated_on);
	if (m->has_relink) {
		*d++ = ',';
		d = put_values(d, &m->rl, 0);
	}
	*d = '\0';
	*len_out = (size_t)(d - out);
	return out;
}
