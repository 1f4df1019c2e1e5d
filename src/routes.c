/*
 * routes: the route table, the write pipeline and the small routes (see routes.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <sodium.h>

#include "auth.h"
#include "clock.h"
#include "dates.h"
#include "ident.h"
#include "jout.h"
#include "metrics.h"
#include "progcache.h"
#include "reads.h"
#include "render.h"
#include "request.h"
#include "routes.h"
#include "rules.h"
#include "store_write.h"
#include "xmalloc.h"

#define COMMIT_CONFLICT_RETRIES 5
#define IDEM_KEY_MAX 255
#define IDEM_RUNNING_TTL_MS 30000             /* a claim whose worker died frees itself
                                                (plus --lock-wait-ms: see idem_claim) */
#define IDEM_DONE_TTL_MS (24LL * 3600 * 1000)  /* SPEC §6: replays within 24 h */

struct route {
	const char *method;
	const char *path;
	const char *name;               /* for logs and metrics */
	int kind;                       /* handler-specific: enum req_kind, enum reads_kind */
	void (*handler)(const struct routes_cfg *, struct store *, struct http_req *, int kind,
	                struct routes_outcome *);
};

static void handle_write(const struct routes_cfg *, struct store *, struct http_req *, int,
                         struct routes_outcome *);
static void handle_health(const struct routes_cfg *, struct store *, struct http_req *, int,
                          struct routes_outcome *);
static void handle_metrics(const struct routes_cfg *, struct store *, struct http_req *, int,
                           struct routes_outcome *);

static const struct route route_table[] = {
	{ .method = "POST", .path = "/v2/partnerProgram/linkCustomer", .name = "linkCustomer",
	  .kind = REQ_LINK, .handler = handle_write },
	{ .method = "POST", .path = "/v2/partnerProgram/customerPartnerProgramUpdate",
	  .name = "customerPartnerProgramUpdate", .kind = REQ_UPDATE, .handler = handle_write },
	{ .method = "POST", .path = "/v2/partnerProgram/deLinkCustomer", .name = "deLinkCustomer",
	  .kind = REQ_DELINK, .handler = handle_write },
	{ .method = "GET", .path = "/v2/partnerProgram/customerPartnerPrograms",
	  .name = "customerPartnerPrograms", .kind = READS_PROGRAMS, .handler = reads_handle },
	{ .method = "GET", .path = "/v2/partnerProgram/customerActivityHistory",
	  .name = "customerActivityHistory", .kind = READS_HISTORY, .handler = reads_handle },
	{ .method = "GET", .path = "/v2/partnerProgram/health", .name = "health",
	  .handler = handle_health },
	{ .method = "GET", .path = "/v2/partnerProgram/metrics", .name = "metrics",
	  .handler = handle_metrics },
};

/* ---- per-entry state of a write request -------------------------------------------- */

struct entry_state {
	const struct req_entry *e;
	int decided;                    /* customer-level outcome is final */
	int cust_code;                  /* 1000, 400, 8015, 8016 */
	const char *cust_message;
	struct store_begin_in in;       /* identifiers, normalised, and items for the store */
	char ident_val_buf[4][40];      /* id and normalised mobile */
	int found;                      /* the stored identifiers below are known */
	int64_t cid;
	char *stored[4];                /* owned: id, mobile, email, externalId from the store */
	struct rules_result *results;   /* nitems */
	int conflicts;                  /* commit retries for membership-id races */
};

/* What became of a locked customer before its commit. */
enum lock_outcome {
	LOCK_OK = 0,                    /* loaded: its entries are decided by the rules */
	LOCK_UNREADABLE,                /* its stored data could not be read: commit releases it unchanged */
};

/* One customer locked in this round (entries of the same customer share it). */
struct locked {
	int64_t cid;
	char version[24];
	struct rules_customer cust;
	struct entry_state **entries;   /* entries applied to this customer, in order */
	size_t nentries;
	enum lock_outcome outcome;
	int lost;                       /* LOST_*: what became of a commit whose reply was lost */
};

/* What resolving a commit whose reply was lost found for one customer (commit_resolve). */
enum { LOST_NO = 0, LOST_APPLIED, LOST_NOT_APPLIED, LOST_UNKNOWN };

/* The Idempotency-Key claim a request holds (SPEC §6); every commit checks it (commit.lua). */
struct idem_claim {
	struct store_idem s;
	int lost;                       /* a commit found it expired or taken over: IDEM_FENCED */
};

#define IDEM_FENCED_ITEM_MSG "this request's Idempotency-Key claim expired or was taken over by a repeat of the request before this change was stored; nothing of it was applied: repeat the request with the same Idempotency-Key to get its outcome"

static void
entry_fail_items(struct entry_state *es, int code, const char *message)
{
	size_t k;

	for (k = 0; k < es->e->nitems; k++) {
		rules_result_free(&es->results[k]);
		es->results[k].code = code;
		es->results[k].message = message ? message : rules_message(code);
	}
}

