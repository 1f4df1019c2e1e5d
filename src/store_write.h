/*
 * store_write: the write path's store (docs/CONSISTENCY.md). It alone knows the key names,
 * the arguments and replies of begin.lua, commit.lua, resolve.lua and idem.lua, and the
 * scripts' statuses; its callers speak of customers, snapshots and decided changes.
 *
 * Lifetimes: pointers into results (program definitions, a replayed body) stay valid until
 * store_replies_release (store.h), like the replies they come from.
 */
#ifndef PARTNERD_STORE_WRITE_H
#define PARTNERD_STORE_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "request.h"
#include "rules.h"
#include "store.h"

/* ---- begin: identify, lock and read customers ------------------------------------------ */

enum store_ident { STORE_IDENT_ID, STORE_IDENT_MOBILE, STORE_IDENT_EMAIL, STORE_IDENT_EXTERNAL };

/* A customer entry to begin: its identifiers (normalised) and its items. */
struct store_begin_in {
	const struct req_entry *e;
	size_t nidents;
	enum store_ident kind[4];
	const char *val[4];             /* borrowed */
	size_t len[4];
};

struct store_begin_req {
	const char *org;
	const char *cred;               /* the credential's rate key part (auth_org.cred) */
	const char *token;              /* this request's lock token */
	int lock_ttl_ms;
	int rate_limit;                 /* > 0: count the request in the credential's window */
	enum req_kind kind;
	size_t n;
	const struct store_begin_in *const *entries;
};

enum store_begin_status {
	STORE_BEGIN_LOCKED,             /* locked for this request: snapshot and items below */
	STORE_BEGIN_DUP,                /* locked by an earlier entry of this request: items */
	STORE_BEGIN_BUSY,               /* another request holds the customer's lock */
	STORE_BEGIN_NOT_FOUND,          /* no identifier names a customer (8015) */
	STORE_BEGIN_MISMATCH,           /* the identifiers name different customers (8016) */
	STORE_BEGIN_UNREADABLE          /* the stored data could not be read: nothing locked */
};

/* What the store holds for one item of an entry. */
struct store_item_snap {
	const char *def;                /* the program definition; NULL when no such program */
	size_t def_len;
	int64_t mid_holder;             /* customer holding the item's membership id, 0 free */
};

struct store_begin_out {
	enum store_begin_status status;
	int oom;                        /* UNREADABLE because Redis is out of memory */
	int64_t cid;                    /* LOCKED, DUP, BUSY */
	/* LOCKED: the snapshot, the caller's to keep (free ident[] and cust). */
	char version[24];
	char *ident[4];                 /* stored id, mobile, email, externalId; NULL: none */
	struct rules_customer cust;
	int bad_snapshot;               /* a stored membership could not be parsed (ident[] and
	                                 * cust then hold what was read before it) */
	struct store_item_snap *items;  /* LOCKED and DUP: one per item of the entry */
};

struct store_begin_res {
	int limited;                    /* > 0: over the rate limit, seconds to wait; no entries */
	struct store_begin_out *e;      /* n, in entry order */
	struct store_item_snap *items_block;
};

/* 0 (res filled; free it with store_begin_res_free), or -1 when the store failed. */
int store_begin(struct store *st, const struct store_begin_req *rq, struct store_begin_res *res);
/* Frees res's arrays (not the snapshots the caller took over). */
void store_begin_res_free(struct store_begin_res *res);

/* ---- commit: the fenced write of decided changes ------------------------------------- */

/* The Idempotency-Key claim a request holds (SPEC §6); every commit checks it. */
struct store_idem {
	char ref[128];                  /* the store's name for the claim */
	char token[33];                 /* this request's claim: 128 random bits, hex */
	int ttl_ms;                     /* the claim's expiry while running, renewed by commits */
};

/* A history entry / change-feed event: its type and compact record (activity.h; at off in
 * event_text). */
struct store_event {
	const char *type;
	size_t off, len;
};

struct store_commit_cust {
	int64_t cid;
	const char *version;            /* as read by begin */
	const struct rules_customer *cust; /* its changed slots are written (rules_slot_change) */
	size_t nevents;
	const struct store_event *events;
};

struct store_commit_req {
	const char *org;
	const char *token;
	int history_max, feed_max;
	int lock_ttl_ms;                /* a cluster's takeover locks a holder this long */
	const struct store_idem *idem;  /* NULL: no Idempotency-Key */
	const char *event_text;
	size_t n;
	const struct store_commit_cust *c;
};

enum store_commit_status {
	STORE_COMMIT_OK,                /* written, lock released */
	STORE_COMMIT_FENCED,            /* the lock expired or the version changed: nothing written */
	STORE_COMMIT_CONFLICT,          /* a claimed membership id is another customer's */
	STORE_COMMIT_BROKEN,            /* Redis refused a write: nothing written */
	STORE_COMMIT_IDEM_FENCED,       /* the Idempotency-Key claim is not ours any more */
	STORE_COMMIT_LOST               /* no usable reply: see store_commit_resolve */
};

/*
 * Commits rq->c[0..n) in one step and writes one status per customer into out. On LOST
 * (all customers then) *maybe_ran says whether the commit may have run.
 */
void store_commit(struct store *st, const struct store_commit_req *rq, enum store_commit_status *out,
                  int *maybe_ran);

enum store_resolved {
	STORE_RESOLVED_APPLIED, STORE_RESOLVED_NOT_APPLIED, STORE_RESOLVED_UNKNOWN,
	STORE_RESOLVED_FAILED           /* the resolution itself failed: unknown */
};

/*
 * For a commit whose reply was lost and that may have run: finds out, within one
 * --redis-timeout-ms, customer by customer, whether it applied, and makes one that did not
 * never apply (resolve.lua).
 */
void store_commit_resolve(struct store *st, const char *org, const char *token,
                          const struct store_commit_cust *c, size_t n, enum store_resolved *out);

/* 1 when the store's last error says Redis is out of memory (maxmemory). */
int store_out_of_memory(const struct store *st);
/* After a BROKEN commit: 1 when Redis refuses writes for memory now (a probe that changes
 * nothing, in customer cid's slot). */
int store_refuses_writes(struct store *st, const char *org, int64_t cid);

/* ---- Idempotency-Key (SPEC §6) --------------------------------------------------------- */

enum store_idem_state {
	STORE_IDEM_NEW,                 /* claimed for this request (ic) */
	STORE_IDEM_MISMATCH,            /* used with another body or route */
	STORE_IDEM_RUNNING,             /* the first request is still being processed */
	STORE_IDEM_DONE,                /* answered before: *status and the body to replay */
	STORE_IDEM_UNREADABLE,          /* the stored answer cannot be read */
	STORE_IDEM_ERROR                /* the store failed */
};

/* Claims key for a new random token, fingerprinting route and body; ic receives the claim. */
enum store_idem_state store_idem_claim(struct store *st, const char *org, const char *key,
                                       const char *route, const char *body, size_t body_len,
                                       int ttl_ms, struct store_idem *ic, int *status,
                                       const char **resp, size_t *resp_len);
/*
 * Stores the response for replays (kept done_ttl_ms) or frees the claim, while the claim is
 * still ic's (idem.lua "finish"). The outcome is not looked at: if this fails, the claim
 * expires.
 */
void store_idem_finish(struct store *st, const struct store_idem *ic, int status, const char *body,
                       size_t len, long long done_ttl_ms);

#endif
