/*
 * reads: GET customerPartnerPrograms and customerActivityHistory (see reads.h).
 * One Redis round trip each (the read script); state is computed from stored dates and
 * the current time, so a relink whose start has passed reads as the current membership.
 * When such a relink is still stored as pending, the read writes it back as settled and
 * releases the old membership id (store_settle: a second round trip, only then).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "activity.h"
#include "dates.h"
#include "handler.h"
#include "ident.h"
#include "jout.h"
#include "progcache.h"
#include "reads.h"
#include "render.h"
#include "request.h"
#include "rules.h"
#include "store_read.h"
#include "testfault.h"
#include "xmalloc.h"

#define VALUE_MAX 512
#define HISTORY_LIMIT_MAX 100

static void
bad_query(struct http_req *r, struct routes_outcome *out, const char *message)
{
	out->status = 400;
	http_error(r, 400, 400, message, NULL);
}

/*
 * The response is written as text (jout.h), in the key order the json-c trees of earlier
 * versions had: customer, the list, total (history), warnings.
 */

/* The customer object: stored identifiers, or the query's identifier when not found. */
static void
put_customer(struct buf *b, const struct store_read_result *res, const char *idname,
             const char *idvalue)
{
	JOUT_LIT(b, "{");
	if (res == NULL) {
		jout_cstr(b, idname);
		JOUT_LIT(b, ":");
		jout_cstr(b, idvalue);
		JOUT_LIT(b, ",\"status\":");
		render_status(b, 8015, NULL);
	} else {
		JOUT_LIT(b, "\"id\":");
		jout_i64(b, strtoll(res->id.p, NULL, 10));
		JOUT_LIT(b, ",\"mobile\":");
		jout_str(b, res->mobile.p, res->mobile.len);
		JOUT_LIT(b, ",\"email\":");
		jout_str(b, res->email.p, res->email.len);
		JOUT_LIT(b, ",\"externalId\":");
		jout_str(b, res->external_id.p, res->external_id.len);
		JOUT_LIT(b, ",\"status\":");
		render_status(b, 1000, NULL);
	}
	JOUT_LIT(b, "}");
}

/* One membership of the programs list; prog NULL when no definition has its pid. */
static void
put_membership(struct buf *b, const struct rules_slot *s, const struct store_program_def *def,
               const struct rules_program *prog, int64_t now)
{
	JOUT_LIT(b, "{\"partnerProgramName\":");
	jout_str_or_null(b, def != NULL ? def->name.p : NULL, def != NULL ? def->name.len : 0);
	JOUT_LIT(b, ",\"partnerProgramType\":");
	jout_cstr(b, prog == NULL ? "UNKNOWN" : prog->supplementary ? "SUPPLEMENTARY" : "EXTERNAL");
	JOUT_LIT(b, ",");
	render_values_fields(b, &s->m.v);
	JOUT_LIT(b, ",\"state\":");
	jout_cstr(b, rules_state(&s->m, now));
	JOUT_LIT(b, ",\"pendingRelink\":");
	if (s->m.has_relink)
		render_values(b, &s->m.rl);
	else
		JOUT_LIT(b, "null");
	JOUT_LIT(b, ",\"linkedOn\":");
	jout_date_or_null(b, s->m.linked_on, RULES_NONE);
	JOUT_LIT(b, ",\"lastUpdatedOn\":");
	jout_date_or_null(b, s->m.updated_on, RULES_NONE);
	JOUT_LIT(b, "}");
}

/*
 * The memberships of c (loaded and settled), in program id order, each with its program's
 * name and type: those of the last definition of that pid that parses (each definition is
 * parsed once per request at most: progcache.h).
 */
static void
put_programs(struct buf *b, struct rules_customer *c, const struct store_read_result *res,
             int64_t now)
{
	struct rules_program *progs = xcalloc(res->nprograms, sizeof(*progs));
	char *parsed = xcalloc(res->nprograms, 1);
	size_t i, j;
	int first = 1;

	for (i = 0; i < res->nprograms; i++)
		parsed[i] = progcache_parse(res->programs[i].def.p, res->programs[i].def.len, &progs[i]) == 0;
	for (j = 0; j < c->nslots; j++)
		c->slots[j].dirty = 0;  /* reused below as "listed" */
	JOUT_LIT(b, "[");
	for (;;) {
		struct rules_slot *best = NULL;
		size_t found = res->nprograms;

		for (j = 0; j < c->nslots; j++)
			if (c->slots[j].present && !c->slots[j].dirty && (best == NULL || c->slots[j].pid < best->pid))
				best = &c->slots[j];
		if (best == NULL)
			break;
		best->dirty = 1;   /* used here as "listed" */
		for (i = 0; i < res->nprograms; i++)
			if (parsed[i] && progs[i].pid == best->pid)
				found = i;
		if (!first)
			JOUT_LIT(b, ",");
		first = 0;
		put_membership(b, best, found < res->nprograms ? &res->programs[found] : NULL,
		               found < res->nprograms && progs[found].found ? &progs[found] : NULL, now);
	}
	JOUT_LIT(b, "]");
	for (i = 0; i < res->nprograms; i++)
		if (parsed[i])
			rules_program_free(&progs[i]);
	free(progs);
	free(parsed);
}