/* Validates and normalises the entry's identifiers; decides 400 when one is bad. */
static void
entry_identify(struct entry_state *es, const struct auth_org *org)
{
	const struct req_customer *c = &es->e->customer;
	int n;

	es->in.e = es->e;
	if (c->bad) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = c->bad_msg;
		return;
	}
	if (c->has_id) {
		snprintf(es->ident_val_buf[es->in.nidents], sizeof(es->ident_val_buf[0]), "%lld",
		         (long long)c->id);
		es->in.kind[es->in.nidents] = STORE_IDENT_ID;
		es->in.val[es->in.nidents] = es->ident_val_buf[es->in.nidents];
		es->in.len[es->in.nidents] = strlen(es->ident_val_buf[es->in.nidents]);
		es->in.nidents++;
	}
	if (c->mobile.p != NULL) {
		n = ident_normalize_mobile(c->mobile.p, c->mobile.len, org->country_code,
		                           org->national_len, es->ident_val_buf[es->in.nidents],
		                           sizeof(es->ident_val_buf[0]));
		if (n < 0) {
			es->decided = 1;
			es->cust_code = 400;
			es->cust_message = "mobile is not a valid mobile number: 6 to 15 digits, optionally with spaces, +, -, ., ( and )";
			return;
		}
		es->in.kind[es->in.nidents] = STORE_IDENT_MOBILE;
		es->in.val[es->in.nidents] = es->ident_val_buf[es->in.nidents];
		es->in.len[es->in.nidents] = (size_t)n;
		es->in.nidents++;
	}
	if (c->email.p != NULL) {
		es->in.kind[es->in.nidents] = STORE_IDENT_EMAIL;
		es->in.val[es->in.nidents] = c->email.p;
		es->in.len[es->in.nidents] = c->email.len;
		es->in.nidents++;
	}
	if (c->external_id.p != NULL) {
		es->in.kind[es->in.nidents] = STORE_IDENT_EXTERNAL;
		es->in.val[es->in.nidents] = c->external_id.p;
		es->in.len[es->in.nidents] = c->external_id.len;
		es->in.nidents++;
	}
	if (es->in.nidents == 0) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = "no customer identifier given: send one of id, mobile, email or externalId";
	}
}

static void
copy_stored(struct entry_state *dst, const struct entry_state *src)
{
	int k;

	for (k = 0; k < 4; k++)
		if (dst->stored[k] == NULL && src->stored[k] != NULL)
			dst->stored[k] = xmemdup(src->stored[k], strlen(src->stored[k]));
	dst->found = 1;
}

/* ---- a store out of memory (Redis at maxmemory) ------------------------------------------ */

/*
 * When Redis refuses a write for memory (maxmemory), the answers say so, instead of a read
 * error or a broken key: nothing was applied, the client can only retry later, and an
 * operator has to free memory or raise maxmemory.
 */
#define OOM_ITEM_MESSAGE "the data store is out of memory (Redis maxmemory reached) and refused the change; nothing of it was applied: retry later (an operator must free memory or raise maxmemory)"

/* ---- one round: begin (resolve, lock, read), rules, commit -------------------------- */

/*
 * Appends the history entry / change-feed event of an applied item to out, as JSON text
 * (jout.h) in the key order of docs/CHANGE-FEED.md.
 */
static void
event_json(struct buf *out, const struct rules_result *res, const struct req_item *it, int64_t cid, const char *rid, int64_t now_ms)
{
	JOUT_LIT(out, "{\"activityType\":");
	jout_cstr(out, rules_event_name[res->event]);
	JOUT_LIT(out, ",\"activityDate\":");
	jout_date_or_null(out, now_ms, RULES_NONE);
	JOUT_LIT(out, ",\"partnerProgramName\":");
	jout_str(out, it->program.s.p, it->program.s.len);
	JOUT_LIT(out, ",\"updateType\":");
	if (res->event == EV_UPDATE && it->update_type.st == F_OK)
		jout_str(out, it->update_type.s.p, it->update_type.s.len);
	else
		JOUT_LIT(out, "null");
	JOUT_LIT(out, ",\"before\":");
	if (res->has_before)
		render_values(out, &res->before);
	else
		JOUT_LIT(out, "null");
	JOUT_LIT(out, ",\"after\":");
	if (res->has_after)
		render_values(out, &res->after);
	else
		JOUT_LIT(out, "null");
	JOUT_LIT(out, ",\"requestId\":");
	jout_cstr(out, rid);
	JOUT_LIT(out, ",\"customerId\":");
	jout_i64(out, cid);
	JOUT_LIT(out, "}");
}

void
routes_thread_exit(void)
{
	req_thread_exit();
	progcache_thread_exit();
}

