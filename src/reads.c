/*
 * reads: GET customerPartnerPrograms and customerActivityHistory (see reads.h).
 * One Redis round trip each (the read script); state is computed from stored dates and
 * the current time, so a relink whose start has passed reads as the current membership.
 * When such a relink is still stored as pending, the read writes it back as settled and
 * releases the old membership id (settle_back: a second round trip, only then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "auth.h"
#include "dates.h"
#include "ident.h"
#include "jout.h"
#include "keys.h"
#include "reads.h"
#include "request.h"
#include "rules.h"

#define VALUE_MAX 512
#define HISTORY_LIMIT_MAX 100

static void
bad_query(struct http_req *r, struct routes_outcome *out, const char *message)
{
	out->status = 400;
	http_error(r, 400, 400, message, NULL);
}

static struct json_object *
date_or_null(int64_t ms)
{
	char d[DATES_FMT_LEN + 1];

	return ms == RULES_NONE ? NULL : json_object_new_string(dates_format(ms, d));
}

struct json_object *
reads_values_json(const struct rules_values *v)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "partnerMembershipId", json_object_new_string_len(v->mid, (int)v->mid_len));
	json_object_object_add(o, "partnerTierName",
	                       v->tier ? json_object_new_string_len(v->tier, (int)v->tier_len) : NULL);
	json_object_object_add(o, "partnerTierExpiryDate", date_or_null(v->exp));
	json_object_object_add(o, "membershipStartDate", date_or_null(v->start));
	json_object_object_add(o, "membershipEndDate", date_or_null(v->end));
	return o;
}

int
reads_values_put(struct buf *b, const struct rules_values *v)
{
	if (JOUT_LIT(b, "{\"partnerMembershipId\":") != 0 || jout_str(b, v->mid, v->mid_len) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierName\":") != 0 || jout_str_or_null(b, v->tier, v->tier_len) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierExpiryDate\":") != 0 || jout_date_or_null(b, v->exp, RULES_NONE) != 0 ||
	    JOUT_LIT(b, ",\"membershipStartDate\":") != 0 || jout_date_or_null(b, v->start, RULES_NONE) != 0 ||
	    JOUT_LIT(b, ",\"membershipEndDate\":") != 0 || jout_date_or_null(b, v->end, RULES_NONE) != 0)
		return -1;
	return JOUT_LIT(b, "}");
}

static struct json_object *
status_obj(int code)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "status", json_object_new_boolean(code == 1000));
	json_object_object_add(o, "message", json_object_new_string(rules_message(code)));
	json_object_object_add(o, "code", json_object_new_int(code));
	return o;
}

/* The customer object: stored identifiers, or the query's identifier when not found. */
static struct json_object *
customer_obj(const redisReply *h, const char *idname, const char *idvalue)
{
	static const char *const keys[4] = { "id", "mobile", "email", "externalId" };
	struct json_object *o = json_object_new_object();
	size_t i;
	int k;

	if (h == NULL) {
		json_object_object_add(o, idname, json_object_new_string(idvalue));
		json_object_object_add(o, "status", status_obj(8015));
		return o;
	}
	for (k = 0; k < 4; k++) {
		const char *v = "";
		size_t vlen = 0;

		for (i = 0; i + 1 < h->elements; i += 2) {
			if (strcmp(h->element[i]->str, keys[k]) == 0) {
				v = h->element[i + 1]->str;
				vlen = h->element[i + 1]->len;
			}
		}
		if (k == 0)
			json_object_object_add(o, "id", json_object_new_int64(strtoll(v, NULL, 10)));
		else
			json_object_object_add(o, keys[k], json_object_new_string_len(v, (int)vlen));
	}
	json_object_object_add(o, "status", status_obj(1000));
	return o;
}

/*
 * Loads the memberships of the customer hash cust into c (values that do not decode are
 * left out) and makes its due relinks current (rules_settle: those slots are dirty).
 * Returns the number of slots settled.
 */
