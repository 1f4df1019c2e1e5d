/*
 * store_read: the read routes' side of the store (read.lua, settle.lua), in the domain's
 * terms: look a customer up by one of its identifiers, read its memberships and the org's
 * program definitions or one page of its history, and write a read's settled relinks back.
 * Key names, script arguments and reply shapes stay in store_read.c.
 *
 * Texts (struct store_text) point into the store's reply arena: valid until
 * store_replies_release (store.h), and NUL-terminated (len excludes the NUL; a text may
 * hold NUL bytes of its own).
 */
#ifndef PARTNERD_STORE_READ_H
#define PARTNERD_STORE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"
#include "store.h"

/* Bytes in the store's reply arena (see the top of this file). */
struct store_text {
	const char *p;
	size_t len;
};

/* One program definition of the org as stored: its name and its definition (JSON). */
struct store_program_def {
	struct store_text name;
	struct store_text def;
};

enum store_read_what { STORE_READ_PROGRAMS, STORE_READ_HISTORY };

struct store_read_query {
	const char *org;
	const char *id_kind;            /* "id", "mobile", "email" or "externalId" */
	const char *id_value;           /* normalised (a mobile in its stored form), NUL-terminated */
	const char *cred;               /* hex BLAKE2b of the username: its rate window */
	int rate_limit;                 /* requests per minute per credential; 0: no limit */
	enum store_read_what what;
	/* STORE_READ_HISTORY: entries offset .. offset+limit-1 (newest first) of those of the
	 * named program (NULL or "": every program); with a program, only the newest scan_max
	 * entries are looked at (read.lua). */
	int offset, limit;
	const char *program;
	int scan_max;
};

enum store_read_status {
	STORE_READ_OK = 0,              /* the customer was found: see the result */
	STORE_READ_NOT_FOUND,           /* no customer has that identifier */
	STORE_READ_LIMITED,             /* over the credential's rate limit: retry_after */
	STORE_READ_DOWN,                /* Redis could not be asked (store_error says why) */
	STORE_READ_MALFORMED,           /* Redis answered something the script never returns */
};

struct store_read_result {
	int retry_after;                /* STORE_READ_LIMITED: seconds, >= 1 */
	/* STORE_READ_OK: */
	struct rules_customer customer; /* cid and the stored memberships (values that do not
	                                 * decode are left out); owned: rules_customer_free */
	/* The stored identifiers (absent ones empty) and the version the fence of
	 * store_settle compares with. */
	struct store_text id, mobile, email, external_id, version;
	/* STORE_READ_PROGRAMS: the org's program definitions (an array in the store's reply
	 * arena, or NULL when there are none) */
	struct store_program_def *programs;
	size_t nprograms;
	/* STORE_READ_HISTORY: the page's entries (compact records, or JSON of an older
	 * partnerd) and the number of entries that match (read.lua) */
	struct store_text *page;
	size_t npage;
	int64_t total;
};

/*
 * Counts the request against its credential's rate window and reads what q asks for, in
 * one round trip. Fills *res (zeroed first) and returns its status; free res->customer
 * (rules_customer_free) whatever the status.
 */
enum store_read_status store_read(struct store *st, const struct store_read_query *q,
                                  struct store_read_result *res);

/*
 * Writes the settled memberships of c (its dirty, present slots) back, releases the
 * membership ids they no longer hold and indexes the new ones (settle.lua), fenced by
 * version (the customer's as read) and by the customer's lock, so that it never
 * overwrites a writer's change. Its outcome is not reported: a writer holding the lock
 * settles the customer in its own commit, and a failed write-back is tried again by the
 * next read.
 */
void store_settle(struct store *st, const char *org, const struct rules_customer *c,
                  struct store_text version);

#endif
