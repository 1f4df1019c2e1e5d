/*
 * write_state: what the stages of the write pipeline share (write.c -> write_round.c ->
 * respond.c): the state of one write request and of each of its customer entries, and the
 * few things every stage does to an entry. No I/O.
 */
#ifndef PARTNERD_WRITE_STATE_H
#define PARTNERD_WRITE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"                /* struct auth_org */
#include "handler.h"             /* struct routes_cfg */
#include "idem.h"                /* struct idem_claim */
#include "request.h"
#include "rules.h"
#include "store_write.h"         /* struct store_begin_in */

/* One customer entry of a write request, from identify to respond. */
struct write_entry {
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

/* One write request, as its stages see it (write.c owns it). */
struct write_request {
	const struct routes_cfg *cfg;
	struct store *st;
	const struct auth_org *org;
	enum req_kind kind;
	const char *rid;                /* request id, written into the events */
	char token[33];                 /* this request's lock token: 128 random bits, hex */
	struct idem_claim *ic;          /* the Idempotency-Key claim; NULL: none */
	struct write_entry *es;         /* the entries, in request order */
	size_t n;
};

/*
 * Sets up es for entry e (its results allocated), validates and normalises its
 * identifiers; decides 400 when one is bad or none is given. Free with write_entry_free.
 */
void write_entry_init(struct write_entry *es, const struct req_entry *e, const struct auth_org *org);
void write_entry_free(struct write_entry *es);

/* Every item of the entry answers code (message NULL: the code's own message). */
void write_entry_fail_items(struct write_entry *es, int code, const char *message);
/* The items of the entry that were to be applied (200) answer code instead. */
void write_entry_fail_applied(struct write_entry *es, int code, const char *message);

/* How many entries of w are not decided yet. */
size_t write_pending(const struct write_request *w);
/*
 * Decides every pending entry at customer level (1000) with all its items answering code
 * (message NULL: the code's own). Returns how many there were.
 */
size_t write_fail_pending(struct write_request *w, int code, const char *message);

#endif