static int
load_settled(struct rules_customer *c, const redisReply *cust, int64_t now)
{
	size_t i;

	for (i = 0; i + 1 < cust->elements; i += 2) {
		const redisReply *f = cust->element[i], *v = cust->element[i + 1];

		if (f->len > 2 && f->str[0] == 'm' && f->str[1] == ':')
			rules_customer_load_slot(c, atoi(f->str + 2), v->str, v->len);
	}
	return rules_settle(c, now);
}

/*
 * Writes the settled memberships of c (its dirty slots) back, releases the ids they no
 * longer hold and makes sure the new ones are indexed (settle.lua): fenced by the version
 * in cust and by the customer's lock, so that it never overwrites a writer's change. Its
 * outcome is not looked at: the answer is computed from the clock either way, a writer
 * holding the lock settles the customer in its own commit, and a failed write-back is
 * tried again by the next read.
 */
static void
settle_back(struct store *st, const char *org, const struct rules_customer *c,
            const redisReply *cust)
{
	struct store_argv a;
	const char *ver = "";
	size_t i, n = 0, vlen = 0;

	for (i = 0; i + 1 < cust->elements; i += 2)
		if (strcmp(cust->element[i]->str, "v") == 0) {
			ver = cust->element[i + 1]->str;
			vlen = cust->element[i + 1]->len;
		}
	store_argv_init(&a);
	store_argv_addf(&a, KEYS_LOCK_FMT, org, (long long)c->cid);
	store_argv_addf(&a, KEYS_CUST_FMT, org, (long long)c->cid);
	store_argv_add(&a, ver, vlen);
	store_argv_addf(&a, "%lld", (long long)c->cid);
	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].dirty && c->slots[i].present)
			n++;
	store_argv_addf(&a, "%zu", n);
	for (i = 0; i < c->nslots; i++) {
		const struct rules_slot *s = &c->slots[i];
		size_t len;
		char *val;

		if (!s->dirty || !s->present)
			continue;
		val = rules_membership_encode(&s->m, &len);
		store_argv_addf(&a, KEYS_MEMBERSHIP_FIELD_FMT, s->pid);
		store_argv_addcopy(&a, val, len);
		free(val);
	}
#define LEFT_ID(s) ((s)->dirty && (s)->present && (s)->orig_mid != NULL && \
                  !((s)->orig_mid_len == (s)->m.v.mid_len && memcmp((s)->orig_mid, (s)->m.v.mid, (s)->m.v.mid_len) == 0))
	for (i = 0, n = 0; i < c->nslots; i++)
		if (LEFT_ID(&c->slots[i]))
			n++;
	store_argv_addf(&a, "%zu", n);
	for (i = 0; i < c->nslots; i++) {
		if (!LEFT_ID(&c->slots[i]))
			continue;
		store_argv_addf(&a, KEYS_MID_FMT, org, c->slots[i].pid);
		store_argv_add(&a, c->slots[i].orig_mid, c->slots[i].orig_mid_len);
	}
	for (i = 0, n = 0; i < c->nslots; i++)
		if (LEFT_ID(&c->slots[i]))
			n++;
	store_argv_addf(&a, "%zu", n);
	for (i = 0; i < c->nslots; i++) {
		if (!LEFT_ID(&c->slots[i]))
			continue;
		store_argv_addf(&a, KEYS_MID_FMT, org, c->slots[i].pid);
		store_argv_add(&a, c->slots[i].m.v.mid, c->slots[i].m.v.mid_len);
	}
#undef LEFT_ID
	(void)store_eval(st, STORE_SETTLE, &a);
	store_argv_free(&a);
}