/* The items of an entry that were to be applied (200) answer code instead. */
static void
fail_applied_items(struct entry_state *es, int code, const char *message)
{
	size_t it;

	for (it = 0; it < es->e->nitems; it++)
		if (es->results[it].code == 200) {
			rules_result_free(&es->results[it]);
			es->results[it].code = code;
			es->results[it].message = message;
		}
}

/*
 * The commit of locks[0..nl) gave no usable answer. When nothing of it was sent
 * (maybe_ran 0) it did not run: LOST_NOT_APPLIED. Otherwise the store finds out, on a
 * new connection when the old one broke, within one --redis-timeout-ms, customer by
 * customer: applied, not applied (and fenced from now on: a commit still queued on the
 * dead connection cannot apply any more), or unknown; a resolution that fails is unknown
 * too (docs/CONSISTENCY.md "A commit whose reply is lost").
 */
static void
commit_resolve(struct store *st, const char *org, const char *token, struct locked *locks,
               const struct store_commit_cust *cc, size_t nl, int maybe_ran)
{
	enum store_resolved *res = NULL;
	size_t k;

	if (maybe_ran) {
		res = xcalloc(nl, sizeof(*res));
		store_commit_resolve(st, org, token, cc, nl, res);
	}
	for (k = 0; k < nl; k++) {
		if (!maybe_ran || res[k] == STORE_RESOLVED_NOT_APPLIED) {
			locks[k].lost = LOST_NOT_APPLIED;
			metrics_in_doubt(MI_NOT_APPLIED);
		} else if (res[k] == STORE_RESOLVED_APPLIED) {
			locks[k].lost = LOST_APPLIED;
			metrics_in_doubt(MI_APPLIED);
		} else {
			locks[k].lost = LOST_UNKNOWN;
			metrics_in_doubt(res[k] == STORE_RESOLVED_UNKNOWN ? MI_UNKNOWN : MI_FAILED);
		}
	}
	free(res);
}

/* Takes an entry's begin outcome: decided customer-level codes, or its customer's state. */
static void
take_begin(struct entry_state *e, struct store_begin_out *o, struct locked *locks, size_t *nl, size_t n)
{
	size_t k;

	switch (o->status) {
	case STORE_BEGIN_NOT_FOUND:
		e->decided = 1;
		e->cust_code = 8015;
		break;
	case STORE_BEGIN_MISMATCH:
		e->decided = 1;
		e->cust_code = 8016;
		break;
	case STORE_BEGIN_UNREADABLE:
		e->decided = 1;
		e->cust_code = 1000;
		entry_fail_items(e, 2001, o->oom ? OOM_ITEM_MESSAGE :
		                 "this customer's stored data could not be read; nothing was applied");
		break;
	case STORE_BEGIN_BUSY:
		e->cid = o->cid;
		break;
	case STORE_BEGIN_LOCKED: {
		struct locked *lk = &locks[(*nl)++];

		lk->cid = e->cid = o->cid;
		lk->entries = calloc(n, sizeof(*lk->entries));
		if (lk->entries == NULL)
			abort();
		lk->entries[lk->nentries++] = e;
		memcpy(lk->version, o->version, sizeof(lk->version));
		lk->cust = o->cust;
		/* an entry run again (membership-id conflict, or DUP before) had its identifiers */
		for (k = 0; k < 4; k++)
			free(e->stored[k]);
		memcpy(e->stored, o->ident, sizeof(e->stored));
		if (o->bad_snapshot)
			lk->outcome = LOCK_UNREADABLE;
		else
			e->found = 1;
		break;
	}
	case STORE_BEGIN_DUP:
		e->cid = o->cid;
		for (k = 0; k < *nl; k++) {
			if (locks[k].cid == e->cid) {
				locks[k].entries[locks[k].nentries++] = e;
				copy_stored(e, locks[k].entries[0]);
				break;
			}
		}
		break;
	}
}

/*
 * Applies the rules to entry e of customer lk, with the program definitions and id holders
 * the store read for its items. Membership ids claimed or given up by earlier entries of
 * the round (claims) override the holders, and the entry's own are added.
 */
static void
decide_entry(enum req_kind kind, struct entry_state *e, struct locked *lk,
             const struct store_item_snap *items, struct rules_claims *claims, int64_t now_ms)
{
	struct rules_program *progs;
	struct rules_item_ctx *ctx;
	size_t it;

	progs = calloc(e->e->nitems, sizeof(*progs));
	ctx = calloc(e->e->nitems, sizeof(*ctx));
	if (progs == NULL || ctx == NULL)
		abort();
	for (it = 0; it < e->e->nitems; it++) {
		const struct req_item *item = &e->e->items[it];

		if (items[it].def != NULL && progcache_parse(items[it].def, items[it].def_len, &progs[it]) != 0)
			progs[it].found = 0;
		ctx[it].mid_holder = items[it].mid_holder;
		if (progs[it].found && item->mid.st == F_OK)
			rules_claims_lookup(claims, progs[it].pid, item->mid.s.p, item->mid.s.len,
			                    &ctx[it].mid_holder);
		ctx[it].prog = &progs[it];
	}
	rules_apply(kind, &lk->cust, e->e, ctx, now_ms, e->results);
	for (it = 0; it < e->e->nitems; it++) {
		rules_claims_note(claims, progs[it].pid, &e->results[it], lk->cid);
		rules_program_free(&progs[it]);
	}
	free(progs);
	free(ctx);
}

