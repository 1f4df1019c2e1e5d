/*
 * store_write: the write path's store (see store_write.h): script arguments, key names and
 * reply shapes of begin.lua, commit.lua, resolve.lua and idem.lua.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "layout.h"
#include "store_write.h"
#include "xmalloc.h"

static const char *const ident_name[] = { "id", "mobile", "email", "externalId" };

/*
 * A change-feed partition's length bound: --feed-max spread over the LAYOUT_PARTS
 * partitions of an org (rounded up), at least FEED_PART_MIN entries so that a consumer of
 * a partition still finds its recent entries when --feed-max is small. XADD trims about
 * that (MAXLEN ~), so an org's feed holds at most about LAYOUT_PARTS x this, plus Redis's
 * trimming slack per partition (docs/CHANGE-FEED.md "Sizes").
 */
#define FEED_PART_MIN 16

static int
feed_part_max(int feed_max)
{
	int n = (feed_max + LAYOUT_PARTS - 1) / LAYOUT_PARTS;

	return n < FEED_PART_MIN ? FEED_PART_MIN : n;
}

/*
 * Redis refuses a write that needs memory beyond maxmemory with "-OOM command not allowed
 * when used memory > 'maxmemory'" (a script gets it from its first such write).
 */
#define OOM_TEXT "OOM command not allowed"

static int
is_oom(const char *text)
{
	return text != NULL && strstr(text, OOM_TEXT) != NULL;
}

int
store_out_of_memory(const struct store *st)
{
	return is_oom(store_error(st));
}

/*
 * The probe is a write command Redis checks against maxmemory (denyoom) that changes
 * nothing: SETRANGE of an empty value leaves a missing key missing and an existing string
 * as it is. The key is the customer's lock key (a string or none), in the customer's slot.
 */
int
store_refuses_writes(struct store *st, const char *org, int64_t cid)
{
	struct store_argv cmd;
	redisReply **rep = NULL;
	char lock_key[160];
	int oom;

	snprintf(lock_key, sizeof(lock_key), KEYS_LOCK_FMT, layout_tag_of_cid(cid), org, (long long)cid);
	store_argv_init(&cmd);
	store_argv_add(&cmd, "SETRANGE", 8);
	store_argv_add(&cmd, lock_key, strlen(lock_key));
	store_argv_add(&cmd, "0", 1);
	store_argv_add(&cmd, "", 0);
	oom = store_pipeline(st, &cmd, 1, &rep) == 0 && rep[0] != NULL &&
	      rep[0]->type == REDIS_REPLY_ERROR && is_oom(rep[0]->str);
	store_argv_free(&cmd);
	return oom;
}

/* ---- begin ----------------------------------------------------------------------------- */

static void
add_begin_entry(struct store_argv *a, const struct store_begin_in *in, enum req_kind kind)
{
	size_t k;

	store_argv_addf(a, "%zu", in->nidents);
	for (k = 0; k < in->nidents; k++) {
		const char *tag = in->kind[k] == STORE_IDENT_ID ? "" : layout_tag_of(in->val[k], in->len[k]);

		store_argv_add(a, ident_name[in->kind[k]], strlen(ident_name[in->kind[k]]));
		store_argv_add(a, in->val[k], in->len[k]);
		store_argv_add(a, tag, strlen(tag));
	}
	store_argv_addf(a, "%zu", in->e->nitems);
	for (k = 0; k < in->e->nitems; k++) {
		const struct req_item *it = &in->e->items[k];

		if (it->program.st == F_OK)
			store_argv_add(a, it->program.s.p, it->program.s.len);
		else
			store_argv_add(a, "", 0);
		if (kind == REQ_LINK && it->mid.st == F_OK) {
			const char *tag = layout_tag_of(it->mid.s.p, it->mid.s.len);

			store_argv_add(a, it->mid.s.p, it->mid.s.len);
			store_argv_add(a, tag, strlen(tag));
		} else {
			store_argv_add(a, "", 0);
			store_argv_add(a, "", 0);
		}
	}
}

/*
 * Loads a customer from its HGETALL reply; stops at a stored membership that cannot be
 * parsed (bad_snapshot: the data is then not ours to change).
 */
static void
load_snapshot(struct store_begin_out *o, const redisReply *h)
{
	static const char *const field[4] = { "id", "mobile", "email", "externalId" };
	size_t i;
	int k;

	o->version[0] = '\0';
	o->cust.cid = o->cid;
	for (i = 0; i + 1 < h->elements; i += 2) {
		const redisReply *f = h->element[i], *v = h->element[i + 1];

		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (f->len > 2 && f->str[0] == 'm' && f->str[1] == ':') {
			if (rules_customer_load_slot(&o->cust, atoi(f->str + 2), v->str, v->len) != 0) {
				o->bad_snapshot = 1;
				return;
			}
		} else if (strcmp(f->str, "v") == 0) {
			snprintf(o->version, sizeof(o->version), "%.*s", (int)v->len, v->str);
		} else {
			for (k = 0; k < 4; k++)
				if (strcmp(f->str, field[k]) == 0)
					o->ident[k] = xmemdup(v->str, v->len);
		}
	}
}

