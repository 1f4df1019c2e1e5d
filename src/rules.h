/*
 * rules: the business rules of the three write routes, applied to one customer's
 * snapshot. Pure: no FastCGI, no Redis, no clock (the time is an argument).
 *
 * The shell (write_round.c, one round of write.c's pipeline) reads the customer's snapshot
 * under its lock (store_begin, store_write.h), calls rules_apply for each of the customer's
 * entries in request order (decide_entry), and commits the slots the rules marked dirty in
 * one fenced step (commit_round); what that step writes for a slot is rules_slot_change's
 * answer.
 */
#ifndef PARTNERD_RULES_H
#define PARTNERD_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "dates.h"
#include "request.h"
#include "rules_codec.h"

/*
 * The types the rules work on (programs, membership values) and their stored forms are
 * rules_codec.h's.
 */

/* One program slot of a customer: present or not, before and after the rules. */
struct rules_slot {
	int pid;
	int present;                    /* a membership exists now */
	struct rules_membership m;
	int dirty;                      /* changed since the snapshot */
	/* As read from the store, for working out index changes at commit time: */
	int was_present;
	char *orig_mid, *orig_rl_mid;   /* owned copies, NULL when none */
	size_t orig_mid_len, orig_rl_mid_len;
};

struct rules_customer {
	int64_t cid;
	size_t nslots, cap;
	struct rules_slot *slots;       /* owned */
};

/* Adds a slot for pid from the snapshot (val = the stored membership). Returns 0/-1. */
int rules_customer_load_slot(struct rules_customer *c, int pid, const char *val, size_t len);
void rules_customer_free(struct rules_customer *c);
struct rules_slot *rules_customer_slot(struct rules_customer *c, int pid, int create);

/* What an applied item changed, for the history and the change feed. */
enum rules_event {
	EV_NONE = 0, EV_LINK, EV_UPDATE, EV_DELINK, EV_RELINK_SCHEDULED, EV_RELINK_CANCELLED
};
extern const char *const rules_event_name[];

struct rules_result {
	int code;                       /* 200 or an error code of SPEC §4 */
	const char *message;            /* static text */
	enum rules_event event;         /* EV_NONE unless code == 200 */
	int has_before, has_after;
	struct rules_values before;     /* owned copies: the membership before and after */
	struct rules_values after;
};

/* Frees the owned parts of a result (its event values). */
void rules_result_free(struct rules_result *r);

/* Inputs for one item that come from the store. */
struct rules_item_ctx {
	const struct rules_program *prog;   /* never NULL; prog->found 0 when unknown */
	int64_t mid_holder;                 /* link: customer holding the item's membership id
	                                     * in that program, 0 when free */
};

/*
 * Applies one customer entry of the given kind to c, item by item in order: each item is
 * checked against c as changed by the items before it; a failing item changes nothing.
 * Writes one result per item. Pending relinks whose start has passed are made current
 * first (that also marks the slot dirty).
 */
void rules_apply(enum req_kind kind, struct rules_customer *c, const struct req_entry *entry,
                 const struct rules_item_ctx *ctx, int64_t now_ms, struct rules_result *results);

/* Makes due pending relinks current; returns the number of slots changed. */
int rules_settle(struct rules_customer *c, int64_t now_ms);

/*
 * The state of SPEC §5 of a membership at now_ms (settle relinks first): "PENDING" (start
 * in the future), "ENDED" (its membershipEndDate has passed: a supplementary membership
 * whose cycle ran out), "TIER_EXPIRED" (tier expiry passed) or "ACTIVE". Static text.
 */
const char *rules_state(const struct rules_membership *m, int64_t now_ms);

/* The default message for a code (also used for customer-level and whole-request codes). */
const char *rules_message(int code);

/*
 * What the commit of a changed slot writes (SPEC §4.1): the stored membership (set) or its
 * removal (del), and the membership-id index entries the customer takes (claim) and gives
 * up (release). Every id the customer holds now (current and pending relink) that it did
 * not hold when read is claimed; every id it held and holds no more is released. The
 * current id of a membership that had a pending relink when read is claimed again (a no-op
 * when the index still names the customer): if Redis's clock found the relink due before
 * ours and another customer took the id over, the commit conflicts instead of leaving the
 * id held twice. An unchanged slot writes nothing.
 */
struct rules_mid_ref {
	int pid;
	const char *mid;                /* borrowed from the slot */
	size_t len;
};

struct rules_slot_change {
	int set;                        /* store the slot's membership */
	int del;                        /* delete the stored membership */
	size_t nclaim, nrelease;
	struct rules_mid_ref claim[2];  /* in this order: current id, pending relink's id */
	struct rules_mid_ref release[2];/* in this order: id read, relink id read */
};

void rules_slot_change(const struct rules_slot *s, struct rules_slot_change *ch);

/*
 * Membership ids claimed or given up by the entries of one request so far: a later entry
 * sees them in the order of SPEC §4.1 (2101 before the tier checks) and the earlier entry
 * wins, as in a serial execution of the request.
 */
struct rules_claim {
	int pid;
	const char *mid;                /* borrowed from a result that outlives the claims */
	size_t len;
	int64_t cid;                    /* holder after the entry; 0: given up */
};

struct rules_claims {
	struct rules_claim *v;
	size_t n, cap;
};

/* The newest claim of (pid, mid) overrides *holder (what the store said); else unchanged. */
void rules_claims_lookup(const struct rules_claims *c, int pid, const char *mid, size_t len,
                         int64_t *holder);
/* Records what an item of customer cid in program pid claimed or gave up, by its result. */
void rules_claims_note(struct rules_claims *c, int pid, const struct rules_result *res, int64_t cid);
void rules_claims_free(struct rules_claims *c);

#endif
