/*
 * rules: the business rules on one customer's snapshot (see rules.h). Pure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "rules.h"
#include "xmalloc.h"

/* ---- messages --------------------------------------------------------------------------- */

const char *
rules_message(int code)
{
	switch (code) {
	case 200: return "Success";
	case 400: return "the request is not valid";
	case 1000: return "Customer successfully retrieved";
	case 2001: return "the change could not be stored; nothing of it was applied: retry";
	case 2002: return "a required field is missing or empty";
	case 2003: return "the tier expiry date must be in the future";
	case 2004: return "the customer is not linked to this partner program";
	case 2005: return "the customer is already linked to this partner program";
	case 2006: return "no such partner program in this org";
	case 2007: return "no such tier in this partner program";
	case 2008: return "too many entries: at most 50 customers per request and 50 programs per customer";
	case 2009: return "updateType must be UPGRADE, DOWNGRADE, RENEWAL or MEMBERSHIP_RELINKING_CANCELLED";
	case 2010: return "another change to this customer is in progress and did not finish in time: retry";
	case 2101: return "this partnerMembershipId is already held by another customer in this partner program";
	case 2102: return "this partner program appears more than once for the customer; only the first is processed";
	case 2103: return "not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm";
	case 2104: return "the tier change contradicts updateType";
	case 2105: return "there is no pending relink to cancel";
	case 8015: return "no customer of this org matches the identifiers";
	case 8016: return "the identifiers do not all name the same customer";
	default: return "error";
	}
}

const char *const rules_event_name[] = {
	[EV_NONE] = "NONE", [EV_LINK] = "LINK", [EV_UPDATE] = "UPDATE", [EV_DELINK] = "DELINK",
	[EV_RELINK_SCHEDULED] = "RELINK_SCHEDULED", [EV_RELINK_CANCELLED] = "RELINK_CANCELLED",
};

void rules_result_free(struct rules_result *r);

static void
set(struct rules_result *r, int code, const char *message)
{
	rules_result_free(r);
	r->code = code;
	r->message = message ? message : rules_message(code);
}

/* ---- small helpers -------------------------------------------------------------------- */

static int
bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void
values_free(struct rules_values *v)
{
	free(v->mid);
	free(v->tier);
	memset(v, 0, sizeof(*v));
}

void
rules_membership_free(struct rules_membership *m)
{
	values_free(&m->v);
	values_free(&m->rl);
	memset(m, 0, sizeof(*m));
}

static void
values_copy(struct rules_values *dst, const struct rules_values *src)
{
	*dst = *src;
	dst->mid = src->mid ? xmemdup(src->mid, src->mid_len) : NULL;
	dst->tier = src->tier ? xmemdup(src->tier, src->tier_len) : NULL;
}

void
rules_result_free(struct rules_result *r)
{
	if (r->has_before)
		values_free(&r->before);
	if (r->has_after)
		values_free(&r->after);
	r->has_before = r->has_after = 0;
	r->event = EV_NONE;
}

/* Records a success with its event; before/after may be NULL. */
static void
success(struct rules_result *r, enum rules_event ev, const struct rules_values *before,
        const struct rules_values *after)
{
	rules_result_free(r);
	set(r, 200, NULL);
	r->event = ev;
	if (before != NULL) {
		values_copy(&r->before, before);
		r->has_before = 1;
	}
	if (after != NULL) {
		values_copy(&r->after, after);
		r->has_after = 1;
	}
}

/* ---- programs ----------------------------------------------------------------------- */

static int64_t
get_ms(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL ||
	    !json_object_is_type(v, json_type_int))
		return RULES_NONE;
	return json_object_get_int64(v);
}

