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
#include "keys.h"
#include "metrics.h"
#include "progcache.h"
#include "reads.h"
#include "render.h"
#include "request.h"
#include "routes.h"
#include "rules.h"
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

enum { IDK_ID, IDK_MOBILE, IDK_EMAIL, IDK_EXTERNAL };
static const char *const idk_name[] = { "id", "mobile", "email", "externalId" };

struct entry_state {
	const struct req_entry *e;
	int decided;                    /* customer-level outcome is final */
	int cust_code;                  /* 1000, 400, 8015, 8016 */
	const char *cust_message;
	size_t nidents;
	int ident_kind[4];
	char ident_val_buf[4][40];      /* id and normalised mobile */
	const char *ident_val[4];
	size_t ident_len[4];
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
	char key[128];                  /* the claim's Redis key */
	char token[33];                 /* this request's claim: 128 random bits, hex */
	int ttl_ms;                     /* the claim's expiry while running, renewed by commits */
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

	if (c->bad) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = c->bad_msg;
		return;
	}
	if (c->has_id) {
		snprintf(es->ident_val_buf[es->nidents], sizeof(es->ident_val_buf[0]), "%lld",
		         (long long)c->id);
		es->ident_kind[es->nidents] = IDK_ID;
		es->ident_val[es->nidents] = es->ident_val_buf[es->nidents];
		es->ident_len[es->nidents] = strlen(es->ident_val_buf[es->nidents]);
		es->nidents++;
	}
	if (c->mobile.p != NULL) {
		n = ident_normalize_mobile(c->mobile.p, c->mobile.len, org->country_code,
		                           org->national_len, es->ident_val_buf[es->nidents],
		                           sizeof(es->ident_val_buf[0]));
		if (n < 0) {
			es->decided = 1;
			es->cust_code = 400;
			es->cust_message = "mobile is not a valid mobile number: 6 to 15 digits, optionally with spaces, +, -, ., ( and )";
			return;
		}
		es->ident_kind[es->nidents] = IDK_MOBILE;
		es->ident_val[es->nidents] = es->ident_val_buf[es->nidents];
		es->ident_len[es->nidents] = (size_t)n;
		es->nidents++;
	}
	if (c->email.p != NULL) {
		es->ident_kind[es->nidents] = IDK_EMAIL;
		es->ident_val[es->nidents] = c->email.p;
		es->ident_len[es->nidents] = c->email.len;
		es->nidents++;
	}
	if (c->external_id.p != NULL) {
		es->ident_kind[es->nidents] = IDK_EXTERNAL;
		es->ident_val[es->nidents] = c->external_id.p;
		es->ident_len[es->nidents] = c->external_id.len;
		es->nidents++;
	}
	if (es->nidents == 0) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = "no customer identifier given: send one of id, mobile, email or externalId";
	}
}

static const char *
reply_str(const redisReply *r, size_t *len)
{
	if (r == NULL || r->type != REDIS_REPLY_STRING) {
		*len = 0;
		return NULL;
	}
	*len = r->len;
	return r->str;
}

/*
 * Loads a customer from its HGETALL reply. Returns 0, or -1 when a stored membership
 * cannot be parsed (the data is then not ours to change).
 */