/*
 * The history entries / change-feed events of lk's applied items, in request order, as
 * JSON texts appended to text, described in ev (from *nev on).
 */
static size_t
add_events(struct buf *text, struct store_event *ev, size_t *nev, const struct locked *lk,
           const char *rid, int64_t now_ms)
{
	size_t j, k, first = *nev;

	for (j = 0; j < lk->nentries; j++) {
		const struct entry_state *e = lk->entries[j];

		for (k = 0; k < e->e->nitems; k++) {
			if (e->results[k].code != 200)
				continue;
			ev[*nev].type = rules_event_name[e->results[k].event];
			ev[*nev].off = text->len;
			event_json(text, &e->results[k], &e->e->items[k], lk->cid, rid, now_ms);
			ev[*nev].len = text->len - ev[*nev].off;
			(*nev)++;
		}
	}
	return *nev - first;
}

/*
 * Takes the commit's answer for entry e, the j-th of customer lk: what was not applied
 * answers why, and an entry that met a membership-id race is run again (pending).
 * *oom_probe: 0 until a BROKEN commit asked whether Redis is out of memory, then 1 or -1.
 */
static void
take_commit(struct store *st, const char *org, struct locked *lk, size_t j, struct entry_state *e,
            enum store_commit_status status, struct idem_claim *ic, int *oom_probe)
{
	if (lk->outcome == LOCK_UNREADABLE) {
		entry_fail_items(e, 2001, "the customer's stored data could not be read; nothing was applied");
	} else if (lk->lost == LOST_NOT_APPLIED) {
		fail_applied_items(e, 2001, "the change could not be stored (the store failed during the commit); nothing of it was applied");
	} else if (lk->lost == LOST_UNKNOWN) {
		fail_applied_items(e, 2011, "the store failed while committing and partnerd could not find out in time whether the change applied: read the customer's memberships or history, or retry with the same Idempotency-Key");
	} else if (lk->lost == LOST_APPLIED || status == STORE_COMMIT_OK) {
		/* applied: the items stand as decided */
	} else if (status == STORE_COMMIT_BROKEN) {
		if (*oom_probe == 0)
			*oom_probe = store_refuses_writes(st, org, lk->cid) ? 1 : -1;
		entry_fail_items(e, 2001, *oom_probe > 0 ? OOM_ITEM_MESSAGE :
		                 "the change could not be stored (a stored key has an unexpected type); nothing was applied");
	} else if (status == STORE_COMMIT_FENCED) {
		if (j == 0)
			metrics_fenced();
		fail_applied_items(e, 2010, "the customer's lock expired before the change was stored; nothing was applied: retry");
	} else if (status == STORE_COMMIT_IDEM_FENCED) {
		if (ic != NULL)
			ic->lost = 1;
		fail_applied_items(e, 2001, IDEM_FENCED_ITEM_MSG);
	} else if (status == STORE_COMMIT_CONFLICT) {
		/* A membership id was claimed meanwhile by another customer: run again. */
		e->conflicts++;
		if (e->conflicts > COMMIT_CONFLICT_RETRIES) {
			entry_fail_items(e, 2010, "concurrent changes kept conflicting with this one: retry");
		} else {
			e->decided = 0;
			e->cust_code = 0;
		}
	}
}

/*
 * Commits the locked customers locks[0..nl) (nitems: the items of the round's entries) and
 * takes the answers: the items of a customer whose commit failed answer why.
 */
static void
commit_round(const struct routes_cfg *cfg, struct store *st, const char *org, const char *token,
             const char *rid, int64_t now_ms, struct locked *locks, size_t nl, size_t nitems,
             struct idem_claim *ic)
{
	struct store_commit_cust *cc;
	enum store_commit_status *cst;
	struct store_event *ev;
	struct buf text;
	size_t i, j, k, nev = 0;
	int maybe_ran = 0, oom_probe = 0;