int
rules_program_parse(const char *json, size_t len, struct rules_program *p)
{
	struct json_object *root, *v, *c;
	size_t i, n;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	p->expires_at = RULES_NONE;
	struct json_tokener *tok = json_tokener_new();

	if (tok == NULL)
		abort();
	root = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
	if (root == NULL || !json_object_is_type(root, json_type_object))
		goto out;
	if (!json_object_object_get_ex(root, "pid", &v) || !json_object_is_type(v, json_type_int))
		goto out;
	p->pid = json_object_get_int(v);
	if (json_object_object_get_ex(root, "type", &v) && json_object_is_type(v, json_type_string))
		p->supplementary = strcmp(json_object_get_string(v), "SUPPLEMENTARY") == 0;
	if (json_object_object_get_ex(root, "tiers", &v) && json_object_is_type(v, json_type_array)) {
		n = json_object_array_length(v);
		for (i = 0; i < n && i < RULES_MAX_TIERS; i++) {
			struct json_object *t = json_object_array_get_idx(v, i);

			p->tier_len[i] = (size_t)json_object_get_string_len(t);
			p->tiers[i] = xmemdup(json_object_get_string(t), p->tier_len[i]);
		}
		p->ntiers = i;
	}
	if (json_object_object_get_ex(root, "cycle", &c) && c != NULL &&
	    json_object_is_type(c, json_type_object)) {
		const char *unit = "";

		if (json_object_object_get_ex(c, "unit", &v))
			unit = json_object_get_string(v);
		p->cycle_unit = strcmp(unit, "DAYS") == 0 ? DATES_DAYS : DATES_MONTHS;
		if (json_object_object_get_ex(c, "value", &v))
			p->cycle_n = json_object_get_int(v);
		p->has_cycle = p->cycle_n > 0;
	}
	p->expires_at = get_ms(root, "expiresAt");
	p->found = 1;
	rc = 0;
out:
	json_object_put(root);
	return rc;
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

/* Index of a tier in the program, or -1. */
static int
tier_index(const struct rules_program *p, const char *t, size_t tlen)
{
	size_t i;

	if (t == NULL)
		return -1;
	for (i = 0; i < p->ntiers; i++)
		if (bytes_eq(p->tiers[i], p->tier_len[i], t, tlen))
			return (int)i;
	return -1;
}

/* ---- memberships: stored value <-> struct --------------------------------------------- */

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

/* ---- the JSON of an older partnerd (read only) ---- */

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

static int
membership_parse_json(const char *json, size_t len, struct rules_membership *m)
{
	struct json_tokener *tok;
	struct json_object *root, *rl;
	int rc = -1;

	if (len > INT32_MAX)
		return -1;
	tok = json_tokener_new();
	if (tok == NULL)
		abort();
	root = json_tokener_parse_ex(tok, json, (int)len);
	json_tokener_free(tok);
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
	rc = 0;
out:
	json_object_put(root);
	return rc;
}

int
rules_membership_parse(const char *val, size_t len, struct rules_membership *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	m->v.exp = m->v.start = m->v.end = RULES_NONE;
	m->linked_on = m->updated_on = RULES_NONE;
	if (len > 0 && val[0] == '{')
		rc = membership_parse_json(val, len, m);
	else
		rc = membership_decode(val, len, m);
	if (rc != 0)
		rules_membership_free(m);
	return rc;
}

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

/* ---- customers ------------------------------------------------------------------------ */

struct rules_slot *
rules_customer_slot(struct rules_customer *c, int pid, int create)
{
	struct rules_slot *s;
	size_t i;

	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].pid == pid)
			return &c->slots[i];
	if (!create)
		return NULL;
	if (c->nslots == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 8;
		c->slots = realloc(c->slots, c->cap * sizeof(*c->slots));
		if (c->slots == NULL)
			abort();
	}
	s = &c->slots[c->nslots++];
	memset(s, 0, sizeof(*s));
	s->pid = pid;
	return s;
}

int
rules_customer_load_slot(struct rules_customer *c, int pid, const char *val, size_t len)
{
	struct rules_membership m;
	struct rules_slot *s;

	if (rules_membership_parse(val, len, &m) != 0)
		return -1;
	s = rules_customer_slot(c, pid, 1);
	rules_membership_free(&s->m);
	s->m = m;
	s->present = s->was_present = 1;
	s->orig_mid = xmemdup(m.v.mid, m.v.mid_len);
	s->orig_mid_len = m.v.mid_len;
	if (m.has_relink) {
		s->orig_rl_mid = xmemdup(m.rl.mid, m.rl.mid_len);
		s->orig_rl_mid_len = m.rl.mid_len;
	}
	return 0;
}

