/*
 * write_round: one round of the write pipeline, begin -> decide -> commit (write_round.h).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"
#include "progcache.h"
#include "respond.h"
#include "rules.h"
#include "store_write.h"
#include "testfault.h"
#include "write_round.h"
#include "xmalloc.h"

#define COMMIT_CONFLICT_RETRIES 5

/* settle_deps: an item's 2101 leaned on a claim of this request that did not apply */
#define CLAIMANT_NOT_APPLIED_MESSAGE "an earlier entry of this request claims this membership id, and its change had not surely applied when this item was decided; nothing of this item was applied: retry"

/*
 * When Redis refuses a write for memory (maxmemory), the answers say so, instead of a read
 * error or a broken key: nothing was applied, the client can only retry later, and an
 * operator has to free memory or raise maxmemory.
 */
#define OOM_ITEM_MESSAGE "the data store is out of memory (Redis maxmemory reached) and refused the change; nothing of it was applied: retry later (an operator must free memory or raise maxmemory)"

/* What became of a locked customer before its commit. */
enum lock_outcome {
	LOCK_OK = 0,                    /* loaded: its entries are decided by the rules */
	LOCK_UNREADABLE,                /* its stored data could not be read: commit releases it unchanged */
};

/* What resolving a commit whose reply was lost found for one customer (commit_resolve). */
enum { LOST_NO = 0, LOST_APPLIED, LOST_NOT_APPLIED, LOST_UNKNOWN };

/* One customer locked in this round (entries of the same customer share it). */
struct locked {
	int64_t cid;
	char version[24];
	struct rules_customer cust;
	struct write_entry **entries;   /* entries applied to this customer, in order */
	size_t nentries;
	enum lock_outcome outcome;
	int lost;                       /* LOST_*: what became of a commit whose reply was lost */
};

/* round_init and decide_entry put arrays of these types one after the other in one block. */
_Static_assert(sizeof(struct locked) % _Alignof(void *) == 0, "locks, then pointer arrays");

/* One round's working set. */
struct round {
	struct write_entry **pend;      /* the pending entries, in request order */
	const struct store_begin_in **bin; /* their identifiers and items, for begin */
	struct locked **lock_of;        /* pend[i]'s locked customer; NULL: none this round */
	size_t np;
	struct locked *locks;           /* the customers locked this round */
	size_t nl;
	struct store_begin_res br;      /* begin's answer, one per pending entry */
	struct claim_dep *deps;         /* items answered 2101 for an id claimed in this round */
	size_t ndeps, capdeps;
};

/*
 * An item decided 2101 because an earlier entry of another customer claims its membership id
 * in this round: the answer holds only if that customer's commit applies (decide_entry,
 * settle_deps).
 */
struct claim_dep {
	struct write_entry *e;
	size_t item;
	int64_t claimant;
};

/* ---- begin: identify, lock and read ------------------------------------------------------ */

static void
copy_stored(struct write_entry *dst, const struct write_entry *src)
{
	int k;

	for (k = 0; k < 4; k++)
		if (dst->stored[k] == NULL && src->stored[k] != NULL)
			dst->stored[k] = xmemdup(src->stored[k], strlen(src->stored[k]));
	dst->found = 1;
}

/* Takes pending entry i's begin outcome: decided customer-level codes, or its customer's state. */
static void
take_begin(struct round *rd, size_t i)
{
	struct write_entry *e = rd->pend[i];
	struct store_begin_out *o = &rd->br.e[i];
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
		write_entry_fail_items(e, 2001, o->oom ? OOM_ITEM_MESSAGE :
		                       "this customer's stored data could not be read; nothing was applied");
		break;
	case STORE_BEGIN_BUSY:
		e->cid = o->cid;
		break;
	case STORE_BEGIN_LOCKED: {
		struct locked *lk = &rd->locks[rd->nl++];

		lk->cid = e->cid = o->cid;
		lk->entries = xcalloc(rd->np, sizeof(*lk->entries));
		lk->entries[lk->nentries++] = e;
		rd->lock_of[i] = lk;
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
		for (k = 0; k < rd->nl; k++) {
			if (rd->locks[k].cid == e->cid) {
				rd->locks[k].entries[rd->locks[k].nentries++] = e;
				rd->lock_of[i] = &rd->locks[k];
				copy_stored(e, rd->locks[k].entries[0]);
				break;
			}
		}
		break;
	}
}

/* ---- decide: the rules, pure ------------------------------------------------------------- */

_Static_assert(sizeof(struct rules_program) % _Alignof(struct rules_item_ctx) == 0,
               "programs, then their contexts");

