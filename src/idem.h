/*
 * idem: the Idempotency-Key policy of the write routes (SPEC §6): which keys are valid, the
 * claim a request takes before it changes anything (or the answer it gets instead: a
 * replay of the stored response, 409, 422, 503), the response stored for replays, and the
 * answer of a request whose claim was taken over. The Redis side is store_write.c's
 * (store_idem_claim, store_idem_finish -> src/lua/idem.lua).
 */
#ifndef PARTNERD_IDEM_H
#define PARTNERD_IDEM_H

#include <stddef.h>

#include "handler.h"             /* struct routes_cfg, struct routes_outcome */
#include "http.h"
#include "store_write.h"         /* struct store_idem */

/* The item message of a change not applied because the request's claim was lost. */
#define IDEM_FENCED_ITEM_MSG "this request's Idempotency-Key claim expired or was taken over by a repeat of the request before this change was stored; nothing of it was applied: repeat the request with the same Idempotency-Key to get its outcome"

/* The Idempotency-Key claim a request holds (SPEC §6); every commit checks it (commit.lua). */
struct idem_claim {
	struct store_idem s;
	int lost;                       /* a commit found it expired or taken over: IDEM_FENCED */
};

enum idem_state { IDEM_NONE, IDEM_CLAIMED, IDEM_ANSWERED };

/* 0 when the request has no Idempotency-Key or a valid one; else -1 after answering 400. */
int idem_check_key(struct http_req *r, struct routes_outcome *out);

/*
 * Claims the request's Idempotency-Key for a new random token (ic receives the claim).
 * Returns IDEM_NONE when the request has no key, IDEM_CLAIMED when the caller must process
 * it, passing ic to every commit, and then call idem_finish, IDEM_ANSWERED when this
 * function already answered (replay, 409, 422 or 503).
 * The claim expires IDEM_RUNNING_TTL_MS plus --lock-wait-ms after it was taken or after the
 * request's last commit, so that a live request waiting for busy locks keeps it.
 */
enum idem_state idem_claim(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
                           const char *org, const char *route, struct idem_claim *ic,
                           struct routes_outcome *out);

/*
 * Stores the processed request's response for replays (status 200), or frees the claim
 * (any other status) so that a repeat is processed anew; both only while the claim is
 * still this request's: a request whose claim expired or was taken over stores nothing.
 */
void idem_finish(struct store *st, const struct idem_claim *ic, int status, const char *body, size_t len);

/*
 * Answers 409 for a request fenced by its claim that applied nothing: as a request that
 * found the key taken would, since the repeat that holds the key has the outcome.
 */
void idem_answer_fenced(struct http_req *r, struct routes_outcome *out);

#endif