void
rules_customer_free(struct rules_customer *c)
{
	size_t i;

	for (i = 0; i < c->nslots; i++) {
		rules_membership_free(&c->slots[i].m);
		free(c->slots[i].orig_mid);
		free(c->slots[i].orig_rl_mid);
	}
	free(c->slots);
	memset(c, 0, sizeof(*c));
}

int
rules_settle(struct rules_customer *c, int64_t now_ms)
{
	size_t i;
	int n = 0;

	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (s->present && s->m.has_relink && s->m.rl.start <= now_ms) {
			values_free(&s->m.v);
			s->m.v = s->m.rl;
			memset(&s->m.rl, 0, sizeof(s->m.rl));
			s->m.has_relink = 0;
			s->m.updated_on = s->m.v.start;
			s->dirty = 1;
			n++;
		}
	}
	return n;
}

const char *
rules_state(const struct rules_membership *m, int64_t now_ms)
{
	if (m->v.start > now_ms)
		return "PENDING";
	if (m->v.end != RULES_NONE && m->v.end <= now_ms)
		return "ENDED";
	if (m->v.exp != RULES_NONE && m->v.exp <= now_ms)
		return "TIER_EXPIRED";
	return "ACTIVE";
}

/* ---- the rules, one route each -------------------------------------------------------- */

/* 1 when an earlier item of the entry names the same program. */
static int
repeated_program(const struct req_entry *e, size_t k)
{
	const struct str *p = &e->items[k].program.s;
	size_t j;

	for (j = 0; j < k; j++) {
		const struct req_field *q = &e->items[j].program;

		if (q->st == F_OK && bytes_eq(q->s.p, q->s.len, p->p, p->len))
			return 1;
	}
	return 0;
}

/* Checks common to every route: name given, not repeated, program exists. */
static int
check_program(const struct req_entry *e, size_t k, const struct rules_program *p,
              int refuse_expired, int64_t now, struct rules_result *r)
{
	if (e->items[k].program.st != F_OK) {
		set(r, 2002, "partnerProgramName is required (a non-empty string)");
		return -1;
	}
	if (repeated_program(e, k)) {
		set(r, 2102, NULL);
		return -1;
	}
	if (!p->found) {
		set(r, 2006, NULL);
		return -1;
	}
	if (refuse_expired && p->expires_at != RULES_NONE && p->expires_at <= now) {
		set(r, 2006, "the partner program has expired: no new links are accepted");
		return -1;
	}
	return 0;
}

