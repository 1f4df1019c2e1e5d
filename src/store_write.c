/*
 * store_write: the write path's store (see store_write.h): script arguments, key names and
 * reply shapes of begin.lua, commit.lua, resolve.lua and idem.lua.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "clock.h"
#include "keys.h"
#include "layout.h"
#include "store_memo.h"
#include "store_round.h"
#include "store_write.h"
#include "testfault.h"
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
 * as it is. The key is the customer's layout-2 lock key (keys.h: none in layout-3 data), a
 * name in the customer's slot that holds nothing.
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

static int begin_cluster(struct store *st, const struct store_begin_req *rq, struct store_begin_res *res);
static void commit_cluster(struct store *st, const struct store_commit_req *rq,
                           enum store_commit_status *out, int *maybe_ran);
static void resolve_cluster(struct store *st, const char *org, const char *token,
                            const struct store_commit_cust *c, size_t n, enum store_resolved *out);
static redisReply *idem_eval(struct store *st, const char *ref, struct store_argv *a);

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

/* In begin.lua's last element, {name, definition or nil, ...}: the definition of program
 * name (NULL: not named, or no such program). */
static const redisReply *
def_named(const redisReply *defs, const struct req_item *it)
{
	const char *name = it->program.st == F_OK ? it->program.s.p : "";
	size_t len = it->program.st == F_OK ? it->program.s.len : 0, k;

	if (defs->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (k = 0; k + 1 < defs->elements; k += 2) {
		const redisReply *nm = defs->element[k], *d = defs->element[k + 1];

		if (nm->type == REDIS_REPLY_STRING && nm->len == len && memcmp(nm->str, name, len) == 0)
			return d->type == REDIS_REPLY_STRING ? d : NULL;
	}
	return NULL;
}

/* The program definitions and membership-id holders of an entry's items (holders NULL:
 * begin.lua sent none, as no item of the entry names a membership id). */
static void
load_items(struct store_item_snap *items, const struct req_entry *e, const redisReply *defs,
           const redisReply *holders)
{
	size_t it;

	for (it = 0; it < e->nitems; it++) {
		const redisReply *d = def_named(defs, &e->items[it]), *h;

		if (d != NULL) {
			items[it].def = d->str;
			items[it].def_len = d->len;
		}
		if (holders == NULL || holders->type != REDIS_REPLY_ARRAY || it >= holders->elements)
			continue;
		h = holders->element[it];
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

	if (store_is_cluster(st))
		return begin_cluster(st, rq, res);
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
	/* an answer per entry, then the programs' definitions */
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != rq->n + 1)
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
			load_items(o->items, rq->entries[i]->e, rep->element[rq->n],
			           r->elements > 3 ? r->element[3] : NULL);
		} else if (strcmp(status, "DUP") == 0) {
			o->status = STORE_BEGIN_DUP;
			o->cid = strtoll(r->element[1]->str, NULL, 10);
			load_items(o->items, rq->entries[i]->e, rep->element[rq->n],
			           r->elements > 3 ? r->element[3] : NULL);
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
                    const struct store_commit_cust *cc, int with_mids)
{
	const struct rules_customer *c = cc->cust;
	struct rules_slot_change ch;
	size_t i, n;
	int pass;

	const char *tag = layout_tag_of_cid(cc->cid);

	store_argv_addf(a, KEYS_CUST_FMT, tag, rq->org, (long long)cc->cid);
	store_argv_add(a, cc->version, strlen(cc->version));
	store_argv_addf(a, "%lld", (long long)cc->cid);
	store_argv_addf(a, KEYS_HIST_FMT, tag, rq->org, (long long)cc->cid);
	store_argv_addf(a, KEYS_FEED_FMT, tag, rq->org);

	/* Four sections, each a count then its elements: set, del, claim, release. */
	for (pass = 0; pass < 4; pass++) {
		for (n = 0, i = 0; i < c->nslots; i++) {
			rules_slot_change(&c->slots[i], &ch);
			n += pass == 0 ? (size_t)ch.set : pass == 1 ? (size_t)ch.del :
			     !with_mids ? 0 : pass == 2 ? ch.nclaim : ch.nrelease;
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

	if (store_is_cluster(st)) {
		commit_cluster(st, rq, out, maybe_ran);
		return;
	}
	store_argv_init(&a);
	store_argv_presize(&a, 8 + 24 * rq->n, 256 + 768 * rq->n);
	store_argv_add(&a, rq->token, strlen(rq->token));
	store_argv_addf(&a, "%zu", rq->n);
	store_argv_addf(&a, "%d", rq->history_max);
	store_argv_addf(&a, "%d", feed_part_max(rq->feed_max));
	store_argv_add(&a, "0", 1);     /* keep_locks */
	for (k = 0; k < rq->n; k++)
		add_commit_customer(&a, rq, &rq->c[k], 1);
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

	if (store_is_cluster(st)) {
		resolve_cluster(st, org, token, c, n, out);
		return;
	}
	store_argv_init(&a);
	store_argv_presize(&a, 2 + 2 * n, 32 + 48 * n);
	store_argv_add(&a, token, strlen(token));
	store_argv_addf(&a, "%zu", n);
	for (k = 0; k < n; k++) {
		const char *tag = layout_tag_of_cid(c[k].cid);

		store_argv_addf(&a, KEYS_CUST_FMT, tag, org, (long long)c[k].cid);
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

/* ---- on a Redis Cluster ----------------------------------------------------------------- */

/*
 * The cluster protocol (docs/CONSISTENCY.md "On a Redis Cluster"). A request's keys span
 * many slots there: a customer's keys share its partition's tag, but the identifier-index
 * and membership-id buckets, the org's programs, the Idempotency-Key and the rate window each
 * have their own. A script may touch only keys of one slot, so the one-script steps of a
 * single Redis become rounds, each a set of calls run in parallel over the masters
 * (store_run), every script call naming its keys (KEYS) so that a migrating slot answers
 * ASK or TRYAGAIN before anything runs:
 *   begin:  1. identify (index lookups, customer existence, program definitions, the rate
 *              window)  2. lock and read each slot's customers (begin.lua with the ids
 *              found) and look up the items' membership-id holders  [3. only when a holder
 *              is another customer: held.lua "check" in the holder's slot]
 *   commit: A. claim the membership ids in their buckets (claim.lua) and renew the
 *              Idempotency-Key claim (idem.lua "renew")  [A2, A3: take over an id whose
 *              holder no longer holds it, under the holder's lock]  B. commit each slot's
 *              customers (commit.lua, no index or idem work in it)  [C. release the ids a
 *              delink gave up, under the customer's lock kept by B; D. unlock]
 * Updates cost 3 rounds, links 4, delinks 5 (one fewer when partnerd's memo, store_memo.h,
 * has every entry's customer and the programs: no round 1); single Redis keeps its 2.
 */

/* The program id of a stored definition ({"pid":N,...}), or -1. */
static int
def_pid(const char *def, size_t len)
{
	static const char head[] = "{\"pid\":";

	if (def == NULL || len < sizeof(head) || memcmp(def, head, sizeof(head) - 1) != 0)
		return -1;
	return atoi(def + sizeof(head) - 1);
}

/* Where an entry's identification stands after round 1. */
struct cbegin_ent {
	int state;                      /* 0 found, 1 not found, 2 mismatch, 3 unreadable */
	int64_t cid;
	char cidtext[24];
	size_t first_op;                /* round 1: its first lookup */
	size_t lock_op, lock_at;        /* round 2: its partition's begin call + 1, its place in it */
	size_t holder_op;               /* round 2: its items' holder lookups start here */
	int memo;                       /* found in partnerd's memo: no lookup in round 1 */
};

/* One begin on a cluster: the request, its answer, and the rounds' state. */
struct cbegin {
	struct store *st;
	const struct store_begin_req *rq;
	struct store_begin_res *res;
	struct store_round r1, r2, r3;
	struct cbegin_ent *ce;          /* per entry */
	const char **names;             /* the programs named, each once */
	size_t nnames, nitems;
	size_t *name_of;                /* per item (flattened): its index in names, or -1 */
	size_t rate_op, progs_op;       /* round 1's rate window and program calls, or -1 */
	const char **def;               /* per name: its definition (memo's copy or round 1's reply,
	                                 * both in the reply arena), or NULL */
	size_t *def_len;
	struct store_memo *memo;        /* the process's (store_memo.h) */
	int64_t now_ms;
	char key[160];
};

/* The stored definition of item j (flattened), or NULL; its length in *len. */
static const char *
cb_def(const struct cbegin *b, size_t j, size_t *len)
{
	if (b->name_of[j] == (size_t)-1 || b->def[b->name_of[j]] == NULL)
		return NULL;
	*len = b->def_len[b->name_of[j]];
	return b->def[b->name_of[j]];
}

/* Whether item it of entry i (its definition d) has its membership id's holder looked up. */
static int
cb_wants_holder(const struct cbegin *b, size_t i, const struct req_item *it, const char *d, size_t dlen)
{
	return b->ce[i].state == 0 && b->rq->kind == REQ_LINK && it->mid.st == F_OK && d != NULL &&
	       def_pid(d, dlen) >= 0;
}

/* Entry i's customer from partnerd's memo when every identifier of it is there and they
 * agree (an id given as such agrees with itself): 1, else 0. */
static int
cb_from_memo(struct cbegin *b, size_t i)
{
	const struct store_begin_in *in = b->rq->entries[i];
	int64_t cid = 0, c;
	size_t k;

	for (k = 0; k < in->nidents; k++) {
		if (in->kind[k] == STORE_IDENT_ID) {
			char *end;

			c = strtoll(in->val[k], &end, 10);
			if (end != in->val[k] + in->len[k])
				return 0;
		} else {
			c = store_memo_cid(b->memo, b->rq->org, in->kind[k], in->val[k], in->len[k]);
		}
		if (c <= 0 || (cid != 0 && c != cid))
			return 0;
		cid = c;
	}
	if (cid == 0)
		return 0;
	b->ce[i].memo = 1;
	b->ce[i].cid = cid;
	snprintf(b->ce[i].cidtext, sizeof(b->ce[i].cidtext), "%lld", (long long)cid);
	return 1;
}

/* Entry i's identifiers into (put 1) or out of (put 0) partnerd's memo. */
static void
cb_memo_idents(struct cbegin *b, size_t i, int put)
{
	const struct store_begin_in *in = b->rq->entries[i];
	size_t k;

	for (k = 0; k < in->nidents; k++) {
		if (in->kind[k] == STORE_IDENT_ID)
			continue;
		if (put)
			store_memo_put_cid(b->memo, b->rq->org, in->kind[k], in->val[k], in->len[k], b->ce[i].cid);
		else
			store_memo_drop_cid(b->memo, b->rq->org, in->kind[k], in->val[k], in->len[k]);
	}
}

/* store_alloc for store_memo_def: valid as long as the replies (the write round). */
static void *
cb_alloc(void *st, size_t n)
{
	return store_alloc(st, n);
}

/* The programs the items name, each once (b->names, b->name_of): their definitions from the
 * memo when it has them all, else round 1's HMGET of them all. */
static void
cb_program_calls(struct cbegin *b)
{
	const struct store_begin_req *rq = b->rq;
	size_t i, j, k;

	for (i = 0, j = 0; i < rq->n; i++) {
		const struct req_entry *e = rq->entries[i]->e;

		for (k = 0; k < e->nitems; k++, j++) {
			const struct req_item *it = &e->items[k];
			size_t m;

			b->name_of[j] = (size_t)-1;
			if (it->program.st != F_OK)
				continue;
			for (m = 0; m < b->nnames; m++)
				if (strlen(b->names[m]) == it->program.s.len &&
				    memcmp(b->names[m], it->program.s.p, it->program.s.len) == 0)
					break;
			if (m == b->nnames)
				b->names[b->nnames++] = xmemdup(it->program.s.p, it->program.s.len);
			b->name_of[j] = m;
		}
	}
	b->def = xcalloc(b->nnames ? b->nnames : 1, sizeof(*b->def));
	b->def_len = xcalloc(b->nnames ? b->nnames : 1, sizeof(*b->def_len));
	for (k = 0; k < b->nnames; k++) {
		b->def[k] = store_memo_def(b->memo, rq->org, b->names[k], strlen(b->names[k]), b->now_ms,
		                           &b->def_len[k], cb_alloc, b->st);
		if (b->def[k] == NULL)
			break;
	}
	if (k < b->nnames) {
		/* one not in the memo, or too old: all of them read again */
		struct store_argv *a;

		memset(b->def, 0, b->nnames * sizeof(*b->def));
		snprintf(b->key, sizeof(b->key), KEYS_PROGS_FMT, rq->org);
		b->progs_op = b->r1.n;
		a = store_round_add(&b->r1, -1, b->key);
		store_argv_add(a, "HMGET", 5);
		store_argv_addcopy(a, b->key, strlen(b->key));
		for (k = 0; k < b->nnames; k++)
			store_argv_add(a, b->names[k], strlen(b->names[k]));
	}
}

/* Round 1's calls: the rate window, the programs named, every identifier. */
static void
cb_identify_calls(struct cbegin *b)
{
	const struct store_begin_req *rq = b->rq;
	size_t i, k;

	if (rq->rate_limit > 0) {
		struct store_argv *a;

		snprintf(b->key, sizeof(b->key), KEYS_RATE_FMT, layout_tag_of(rq->cred, strlen(rq->cred)), rq->org, rq->cred);
		b->rate_op = b->r1.n;
		a = store_round_script(&b->r1, STORE_BEGIN, 1, b->key);
		store_argv_add(a, rq->org, strlen(rq->org));
		store_argv_add(a, rq->token, strlen(rq->token));
		store_argv_addf(a, "%d", rq->lock_ttl_ms);
		store_argv_addcopy(a, b->key, strlen(b->key));
		store_argv_addf(a, "%d", rq->rate_limit);
		store_argv_add(a, "0", 1);
	}
	cb_program_calls(b);
	for (i = 0; i < rq->n; i++) {
		const struct store_begin_in *in = rq->entries[i];

		b->ce[i].first_op = b->r1.n;
		if (cb_from_memo(b, i))
			continue;
		for (k = 0; k < in->nidents; k++) {
			struct store_argv *a;

			if (in->kind[k] == STORE_IDENT_ID) {
				int64_t cid = strtoll(in->val[k], NULL, 10);

				snprintf(b->key, sizeof(b->key), KEYS_CUST_FMT, layout_tag_of_cid(cid), rq->org, (long long)cid);
				a = store_round_add(&b->r1, -1, b->key);
				store_argv_add(a, "EXISTS", 6);
				store_argv_addcopy(a, b->key, strlen(b->key));
			} else {
				snprintf(b->key, sizeof(b->key), KEYS_IX_FMT, layout_tag_of(in->val[k], in->len[k]), rq->org,
				         ident_name[in->kind[k]]);
				a = store_round_add(&b->r1, -1, b->key);
				store_argv_add(a, "HGET", 4);
				store_argv_addcopy(a, b->key, strlen(b->key));
				store_argv_add(a, in->val[k], in->len[k]);
			}
		}
	}
}

/* Each entry's customer from round 1's replies, as begin.lua decides it. */
static void
cb_identified(struct cbegin *b)
{
	size_t i, k;

	for (i = 0; i < b->rq->n; i++) {
		const struct store_begin_in *in = b->rq->entries[i];
		struct cbegin_ent *ce = &b->ce[i];
		const char *cid = NULL;
		int missing = 0, differ = 0;

		if (ce->memo)
			continue;
		for (k = 0; k < in->nidents; k++) {
			const redisReply *x = b->r1.rep[ce->first_op + k];
			const char *c = NULL;
			char idtext[24];

			if (x->type == REDIS_REPLY_ERROR) {
				ce->state = 3;          /* unreadable: a key of the wrong type */
				break;
			}
			if (in->kind[k] == STORE_IDENT_ID) {
				if (x->type == REDIS_REPLY_INTEGER && x->integer == 1) {
					snprintf(idtext, sizeof(idtext), "%.*s", (int)in->len[k], in->val[k]);
					c = idtext;
				}
			} else if (x->type == REDIS_REPLY_STRING) {
				c = x->str;
			}
			if (c == NULL)
				missing = 1;
			else if (cid == NULL)
				snprintf(ce->cidtext, sizeof(ce->cidtext), "%s", cid = c);
			else if (strcmp(ce->cidtext, c) != 0)
				differ = 1;
		}
		if (ce->state == 3)
			continue;
		if (cid == NULL)
			ce->state = 1;
		else if (missing || differ)
			ce->state = 2;
		else
			ce->cid = strtoll(ce->cidtext, NULL, 10);
		if (ce->state == 0)
			cb_memo_idents(b, i, 1);
	}
}

/* Whether entry m is entry q's customer again (q < m, both found). */
static int
cb_same_customer_before(const struct cbegin *b, size_t from, size_t m)
{
	size_t q;

	for (q = from; q < m; q++)
		if (b->ce[q].state == 0 && b->ce[q].cid == b->ce[m].cid)
			return 1;
	return 0;
}

/* Round 2's begin.lua call for the partition of entry i's customer, with every later found
 * entry of that partition (each customer's keys declared once). */
static void
cb_lock_call(struct cbegin *b, size_t i)
{
	const struct store_begin_req *rq = b->rq;
	unsigned part = layout_part_of_cid(b->ce[i].cid);
	size_t m, n_in = 0, nk = 0;
	struct store_argv *a;

	for (m = i; m < rq->n; m++) {
		if (b->ce[m].state != 0 || layout_part_of_cid(b->ce[m].cid) != part)
			continue;
		n_in++;
		if (!cb_same_customer_before(b, i, m))
			nk++;
	}
	snprintf(b->key, sizeof(b->key), KEYS_CUST_FMT, layout_tag_of_cid(b->ce[i].cid), rq->org, (long long)b->ce[i].cid);
	a = store_round_script(&b->r2, STORE_BEGIN, nk, b->key);
	for (m = i + 1; m < rq->n; m++) {
		if (b->ce[m].state != 0 || layout_part_of_cid(b->ce[m].cid) != part || cb_same_customer_before(b, i, m))
			continue;
		store_argv_addf(a, KEYS_CUST_FMT, layout_tag_of_cid(b->ce[m].cid), rq->org, (long long)b->ce[m].cid);
	}
	store_argv_add(a, rq->org, strlen(rq->org));
	store_argv_add(a, rq->token, strlen(rq->token));
	store_argv_addf(a, "%d", rq->lock_ttl_ms);
	store_argv_add(a, "", 0);
	store_argv_add(a, "0", 1);
	store_argv_addf(a, "%zu", n_in);
	for (m = i, n_in = 0; m < rq->n; m++) {
		if (b->ce[m].state != 0 || layout_part_of_cid(b->ce[m].cid) != part)
			continue;
		b->ce[m].lock_op = b->r2.n;     /* 1-based here: 0 is "no call yet" */
		b->ce[m].lock_at = n_in++;
		store_argv_add(a, "1", 1);
		store_argv_add(a, "id", 2);
		store_argv_add(a, b->ce[m].cidtext, strlen(b->ce[m].cidtext));
		store_argv_add(a, "", 0);
		store_argv_add(a, "0", 1);
	}
}

/* Round 2's calls: one begin.lua per partition of the customers found, and the items'
 * membership-id holders. */
static void
cb_lock_calls(struct cbegin *b)
{
	const struct store_begin_req *rq = b->rq;
	size_t i, j, k;

	for (i = 0; i < rq->n; i++)
		if (b->ce[i].state == 0 && b->ce[i].lock_op == 0)
			cb_lock_call(b, i);     /* else not found, or in an earlier entry's call */
	for (i = 0, j = 0; i < rq->n; i++) {
		const struct req_entry *e = rq->entries[i]->e;

		b->ce[i].holder_op = b->r2.n;
		for (k = 0; k < e->nitems; k++, j++) {
			const struct req_item *it = &e->items[k];
			size_t dlen = 0;
			const char *d = cb_def(b, j, &dlen);
			struct store_argv *a;

			if (!cb_wants_holder(b, i, it, d, dlen))
				continue;
			snprintf(b->key, sizeof(b->key), KEYS_MID_FMT, layout_tag_of(it->mid.s.p, it->mid.s.len), rq->org,
			         def_pid(d, dlen));
			a = store_round_add(&b->r2, -1, b->key);
			store_argv_add(a, "HGET", 4);
			store_argv_addcopy(a, b->key, strlen(b->key));
			store_argv_add(a, it->mid.s.p, it->mid.s.len);
		}
	}
}

/*
 * Entry i locked by round 2: the identifiers were looked up before the lock was taken, so
 * the customer's own fields, read under it, must still have them (an import may have moved
 * one meanwhile). If not, the entry is released (round 3 unlocks it) and run again like a
 * busy one.
 */
static void
cb_recheck(struct cbegin *b, size_t i, struct store_begin_out *o)
{
	const struct store_begin_in *in = b->rq->entries[i];
	struct store_argv *a;
	size_t k;

	for (k = 0; k < in->nidents; k++) {
		const char *have = o->ident[in->kind[k]];

		if (in->kind[k] != STORE_IDENT_ID &&
		    (have == NULL || strlen(have) != in->len[k] || memcmp(have, in->val[k], in->len[k]) != 0))
			break;
	}
	if (k == in->nidents)
		return;
	cb_memo_idents(b, i, 0);
	for (k = 0; k < 4; k++) {
		free(o->ident[k]);
		o->ident[k] = NULL;
	}
	rules_customer_free(&o->cust);
	memset(&o->cust, 0, sizeof(o->cust));
	o->status = STORE_BEGIN_BUSY;
	snprintf(b->key, sizeof(b->key), KEYS_CUST_FMT, layout_tag_of_cid(o->cid), b->rq->org, (long long)o->cid);
	a = store_round_script(&b->r3, STORE_UNLOCK, 1, b->key);
	store_argv_add(a, b->rq->token, strlen(b->rq->token));
}

/* Entry i's status and snapshot from its partition's begin.lua reply (begin.lua's statuses);
 * -1 when that reply is unreadable (the entry's items are then left empty). */
static int
cb_entry_status(struct cbegin *b, size_t i, struct store_begin_out *o)
{
	const struct cbegin_ent *ce = &b->ce[i];
	const redisReply *g, *x;
	const char *status;

	if (ce->state != 0) {
		o->status = ce->state == 1 ? STORE_BEGIN_NOT_FOUND :
		            ce->state == 2 ? STORE_BEGIN_MISMATCH : STORE_BEGIN_UNREADABLE;
		return 0;
	}
	g = b->r2.rep[ce->lock_op - 1];
	if (g->type != REDIS_REPLY_ARRAY || ce->lock_at >= g->elements ||
	    (x = g->element[ce->lock_at])->type != REDIS_REPLY_ARRAY || x->elements < 1 ||
	    x->element[0]->type != REDIS_REPLY_STRING) {
		o->status = STORE_BEGIN_UNREADABLE;
		o->oom = g->type == REDIS_REPLY_ERROR && is_oom(g->str);
		return -1;
	}
	status = x->element[0]->str;
	o->cid = ce->cid;
	if (strcmp(status, "OK") == 0) {
		o->status = STORE_BEGIN_LOCKED;
		load_snapshot(o, x->element[2]);
	} else if (strcmp(status, "DUP") == 0) {
		o->status = STORE_BEGIN_DUP;
	} else if (strcmp(status, "BUSY") == 0) {
		o->status = STORE_BEGIN_BUSY;
	} else if (strcmp(status, "NOTFOUND") == 0) {
		o->status = STORE_BEGIN_NOT_FOUND;      /* deleted since round 1 (or the memo's) */
		cb_memo_idents(b, i, 0);
	} else {
		o->status = STORE_BEGIN_UNREADABLE;
		o->oom = x->elements > 1 && x->element[1]->type == REDIS_REPLY_STRING && is_oom(x->element[1]->str);
	}
	if (o->status == STORE_BEGIN_LOCKED && !o->bad_snapshot)
		cb_recheck(b, i, o);
	return 0;
}

/* The answers, entry by entry: statuses, snapshots, the items' definitions and holders. */
static void
cb_answers(struct cbegin *b)
{
	const struct store_begin_req *rq = b->rq;
	struct store_begin_res *res = b->res;
	size_t i, j, k, nitems;

	res->e = xcalloc(rq->n ? rq->n : 1, sizeof(*res->e));
	res->items_block = xcalloc(b->nitems ? b->nitems : 1, sizeof(*res->items_block));
	for (i = 0, j = 0, nitems = 0; i < rq->n; i++) {
		const struct req_entry *e = rq->entries[i]->e;
		struct store_begin_out *o = &res->e[i];
		size_t hop = b->ce[i].holder_op;

		o->items = &res->items_block[nitems];
		nitems += e->nitems;
		if (cb_entry_status(b, i, o) != 0) {
			j += e->nitems;
			continue;
		}
		for (k = 0; k < e->nitems; k++, j++) {
			size_t dlen = 0;
			const char *d = cb_def(b, j, &dlen);
			const redisReply *h;

			if (d == NULL)
				continue;
			o->items[k].def = d;
			o->items[k].def_len = dlen;
			if (!cb_wants_holder(b, i, &e->items[k], d, dlen))
				continue;
			h = b->r2.rep[hop++];
			if (h->type == REDIS_REPLY_STRING)
				o->items[k].mid_holder = strtoll(h->str, NULL, 10);
		}
	}
}

/* Round 3, only for holders that are other customers: do they still hold the id? Also
 * releases the locks cb_recheck gave up. A failed check leaves the holder as it is: the
 * claim checks it again. */
static void
cb_check_holders(struct cbegin *b)
{
	const struct store_begin_req *rq = b->rq;
	struct store_begin_res *res = b->res;
	size_t first_check = b->r3.n, i, j, k;

	for (i = 0; i < rq->n; i++) {
		const struct req_entry *e = rq->entries[i]->e;

		for (k = 0; k < e->nitems; k++) {
			const struct store_item_snap *sn = &res->e[i].items[k];
			const struct req_item *it = &e->items[k];
			struct store_argv *a;
			int64_t h = sn->mid_holder;

			if (h == 0 || h == res->e[i].cid || sn->def == NULL)
				continue;
			snprintf(b->key, sizeof(b->key), KEYS_CUST_FMT, layout_tag_of_cid(h), rq->org, (long long)h);
			a = store_round_script(&b->r3, STORE_HELD, 1, b->key);
			store_argv_add(a, rq->org, strlen(rq->org));
			store_argv_addf(a, "%lld", (long long)h);
			store_argv_addf(a, "%d", def_pid(sn->def, sn->def_len));
			store_argv_add(a, it->mid.s.p, it->mid.s.len);
			store_argv_add(a, "check", 5);
			store_argv_add(a, "", 0);
			store_argv_add(a, "0", 1);
		}
	}
	if (b->r3.n == 0)
		return;
	(void)store_round_run(b->st, &b->r3);
	for (i = 0, j = first_check; i < rq->n && b->r3.rep != NULL; i++) {
		const struct req_entry *e = rq->entries[i]->e;

		for (k = 0; k < e->nitems; k++) {
			struct store_item_snap *sn = &res->e[i].items[k];

			if (sn->mid_holder == 0 || sn->mid_holder == res->e[i].cid || sn->def == NULL)
				continue;
			if (b->r3.st[j] == STORE_OP_OK && b->r3.rep[j]->type == REDIS_REPLY_INTEGER &&
			    b->r3.rep[j]->integer == 0)
				sn->mid_holder = 0;
			j++;
		}
	}
}

static int
begin_cluster(struct store *st, const struct store_begin_req *rq, struct store_begin_res *res)
{
	struct cbegin b;
	size_t i, k;
	int rc = -1;

	memset(&b, 0, sizeof(b));
	memset(res, 0, sizeof(*res));
	b.st = st;
	b.rq = rq;
	b.res = res;
	b.rate_op = b.progs_op = (size_t)-1;
	for (i = 0; i < rq->n; i++)
		b.nitems += rq->entries[i]->e->nitems;
	b.ce = xcalloc(rq->n ? rq->n : 1, sizeof(*b.ce));
	b.name_of = xcalloc(b.nitems ? b.nitems : 1, sizeof(*b.name_of));
	b.names = xcalloc(b.nitems ? b.nitems : 1, sizeof(*b.names));
	b.memo = store_memo_shared();
	b.now_ms = mono_ms();

	cb_identify_calls(&b);
	if (store_round_run(st, &b.r1) != 0)
		goto out;
	if (b.rate_op != (size_t)-1) {
		const redisReply *x = b.r1.rep[b.rate_op];

		if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 && x->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(x->element[0]->str, "LIMITED") == 0) {
			res->limited = atoi(x->element[1]->str);
			if (res->limited < 1)
				res->limited = 1;
			rc = 0;
			goto out;
		}
		if (x->type == REDIS_REPLY_ERROR)
			goto out;
	}
	if (b.progs_op != (size_t)-1) {
		const redisReply *x = b.r1.rep[b.progs_op];

		if (x->type != REDIS_REPLY_ARRAY || x->elements != b.nnames)
			goto out;
		for (k = 0; k < b.nnames; k++) {
			if (x->element[k]->type != REDIS_REPLY_STRING)
				continue;       /* no such program: looked up again next time */
			b.def[k] = x->element[k]->str;
			b.def_len[k] = x->element[k]->len;
			store_memo_put_def(b.memo, rq->org, b.names[k], strlen(b.names[k]), b.def[k], b.def_len[k],
			                   b.now_ms);
		}
	}
	cb_identified(&b);
	cb_lock_calls(&b);
	if (store_round_run(st, &b.r2) != 0)
		goto out;
	cb_answers(&b);
	cb_check_holders(&b);
	rc = 0;
out:
	if (rc != 0 && res->e != NULL) {
		for (i = 0; i < rq->n; i++) {
			for (k = 0; k < 4; k++)
				free(res->e[i].ident[k]);
			rules_customer_free(&res->e[i].cust);
		}
		store_begin_res_free(res);
	}
	for (k = 0; k < b.nnames; k++)
		free((char *)b.names[k]);
	free(b.names);
	free(b.name_of);
	free(b.def);
	free(b.def_len);
	free(b.ce);
	store_round_free(&b.r1);
	store_round_free(&b.r2);
	store_round_free(&b.r3);
	return rc;
}

/* A membership id a customer claims or gives up, and where it stands in the commit. */
struct cclaim {
	size_t cust;                    /* index in rq->c */
	int pid;
	const char *mid;
	size_t len;
	int release;                    /* 1: given up (released after the commit) */
	int64_t holder;                 /* claim met another customer's entry: its cid */
	int state;                      /* 0 pending, 1 claimed, 2 conflict, 3 broken */
	int locked_holder;              /* held.lua "lock" left the holder locked for us */
	size_t op;
};

/* Each customer's claims and releases (rules_slot_change), in one array. */
static struct cclaim *
collect_claims(const struct store_commit_req *rq, size_t *n)
{
	struct cclaim *cl = NULL;
	size_t k, i, j, cap = 0;

	*n = 0;
	for (k = 0; k < rq->n; k++) {
		const struct rules_customer *c = rq->c[k].cust;

		for (i = 0; i < c->nslots; i++) {
			struct rules_slot_change ch;

			rules_slot_change(&c->slots[i], &ch);
			for (j = 0; j < ch.nclaim + ch.nrelease; j++) {
				const struct rules_mid_ref *m = j < ch.nclaim ? &ch.claim[j] : &ch.release[j - ch.nclaim];

				if (*n == cap) {
					cap = cap ? 2 * cap : 8;
					cl = xrealloc(cl, cap * sizeof(*cl));
				}
				memset(&cl[*n], 0, sizeof(cl[*n]));
				cl[*n].cust = k;
				cl[*n].pid = m->pid;
				cl[*n].mid = m->mid;
				cl[*n].len = m->len;
				cl[*n].release = j >= ch.nclaim;
				(*n)++;
			}
		}
	}
	return cl;
}

static struct store_argv *
add_claim(struct store_round *r, const char *org, const struct cclaim *c, int64_t cid, int64_t expected)
{
	struct store_argv *a;
	char key[160];

	snprintf(key, sizeof(key), KEYS_MID_FMT, layout_tag_of(c->mid, c->len), org, c->pid);
	a = store_round_script(r, STORE_CLAIM, 1, key);
	store_argv_add(a, c->mid, c->len);
	store_argv_addf(a, "%lld", (long long)cid);
	if (expected != 0)
		store_argv_addf(a, "%lld", (long long)expected);
	else
		store_argv_add(a, "", 0);
	return a;
}

/* hdel_if.lua: the entry of c's id removed while it still names cid. */
static void
add_release(struct store_round *r, const char *org, const struct cclaim *c, int64_t cid)
{
	struct store_argv *a;
	char key[160];

	snprintf(key, sizeof(key), KEYS_MID_FMT, layout_tag_of(c->mid, c->len), org, c->pid);
	a = store_round_script(r, STORE_HDEL_IF, 1, key);
	store_argv_add(a, c->mid, c->len);
	store_argv_addf(a, "%lld", (long long)cid);
}

static void
add_unlock(struct store_round *r, const char *org, const char *token, int64_t cid)
{
	struct store_argv *a;
	char key[160];

	snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(cid), org, (long long)cid);
	a = store_round_script(r, STORE_UNLOCK, 1, key);
	store_argv_add(a, token, strlen(token));
}

/* One commit on a cluster: the request, its statuses, and the rounds' state. */
struct ccommit {
	struct store *st;
	const struct store_commit_req *rq;
	enum store_commit_status *out;
	struct cclaim *cl;              /* the claims and releases (collect_claims) */
	size_t ncl;
	int *failed;                    /* per customer: decided before B */
	size_t *commit_op, *commit_at;  /* per customer: its commit.lua call + 1, its place in it */
	int *releases;                  /* per customer: commit.lua's keep_locks */
	int *kept;                      /* per customer: refused in B, lock still ours */
	struct store_round ra, ra2, ra3, rb, rc, rd;
	char key[160];
};

static void
cc_fail(struct ccommit *c, size_t k, enum store_commit_status why)
{
	if (!c->failed[k]) {
		c->failed[k] = 1;
		c->out[k] = why;
	}
}

/* Round A: the Idempotency-Key claim renewed, the ids claimed. -1 when the store failed
 * before any commit was sent: nothing applied. Claims that went through then name customers
 * that do not hold the ids: the next claimant finds that out (held.lua) and takes them over. */
static int
cc_claim(struct ccommit *c)
{
	const struct store_commit_req *rq = c->rq;
	size_t i, k, idem_op = (size_t)-1;

	if (rq->idem != NULL) {
		struct store_argv *a;

		idem_op = c->ra.n;
		a = store_round_script(&c->ra, STORE_IDEM, 1, rq->idem->ref);
		store_argv_add(a, "renew", 5);
		store_argv_add(a, rq->idem->ref, strlen(rq->idem->ref));
		store_argv_add(a, rq->idem->token, strlen(rq->idem->token));
		store_argv_addf(a, "%d", rq->idem->ttl_ms);
	}
	for (i = 0; i < c->ncl; i++) {
		if (c->cl[i].release) {
			c->releases[c->cl[i].cust] |= 1;
			continue;
		}
		c->cl[i].op = c->ra.n;
		(void)add_claim(&c->ra, rq->org, &c->cl[i], rq->c[c->cl[i].cust].cid, 0);
	}
	if (c->ra.n == 0)
		return 0;
	(void)store_round_run(c->st, &c->ra);
	for (i = 0; i < c->ra.n; i++)
		if (c->ra.st[i] != STORE_OP_OK)
			return -1;
	if (idem_op != (size_t)-1 && (store_round_str(&c->ra, idem_op) == NULL ||
	                              strcmp(store_round_str(&c->ra, idem_op), "OK") != 0))
		for (k = 0; k < rq->n; k++)
			cc_fail(c, k, STORE_COMMIT_IDEM_FENCED);
	for (i = 0; i < c->ncl; i++) {
		struct cclaim *x = &c->cl[i];
		const char *s;

		if (x->release)
			continue;
		s = store_round_str(&c->ra, x->op);
		if (s != NULL && strcmp(s, "OK") == 0) {
			x->state = 1;
		} else if (s != NULL && strcmp(s, "BROKEN") != 0 && c->ra.rep[x->op]->type == REDIS_REPLY_STRING) {
			x->holder = strtoll(s, NULL, 10);
		} else {
			x->state = 3;
			cc_fail(c, x->cust, STORE_COMMIT_BROKEN);
		}
	}
#ifdef PARTNERD_TEST_FAULTS
	{
		size_t claimed = 0;             /* die-after-claim: SIGKILL between claim and commit */

		for (i = 0; i < c->ncl; i++)
			claimed += !c->cl[i].release && c->cl[i].state == 1;
		testfault_after_claims(claimed);
	}
#endif
	return 0;
}

/* Whether claim x still waits on the customer named in its bucket. */
static int
cc_meets_holder(const struct ccommit *c, const struct cclaim *x)
{
	return !x->release && x->state == 0 && x->holder != 0 && !c->failed[x->cust];
}

/* A2, A3: an id met in another customer's entry is taken over when that customer no longer
 * holds it, checked (held.lua "lock") and swapped (claim.lua's compare-and-set) under the
 * holder's lock; the holders locked are unlocked in round B. */
static void
cc_take_over(struct ccommit *c)
{
	const struct store_commit_req *rq = c->rq;
	size_t i;

	for (i = 0; i < c->ncl; i++) {
		struct cclaim *x = &c->cl[i];
		struct store_argv *a;
		int64_t h = x->holder;

		if (!cc_meets_holder(c, x))
			continue;
		snprintf(c->key, sizeof(c->key), KEYS_CUST_FMT, layout_tag_of_cid(h), rq->org, (long long)h);
		x->op = c->ra2.n;
		a = store_round_script(&c->ra2, STORE_HELD, 1, c->key);
		store_argv_add(a, rq->org, strlen(rq->org));
		store_argv_addf(a, "%lld", (long long)h);
		store_argv_addf(a, "%d", x->pid);
		store_argv_add(a, x->mid, x->len);
		store_argv_add(a, "lock", 4);
		store_argv_add(a, rq->token, strlen(rq->token));
		store_argv_addf(a, "%d", rq->lock_ttl_ms > 0 ? rq->lock_ttl_ms : 5000);
	}
	if (c->ra2.n > 0)
		(void)store_round_run(c->st, &c->ra2);
	for (i = 0; i < c->ncl; i++) {
		struct cclaim *x = &c->cl[i];
		const char *s;

		if (!cc_meets_holder(c, x))
			continue;
		s = c->ra2.st[x->op] == STORE_OP_OK ? store_round_str(&c->ra2, x->op) : NULL;
		if (s != NULL && strcmp(s, "FREE") == 0) {
			x->locked_holder = 1;
			x->op = c->ra3.n;
			(void)add_claim(&c->ra3, rq->org, x, rq->c[x->cust].cid, x->holder);
		} else {
			/* held, or its holder busy (maybe committing it), or the check failed */
			x->state = 2;
			if (c->ra2.st[x->op] == STORE_OP_INDOUBT)
				x->locked_holder = 1;   /* maybe: unlocked in round B if so */
		}
	}
	if (c->ra3.n > 0)
		(void)store_round_run(c->st, &c->ra3);
	for (i = 0; i < c->ncl; i++) {
		struct cclaim *x = &c->cl[i];

		if (x->release || x->state != 0 || c->failed[x->cust])
			continue;
		if (x->locked_holder) {
			const char *s = c->ra3.st != NULL ? store_round_str(&c->ra3, x->op) : NULL;

			x->state = s != NULL && strcmp(s, "OK") == 0 ? 1 : 2;
		} else {
			x->state = 2;
		}
	}
	for (i = 0; i < c->ncl; i++)
		if (!c->cl[i].release && c->cl[i].state == 2)
			cc_fail(c, c->cl[i].cust, STORE_COMMIT_CONFLICT);
	for (i = 0; i < c->ncl; i++)
		if (!c->cl[i].release && c->cl[i].state == 1)
			c->releases[c->cl[i].cust] |= 2;
}

/* Whether customer m goes into the commit.lua call of customer k. */
static int
cc_same_call(const struct ccommit *c, size_t k, size_t m)
{
	return !c->failed[m] && layout_part_of_cid(c->rq->c[m].cid) == layout_part_of_cid(c->rq->c[k].cid) &&
	       c->releases[m] == c->releases[k];
}

/* Round B's commit.lua call for customer k's partition (and keep_locks), with every later
 * customer that goes with it. */
static void
cc_commit_call(struct ccommit *c, size_t k)
{
	const struct store_commit_req *rq = c->rq;
	size_t m, nin = 0;
	struct store_argv *a;

	for (m = k; m < rq->n; m++)
		nin += cc_same_call(c, k, m);
	snprintf(c->key, sizeof(c->key), KEYS_CUST_FMT, layout_tag_of_cid(rq->c[k].cid), rq->org, (long long)rq->c[k].cid);
	a = store_round_script(&c->rb, STORE_COMMIT, 2 * nin + 1, c->key);
	for (m = k; m < rq->n; m++) {
		const char *tag = layout_tag_of_cid(rq->c[m].cid);

		if (!cc_same_call(c, k, m))
			continue;
		if (m != k)
			store_argv_addf(a, KEYS_CUST_FMT, tag, rq->org, (long long)rq->c[m].cid);
		store_argv_addf(a, KEYS_HIST_FMT, tag, rq->org, (long long)rq->c[m].cid);
	}
	store_argv_addf(a, KEYS_FEED_FMT, layout_tag_of_cid(rq->c[k].cid), rq->org);
	store_argv_add(a, rq->token, strlen(rq->token));
	store_argv_addf(a, "%zu", nin);
	store_argv_addf(a, "%d", rq->history_max);
	store_argv_addf(a, "%d", feed_part_max(rq->feed_max));
	store_argv_addf(a, "%d", c->releases[k]);
	for (m = k, nin = 0; m < rq->n; m++) {
		if (!cc_same_call(c, k, m))
			continue;
		c->commit_op[m] = c->rb.n;      /* 1-based: 0 is "no call yet" */
		c->commit_at[m] = nin++;
		add_commit_customer(a, rq, &rq->c[m], 0);
	}
	store_argv_add(a, "", 0);               /* no idem key: round A renewed the claim */
	store_argv_add(a, "", 0);
	store_argv_add(a, "", 0);
}

/* Customer k's status from its commit.lua reply; sets *maybe_ran when it may have run
 * without an answer. */
static void
cc_commit_status(struct ccommit *c, size_t k, int *maybe_ran)
{
	static const struct { const char *s; enum store_commit_status st; int kept; } statuses[] = {
		{ "FENCED", STORE_COMMIT_FENCED, 0 }, { "CONFLICT", STORE_COMMIT_CONFLICT, 0 },
		{ "BROKEN", STORE_COMMIT_BROKEN, 0 }, { "IDEM_FENCED", STORE_COMMIT_IDEM_FENCED, 0 },
		{ "FENCED_KEPT", STORE_COMMIT_FENCED, 1 }, { "BROKEN_KEPT", STORE_COMMIT_BROKEN, 1 },
	};
	size_t op = c->commit_op[k] - 1, j;
	const redisReply *g, *e;

	if (c->rb.st[op] != STORE_OP_OK) {
		if (c->rb.st[op] == STORE_OP_INDOUBT)
			*maybe_ran = 1;
		return;                         /* LOST */
	}
	g = c->rb.rep[op];
	if (g->type != REDIS_REPLY_ARRAY || c->commit_at[k] >= g->elements) {
		*maybe_ran = 1;                 /* an error: it may have written part of it */
		return;
	}
	e = g->element[c->commit_at[k]];
	c->out[k] = STORE_COMMIT_OK;
	for (j = 0; e->str != NULL && j < sizeof(statuses) / sizeof(statuses[0]); j++) {
		if (strcmp(e->str, statuses[j].s) == 0) {
			c->out[k] = statuses[j].st;
			c->kept[k] = statuses[j].kept;
		}
	}
}

/* Round B: each partition's customers committed in one commit.lua; the holders locked for a
 * takeover unlocked (their ids are swapped by now); the claims of customers that will not be
 * committed released (their locks, still ours, go in round C). */
static void
cc_commit(struct ccommit *c, int *maybe_ran)
{
	const struct store_commit_req *rq = c->rq;
	size_t i, k;

	for (k = 0; k < rq->n; k++)
		if (!c->failed[k] && c->commit_op[k] == 0)
			cc_commit_call(c, k);
	for (i = 0; i < c->ncl; i++) {
		const struct cclaim *x = &c->cl[i];

		if (x->locked_holder)
			add_unlock(&c->rb, rq->org, rq->token, x->holder);
		if (!x->release && x->state == 1 && c->failed[x->cust])
			add_release(&c->rb, rq->org, x, rq->c[x->cust].cid);
	}
	if (c->rb.n > 0)
		(void)store_round_run(c->st, &c->rb);
	for (k = 0; k < rq->n; k++)
		if (!c->failed[k])
			cc_commit_status(c, k, maybe_ran);
}

/* Round C: what a committed delink gave up released, under its lock; the claims of a
 * customer refused with its lock kept released under it; the locks of the customers not
 * committed released. Round D: the locks kept by commit.lua. */
static void
cc_release(struct ccommit *c)
{
	const struct store_commit_req *rq = c->rq;
	size_t i, k;

	for (i = 0; i < c->ncl; i++) {
		const struct cclaim *x = &c->cl[i];

		if (x->release && c->out[x->cust] == STORE_COMMIT_OK)
			add_release(&c->rc, rq->org, x, rq->c[x->cust].cid);
		if (!x->release && x->state == 1 && c->kept[x->cust])
			add_release(&c->rc, rq->org, x, rq->c[x->cust].cid);
	}
	for (k = 0; k < rq->n; k++) {
		if (c->failed[k])
			add_unlock(&c->rc, rq->org, rq->token, rq->c[k].cid);
		else if (((c->releases[k] & 1) && c->out[k] == STORE_COMMIT_OK) || c->kept[k])
			add_unlock(&c->rd, rq->org, rq->token, rq->c[k].cid);
	}
	if (c->rc.n > 0)
		(void)store_round_run(c->st, &c->rc);
	if (c->rd.n > 0)
		(void)store_round_run(c->st, &c->rd);
}

static void
commit_cluster(struct store *st, const struct store_commit_req *rq, enum store_commit_status *out,
               int *maybe_ran)
{
	struct ccommit c;
	size_t k, n = rq->n ? rq->n : 1;

	memset(&c, 0, sizeof(c));
	c.st = st;
	c.rq = rq;
	c.out = out;
	c.cl = collect_claims(rq, &c.ncl);
	c.failed = xcalloc(n, sizeof(*c.failed));
	c.commit_op = xcalloc(n, sizeof(*c.commit_op));
	c.commit_at = xcalloc(n, sizeof(*c.commit_at));
	c.releases = xcalloc(n, sizeof(*c.releases));
	c.kept = xcalloc(n, sizeof(*c.kept));
	*maybe_ran = 0;
	for (k = 0; k < rq->n; k++)
		out[k] = STORE_COMMIT_LOST;

	if (cc_claim(&c) == 0) {
		cc_take_over(&c);
		cc_commit(&c, maybe_ran);
		cc_release(&c);
	}
	free(c.cl);
	free(c.failed);
	free(c.commit_op);
	free(c.commit_at);
	free(c.releases);
	free(c.kept);
	store_round_free(&c.ra);
	store_round_free(&c.ra2);
	store_round_free(&c.ra3);
	store_round_free(&c.rb);
	store_round_free(&c.rc);
	store_round_free(&c.rd);
}

/* resolve.lua per partition of the customers, in parallel. */
static void
resolve_cluster(struct store *st, const char *org, const char *token, const struct store_commit_cust *c,
                size_t n, enum store_resolved *out)
{
	struct store_round r = { 0 };
	size_t *op = xcalloc(n ? n : 1, sizeof(*op)), *at = xcalloc(n ? n : 1, sizeof(*at));
	size_t k, m;
	char key[160];

	for (k = 0; k < n; k++) {
		unsigned part = layout_part_of_cid(c[k].cid);
		size_t nin = 0;
		struct store_argv *a;

		if (op[k] != 0)
			continue;
		for (m = k; m < n; m++)
			if (layout_part_of_cid(c[m].cid) == part)
				nin++;
		snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(c[k].cid), org, (long long)c[k].cid);
		a = store_round_script(&r, STORE_RESOLVE, nin, key);
		for (m = k; m < n; m++) {
			const char *tag = layout_tag_of_cid(c[m].cid);

			if (layout_part_of_cid(c[m].cid) != part)
				continue;
			if (m != k)
				store_argv_addf(a, KEYS_CUST_FMT, tag, org, (long long)c[m].cid);
		}
		store_argv_add(a, token, strlen(token));
		store_argv_addf(a, "%zu", nin);
		for (m = k, nin = 0; m < n; m++) {
			const char *tag = layout_tag_of_cid(c[m].cid);

			if (layout_part_of_cid(c[m].cid) != part)
				continue;
			op[m] = r.n;
			at[m] = nin++;
			store_argv_addf(a, KEYS_CUST_FMT, tag, org, (long long)c[m].cid);
			store_argv_add(a, c[m].version, strlen(c[m].version));
		}
	}
	(void)store_round_run(st, &r);
	for (k = 0; k < n; k++) {
		const redisReply *g = r.st != NULL && r.st[op[k] - 1] == STORE_OP_OK ? r.rep[op[k] - 1] : NULL;
		const redisReply *e = g != NULL && g->type == REDIS_REPLY_ARRAY && at[k] < g->elements ?
		                      g->element[at[k]] : NULL;
		const char *res = e != NULL && e->type == REDIS_REPLY_STRING ? e->str : NULL;

		if (res != NULL && strcmp(res, "APPLIED") == 0)
			out[k] = STORE_RESOLVED_APPLIED;
		else if (res != NULL && strcmp(res, "NOT_APPLIED") == 0)
			out[k] = STORE_RESOLVED_NOT_APPLIED;
		else
			out[k] = res != NULL ? STORE_RESOLVED_UNKNOWN : STORE_RESOLVED_FAILED;
	}
	store_round_free(&r);
	free(op);
	free(at);
}

/* idem.lua with ARGV a: by EVALSHA on one Redis; on a cluster routed by the claim's key. */
static redisReply *
idem_eval(struct store *st, const char *ref, struct store_argv *a)
{
	struct store_round r = { 0 };
	struct store_argv *k;
	redisReply *rep = NULL;
	size_t i;

	if (!store_is_cluster(st))
		return store_eval(st, STORE_IDEM, a);
	k = store_round_script(&r, STORE_IDEM, 1, ref);
	for (i = 0; i < a->n; i++)
		store_argv_addcopy(k, store_round_arg(a, i), a->len[i]);
	if (store_round_run(st, &r) == 0 && r.rep[0]->type != REDIS_REPLY_ERROR)
		rep = r.rep[0];
	store_round_free(&r);
	return rep;
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
	rep = idem_eval(st, ic->ref, &a);
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
	(void)idem_eval(st, ic->ref, &a);
	store_argv_free(&a);
}