	cc = xcalloc(nl, sizeof(*cc));
	cst = xcalloc(nl, sizeof(*cst));
	ev = xcalloc(nitems, sizeof(*ev));
	/* The events are written into one text buffer the commit's arguments point into. */
	buf_init(&text, (size_t)-1);
	buf_presize(&text, 2048);
	for (k = 0; k < nl; k++) {
		static const struct rules_customer empty;

		cc[k].cid = locks[k].cid;
		cc[k].version = locks[k].version;
		cc[k].cust = &locks[k].cust;
		if (locks[k].outcome == LOCK_UNREADABLE) {
			/* unreadable stored data: release the lock, change nothing */
			for (i = 0; i < locks[k].nentries; i++)
				entry_fail_items(locks[k].entries[i], 2001, "the customer's stored data could not be read; nothing was applied");
			cc[k].cust = &empty;
		}
		cc[k].events = ev + nev;
		cc[k].nevents = add_events(&text, ev, &nev, &locks[k], rid, now_ms);
	}
	store_commit(st, &(struct store_commit_req){ .org = org, .token = token,
	                                             .history_max = cfg->history_max,
	                                             .feed_max = cfg->feed_max,
	                                             .idem = ic != NULL ? &ic->s : NULL,
	                                             .event_text = text.p, .n = nl, .c = cc },
	             cst, &maybe_ran);
	if (cst[0] == STORE_COMMIT_LOST)
		commit_resolve(st, org, token, locks, cc, nl, maybe_ran);
	buf_free(&text);

	for (k = 0; k < nl; k++)
		for (j = 0; j < locks[k].nentries; j++)
			if (locks[k].entries[j]->decided)
				take_commit(st, org, &locks[k], j, locks[k].entries[j], cst[k], ic, &oom_probe);
	free(cc);
	free(cst);
	free(ev);
}

/*
 * Runs one round over the pending entries (those not decided yet). Returns 0 when the
 * round ran (some entries may still be pending: busy locks or id races), -1 when Redis
 * failed before anything of this round was applied.
 */
static int
run_round(const struct routes_cfg *cfg, struct store *st, const struct auth_org *org,
          enum req_kind kind, struct entry_state *es, size_t n, const char *token,
          const char *rid, int64_t now_ms, int count_rate, int *limited, struct idem_claim *ic)
{
	struct store_begin_res br;
	struct entry_state **pend;
	const struct store_begin_in **bin;
	struct locked *locks;
	size_t np = 0, nl = 0, i, k;
	struct rules_claims claims = { 0 };
	int rc = -1;

	pend = calloc(n, sizeof(*pend));
	bin = xcalloc(n, sizeof(*bin));
	locks = calloc(n, sizeof(*locks));
	if (pend == NULL || locks == NULL)
		abort();
	for (i = 0; i < n; i++)
		if (!es[i].decided) {
			bin[np] = &es[i].in;
			pend[np++] = &es[i];
		}

	if (store_begin(st, &(struct store_begin_req){ .org = org->org, .cred = org->cred, .token = token,
	                                             .lock_ttl_ms = cfg->lock_ttl_ms,
	                                             .rate_limit = count_rate ? cfg->rate_limit : 0,
	                                             .kind = kind, .n = np, .entries = bin }, &br) != 0)
		goto out;
	if (br.limited > 0) {
		*limited = br.limited;
		rc = 0;
		goto out;
	}

	/* Customers, in entry order; entries of one customer share its state. */
	for (i = 0; i < np; i++)
		take_begin(pend[i], &br.e[i], locks, &nl, n);

	/* The rules, entries in request order (also across customers). */
	for (i = 0; i < np; i++) {
		struct entry_state *e = pend[i];
		struct locked *lk = NULL;
		size_t j;

		for (k = 0; k < nl && lk == NULL; k++)
			for (j = 0; j < locks[k].nentries; j++)
				if (locks[k].entries[j] == e)
					lk = &locks[k];
		if (lk == NULL)
			continue;
		e->decided = 1;
		e->cust_code = 1000;
		if (lk->outcome == LOCK_OK)
			decide_entry(kind, e, lk, br.e[i].items, &claims, now_ms);
	}
	rules_claims_free(&claims);

	if (nl == 0) {
		rc = 0;
		goto out;
	}

	/* The commit: every locked customer, changed or not (its lock is released). */
	for (k = 0, i = 0; i < np; i++)
		k += pend[i]->e->nitems;
	commit_round(cfg, st, org->org, token, rid, now_ms, locks, nl, k, ic);
	rc = 0;
out:
	for (k = 0; k < nl; k++) {
		rules_customer_free(&locks[k].cust);
		free(locks[k].entries);
	}
	store_begin_res_free(&br);
	free(locks);
	free(bin);
	free(pend);
	return rc;
}

/* ---- the response ---------------------------------------------------------------------- */