static void
link_item(struct rules_customer *c, const struct req_entry *e, size_t k,
          const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct req_item *it = &e->items[k];
	const struct rules_program *p = ctx->prog;
	struct rules_slot *s;
	struct rules_values v;
	int relink = 0;

	if (check_program(e, k, p, 1, now, r) != 0)
		return;
	if (it->reference != F_OK) {
		set(r, 2002, "customerPartnerReference is required (an object)");
		return;
	}
	if (it->expiry.st == F_BADVALUE) {
		set(r, 2103, "partnerTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
		return;
	}
	if (it->start.st == F_BADVALUE) {
		set(r, 2103, "membershipStartDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
		return;
	}
	/* start + cycle past 9999-12-31 cannot be stored or shown: refused, never clamped. */
	if (it->start.st == F_OK && p->has_cycle &&
	    dates_add_cycle(it->start.ms, p->cycle_unit, p->cycle_n) > DATES_MAX_MS) {
		set(r, 2103, "membershipStartDate is too late: the membership would end (start + the program's membership cycle) after 9999-12-31T23:59:59.999Z");
		return;
	}
	s = rules_customer_slot(c, p->pid, 0);
	if (s != NULL && s->present) {
		if (!p->supplementary || it->start.st != F_OK || it->start.ms <= now) {
			set(r, 2005, NULL);
			return;
		}
		if (s->m.has_relink) {
			set(r, 2005, "a relink is already pending for this partner program");
			return;
		}
		relink = 1;
	}
	if (it->mid.st != F_OK) {
		set(r, 2002, "partnerMembershipId is required (a non-empty string)");
		return;
	}
	if (ctx->mid_holder != 0 && ctx->mid_holder != c->cid) {
		set(r, 2101, NULL);
		return;
	}
	if (p->ntiers > 0) {
		if (it->tier.st != F_OK) {
			set(r, 2002, "partnerTierName is required for a tier-based partner program");
			return;
		}
		if (tier_index(p, it->tier.s.p, it->tier.s.len) < 0) {
			set(r, 2007, NULL);
			return;
		}
	} else if (it->tier.st != F_ABSENT) {
		set(r, 2007, "this partner program has no tiers: leave partnerTierName out");
		return;
	}
	if (it->expiry.st == F_OK && it->expiry.ms <= now) {
		set(r, 2003, "partnerTierExpiryDate must be in the future");
		return;
	}
	/* A membership that would be ENDED the moment it is stored is refused (SPEC §5). */
	if (p->has_cycle && it->start.st == F_OK &&
	    dates_add_cycle(it->start.ms, p->cycle_unit, p->cycle_n) <= now) {
		set(r, 2003, "the membership would already have ended: membershipStartDate plus the program's membership cycle must be in the future");
		return;
	}

	memset(&v, 0, sizeof(v));
	v.mid = xmemdup(it->mid.s.p, it->mid.s.len);
	v.mid_len = it->mid.s.len;
	if (p->ntiers > 0) {
		v.tier = xmemdup(it->tier.s.p, it->tier.s.len);
		v.tier_len = it->tier.s.len;
	}
	v.exp = it->expiry.st == F_OK ? it->expiry.ms : RULES_NONE;
	v.start = it->start.st == F_OK ? it->start.ms : now;
	v.end = p->has_cycle ? dates_add_cycle(v.start, p->cycle_unit, p->cycle_n) : RULES_NONE;

	if (s == NULL)
		s = rules_customer_slot(c, p->pid, 1);
	if (relink) {
		s->m.rl = v;
		s->m.has_relink = 1;
		success(r, EV_RELINK_SCHEDULED, &s->m.v, &s->m.rl);
	} else {
		rules_membership_free(&s->m);
		s->m.v = v;
		s->m.linked_on = now;
		s->present = 1;
		success(r, EV_LINK, NULL, &s->m.v);
	}
	s->m.updated_on = now;
	s->dirty = 1;
}

static void
update_item(struct rules_customer *c, const struct req_entry *e, size_t k,
            const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct req_item *it = &e->items[k];
	const struct rules_program *p = ctx->prog;
	struct rules_slot *s;
	int cur, next;

	if (check_program(e, k, p, 0, now, r) != 0)
		return;
	s = rules_customer_slot(c, p->pid, 0);
	if (s == NULL || !s->present) {
		set(r, 2004, NULL);
		return;
	}
	if (it->update_type.st != F_OK) {
		set(r, 2002, "updateType is required (a non-empty string)");
		return;
	}
	if (it->utype == UPD_NONE) {
		set(r, 2009, NULL);
		return;
	}
	if (it->utype == UPD_RELINK_CANCEL) {
		if (!s->m.has_relink) {
			set(r, 2105, NULL);
			return;
		}
		success(r, EV_RELINK_CANCELLED, &s->m.rl, NULL);
		values_free(&s->m.rl);
		s->m.has_relink = 0;
		s->m.updated_on = now;
		s->dirty = 1;
		return;
	}
	if (it->details != F_OK) {
		set(r, 2002, "updateDetails is required (an object) for a tier change");
		return;
	}
	if (it->new_tier.st != F_OK) {
		set(r, 2002, "updateDetails.updatedTierName is required (a non-empty string)");
		return;
	}
	if (p->ntiers == 0) {
		set(r, 2007, "this partner program has no tiers");
		return;
	}
	next = tier_index(p, it->new_tier.s.p, it->new_tier.s.len);
	if (next < 0) {
		set(r, 2007, NULL);
		return;
	}
	cur = tier_index(p, s->m.v.tier, s->m.v.tier_len);
	if ((it->utype == UPD_UPGRADE && next <= cur) ||
	    (it->utype == UPD_DOWNGRADE && (cur < 0 || next >= cur)) ||
	    (it->utype == UPD_RENEWAL && next != cur)) {
		set(r, 2104, it->utype == UPD_UPGRADE ? "an UPGRADE must move to a higher tier than the current one" :
		             it->utype == UPD_DOWNGRADE ? "a DOWNGRADE must move to a lower tier than the current one" :
		             "a RENEWAL must keep the current tier");
		return;
	}
	if (it->new_expiry.st == F_BADVALUE) {
		set(r, 2103, "updatedTierExpiryDate is not a valid date-time: use YYYY-MM-DDThh:mm:ss[.fff] followed by Z or +hh:mm");
		return;
	}
	if (it->new_expiry.st == F_OK && it->new_expiry.ms <= now) {
		set(r, 2003, "updatedTierExpiryDate must be in the future");
		return;
	}
	{
		struct rules_values before;

		values_copy(&before, &s->m.v);
		free(s->m.v.tier);
		s->m.v.tier = xmemdup(p->tiers[next], p->tier_len[next]);
		s->m.v.tier_len = p->tier_len[next];
		if (it->new_expiry.st == F_OK)
			s->m.v.exp = it->new_expiry.ms;
		success(r, EV_UPDATE, &before, &s->m.v);
		values_free(&before);
	}
	s->m.updated_on = now;
	s->dirty = 1;
}

static void
delink_item(struct rules_customer *c, const struct req_entry *e, size_t k,
            const struct rules_item_ctx *ctx, int64_t now, struct rules_result *r)
{
	const struct rules_program *p = ctx->prog;
	struct rules_slot *s;

	if (check_program(e, k, p, 0, now, r) != 0)
		return;
	s = rules_customer_slot(c, p->pid, 0);
	if (s == NULL || !s->present) {
		set(r, 2004, NULL);
		return;
	}
	success(r, EV_DELINK, &s->m.v, NULL);
	rules_membership_free(&s->m);
	s->present = 0;
	s->dirty = 1;
}

/* 1 when the customer's membership of program pid (or its pending relink) holds a
 * membership id or tier name over REQ_NAME_MAX bytes: stored before that limit. */
static int
oversized_membership(struct rules_customer *c, int pid)
{
	const struct rules_slot *s = rules_customer_slot(c, pid, 0);

	if (s == NULL || !s->present)
		return 0;
	return s->m.v.mid_len > REQ_NAME_MAX || s->m.v.tier_len > REQ_NAME_MAX ||
	       (s->m.has_relink && (s->m.rl.mid_len > REQ_NAME_MAX || s->m.rl.tier_len > REQ_NAME_MAX));
}

void
rules_apply(enum req_kind kind, struct rules_customer *c, const struct req_entry *entry,
            const struct rules_item_ctx *ctx, int64_t now_ms, struct rules_result *results)
{
	size_t k;

	rules_settle(c, now_ms);
	for (k = 0; k < entry->nitems; k++) {
		/* A field over its byte limit (request.h) fails the item before any rule. */
		if (entry->items[k].too_long != NULL) {
			set(&results[k], 2002, entry->items[k].too_long);
			continue;
		}
		/*
		 * A membership stored before the limits with a value over them would put that
		 * value into the history and the feed (an UPDATE twice) at every change: only a
		 * delink, which writes it once more and frees it, is applied to it.
		 */
		if (kind != REQ_DELINK && ctx[k].prog != NULL && ctx[k].prog->found &&
		    oversized_membership(c, ctx[k].prog->pid)) {
			set(&results[k], 2002, "the stored membership of this partner program has a "
			    "partnerMembershipId or partnerTierName over 128 bytes (stored before that "
			    "limit): delink it, then link it again");
			continue;
		}
		switch (kind) {
		case REQ_LINK:
			link_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		case REQ_UPDATE:
			update_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		case REQ_DELINK:
			delink_item(c, entry, k, &ctx[k], now_ms, &results[k]);
			break;
		}
	}
}


/* ---- what a commit writes ---------------------------------------------------------- */

static int
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return a != NULL && b != NULL && alen == blen && memcmp(a, b, alen) == 0;
}

/* The slot holds mid now (current or pending relink). */
static int
holds(const struct rules_slot *s, const char *mid, size_t len)
{
	return s->present && (same(s->m.v.mid, s->m.v.mid_len, mid, len) ||
	                      (s->m.has_relink && same(s->m.rl.mid, s->m.rl.mid_len, mid, len)));
}

/* The slot held mid when read. */
static int
held(const struct rules_slot *s, const char *mid, size_t len)
{
	return same(s->orig_mid, s->orig_mid_len, mid, len) ||
	       same(s->orig_rl_mid, s->orig_rl_mid_len, mid, len);
}

static void
mid_ref(struct rules_mid_ref *r, size_t *n, int pid, const char *mid, size_t len)
{
	r[*n] = (struct rules_mid_ref){ .pid = pid, .mid = mid, .len = len };
	(*n)++;
}

void
rules_slot_change(const struct rules_slot *s, struct rules_slot_change *ch)
{
	memset(ch, 0, sizeof(*ch));
	if (!s->dirty)
		return;
	ch->set = s->present;
	ch->del = !s->present && s->was_present;
	if (s->present) {
		if (!held(s, s->m.v.mid, s->m.v.mid_len) || s->orig_rl_mid != NULL)
			mid_ref(ch->claim, &ch->nclaim, s->pid, s->m.v.mid, s->m.v.mid_len);
		if (s->m.has_relink && !held(s, s->m.rl.mid, s->m.rl.mid_len) &&
		    !(s->m.rl.mid_len == s->m.v.mid_len && memcmp(s->m.rl.mid, s->m.v.mid, s->m.v.mid_len) == 0))
			mid_ref(ch->claim, &ch->nclaim, s->pid, s->m.rl.mid, s->m.rl.mid_len);
	}
	if (s->orig_mid && !holds(s, s->orig_mid, s->orig_mid_len))
		mid_ref(ch->release, &ch->nrelease, s->pid, s->orig_mid, s->orig_mid_len);
	if (s->orig_rl_mid && !holds(s, s->orig_rl_mid, s->orig_rl_mid_len) &&
	    !same(s->orig_mid, s->orig_mid_len, s->orig_rl_mid, s->orig_rl_mid_len))
		mid_ref(ch->release, &ch->nrelease, s->pid, s->orig_rl_mid, s->orig_rl_mid_len);
}

/* ---- membership ids claimed within one request ---------------------------------------- */

void
rules_claims_lookup(const struct rules_claims *c, int pid, const char *mid, size_t len, int64_t *holder)
{
	size_t i;

	for (i = c->n; i-- > 0;) {
		if (c->v[i].pid == pid && c->v[i].len == len && memcmp(c->v[i].mid, mid, len) == 0) {
			*holder = c->v[i].cid;
			return;
		}
	}
}

static void
claims_set(struct rules_claims *c, int pid, const char *mid, size_t len, int64_t cid)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
	}
	c->v[c->n++] = (struct rules_claim){ .pid = pid, .mid = mid, .len = len, .cid = cid };
}

void
rules_claims_note(struct rules_claims *c, int pid, const struct rules_result *res, int64_t cid)
{
	if (res->code == 200 && (res->event == EV_LINK || res->event == EV_RELINK_SCHEDULED))
		claims_set(c, pid, res->after.mid, res->after.mid_len, cid);
	else if (res->code == 200 && res->event == EV_DELINK)
		claims_set(c, pid, res->before.mid, res->before.mid_len, 0);
}

void
rules_claims_free(struct rules_claims *c)
{
	free(c->v);
	memset(c, 0, sizeof(*c));
}