/*
 * Applies the rules to entry e of customer lk, with the program definitions and id holders
 * the store read for its items. Membership ids claimed or given up by earlier entries of
 * the round (claims) override the holders, and the entry's own are added. An item answered
 * 2101 because of another customer's claim in this round is noted in rd's deps.
 */
static void
decide_entry(enum req_kind kind, struct round *rd, struct write_entry *e, struct locked *lk,
             const struct store_item_snap *items, struct rules_claims *claims, int64_t now_ms)
{
	struct rules_program *progs;
	struct rules_item_ctx *ctx;
	size_t it;

	/* one allocation: the programs, then their contexts */
	progs = xcalloc(e->e->nitems, sizeof(*progs) + sizeof(*ctx));
	ctx = (struct rules_item_ctx *)(progs + e->e->nitems);
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
		if (e->results[it].code == 2101 && ctx[it].mid_holder != items[it].mid_holder &&
		    ctx[it].mid_holder != 0 && ctx[it].mid_holder != lk->cid) {
			if (rd->ndeps == rd->capdeps) {
				rd->capdeps = rd->capdeps ? 2 * rd->capdeps : 4;
				rd->deps = xrealloc(rd->deps, rd->capdeps * sizeof(*rd->deps));
			}
			rd->deps[rd->ndeps++] = (struct claim_dep){ e, it, ctx[it].mid_holder };
		}
		rules_claims_note(claims, progs[it].pid, &e->results[it], lk->cid);
		rules_program_free(&progs[it]);
	}
	free(progs);
}

/* Decides every entry whose customer this round locked, in request order (also across customers). */
static void
decide_round(enum req_kind kind, struct round *rd, int64_t now_ms)
{
	struct rules_claims claims = { 0 };
	size_t i;

	for (i = 0; i < rd->np; i++) {
		struct write_entry *e = rd->pend[i];
		struct locked *lk = rd->lock_of[i];

		if (lk == NULL)
			continue;
		e->decided = 1;
		e->cust_code = 1000;
		if (lk->outcome == LOCK_OK)
			decide_entry(kind, rd, e, lk, rd->br.e[i].items, &claims, now_ms);
	}
	rules_claims_free(&claims);
}

/* ---- commit: the fenced write, and the taking of its answers ----------------------------- */

/*
 * The history entries / change-feed events of lk's applied items, in request order, as
 * compact records (activity.h) appended to text, described in ev (from *nev on).
 */
static size_t
add_events(struct buf *text, struct store_event *ev, size_t *nev, const struct locked *lk,
           const char *rid, int64_t now_ms)
{
	size_t j, k, first = *nev;

	for (j = 0; j < lk->nentries; j++) {
		const struct write_entry *e = lk->entries[j];

		if (!e->decided)
			continue;
		for (k = 0; k < e->e->nitems; k++) {
			if (e->results[k].code != 200)
				continue;
			ev[*nev].type = rules_event_name[e->results[k].event];
			ev[*nev].off = text->len;
			respond_event(text, &e->results[k], &e->e->items[k], lk->cid, rid, now_ms);
			ev[*nev].len = text->len - ev[*nev].off;
			(*nev)++;
		}
	}
	return *nev - first;
}

/*
 * The commit of the customers whose status in cst is LOST (all of them on one Redis; those
 * of some partitions on a cluster) gave no usable answer. When nothing of it was sent
 * (maybe_ran 0) it did not run: LOST_NOT_APPLIED. Otherwise the store finds out, on a
 * new connection when the old one broke, within one --redis-timeout-ms, customer by
 * customer: applied, not applied (and fenced from now on: a commit still queued on the
 * dead connection cannot apply any more), or unknown; a resolution that fails is unknown
 * too (docs/CONSISTENCY.md "A commit whose reply is lost").
 */
static void
commit_resolve(struct store *st, const char *org, const char *token, struct locked *locks,
               const struct store_commit_cust *cc, const enum store_commit_status *cst, size_t nl,
               int maybe_ran)
{
	enum store_resolved *res = NULL;
	struct store_commit_cust *lost = xcalloc(nl, sizeof(*lost));
	size_t k, n = 0;

	for (k = 0; k < nl; k++)
		if (cst[k] == STORE_COMMIT_LOST)
			lost[n++] = cc[k];
	if (maybe_ran) {
		res = xcalloc(n, sizeof(*res));
		store_commit_resolve(st, org, token, lost, n, res);
	}
	for (k = 0, n = 0; k < nl; k++) {
		if (cst[k] != STORE_COMMIT_LOST)
			continue;
		n++;
		if (!maybe_ran || res[n - 1] == STORE_RESOLVED_NOT_APPLIED) {
			locks[k].lost = LOST_NOT_APPLIED;
			metrics_in_doubt(MI_NOT_APPLIED);
		} else if (res[n - 1] == STORE_RESOLVED_APPLIED) {
			locks[k].lost = LOST_APPLIED;
			metrics_in_doubt(MI_APPLIED);
		} else {
			locks[k].lost = LOST_UNKNOWN;
			metrics_in_doubt(res[n - 1] == STORE_RESOLVED_UNKNOWN ? MI_UNKNOWN : MI_FAILED);
		}
	}
	free(res);
	free(lost);
}