/* The memberships of c (loaded and settled), in program id order. */
static void
programs_list(struct json_object *list, struct rules_customer *c, const redisReply *progs,
              int64_t now)
{
	size_t i, j;

	for (j = 0; j < c->nslots; j++)
		c->slots[j].dirty = 0;  /* reused below as "listed" */
	/* Programs in the order of their ids: the order they were loaded. */
	for (;;) {
		struct rules_slot *best = NULL;

		for (j = 0; j < c->nslots; j++)
			if (c->slots[j].present && !c->slots[j].dirty && (best == NULL || c->slots[j].pid < best->pid))
				best = &c->slots[j];
		if (best == NULL)
			break;
		best->dirty = 1;   /* used here as "listed" */
		{
			struct json_object *o = json_object_new_object();
			struct rules_program p = { 0 };
			const char *name = NULL;
			size_t nlen = 0;

			for (i = 0; i + 1 < progs->elements; i += 2) {
				struct rules_program q;

				if (rules_program_parse(progs->element[i + 1]->str, progs->element[i + 1]->len, &q) == 0) {
					if (q.pid == best->pid) {
						name = progs->element[i]->str;
						nlen = progs->element[i]->len;
						p = q;
					} else {
						rules_program_free(&q);
					}
				}
			}
			json_object_object_add(o, "partnerProgramName", name ? json_object_new_string_len(name, (int)nlen) : NULL);
			json_object_object_add(o, "partnerProgramType",
			                       json_object_new_string(!p.found ? "UNKNOWN" : p.supplementary ? "SUPPLEMENTARY" : "EXTERNAL"));
			json_object_object_add(o, "partnerMembershipId",
			                       json_object_new_string_len(best->m.v.mid, (int)best->m.v.mid_len));
			json_object_object_add(o, "partnerTierName",
			                       best->m.v.tier ? json_object_new_string_len(best->m.v.tier, (int)best->m.v.tier_len) : NULL);
			json_object_object_add(o, "partnerTierExpiryDate", date_or_null(best->m.v.exp));
			json_object_object_add(o, "membershipStartDate", date_or_null(best->m.v.start));
			json_object_object_add(o, "membershipEndDate", date_or_null(best->m.v.end));
			json_object_object_add(o, "state", json_object_new_string(rules_state(&best->m, now)));
			json_object_object_add(o, "pendingRelink", best->m.has_relink ? reads_values_json(&best->m.rl) : NULL);
			json_object_object_add(o, "linkedOn", date_or_null(best->m.linked_on));
			json_object_object_add(o, "lastUpdatedOn", date_or_null(best->m.updated_on));
			json_object_array_add(list, o);
			rules_program_free(&p);
		}
	}
}

/* Appends the history page (the read script's, already filtered and cut to the page). */
static void
history_list(struct json_object *list, const redisReply *page)
{
	size_t i;

	for (i = 0; i < page->elements; i++) {
		struct json_object *a;

		if (page->element[i]->type != REDIS_REPLY_STRING)
			continue;
		a = json_tokener_parse(page->element[i]->str);
		if (a != NULL)
			json_object_array_add(list, a);
	}
}

#define READS_STR(x) #x
#define READS_XSTR(x) READS_STR(x)

/*
 * Checks identifierValue as http_query_param returned it (n) against the limits of the
 * write routes for the identifier named idname (email 254 bytes, externalId 128: ident.h;
 * mobile and id are checked by the caller). Answers the 400 and returns -1 when it fails.
 */