static int
load_customer(struct locked *lk, struct entry_state *es, const redisReply *h)
{
	size_t i;

	lk->version[0] = '\0';
	for (i = 0; i + 1 < h->elements; i += 2) {
		const redisReply *f = h->element[i], *v = h->element[i + 1];

		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (f->len > 2 && f->str[0] == 'm' && f->str[1] == ':') {
			if (rules_customer_load_slot(&lk->cust, atoi(f->str + 2), v->str, v->len) != 0)
				return -1;
		} else if (strcmp(f->str, "v") == 0) {
			snprintf(lk->version, sizeof(lk->version), "%.*s", (int)v->len, v->str);
		} else if (strcmp(f->str, "id") == 0) {
			es->stored[0] = xmemdup(v->str, v->len);
		} else if (strcmp(f->str, "mobile") == 0) {
			es->stored[1] = xmemdup(v->str, v->len);
		} else if (strcmp(f->str, "email") == 0) {
			es->stored[2] = xmemdup(v->str, v->len);
		} else if (strcmp(f->str, "externalId") == 0) {
			es->stored[3] = xmemdup(v->str, v->len);
		}
	}
	es->found = 1;
	return 0;
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

/* ---- membership ids claimed within one round ------------------------------------------ */

struct claim {
	int pid;
	const char *mid;                /* borrowed from a result that outlives the round */
	size_t len;
	int64_t cid;                    /* holder after the entry; 0: given up */
};

struct claims {
	struct claim *v;
	size_t n, cap;
};

/* The newest claim of (pid, mid) in this round overrides what the snapshot said. */
static void
claims_lookup(const struct claims *c, int pid, const char *mid, size_t len, int64_t *holder)
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
claims_set(struct claims *c, int pid, const char *mid, size_t len, int64_t cid)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 16;
		c->v = realloc(c->v, c->cap * sizeof(*c->v));
		if (c->v == NULL)
			abort();
	}
	c->v[c->n++] = (struct claim){ .pid = pid, .mid = mid, .len = len, .cid = cid };
}

static void
claims_free(struct claims *c)
{
	free(c->v);
	memset(c, 0, sizeof(*c));
}

/* ---- a store out of memory (Redis at maxmemory) ------------------------------------------ */

/*
 * A write Redis refused at maxmemory (handler_is_oom): the items say so, instead of a read
 * error or a broken key.
 */
#define OOM_ITEM_MESSAGE "the data store is out of memory (Redis maxmemory reached) and refused the change; nothing of it was applied: retry later (an operator must free memory or raise maxmemory)"

/*
 * After a commit answered BROKEN (commit.lua's one answer for a write Redis refused, a key
 * of another type or maxmemory): 1 when Redis refuses writes for memory now. The probe is a
 * write command Redis checks against maxmemory (denyoom) that changes nothing: SETRANGE of
 * an empty value leaves a missing key missing and an existing string as it is. lock_key is
 * the customer's lock key (a string or none), in the customer's slot.
 */
static int
store_refuses_writes(struct store *st, const char *lock_key)
{
	struct store_argv cmd;
	redisReply **rep = NULL;
	int oom;

	store_argv_init(&cmd);
	store_argv_add(&cmd, "SETRANGE", 8);
	store_argv_add(&cmd, lock_key, strlen(lock_key));
	store_argv_add(&cmd, "0", 1);
	store_argv_add(&cmd, "", 0);
	oom = store_pipeline(st, &cmd, 1, &rep) == 0 && rep[0] != NULL &&
	      rep[0]->type == REDIS_REPLY_ERROR && handler_is_oom(rep[0]->str);
	store_argv_free(&cmd);
	return oom;
}

/* ---- one round: begin (resolve, lock, read), rules, commit -------------------------- */

static void
add_begin_entry(struct store_argv *a, const struct entry_state *es, enum req_kind kind)
{
	size_t k;

	store_argv_addf(a, "%zu", es->nidents);
	for (k = 0; k < es->nidents; k++) {
		store_argv_add(a, idk_name[es->ident_kind[k]], strlen(idk_name[es->ident_kind[k]]));
		store_argv_add(a, es->ident_val[k], es->ident_len[k]);
	}
	store_argv_addf(a, "%zu", es->e->nitems);
	for (k = 0; k < es->e->nitems; k++) {
		const struct req_item *it = &es->e->items[k];

		if (it->program.st == F_OK)
			store_argv_add(a, it->program.s.p, it->program.s.len);
		else
			store_argv_add(a, "", 0);
		if (kind == REQ_LINK && it->mid.st == F_OK)
			store_argv_add(a, it->mid.s.p, it->mid.s.len);
		else
			store_argv_add(a, "", 0);
	}
}

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