/*
 * Takes the commit's answer for the j-th entry of customer lk: what was not applied
 * answers why, and an entry that met a membership-id race is run again (pending).
 * *oom_probe: 0 until a BROKEN commit asked whether Redis is out of memory, then 1 or -1.
 */
static void
take_commit(struct write_request *w, struct locked *lk, size_t j, enum store_commit_status status,
            int *oom_probe)
{
	struct write_entry *e = lk->entries[j];

	if (lk->outcome == LOCK_UNREADABLE) {
		write_entry_fail_items(e, 2001, "the customer's stored data could not be read; nothing was applied");
	} else if (lk->lost == LOST_NOT_APPLIED) {
		write_entry_fail_applied(e, 2001, "the change could not be stored (the store failed during the commit); nothing of it was applied");
	} else if (lk->lost == LOST_UNKNOWN) {
		write_entry_fail_applied(e, 2011, "the store failed while committing and partnerd could not find out in time whether the change applied: read the customer's memberships or history, or retry with the same Idempotency-Key");
	} else if (lk->lost == LOST_APPLIED || status == STORE_COMMIT_OK) {
		/* applied: the items stand as decided */
	} else if (status == STORE_COMMIT_BROKEN) {
		if (*oom_probe == 0)
			*oom_probe = store_refuses_writes(w->st, w->org->org, lk->cid) ? 1 : -1;
		write_entry_fail_items(e, 2001, *oom_probe > 0 ? OOM_ITEM_MESSAGE :
		                       "the change could not be stored (a stored key has an unexpected type); nothing was applied");
	} else if (status == STORE_COMMIT_FENCED) {
		if (j == 0)
			metrics_fenced();
		write_entry_fail_applied(e, 2010, "the customer's lock expired before the change was stored; nothing was applied: retry");
	} else if (status == STORE_COMMIT_IDEM_FENCED) {
		if (w->ic != NULL)
			w->ic->lost = 1;
		write_entry_fail_applied(e, 2001, IDEM_FENCED_ITEM_MSG);
	} else if (status == STORE_COMMIT_CONFLICT) {
		/* A membership id was claimed meanwhile by another customer: run again. */
		e->conflicts++;
		if (e->conflicts > COMMIT_CONFLICT_RETRIES) {
			write_entry_fail_items(e, 2010, "concurrent changes kept conflicting with this one: retry");
		} else {
			e->decided = 0;
			e->cust_code = 0;
		}
	}
}

/*
 * An item answered 2101 for an id that another customer of the round claims (claim_dep) keeps
 * that answer only when the claimant's commit applied. Otherwise nobody may hold the id, and
 * the item answers 2010: nothing of it was applied (a 2101 writes nothing either way), retry.
 * (Found by the cluster nemesis: a 2101 while the claimant's commit failed, 2001, which no
 * serial order explains. Deciding the item only after the claimant's commit would need a
 * round of its own and could not keep request order when two customers name each other's
 * ids.)
 */
static void
settle_deps(struct round *rd, const enum store_commit_status *cst)
{
	size_t d, k;

	for (d = 0; d < rd->ndeps; d++) {
		const struct claim_dep *x = &rd->deps[d];
		int applied = 0;

		if (!x->e->decided || x->e->results[x->item].code != 2101)
			continue;               /* runs again (CONFLICT), or answered otherwise since */
		for (k = 0; k < rd->nl; k++)
			if (rd->locks[k].cid == x->claimant)
				applied = rd->locks[k].lost == LOST_APPLIED ||
				          (rd->locks[k].lost == LOST_NO && cst[k] == STORE_COMMIT_OK);
		if (!applied) {
			rules_result_free(&x->e->results[x->item]);
			x->e->results[x->item].code = 2010;
			x->e->results[x->item].message = CLAIMANT_NOT_APPLIED_MESSAGE;
		}
	}
}

/*
 * Commits the customers locked this round and takes the answers: the items of a customer
 * whose commit failed answer why.
 */