/* The program definitions and membership-id holders of an entry's items. */
static void
load_items(struct store_item_snap *items, size_t nitems, const redisReply *defs, const redisReply *holders)
{
	size_t it;

	for (it = 0; it < nitems; it++) {
		const redisReply *d = defs->element[it], *h = holders->element[it];

		if (d->type == REDIS_REPLY_STRING) {
			items[it].def = d->str;
			items[it].def_len = d->len;
		}
		if (h->type == REDIS_REPLY_STRING)
			items[it].mid_holder = strtoll(h->str, NULL, 10);
	}
}

int
store_begin(struct store *st, const struct store_begin_req *rq, struct store_begin_res *res)
{
	struct store_argv a;
	redisReply *rep;
	size_t i, nitems = 0;

	memset(res, 0, sizeof(*res));
	store_argv_init(&a);
	store_argv_presize(&a, 8 + 8 * rq->n, 64 + 48 * rq->n);
	store_argv_add(&a, rq->org, strlen(rq->org));
	store_argv_add(&a, rq->token, strlen(rq->token));
	store_argv_addf(&a, "%d", rq->lock_ttl_ms);
	store_argv_addf(&a, KEYS_RATE_FMT, layout_tag_of(rq->cred, strlen(rq->cred)), rq->org, rq->cred);
	store_argv_addf(&a, "%d", rq->rate_limit);
	store_argv_addf(&a, "%zu", rq->n);
	for (i = 0; i < rq->n; i++)
		add_begin_entry(&a, rq->entries[i], rq->kind);
	rep = store_eval(st, STORE_BEGIN, &a);
	store_argv_free(&a);
	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "LIMITED") == 0) {
		res->limited = atoi(rep->element[1]->str);
		if (res->limited < 1)
			res->limited = 1;
		return 0;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != rq->n)
		return -1;

	for (i = 0; i < rq->n; i++)
		nitems += rq->entries[i]->e->nitems;
	res->e = xcalloc(rq->n, sizeof(*res->e));
	res->items_block = xcalloc(nitems, sizeof(*res->items_block));
	for (i = 0, nitems = 0; i < rq->n; i++) {
		const redisReply *r = rep->element[i];
		const char *status = r->element[0]->str;
		struct store_begin_out *o = &res->e[i];
		size_t ni = rq->entries[i]->e->nitems;

		o->items = &res->items_block[nitems];
		nitems += ni;
		if (strcmp(status, "NOTFOUND") == 0) {
			o->status = STORE_BEGIN_NOT_FOUND;
		} else if (strcmp(status, "MISMATCH") == 0) {
			o->status = STORE_BEGIN_MISMATCH;
		} else if (strcmp(status, "ERROR") == 0) {
			o->status = STORE_BEGIN_UNREADABLE;
			o->oom = r->elements > 1 && r->element[1]->type == REDIS_REPLY_STRING &&
			         is_oom(r->element[1]->str);
		} else if (strcmp(status, "BUSY") == 0) {
			o->status = STORE_BEGIN_BUSY;
			o->cid = strtoll(r->element[1]->str, NULL, 10);
		} else if (strcmp(status, "OK") == 0) {
			o->status = STORE_BEGIN_LOCKED;
			o->cid = strtoll(r->element[1]->str, NULL, 10);
			load_snapshot(o, r->element[2]);
			load_items(o->items, ni, r->element[3], r->element[4]);
		} else if (strcmp(status, "DUP") == 0) {
			o->status = STORE_BEGIN_DUP;
			o->cid = strtoll(r->element[1]->str, NULL, 10);
			load_items(o->items, ni, r->element[3], r->element[4]);
		} else {
			o->status = STORE_BEGIN_UNREADABLE;
		}
	}
	return 0;
}

void
store_begin_res_free(struct store_begin_res *res)
{
	free(res->e);
	free(res->items_block);
	memset(res, 0, sizeof(*res));
}

/* ---- commit ---------------------------------------------------------------------------- */

static void
add_mid_refs(struct store_argv *a, const char *org, const struct rules_mid_ref *r, size_t n)
{
	size_t j;

	for (j = 0; j < n; j++) {
		store_argv_addf(a, KEYS_MID_FMT, layout_tag_of(r[j].mid, r[j].len), org, r[j].pid);
		store_argv_add(a, r[j].mid, r[j].len);
	}
}