/* Adds the commit arguments of one locked customer. */
static void
add_commit_customer(struct store_argv *a, const char *org, struct locked *lk, struct buf *scratch,
                    const char *rid, int64_t now_ms)
{
	struct rules_customer *c = &lk->cust;
	size_t i, j, k, nset = 0, ndel = 0, ncl = 0, nrel = 0, nev = 0;

	store_argv_addf(a, KEYS_CUST_FMT, org, (long long)lk->cid);
	store_argv_addf(a, KEYS_LOCK_FMT, org, (long long)lk->cid);
	store_argv_add(a, lk->version, strlen(lk->version));
	store_argv_addf(a, "%lld", (long long)lk->cid);
	store_argv_addf(a, KEYS_HIST_FMT, org, (long long)lk->cid);

	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].dirty && c->slots[i].present)
			nset++;
	store_argv_addf(a, "%zu", nset);
	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];
		size_t len;
		char *json;

		if (!s->dirty || !s->present)
			continue;
		json = rules_membership_encode(&s->m, &len);
		store_argv_addf(a, KEYS_MEMBERSHIP_FIELD_FMT, s->pid);
		store_argv_addcopy(a, json, len);
		free(json);
	}
	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].dirty && !c->slots[i].present && c->slots[i].was_present)
			ndel++;
	store_argv_addf(a, "%zu", ndel);
	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].dirty && !c->slots[i].present && c->slots[i].was_present)
			store_argv_addf(a, KEYS_MEMBERSHIP_FIELD_FMT, c->slots[i].pid);

	/*
	 * Membership-id index: every id the customer holds now (current and pending relink)
	 * that it did not hold before is claimed; every id it held and holds no more is released.
	 * The current id of a membership that had a pending relink when read is claimed again
	 * (a no-op when the index still names the customer): if Redis's clock found the relink
	 * due before ours and another customer took the id over (holds.lua), the commit answers
	 * CONFLICT instead of leaving the id held twice.
	 */
#define HOLDS(s, p, n) (((s)->present && (s)->m.v.mid && (s)->m.v.mid_len == (n) && \
                        memcmp((s)->m.v.mid, (p), (n)) == 0) || \
                       ((s)->present && (s)->m.has_relink && (s)->m.rl.mid_len == (n) && \
                        memcmp((s)->m.rl.mid, (p), (n)) == 0))
#define HELD(s, p, n) (((s)->orig_mid && (s)->orig_mid_len == (n) && \
                       memcmp((s)->orig_mid, (p), (n)) == 0) || \
                      ((s)->orig_rl_mid && (s)->orig_rl_mid_len == (n) && \
                       memcmp((s)->orig_rl_mid, (p), (n)) == 0))
	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (!s->dirty || !s->present)
			continue;
		if (!HELD(s, s->m.v.mid, s->m.v.mid_len) || s->orig_rl_mid != NULL)
			ncl++;
		if (s->m.has_relink && !HELD(s, s->m.rl.mid, s->m.rl.mid_len) &&
		    !(s->m.rl.mid_len == s->m.v.mid_len && memcmp(s->m.rl.mid, s->m.v.mid, s->m.v.mid_len) == 0))
			ncl++;
	}
	store_argv_addf(a, "%zu", ncl);
	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (!s->dirty || !s->present)
			continue;
		if (!HELD(s, s->m.v.mid, s->m.v.mid_len) || s->orig_rl_mid != NULL) {
			store_argv_addf(a, KEYS_MID_FMT, org, s->pid);
			store_argv_add(a, s->m.v.mid, s->m.v.mid_len);
		}
		if (s->m.has_relink && !HELD(s, s->m.rl.mid, s->m.rl.mid_len) &&
		    !(s->m.rl.mid_len == s->m.v.mid_len && memcmp(s->m.rl.mid, s->m.v.mid, s->m.v.mid_len) == 0)) {
			store_argv_addf(a, KEYS_MID_FMT, org, s->pid);
			store_argv_add(a, s->m.rl.mid, s->m.rl.mid_len);
		}
	}
	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (!s->dirty)
			continue;
		if (s->orig_mid && !HOLDS(s, s->orig_mid, s->orig_mid_len))
			nrel++;
		if (s->orig_rl_mid && !HOLDS(s, s->orig_rl_mid, s->orig_rl_mid_len) &&
		    !(s->orig_mid && s->orig_mid_len == s->orig_rl_mid_len &&
		      memcmp(s->orig_mid, s->orig_rl_mid, s->orig_mid_len) == 0))
			nrel++;
	}
	store_argv_addf(a, "%zu", nrel);
	for (i = 0; i < c->nslots; i++) {
		struct rules_slot *s = &c->slots[i];

		if (!s->dirty)
			continue;
		if (s->orig_mid && !HOLDS(s, s->orig_mid, s->orig_mid_len)) {
			store_argv_addf(a, KEYS_MID_FMT, org, s->pid);
			store_argv_add(a, s->orig_mid, s->orig_mid_len);
		}
		if (s->orig_rl_mid && !HOLDS(s, s->orig_rl_mid, s->orig_rl_mid_len) &&
		    !(s->orig_mid && s->orig_mid_len == s->orig_rl_mid_len &&
		      memcmp(s->orig_mid, s->orig_rl_mid, s->orig_mid_len) == 0)) {
			store_argv_addf(a, KEYS_MID_FMT, org, s->pid);
			store_argv_add(a, s->orig_rl_mid, s->orig_rl_mid_len);
		}
	}