static int
ident_value_check(struct http_req *r, struct routes_outcome *out, const char *idname,
                  const char *value, int n)
{
	int email = strcmp(idname, "email") == 0, external = strcmp(idname, "externalId") == 0;

	if (n == HTTP_QP_NUL) {
		bad_query(r, out, "identifierValue contains a NUL byte (%00)");
		return -1;
	}
	if (n == HTTP_QP_MALFORMED) {
		bad_query(r, out, "identifierValue is malformed: a bad %-escape, or given twice");
		return -1;
	}
	if (email && (n == HTTP_QP_TOO_LONG || n > IDENT_EMAIL_MAX)) {
		bad_query(r, out, "identifierValue is too long for an email: at most " READS_XSTR(IDENT_EMAIL_MAX) " bytes (UTF-8)");
		return -1;
	}
	if (external && (n == HTTP_QP_TOO_LONG || n > IDENT_EXTERNAL_ID_MAX)) {
		bad_query(r, out, "identifierValue is too long for an externalId: at most " READS_XSTR(IDENT_EXTERNAL_ID_MAX) " bytes (UTF-8)");
		return -1;
	}
	if (n == HTTP_QP_TOO_LONG) {
		bad_query(r, out, strcmp(idname, "mobile") == 0 ?
		          "identifierValue is not a valid mobile number: 6 to 15 digits" :
		          "identifierValue must be a positive integer customer id");
		return -1;
	}
	if (n <= 0) {
		bad_query(r, out, "identifierValue is required and must not be empty");
		return -1;
	}
	if (req_utf8_check(value, (size_t)n) != (size_t)n) {
		bad_query(r, out, "identifierValue is not valid UTF-8");
		return -1;
	}
	return 0;
}

/* Parses a non-negative integer query value; -1 when it is not one. */
static int
query_int(const char *s, int max)
{
	long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		v = v * 10 + (*s - '0');
		if (v > max)
			return -1;
	}
	return (int)v;
}

void
reads_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
             struct routes_outcome *out)
{
	static const char *const names[] = { "mobile", "email", "externalId", "id" };
	char idname[32], value[VALUE_MAX], norm[VALUE_MAX], program[VALUE_MAX], num[32];
	const char *lookup = value;
	struct auth_org org;
	struct store_argv a;
	struct json_object *root, *list;
	redisReply *rep;
	int n, limit = 10, offset = 0, has_program = 0, known = 0;
	size_t i;
	const char *text;
	size_t tlen;

	if (routes_authenticate(st, r, &org, out) != 0)
		return;
	n = http_query_param(r->query, "identifierName", idname, sizeof(idname));
	for (i = 0; n > 0 && i < 4; i++)
		if (strcmp(idname, names[i]) == 0)
			known = 1;
	if (!known)
		{
			bad_query(r, out, "identifierName is required: one of mobile, email, externalId, id");
			return;
		}
	n = http_query_param(r->query, "identifierValue", value, sizeof(value));
	if (ident_value_check(r, out, idname, value, n) != 0)
		return;
	if (strcmp(idname, "mobile") == 0) {
		if (ident_normalize_mobile(value, (size_t)n, org.country_code, org.national_len, norm, sizeof(norm)) < 0)
			{
			bad_query(r, out, "identifierValue is not a valid mobile number: 6 to 15 digits");
			return;
		}
		lookup = norm;
	} else if (strcmp(idname, "id") == 0) {
		/* 1 .. 9223372036854775807 (INT64_MAX), as partnerctl load takes customer ids */
		if (value[0] == '0' || strspn(value, "0123456789") != strlen(value) || strlen(value) > 19 ||
		    (strlen(value) == 19 && strcmp(value, "9223372036854775807") > 0))
			{
			bad_query(r, out, "identifierValue must be a positive integer customer id");
			return;
		}
	}
	if (kind == READS_HISTORY) {
		n = http_query_param(r->query, "limit", num, sizeof(num));
		if (n < HTTP_QP_ABSENT || (n >= 0 && ((limit = query_int(num, HISTORY_LIMIT_MAX)) < 1)))
			{
			bad_query(r, out, "limit must be an integer from 1 to 100");
			return;
		}
		n = http_query_param(r->query, "offset", num, sizeof(num));
		if (n < HTTP_QP_ABSENT || (n >= 0 && (offset = query_int(num, 1000000000)) < 0))
			{
			bad_query(r, out, "offset must be a non-negative integer");
			return;
		}
		n = http_query_param(r->query, "partnerProgramName", program, sizeof(program));
		if (n == HTTP_QP_TOO_LONG || n > REQ_NAME_MAX) {
			bad_query(r, out, "partnerProgramName is too long: at most " READS_XSTR(REQ_NAME_MAX) " bytes (UTF-8)");
			return;
		}
		if (n == HTTP_QP_NUL) {
			bad_query(r, out, "partnerProgramName contains a NUL byte (%00)");
			return;
		}
		if (n < HTTP_QP_ABSENT) {
			bad_query(r, out, "partnerProgramName is malformed: a bad %-escape, or given twice");
			return;
		}
		has_program = n > 0;
	}