/* Adds the commit arguments of one customer (commit.lua's layout). */
static void
add_commit_customer(struct store_argv *a, const struct store_commit_req *rq,
                    const struct store_commit_cust *cc)
{
	const struct rules_customer *c = cc->cust;
	struct rules_slot_change ch;
	size_t i, n;
	int pass;

	const char *tag = layout_tag_of_cid(cc->cid);

	store_argv_addf(a, KEYS_CUST_FMT, tag, rq->org, (long long)cc->cid);
	store_argv_addf(a, KEYS_LOCK_FMT, tag, rq->org, (long long)cc->cid);
	store_argv_add(a, cc->version, strlen(cc->version));
	store_argv_addf(a, "%lld", (long long)cc->cid);
	store_argv_addf(a, KEYS_HIST_FMT, tag, rq->org, (long long)cc->cid);
	store_argv_addf(a, KEYS_FEED_FMT, tag, rq->org);

	/* Four sections, each a count then its elements: set, del, claim, release. */
	for (pass = 0; pass < 4; pass++) {
		for (n = 0, i = 0; i < c->nslots; i++) {
			rules_slot_change(&c->slots[i], &ch);
			n += pass == 0 ? (size_t)ch.set : pass == 1 ? (size_t)ch.del :
			     pass == 2 ? ch.nclaim : ch.nrelease;
		}
		store_argv_addf(a, "%zu", n);
		for (i = 0; i < c->nslots && n > 0; i++) {
			const struct rules_slot *s = &c->slots[i];

			rules_slot_change(s, &ch);
			if (pass == 0 && ch.set) {
				size_t len;
				char *val = rules_membership_encode(&s->m, &len);

				store_argv_addf(a, KEYS_MEMBERSHIP_FIELD_FMT, s->pid);
				store_argv_addcopy(a, val, len);
				free(val);
			} else if (pass == 1 && ch.del) {
				store_argv_addf(a, KEYS_MEMBERSHIP_FIELD_FMT, s->pid);
			} else if (pass == 2) {
				add_mid_refs(a, rq->org, ch.claim, ch.nclaim);
			} else if (pass == 3) {
				add_mid_refs(a, rq->org, ch.release, ch.nrelease);
			}
		}
	}

	/* History and change feed: one event per applied item, in request order. */
	store_argv_addf(a, "%zu", cc->nevents);
	for (i = 0; i < cc->nevents; i++) {
		store_argv_add(a, cc->events[i].type, strlen(cc->events[i].type));
		store_argv_add(a, rq->event_text + cc->events[i].off, cc->events[i].len);
	}
}

void
store_commit(struct store *st, const struct store_commit_req *rq, enum store_commit_status *out,
             int *maybe_ran)
{
	static const struct { const char *s; enum store_commit_status st; } statuses[] = {
		{ "FENCED", STORE_COMMIT_FENCED }, { "CONFLICT", STORE_COMMIT_CONFLICT },
		{ "BROKEN", STORE_COMMIT_BROKEN }, { "IDEM_FENCED", STORE_COMMIT_IDEM_FENCED },
	};
	struct store_argv a;
	redisReply *crep;
	size_t k, j;

	store_argv_init(&a);
	store_argv_presize(&a, 8 + 24 * rq->n, 256 + 768 * rq->n);
	store_argv_add(&a, rq->token, strlen(rq->token));
	store_argv_addf(&a, "%zu", rq->n);
	store_argv_addf(&a, "%d", rq->history_max);
	store_argv_addf(&a, "%d", feed_part_max(rq->feed_max));
	store_argv_add(&a, "0", 1);     /* keep_locks */
	for (k = 0; k < rq->n; k++)
		add_commit_customer(&a, rq, &rq->c[k]);
	if (rq->idem != NULL) {
		store_argv_add(&a, rq->idem->ref, strlen(rq->idem->ref));
		store_argv_add(&a, rq->idem->token, strlen(rq->idem->token));
		store_argv_addf(&a, "%d", rq->idem->ttl_ms);
	} else {
		store_argv_add(&a, "", 0);
		store_argv_add(&a, "", 0);
		store_argv_add(&a, "", 0);
	}
	crep = store_eval(st, STORE_COMMIT, &a);
	store_argv_free(&a);
	*maybe_ran = crep != NULL || store_maybe_ran(st);
	for (k = 0; k < rq->n; k++) {
		const redisReply *e;

		out[k] = STORE_COMMIT_LOST;
		if (crep == NULL || crep->type != REDIS_REPLY_ARRAY || crep->elements != rq->n)
			continue;
		/* An answer other than those below: applied. */
		out[k] = STORE_COMMIT_OK;
		e = crep->element[k];
		for (j = 0; e->str != NULL && j < sizeof(statuses) / sizeof(statuses[0]); j++)
			if (strcmp(e->str, statuses[j].s) == 0)
				out[k] = statuses[j].st;
	}
}