#undef HOLDS
#undef HELD

	/* History and change feed: one event per applied item, in request order. */
	for (j = 0; j < lk->nentries; j++)
		for (k = 0; k < lk->entries[j]->e->nitems; k++)
			if (lk->entries[j]->results[k].code == 200)
				nev++;
	store_argv_addf(a, "%zu", nev);
	for (j = 0; j < lk->nentries; j++) {
		struct entry_state *e = lk->entries[j];

		for (k = 0; k < e->e->nitems; k++) {
			if (e->results[k].code != 200)
				continue;
			buf_reset(scratch);
			event_json(scratch, &e->results[k], &e->e->items[k], lk->cid, rid, now_ms);
			store_argv_add(a, rules_event_name[e->results[k].event],
			               strlen(rules_event_name[e->results[k].event]));
			store_argv_addcopy(a, scratch->p, scratch->len);
		}
	}
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
 * (maybe_ran 0) it did not run: LOST_NOT_APPLIED. Otherwise resolve.lua finds out, on a
 * new connection when the old one broke, within one --redis-timeout-ms, customer by
 * customer: applied (our token in the customer's `w`), not applied (and fenced from now
 * on: resolve.lua deletes a lock still ours, so a commit still queued on the dead
 * connection finds no token), or unknown; a resolution that fails is unknown too
 * (docs/CONSISTENCY.md "A commit whose reply is lost").
 */