/*
 * The history page: each stored entry as the activity JSON. A compact record (activity.h)
 * is rendered; a JSON entry (an older partnerd's) is parsed and written back by json-c. An
 * entry that does not read is left out, so that entries stored by any version read the
 * same.
 */
static void
put_history(struct buf *b, const struct store_read_result *res)
{
	size_t i;
	int first = 1;

	JOUT_LIT(b, "[");
	for (i = 0; i < res->npage; i++) {
		const struct store_text *t = &res->page[i];
		struct json_object *a = NULL;
		struct activity_rec rec;
		const char *why;

		if (activity_is_record(t->p, t->len)) {
			if (activity_decode(t->p, t->len, &rec, &why) != 0)
				continue;
		} else if ((a = json_tokener_parse(t->p)) == NULL) {
			continue;
		}
		if (!first)
			JOUT_LIT(b, ",");
		first = 0;
		if (a == NULL) {
			activity_render(b, &rec, res->customer.cid);
			continue;
		}
		jout_lit(b, json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(a);
	}
	JOUT_LIT(b, "]");
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

/* A read's query: its identifier, and the page of a history read. */
struct read_query {
	char idname[32], value[VALUE_MAX], norm[VALUE_MAX], program[VALUE_MAX];
	const char *lookup;             /* value, or norm for a mobile */
	int limit, offset, has_program;
};

/* Parses and checks the identifier of the query; answers the 400 and returns -1 when bad. */
static int
parse_ident(struct http_req *r, const struct auth_org *org, struct read_query *q,
            struct routes_outcome *out)
{
	static const char *const names[] = { "mobile", "email", "externalId", "id" };
	const char *value = q->value;
	int n, known = 0;
	size_t i;

	n = http_query_param(r->query, "identifierName", q->idname, sizeof(q->idname));
	for (i = 0; n > 0 && i < 4; i++)
		if (strcmp(q->idname, names[i]) == 0)
			known = 1;
	if (!known) {
		bad_query(r, out, "identifierName is required: one of mobile, email, externalId, id");
		return -1;
	}
	n = http_query_param(r->query, "identifierValue", q->value, sizeof(q->value));
	if (ident_value_check(r, out, q->idname, value, n) != 0)
		return -1;
	q->lookup = value;
	if (strcmp(q->idname, "mobile") == 0) {
		if (ident_normalize_mobile(value, (size_t)n, org->country_code, org->national_len, q->norm,
		                           sizeof(q->norm)) < 0) {
			bad_query(r, out, "identifierValue is not a valid mobile number: 6 to 15 digits");
			return -1;
		}
		q->lookup = q->norm;
	} else if (strcmp(q->idname, "id") == 0) {
		/* 1 .. 9223372036854775807 (INT64_MAX), as partnerctl load takes customer ids */
		if (value[0] == '0' || strspn(value, "0123456789") != strlen(value) || strlen(value) > 19 ||
		    (strlen(value) == 19 && strcmp(value, "9223372036854775807") > 0)) {
			bad_query(r, out, "identifierValue must be a positive integer customer id");
			return -1;
		}
	}
	return 0;
}

/* Parses and checks the page of a history read; answers the 400 and returns -1 when bad. */
static int
parse_page(struct http_req *r, struct read_query *q, struct routes_outcome *out)
{
	char num[32];
	int n;

	n = http_query_param(r->query, "limit", num, sizeof(num));
	if (n < HTTP_QP_ABSENT || (n >= 0 && ((q->limit = query_int(num, HISTORY_LIMIT_MAX)) < 1))) {
		bad_query(r, out, "limit must be an integer from 1 to 100");
		return -1;
	}
	n = http_query_param(r->query, "offset", num, sizeof(num));
	if (n < HTTP_QP_ABSENT || (n >= 0 && (q->offset = query_int(num, 1000000000)) < 0)) {
		bad_query(r, out, "offset must be a non-negative integer");
		return -1;
	}
	n = http_query_param(r->query, "partnerProgramName", q->program, sizeof(q->program));
	if (n == HTTP_QP_TOO_LONG || n > REQ_NAME_MAX) {
		bad_query(r, out, "partnerProgramName is too long: at most " READS_XSTR(REQ_NAME_MAX) " bytes (UTF-8)");
		return -1;
	}
	if (n == HTTP_QP_NUL) {
		bad_query(r, out, "partnerProgramName contains a NUL byte (%00)");
		return -1;
	}
	if (n < HTTP_QP_ABSENT) {
		bad_query(r, out, "partnerProgramName is malformed: a bad %-escape, or given twice");
		return -1;
	}
	q->has_program = n > 0;
	return 0;
}

/* The 200 answer: res is NULL when no customer was found. */
static void
respond(struct store *st, struct http_req *r, const char *org, int kind, const struct read_query *q,
        struct store_read_result *res, struct routes_outcome *out)
{
	struct buf b;

	buf_init(&b, (size_t)-1);
	JOUT_LIT(&b, "{\"customer\":");
	put_customer(&b, res, q->idname, q->value);
	jout_lit(&b, kind == READS_HISTORY ? ",\"activities\":" : ",\"partnerPrograms\":");
	if (res == NULL) {
		JOUT_LIT(&b, "[]");
		if (kind == READS_HISTORY)
			JOUT_LIT(&b, ",\"total\":0");
	} else {
		int64_t now = dates_now_ms();

		/* Due relinks are current (rules_settle: those slots are dirty), and written back. */
		if (rules_settle(&res->customer, now) > 0)
			store_settle(st, org, &res->customer, res->version);
		if (kind == READS_HISTORY) {
			put_history(&b, res);
			JOUT_LIT(&b, ",\"total\":");
			jout_i64(&b, res->total);
		} else {
			put_programs(&b, &res->customer, res, now);
		}
	}
	JOUT_LIT(&b, ",\"warnings\":[]}");
	out->status = 200;
#ifdef PARTNERD_TEST_FAULTS
	testfault_stale_keep(r, org, kind, b.p, b.len);
#endif
	http_respond(r, 200, NULL, b.p, b.len);
	buf_free(&b);
}

void
reads_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
             struct routes_outcome *out)
{
	struct read_query q = { .limit = 10, .offset = 0 };
	struct store_read_query sq;
	struct store_read_result res;
	struct auth_org org;
	char hdr[48];

	if (handler_authenticate(st, r, &org, out) != 0)
		return;
	if (parse_ident(r, &org, &q, out) != 0 || (kind == READS_HISTORY && parse_page(r, &q, out) != 0))
		return;
#ifdef PARTNERD_TEST_FAULTS
	if (testfault_stale_answer(r, org.org, kind)) {
		out->status = 200;
		return;
	}
#endif
	sq = (struct store_read_query){
		.org = org.org, .id_kind = q.idname, .id_value = q.lookup, .cred = org.cred,
		.rate_limit = cfg->rate_limit,
		.what = kind == READS_HISTORY ? STORE_READ_HISTORY : STORE_READ_PROGRAMS,
		/* The script reads the page only, or scans at most history_max entries for a
		 * program filter (read.lua). */
		.offset = q.offset, .limit = q.limit, .program = q.has_program ? q.program : NULL,
		.scan_max = cfg->history_max,
	};
	switch (store_read(st, &sq, &res)) {
	case STORE_READ_LIMITED:
		snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", res.retry_after);
		out->status = 429;
		http_error(r, 429, 429, "too many requests for this credential: retry after the time in Retry-After", hdr);
		break;
	case STORE_READ_DOWN:
		handler_store_unavailable(st, r, out, "the data store is unavailable: retry shortly");
		break;
	case STORE_READ_MALFORMED:
		out->status = 503;
		http_error(r, 503, 503, "the data store is unavailable: retry shortly", "Retry-After: 1\r\n");
		break;
	case STORE_READ_NOT_FOUND:
		respond(st, r, org.org, kind, &q, NULL, out);
		break;
	case STORE_READ_OK:
		respond(st, r, org.org, kind, &q, &res, out);
		break;
	}
	rules_customer_free(&res.customer);
}