/* The response is written as text (jout.h): a json-c tree cost more than the rules. */
static void
put_customer(struct buf *b, const struct entry_state *es)
{
	static const char *const keys[4] = { "id", "mobile", "email", "externalId" };
	static const char *const lead[4] = { "\"id\":", "\"mobile\":", "\"email\":", "\"externalId\":" };
	struct json_object *sent, *v;
	int k, first = 1;

	JOUT_LIT(b, "{");
	if (es->found) {
		long long id = es->stored[0] ? strtoll(es->stored[0], NULL, 10) : es->cid;

		jout_lit(b, lead[0]);
		jout_i64(b, id);
		for (k = 1; k < 4; k++) {
			JOUT_LIT(b, ",");
			jout_lit(b, lead[k]);
			jout_cstr(b, es->stored[k] ? es->stored[k] : "");
		}
		first = 0;
	} else {
		/* Not found: echo the identifiers as they were sent (any JSON type). */
		sent = (struct json_object *)es->e->customer.echo;
		for (k = 0; k < 4; k++) {
			if (!json_object_object_get_ex(sent, keys[k], &v))
				continue;
			if (!first)
				JOUT_LIT(b, ",");
			jout_lit(b, lead[k]);
			jout_lit(b, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			first = 0;
		}
	}
	jout_lit(b, first ? "\"status\":" : ",\"status\":");
	render_status(b, es->cust_code, es->cust_message);
	JOUT_LIT(b, "}");
}

static char *
build_response(enum req_kind kind, const struct entry_state *es, size_t n, size_t *len,
               int *ok, int *failed)
{
	const struct req_names *names = &req_names[kind];
	struct buf b;
	size_t i, k;

	buf_init(&b, (size_t)-1);
	/* About 250 bytes per customer and 120 per item: one allocation, no regrowth. */
	for (i = 0, k = 64; i < n; i++)
		k += 256 + 128 * es[i].e->nitems;
	buf_presize(&b, k);
	JOUT_LIT(&b, "{\"");
	jout_lit(&b, names->top);
	JOUT_LIT(&b, "\":[");
	for (i = 0; i < n; i++) {
		jout_lit(&b, i ? ",{\"customer\":" : "{\"customer\":");
		put_customer(&b, &es[i]);
		JOUT_LIT(&b, ",\"");
		jout_lit(&b, names->items);
		JOUT_LIT(&b, "\":[");
		for (k = 0; k < es[i].e->nitems; k++) {
			const struct req_item *it = &es[i].e->items[k];
			int code = es[i].results[k].code;

			jout_lit(&b, k ? ",{\"partnerProgramName\":" : "{\"partnerProgramName\":");
			jout_str_or_null(&b, it->program.s.p, it->program.s.len);
			if (kind == REQ_UPDATE) {
				JOUT_LIT(&b, ",\"updateType\":");
				jout_str_or_null(&b, it->update_type.s.p, it->update_type.s.len);
			}
			JOUT_LIT(&b, ",\"");
			jout_lit(&b, names->item_status);
			JOUT_LIT(&b, "\":");
			render_status(&b, code, es[i].results[k].message);
			JOUT_LIT(&b, "}");
			metrics_item(code);
			if (code == 200)
				(*ok)++;
			else
				(*failed)++;
		}
		JOUT_LIT(&b, "]}");
	}
	JOUT_LIT(&b, "],\"warnings\":[]}");
	*len = b.len;
	return buf_take(&b);
}

/* ---- handlers -------------------------------------------------------------------------- */

/* ---- Idempotency-Key (SPEC §6) -------------------------------------------------------- */

enum idem_state { IDEM_NONE, IDEM_CLAIMED, IDEM_ANSWERED };

static int
idem_key_valid(const char *k)
{
	size_t n = 0;

	for (; k[n] != '\0'; n++)
		if ((unsigned char)k[n] < 0x20 || (unsigned char)k[n] > 0x7e)
			return 0;
	return n >= 1 && n <= IDEM_KEY_MAX;
}

/*
 * Claims the request's Idempotency-Key for a new random token (ic receives the claim).
 * Returns IDEM_NONE when the request has no key, IDEM_CLAIMED when the caller must process
 * it, passing ic to every commit, and then call idem_finish, IDEM_ANSWERED when this
 * function already answered (replay, 409, 422 or 503).
 * The claim expires IDEM_RUNNING_TTL_MS plus --lock-wait-ms after it was taken or after the
 * request's last commit, so that a live request waiting for busy locks keeps it.
 */
static enum idem_state
idem_claim(const struct routes_cfg *cfg, struct store *st, struct http_req *r, const char *org,
           const char *route, struct idem_claim *ic, struct routes_outcome *out)
{
	const char *resp = NULL;
	size_t resp_len = 0;
	int status = 0;

	if (r->idempotency_key == NULL)
		return IDEM_NONE;
	ic->lost = 0;
	switch (store_idem_claim(st, org, r->idempotency_key, route, r->body, r->body_len,
	                         IDEM_RUNNING_TTL_MS + cfg->lock_wait_ms, &ic->s, &status, &resp, &resp_len)) {
	case STORE_IDEM_NEW:
		return IDEM_CLAIMED;
	case STORE_IDEM_ERROR:
		handler_store_unavailable(st, r, out, "the data store is unavailable: nothing was applied; retry shortly");
		break;
	case STORE_IDEM_MISMATCH:
		out->status = 422;
		http_error(r, 422, 422, "this Idempotency-Key was already used with another request body or route", NULL);
		break;
	case STORE_IDEM_RUNNING:
		out->status = 409;
		http_error(r, 409, 409, "the first request with this Idempotency-Key is still being processed: retry shortly",
		           "Retry-After: 1\r\n");
		break;
	case STORE_IDEM_DONE:
		out->status = status;
		http_respond(r, out->status, "Idempotent-Replayed: true\r\n", resp, resp_len);
		break;
	case STORE_IDEM_UNREADABLE:
	default:
		out->status = 503;
		http_error(r, 503, 503, "the stored response of this Idempotency-Key is unreadable; retry shortly",
		           "Retry-After: 1\r\n");
		break;
	}
	return IDEM_ANSWERED;
}

/*
 * Stores the processed request's response for replays (status 200), or frees the claim
 * (any other status) so that a repeat is processed anew; both only while the claim is
 * still this request's: a request whose claim expired or was taken over stores nothing.
 */
static void
idem_finish(struct store *st, const struct idem_claim *ic, int status, const char *body, size_t len)
{
	store_idem_finish(st, &ic->s, status, body, len, IDEM_DONE_TTL_MS);
}

static void
handle_write(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kindi,
             struct routes_outcome *out)
{
	enum req_kind kind = (enum req_kind)kindi;
	struct auth_org org;
	struct req req;
	struct req_error err;
	struct entry_state *es = NULL;
	unsigned char rnd[16];
	char token[33], msg[200], enc[48];
	int64_t deadline, now_ms;
	size_t i, k, pending;
	int rc, round, committed_any = 0, ok = 0, failed = 0;
	char *body;
	size_t blen;
	enum idem_state idem;
	struct idem_claim ic;
	int limited;

	if (handler_authenticate(st, r, &org, out) != 0)
		return;
	if (r->idempotency_key != NULL && !idem_key_valid(r->idempotency_key)) {
		out->status = 400;
		http_error(r, 400, 400, "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL);
		return;
	}
	if (!http_is_json(r->content_type)) {
		out->status = 415;
		http_error(r, 415, 415, "Content-Type must be application/json", NULL);
		return;
	}
	if (http_check_encoding(r, enc, sizeof(enc)) != 0) {
		out->status = 415;
		snprintf(msg, sizeof(msg), "Content-Encoding \"%s\" is not supported: send the request body uncompressed (no Content-Encoding, or identity)", enc);
		http_error(r, 415, 415, msg, NULL);
		return;
	}
	rc = http_read_body(r, cfg->max_body);
	if (rc != 0) {
		out->status = rc;
		snprintf(msg, sizeof(msg), rc == 411 ? "Content-Length is required" :
		         rc == 413 ? "the request body is larger than %zu bytes" :
		         "the request body is shorter than its Content-Length", cfg->max_body);
		http_error(r, rc, rc, msg, NULL);
		return;
	}
	if (req_parse(r->body, r->body_len, kind, &req, &err) != 0) {
		out->status = err.http;
		http_error(r, err.http, err.code, err.message, NULL);
		return;
	}

	idem = idem_claim(cfg, st, r, org.org, req_names[kind].top, &ic, out);
	if (idem == IDEM_ANSWERED) {
		req_free(&req);
		return;
	}

	es = calloc(req.nentries, sizeof(*es));
	if (es == NULL)
		abort();
	for (i = 0; i < req.nentries; i++) {
		es[i].e = &req.entries[i];
		es[i].results = calloc(req.entries[i].nitems, sizeof(*es[i].results));
		if (es[i].results == NULL)
			abort();
		entry_identify(&es[i], &org);
	}

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(token, sizeof(token), rnd, sizeof(rnd));
	deadline = mono_ms() + cfg->lock_wait_ms;
	for (round = 0;; round++) {
		for (pending = 0, i = 0; i < req.nentries; i++)
			if (!es[i].decided)
				pending++;
		if (pending == 0)
			break;
		now_ms = dates_now_ms();
		limited = 0;
		if (run_round(cfg, st, &org, kind, es, req.nentries, token, r->request_id, now_ms,
		              round == 0, &limited, idem == IDEM_CLAIMED ? &ic : NULL) != 0) {
			if (!committed_any) {
				handler_store_unavailable(st, r, out, "the data store is unavailable: nothing was applied; retry shortly");
				if (idem == IDEM_CLAIMED)
					idem_finish(st, &ic, 503, NULL, 0);
				goto out;
			}
			for (i = 0; i < req.nentries; i++) {
				if (es[i].decided)
					continue;
				es[i].decided = 1;
				es[i].cust_code = 1000;
				entry_fail_items(&es[i], 2001, "the data store became unavailable; nothing of this customer was applied");
			}
			break;
		}
		if (limited > 0) {
			char hdr[48];

			snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", limited);
			out->status = 429;
			http_error(r, 429, 429, "too many requests for this credential: retry after the time in Retry-After", hdr);
			if (idem == IDEM_CLAIMED)
				idem_finish(st, &ic, 429, NULL, 0);
			goto out;
		}
		committed_any = 1;
		if (idem == IDEM_CLAIMED && ic.lost) {
			/* The key belongs to another request now: nothing more is applied. */
			for (i = 0; i < req.nentries; i++) {
				if (es[i].decided)
					continue;
				es[i].decided = 1;
				es[i].cust_code = 1000;
				entry_fail_items(&es[i], 2001, IDEM_FENCED_ITEM_MSG);
			}
			break;
		}
		for (pending = 0, i = 0; i < req.nentries; i++)
			if (!es[i].decided)
				pending++;
		if (pending == 0)
			break;
		if (mono_ms() >= deadline) {
			for (i = 0; i < req.nentries; i++) {
				if (es[i].decided)
					continue;
				metrics_lock_timeout();
				es[i].decided = 1;
				es[i].cust_code = 1000;
				entry_fail_items(&es[i], 2010, NULL);
			}
			break;
		}
		/* A busy lock: back off briefly with jitter, growing up to 16 ms. */
		metrics_lock_wait();
		{
			int cap = 1 << (round < 4 ? round : 4);
			struct timespec ts = { 0, (long)(1 + randombytes_uniform((uint32_t)cap)) * 1000000L };

			nanosleep(&ts, NULL);
		}
	}

	/*
	 * A request fenced by its Idempotency-Key claim stores no response. When it applied
	 * nothing (no earlier round committed a change, nor may have: 2011), it answers 409 as
	 * a request that found the key taken would: the repeat that holds the key has the
	 * outcome.
	 */
	if (idem == IDEM_CLAIMED && ic.lost) {
		int applied = 0;

		for (i = 0; i < req.nentries; i++)
			for (k = 0; k < req.entries[i].nitems; k++)
				if (es[i].results[k].code == 200 || es[i].results[k].code == 2011)
					applied = 1;
		if (!applied) {
			out->status = 409;
			http_error(r, 409, 409, "this request's Idempotency-Key claim expired or was taken over by a repeat of the request before its changes were stored; nothing was applied: repeat the request with the same Idempotency-Key to get its outcome",
			           "Retry-After: 1\r\n");
			goto out;
		}
	}

	/* Customers refused at customer level report their code on every item. */
	for (i = 0; i < req.nentries; i++)
		if (es[i].cust_code != 1000)
			entry_fail_items(&es[i], es[i].cust_code, es[i].cust_message ? es[i].cust_message : rules_message(es[i].cust_code));

	body = build_response(kind, es, req.nentries, &blen, &ok, &failed);
	out->status = 200;
	out->items_ok = ok;
	out->items_failed = failed;
	if (idem == IDEM_CLAIMED && !ic.lost)
		idem_finish(st, &ic, 200, body, blen);
	http_respond(r, 200, NULL, body, blen);
	free(body);
out:
	for (i = 0; i < req.nentries; i++) {
		for (k = 0; k < req.entries[i].nitems; k++)
			rules_result_free(&es[i].results[k]);
		free(es[i].results);
		for (k = 0; k < 4; k++)
			free(es[i].stored[k]);
	}
	free(es);
	req_free(&req);
}

static void
handle_health(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
              struct routes_outcome *out)
{
	static const char ok[] = "{\"status\":\"ok\",\"redis\":\"ok\"}";
	static const char down[] = "{\"status\":\"unavailable\",\"redis\":\"unreachable\"}";

	(void)cfg;
	(void)kind;
	if (store_ping(st) == 0) {
		out->status = 200;
		http_respond(r, 200, NULL, ok, sizeof(ok) - 1);
	} else {
		out->status = 503;
		http_respond(r, 503, "Retry-After: 1\r\n", down, sizeof(down) - 1);
	}
}

static void
handle_metrics(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
               struct routes_outcome *out)
{
	size_t len;
	char *text = metrics_render(&len);

	(void)cfg;
	(void)st;
	(void)kind;
	out->status = 200;
	http_respond_type(r, 200, "text/plain; version=0.0.4", NULL, text, len);
	free(text);
}

void
routes_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
              struct routes_outcome *out)
{
	const struct route *match = NULL;
	char allow[64] = "";
	size_t i;

	out->route = "-";
	out->status = 0;
	snprintf(out->org, sizeof(out->org), "-");
	for (i = 0; i < sizeof(route_table) / sizeof(route_table[0]); i++) {
		if (strcmp(route_table[i].path, r->path) != 0)
			continue;
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", route_table[i].method);
		if (strcmp(route_table[i].method, r->method) == 0 ||
		    (strcmp(route_table[i].method, "GET") == 0 && strcmp(r->method, "HEAD") == 0))
			match = &route_table[i];
	}
	if (match == NULL) {
		if (allow[0] != '\0') {
			out->status = 405;
			http_error(r, 405, 405, "method not allowed on this route", allow);
		} else {
			out->status = 404;
			http_error(r, 404, 404, "no such route", NULL);
		}
		return;
	}
	out->route = match->name;
	match->handler(cfg, st, r, match->kind, out);
}