static void
commit_round(struct write_request *w, struct round *rd, int64_t now_ms)
{
	struct locked *locks = rd->locks;
	size_t nl = rd->nl;
	struct store_commit_cust *cc;
	enum store_commit_status *cst;
	struct store_event *ev;
	struct buf text;
	size_t i, j, k, nev = 0, nitems = 0;
	int maybe_ran = 0, oom_probe = 0;

	for (i = 0; i < rd->np; i++)
		nitems += rd->pend[i]->e->nitems;
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
				write_entry_fail_items(locks[k].entries[i], 2001, "the customer's stored data could not be read; nothing was applied");
			cc[k].cust = &empty;
		}
		cc[k].events = ev + nev;
		cc[k].nevents = add_events(&text, ev, &nev, &locks[k], w->rid, now_ms);
	}
#ifdef PARTNERD_TEST_FAULTS
	if (testfault_skip_commit())            /* ack-before-commit: not sent, answered as applied */
		for (k = 0; k < nl; k++)
			cst[k] = STORE_COMMIT_OK;
	else
#endif
	store_commit(w->st, &(struct store_commit_req){ .org = w->org->org, .token = w->token,
	                                                .history_max = w->cfg->history_max,
	                                                .feed_max = w->cfg->feed_max,
	                                                .lock_ttl_ms = w->cfg->lock_ttl_ms,
	                                                .idem = w->ic != NULL ? &w->ic->s : NULL,
	                                                .event_text = text.p, .n = nl, .c = cc },
	             cst, &maybe_ran);
	/* On one Redis the whole commit is lost or none of it; on a cluster each partition's */
	for (k = 0; k < nl; k++)
		if (cst[k] == STORE_COMMIT_LOST)
			break;
	if (k < nl)
		commit_resolve(w->st, w->org->org, w->token, locks, cc, cst, nl, maybe_ran);
#ifdef PARTNERD_TEST_FAULTS
	for (k = 0; k < nl; k++)
		if (cst[k] == STORE_COMMIT_OK && testfault_lose_ack())
			locks[k].lost = LOST_NOT_APPLIED;
#endif
	buf_free(&text);

	for (k = 0; k < nl; k++)
		for (j = 0; j < locks[k].nentries; j++)
			if (locks[k].entries[j]->decided)
				take_commit(w, &locks[k], j, cst[k], &oom_probe);
	settle_deps(rd, cst);
	free(cc);
	free(cst);
	free(ev);
}

/* ---- the round ----------------------------------------------------------------------------- */

/* Sets up rd with w's pending entries (its arrays in one allocation). */
static void
round_init(struct round *rd, const struct write_request *w)
{
	size_t i;
	char *block = xcalloc(w->n, sizeof(*rd->locks) + sizeof(*rd->pend) + sizeof(*rd->bin) +
	                      sizeof(*rd->lock_of));

	memset(rd, 0, sizeof(*rd));
	rd->locks = (struct locked *)block;
	rd->pend = (struct write_entry **)(block + w->n * sizeof(*rd->locks));
	rd->bin = (const struct store_begin_in **)(rd->pend + w->n);
	rd->lock_of = (struct locked **)(rd->bin + w->n);
	for (i = 0; i < w->n; i++)
		if (!w->es[i].decided) {
			rd->bin[rd->np] = &w->es[i].in;
			rd->pend[rd->np++] = &w->es[i];
		}
}

static void
round_free(struct round *rd)
{
	size_t k;

	for (k = 0; k < rd->nl; k++) {
		rules_customer_free(&rd->locks[k].cust);
		free(rd->locks[k].entries);
	}
	store_begin_res_free(&rd->br);
	free(rd->deps);
	free(rd->locks);                /* and the other arrays: round_init */
}

int
write_round_run(struct write_request *w, int64_t now_ms, int count_rate, int *limited)
{
	struct round rd;
	size_t i;
	int rc = -1;

	round_init(&rd, w);
	if (store_begin(w->st, &(struct store_begin_req){ .org = w->org->org, .cred = w->org->cred,
	                                                  .token = w->token,
	                                                  .lock_ttl_ms = w->cfg->lock_ttl_ms,
	                                                  .rate_limit = count_rate ? w->cfg->rate_limit : 0,
	                                                  .kind = w->kind, .n = rd.np, .entries = rd.bin },
	                &rd.br) != 0)
		goto out;
	rc = 0;
	if (rd.br.limited > 0) {
		*limited = rd.br.limited;
		goto out;
	}
	/* Customers, in entry order; entries of one customer share its state. */
	for (i = 0; i < rd.np; i++)
		take_begin(&rd, i);
	decide_round(w->kind, &rd, now_ms);
	/* The commit: every locked customer, changed or not (its lock is released). */
	if (rd.nl > 0)
		commit_round(w, &rd, now_ms);
out:
	round_free(&rd);
	return rc;
}