static void
commit_resolve(struct store *st, const char *org, const char *token, struct locked *locks,
               size_t nl, int maybe_ran)
{
	struct store_argv a;
	redisReply *r = NULL;
	size_t k;

	if (maybe_ran) {
		store_argv_init(&a);
		store_argv_presize(&a, 2 + 3 * nl, 32 + 64 * nl);
		store_argv_add(&a, token, strlen(token));
		store_argv_addf(&a, "%zu", nl);
		for (k = 0; k < nl; k++) {
			store_argv_addf(&a, KEYS_CUST_FMT, org, (long long)locks[k].cid);
			store_argv_addf(&a, KEYS_LOCK_FMT, org, (long long)locks[k].cid);
			store_argv_add(&a, locks[k].version, strlen(locks[k].version));
		}
		r = store_resolve(st, &a);
		store_argv_free(&a);
		if (r != NULL && (r->type != REDIS_REPLY_ARRAY || r->elements != nl))
			r = NULL;
	}
	for (k = 0; k < nl; k++) {
		const redisReply *e = r != NULL ? r->element[k] : NULL;
		const char *res = e != NULL && e->type == REDIS_REPLY_STRING ? e->str : "";

		if (!maybe_ran) {
			locks[k].lost = LOST_NOT_APPLIED;
			metrics_in_doubt(MI_NOT_APPLIED);
		} else if (strcmp(res, "APPLIED") == 0) {
			locks[k].lost = LOST_APPLIED;
			metrics_in_doubt(MI_APPLIED);
		} else if (strcmp(res, "NOT_APPLIED") == 0) {
			locks[k].lost = LOST_NOT_APPLIED;
			metrics_in_doubt(MI_NOT_APPLIED);
		} else {
			locks[k].lost = LOST_UNKNOWN;
			metrics_in_doubt(r != NULL ? MI_UNKNOWN : MI_FAILED);
		}
	}
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
	struct store_argv a;
	redisReply *rep = NULL, *crep = NULL;
	struct entry_state **pend;
	struct locked *locks;
	size_t np = 0, nl = 0, i, k;
	struct rules_program *progs = NULL;
	struct rules_item_ctx *ctx = NULL;
	struct buf scratch;
	struct claims claims = { 0 };
	int rc = -1, oom_probe = 0;     /* after a BROKEN commit: 1 out of memory, -1 not */

	pend = calloc(n, sizeof(*pend));
	locks = calloc(n, sizeof(*locks));
	if (pend == NULL || locks == NULL)
		abort();
	for (i = 0; i < n; i++)
		if (!es[i].decided)
			pend[np++] = &es[i];

	store_argv_init(&a);
	store_argv_presize(&a, 8 + 8 * np, 64 + 48 * np);
	store_argv_add(&a, org->org, strlen(org->org));
	store_argv_add(&a, token, strlen(token));
	store_argv_addf(&a, "%d", cfg->lock_ttl_ms);
	store_argv_addf(&a, KEYS_RATE_FMT, org->org, org->cred);
	store_argv_addf(&a, "%d", count_rate ? cfg->rate_limit : 0);
	store_argv_addf(&a, "%zu", np);
	for (i = 0; i < np; i++)
		add_begin_entry(&a, pend[i], kind);
	rep = store_eval(st, STORE_BEGIN, &a);
	store_argv_free(&a);
	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "LIMITED") == 0) {
		*limited = atoi(rep->element[1]->str);
		if (*limited < 1)
			*limited = 1;
		rc = 0;
		goto out;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != np)
		goto out;

	/* Customers, in entry order; entries of one customer share its state. */
	for (i = 0; i < np; i++) {
		redisReply *r = rep->element[i];
		const char *status = r->element[0]->str;
		struct entry_state *e = pend[i];

		if (strcmp(status, "NOTFOUND") == 0) {
			e->decided = 1;
			e->cust_code = 8015;
		} else if (strcmp(status, "MISMATCH") == 0) {
			e->decided = 1;
			e->cust_code = 8016;
		} else if (strcmp(status, "ERROR") == 0) {
			e->decided = 1;
			e->cust_code = 1000;
			entry_fail_items(e, 2001, r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING &&
			                 handler_is_oom(r->element[1]->str) ? OOM_ITEM_MESSAGE :
			                 "this customer's stored data could not be read; nothing was applied");
		} else if (strcmp(status, "BUSY") == 0) {
			e->cid = strtoll(r->element[1]->str, NULL, 10);
		} else if (strcmp(status, "OK") == 0) {
			struct locked *lk = &locks[nl++];

			lk->cid = e->cid = strtoll(r->element[1]->str, NULL, 10);
			lk->cust.cid = lk->cid;
			lk->entries = calloc(n, sizeof(*lk->entries));
			if (lk->entries == NULL)
				abort();
			lk->entries[lk->nentries++] = e;
			if (load_customer(lk, e, r->element[2]) != 0)
				lk->outcome = LOCK_UNREADABLE;
		} else if (strcmp(status, "DUP") == 0) {
			e->cid = strtoll(r->element[1]->str, NULL, 10);
			for (k = 0; k < nl; k++) {
				if (locks[k].cid == e->cid) {
					locks[k].entries[locks[k].nentries++] = e;
					copy_stored(e, locks[k].entries[0]);
					break;
				}
			}
		}
	}

	/*
	 * The rules, entries in request order (also across customers). Membership ids claimed
	 * or given up by earlier entries of this round are tracked in claims, so that a later
	 * entry sees them in the order of SPEC §4.1 (2101 before the tier checks) and the
	 * earlier entry wins, as in a serial execution of the request.
	 */
	for (i = 0; i < np; i++) {
		struct entry_state *e = pend[i];
		redisReply *r = rep->element[i];
		struct locked *lk = NULL;
		size_t it, j;

		for (k = 0; k < nl && lk == NULL; k++)
			for (j = 0; j < locks[k].nentries; j++)
				if (locks[k].entries[j] == e)
					lk = &locks[k];
		if (lk == NULL)
			continue;
		e->decided = 1;
		e->cust_code = 1000;
		if (lk->outcome != LOCK_OK)
			continue;
		progs = calloc(e->e->nitems, sizeof(*progs));
		ctx = calloc(e->e->nitems, sizeof(*ctx));
		if (progs == NULL || ctx == NULL)
			abort();
		for (it = 0; it < e->e->nitems; it++) {
			const struct req_item *item = &e->e->items[it];
			size_t dlen = 0;
			const char *def = reply_str(r->element[3]->element[it], &dlen);
			const redisReply *h = r->element[4]->element[it];

			if (def != NULL && progcache_parse(def, dlen, &progs[it]) != 0)
				progs[it].found = 0;
			if (h->type == REDIS_REPLY_STRING)
				ctx[it].mid_holder = strtoll(h->str, NULL, 10);
			if (progs[it].found && item->mid.st == F_OK)
				claims_lookup(&claims, progs[it].pid, item->mid.s.p, item->mid.s.len,
				              &ctx[it].mid_holder);
			ctx[it].prog = &progs[it];
		}
		rules_apply(kind, &lk->cust, e->e, ctx, now_ms, e->results);
		for (it = 0; it < e->e->nitems; it++) {
			const struct rules_result *res = &e->results[it];

			if (res->code == 200 && (res->event == EV_LINK || res->event == EV_RELINK_SCHEDULED))
				claims_set(&claims, progs[it].pid, res->after.mid, res->after.mid_len, lk->cid);
			else if (res->code == 200 && res->event == EV_DELINK)
				claims_set(&claims, progs[it].pid, res->before.mid, res->before.mid_len, 0);
			rules_program_free(&progs[it]);
		}
		free(progs);
		free(ctx);
		progs = NULL;
		ctx = NULL;
	}
	claims_free(&claims);

	/* The commit: every locked customer, changed or not (its lock is released). */
	store_argv_init(&a);
	store_argv_presize(&a, 8 + 24 * nl, 256 + 768 * nl);
	store_argv_add(&a, token, strlen(token));
	store_argv_addf(&a, "%zu", nl);
	store_argv_addf(&a, "%d", cfg->history_max);
	store_argv_addf(&a, KEYS_FEED_FMT, org->org);
	store_argv_addf(&a, "%d", cfg->feed_max);
	/* The events are written into one scratch buffer, then copied into the argv's arena. */
	buf_init(&scratch, (size_t)-1);
	buf_presize(&scratch, 2048);
	for (k = 0; k < nl; k++) {
		if (locks[k].outcome == LOCK_UNREADABLE) {
			/* unreadable stored data: release the lock, change nothing */
			struct rules_customer empty = { .cid = locks[k].cid };
			struct rules_customer keep = locks[k].cust;

			locks[k].cust = empty;
			for (i = 0; i < locks[k].nentries; i++)
				entry_fail_items(locks[k].entries[i], 2001, "the customer's stored data could not be read; nothing was applied");
			add_commit_customer(&a, org->org, &locks[k], &scratch, rid, now_ms);
			locks[k].cust = keep;
		} else {
			add_commit_customer(&a, org->org, &locks[k], &scratch, rid, now_ms);
		}
	}
	if (ic != NULL) {
		store_argv_add(&a, ic->key, strlen(ic->key));
		store_argv_add(&a, ic->token, strlen(ic->token));
		store_argv_addf(&a, "%d", ic->ttl_ms);
	} else {
		store_argv_add(&a, "", 0);
		store_argv_add(&a, "", 0);
		store_argv_add(&a, "", 0);
	}
	crep = nl > 0 ? store_eval(st, STORE_COMMIT, &a) : NULL;
	store_argv_free(&a);
	buf_free(&scratch);
	if (nl > 0 && (crep == NULL || crep->type != REDIS_REPLY_ARRAY || crep->elements != nl))
		commit_resolve(st, org->org, token, locks, nl, crep != NULL || store_maybe_ran(st));

	for (k = 0; k < nl; k++) {
		struct locked *lk = &locks[k];
		const char *res = NULL;
		size_t j;

		if (lk->lost == LOST_NO && crep != NULL && k < crep->elements)
			res = crep->element[k]->str;
		for (j = 0; j < lk->nentries; j++) {
			struct entry_state *e = lk->entries[j];

			if (!e->decided)
				continue;
			if (lk->outcome == LOCK_UNREADABLE) {
				entry_fail_items(e, 2001, "the customer's stored data could not be read; nothing was applied");
			} else if (lk->lost == LOST_NOT_APPLIED) {
				fail_applied_items(e, 2001, "the change could not be stored (the store failed during the commit); nothing of it was applied");
			} else if (lk->lost == LOST_UNKNOWN) {
				fail_applied_items(e, 2011, "the store failed while committing and partnerd could not find out in time whether the change applied: read the customer's memberships or history, or retry with the same Idempotency-Key");
			} else if (lk->lost == LOST_APPLIED || res == NULL) {
				/* applied: the items stand as decided */
			} else if (strcmp(res, "BROKEN") == 0) {
				if (oom_probe == 0) {
					char lock_key[160];

					snprintf(lock_key, sizeof(lock_key), KEYS_LOCK_FMT, org->org, (long long)lk->cid);
					oom_probe = store_refuses_writes(st, lock_key) ? 1 : -1;
				}
				entry_fail_items(e, 2001, oom_probe > 0 ? OOM_ITEM_MESSAGE :
				                 "the change could not be stored (a stored key has an unexpected type); nothing was applied");
			} else if (strcmp(res, "FENCED") == 0) {
				size_t it;

				if (j == 0)
					metrics_fenced();
				for (it = 0; it < e->e->nitems; it++)
					if (e->results[it].code == 200) {
						rules_result_free(&e->results[it]);
						e->results[it].code = 2010;
						e->results[it].message = "the customer's lock expired before the change was stored; nothing was applied: retry";
					}
			} else if (strcmp(res, "IDEM_FENCED") == 0) {
				size_t it;

				if (ic != NULL)
					ic->lost = 1;
				for (it = 0; it < e->e->nitems; it++)
					if (e->results[it].code == 200) {
						rules_result_free(&e->results[it]);
						e->results[it].code = 2001;
						e->results[it].message = IDEM_FENCED_ITEM_MSG;
					}
			} else if (strcmp(res, "CONFLICT") == 0) {
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
	}
	rc = 0;
out:
	/* rep and crep are the store's, released when the request is done. */
	for (k = 0; k < nl; k++) {
		rules_customer_free(&locks[k].cust);
		free(locks[k].entries);
	}
	free(locks);
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
	unsigned char h[16], fp[32], rnd[16];
	char hex[33], fphex[65];
	crypto_generichash_state gs;
	struct store_argv a;
	redisReply *rep;
	enum idem_state result = IDEM_ANSWERED;

	if (r->idempotency_key == NULL)
		return IDEM_NONE;
	crypto_generichash(h, sizeof(h), (const unsigned char *)r->idempotency_key,
	                   strlen(r->idempotency_key), NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(ic->key, sizeof(ic->key), KEYS_IDEM_FMT, org, hex);
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(ic->token, sizeof(ic->token), rnd, sizeof(rnd));
	ic->ttl_ms = IDEM_RUNNING_TTL_MS + cfg->lock_wait_ms;
	ic->lost = 0;
	crypto_generichash_init(&gs, NULL, 0, sizeof(fp));
	crypto_generichash_update(&gs, (const unsigned char *)route, strlen(route) + 1);
	crypto_generichash_update(&gs, (const unsigned char *)r->body, r->body_len);
	crypto_generichash_final(&gs, fp, sizeof(fp));
	sodium_bin2hex(fphex, sizeof(fphex), fp, sizeof(fp));

	store_argv_init(&a);
	store_argv_add(&a, "claim", 5);
	store_argv_add(&a, ic->key, strlen(ic->key));
	store_argv_add(&a, fphex, 64);
	store_argv_add(&a, ic->token, strlen(ic->token));
	store_argv_addf(&a, "%d", ic->ttl_ms);
	rep = store_eval(st, STORE_IDEM, &a);
	store_argv_free(&a);
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
		handler_store_unavailable(st, r, out, "the data store is unavailable: nothing was applied; retry shortly");
	} else if (strcmp(rep->element[0]->str, "NEW") == 0) {
		result = IDEM_CLAIMED;
	} else if (strcmp(rep->element[0]->str, "MISMATCH") == 0) {
		out->status = 422;
		http_error(r, 422, 422, "this Idempotency-Key was already used with another request body or route", NULL);
	} else if (strcmp(rep->element[0]->str, "RUNNING") == 0) {
		out->status = 409;
		http_error(r, 409, 409, "the first request with this Idempotency-Key is still being processed: retry shortly",
		           "Retry-After: 1\r\n");
	} else if (rep->elements == 3 && rep->element[1]->type == REDIS_REPLY_STRING &&
	           rep->element[2]->type == REDIS_REPLY_STRING) {
		out->status = atoi(rep->element[1]->str);
		http_respond(r, out->status, "Idempotent-Replayed: true\r\n", rep->element[2]->str,
		             rep->element[2]->len);
	} else {
		out->status = 503;
		http_error(r, 503, 503, "the stored response of this Idempotency-Key is unreadable; retry shortly",
		           "Retry-After: 1\r\n");
	}
	return result;
}

/*
 * Stores the processed request's response for replays (status 200), or frees the claim
 * (any other status) so that a repeat is processed anew; both only while the claim is
 * still this request's (idem.lua "finish"): a request whose claim expired or was taken
 * over stores nothing. The reply is not looked at: if this fails, the claim expires.
 */
static void
idem_finish(struct store *st, const struct idem_claim *ic, int status, const char *body, size_t len)
{
	struct store_argv a;

	store_argv_init(&a);
	store_argv_add(&a, "finish", 6);
	store_argv_add(&a, ic->key, strlen(ic->key));
	store_argv_add(&a, ic->token, strlen(ic->token));
	store_argv_addf(&a, "%d", status);
	store_argv_add(&a, body != NULL ? body : "", body != NULL ? len : 0);
	store_argv_addf(&a, "%lld", IDEM_DONE_TTL_MS);
	(void)store_eval(st, STORE_IDEM, &a);
	store_argv_free(&a);
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
	 * nothing (no earlier round committed a change), it answers 409 as a request that
	 * found the key taken would: the repeat that holds the key has the outcome.
	 */
	if (idem == IDEM_CLAIMED && ic.lost) {
		int applied = 0;

		for (i = 0; i < req.nentries; i++)
			for (k = 0; k < req.entries[i].nitems; k++)
				if (es[i].results[k].code == 200)
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