	store_argv_init(&a);
	store_argv_add(&a, org.org, strlen(org.org));
	store_argv_add(&a, idname, strlen(idname));
	store_argv_add(&a, lookup, strlen(lookup));
	store_argv_add(&a, kind == READS_HISTORY ? "history" : "programs", kind == READS_HISTORY ? 7 : 8);
	store_argv_addf(&a, KEYS_RATE_FMT, org.org, org.cred);
	store_argv_addf(&a, "%d", cfg->rate_limit);
	if (kind == READS_HISTORY) {
		/* The script reads the page only, or scans at most history_max entries for a
		 * program filter (read.lua). */
		store_argv_addf(&a, "%d", offset);
		store_argv_addf(&a, "%d", limit);
		store_argv_add(&a, program, has_program ? strlen(program) : 0);
		store_argv_addf(&a, "%d", cfg->history_max);
	}
	rep = store_eval(st, STORE_READ, &a);
	store_argv_free(&a);
	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "LIMITED") == 0) {
		char hdr[48];

		snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", atoi(rep->element[1]->str) > 0 ? atoi(rep->element[1]->str) : 1);
		out->status = 429;
		http_error(r, 429, 429, "too many requests for this credential: retry after the time in Retry-After", hdr);
		return;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
		routes_store_unavailable(st, r, out, "the data store is unavailable: retry shortly");
		return;
	}

	if (kind == READS_HISTORY && rep->elements >= 3 &&
	    (rep->elements != 4 || rep->element[2]->type != REDIS_REPLY_ARRAY ||
	     rep->element[3]->type != REDIS_REPLY_INTEGER)) {
		out->status = 503;
		http_error(r, 503, 503, "the data store is unavailable: retry shortly", "Retry-After: 1\r\n");
		return;
	}

	root = json_object_new_object();
	list = json_object_new_array();
	if (rep->elements < 3) {
		json_object_object_add(root, "customer", customer_obj(NULL, idname, value));
		json_object_object_add(root, kind == READS_HISTORY ? "activities" : "partnerPrograms", list);
		if (kind == READS_HISTORY)
			json_object_object_add(root, "total", json_object_new_int(0));
	} else {
		struct rules_customer c = { .cid = strtoll(rep->element[0]->str, NULL, 10) };
		int64_t now = dates_now_ms();

		json_object_object_add(root, "customer", customer_obj(rep->element[1], NULL, NULL));
		if (load_settled(&c, rep->element[1], now) > 0)
			settle_back(st, org.org, &c, rep->element[1]);
		if (kind == READS_HISTORY) {
			history_list(list, rep->element[2]);
			json_object_object_add(root, "activities", list);
			json_object_object_add(root, "total", json_object_new_int64(rep->element[3]->integer));
		} else {
			programs_list(list, &c, rep->element[2], now);
			json_object_object_add(root, "partnerPrograms", list);
		}
		rules_customer_free(&c);
	}
	json_object_object_add(root, "warnings", json_object_new_array());
	text = json_object_to_json_string_length(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &tlen);
	out->status = 200;
	http_respond(r, 200, NULL, text, tlen);
	json_object_put(root);
	/* rep is the store's, released when the request is done. */
}