void
store_commit_resolve(struct store *st, const char *org, const char *token,
                     const struct store_commit_cust *c, size_t n, enum store_resolved *out)
{
	struct store_argv a;
	redisReply *r;
	size_t k;

	store_argv_init(&a);
	store_argv_presize(&a, 2 + 3 * n, 32 + 64 * n);
	store_argv_add(&a, token, strlen(token));
	store_argv_addf(&a, "%zu", n);
	for (k = 0; k < n; k++) {
		const char *tag = layout_tag_of_cid(c[k].cid);

		store_argv_addf(&a, KEYS_CUST_FMT, tag, org, (long long)c[k].cid);
		store_argv_addf(&a, KEYS_LOCK_FMT, tag, org, (long long)c[k].cid);
		store_argv_add(&a, c[k].version, strlen(c[k].version));
	}
	r = store_resolve(st, &a);
	store_argv_free(&a);
	if (r != NULL && (r->type != REDIS_REPLY_ARRAY || r->elements != n))
		r = NULL;
	for (k = 0; k < n; k++) {
		const redisReply *e = r != NULL ? r->element[k] : NULL;
		const char *res = e != NULL && e->type == REDIS_REPLY_STRING ? e->str : "";

		if (strcmp(res, "APPLIED") == 0)
			out[k] = STORE_RESOLVED_APPLIED;
		else if (strcmp(res, "NOT_APPLIED") == 0)
			out[k] = STORE_RESOLVED_NOT_APPLIED;
		else
			out[k] = r != NULL ? STORE_RESOLVED_UNKNOWN : STORE_RESOLVED_FAILED;
	}
}

/* ---- Idempotency-Key ------------------------------------------------------------------- */

enum store_idem_state
store_idem_claim(struct store *st, const char *org, const char *key, const char *route,
                 const char *body, size_t body_len, int ttl_ms, struct store_idem *ic,
                 int *status, const char **resp, size_t *resp_len)
{
	unsigned char h[16], fp[32], rnd[16];
	char hex[33], fphex[65];
	crypto_generichash_state gs;
	struct store_argv a;
	redisReply *rep;

	crypto_generichash(h, sizeof(h), (const unsigned char *)key, strlen(key), NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(ic->ref, sizeof(ic->ref), KEYS_IDEM_FMT, layout_tag_of(hex, strlen(hex)), org, hex);
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(ic->token, sizeof(ic->token), rnd, sizeof(rnd));
	ic->ttl_ms = ttl_ms;
	crypto_generichash_init(&gs, NULL, 0, sizeof(fp));
	crypto_generichash_update(&gs, (const unsigned char *)route, strlen(route) + 1);
	crypto_generichash_update(&gs, (const unsigned char *)body, body_len);
	crypto_generichash_final(&gs, fp, sizeof(fp));
	sodium_bin2hex(fphex, sizeof(fphex), fp, sizeof(fp));

	store_argv_init(&a);
	store_argv_add(&a, "claim", 5);
	store_argv_add(&a, ic->ref, strlen(ic->ref));
	store_argv_add(&a, fphex, 64);
	store_argv_add(&a, ic->token, strlen(ic->token));
	store_argv_addf(&a, "%d", ic->ttl_ms);
	rep = store_eval(st, STORE_IDEM, &a);
	store_argv_free(&a);
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 1)
		return STORE_IDEM_ERROR;
	if (strcmp(rep->element[0]->str, "NEW") == 0)
		return STORE_IDEM_NEW;
	if (strcmp(rep->element[0]->str, "MISMATCH") == 0)
		return STORE_IDEM_MISMATCH;
	if (strcmp(rep->element[0]->str, "RUNNING") == 0)
		return STORE_IDEM_RUNNING;
	if (rep->elements == 3 && rep->element[1]->type == REDIS_REPLY_STRING &&
	    rep->element[2]->type == REDIS_REPLY_STRING) {
		*status = atoi(rep->element[1]->str);
		*resp = rep->element[2]->str;
		*resp_len = rep->element[2]->len;
		return STORE_IDEM_DONE;
	}
	return STORE_IDEM_UNREADABLE;
}

void
store_idem_finish(struct store *st, const struct store_idem *ic, int status, const char *body,
                  size_t len, long long done_ttl_ms)
{
	struct store_argv a;

	store_argv_init(&a);
	store_argv_add(&a, "finish", 6);
	store_argv_add(&a, ic->ref, strlen(ic->ref));
	store_argv_add(&a, ic->token, strlen(ic->token));
	store_argv_addf(&a, "%d", status);
	store_argv_add(&a, body != NULL ? body : "", body != NULL ? len : 0);
	store_argv_addf(&a, "%lld", done_ttl_ms);
	(void)store_eval(st, STORE_IDEM, &a);
	store_argv_free(&a);
}
