/*
 * store_round: one round of the store's calls on a Redis Cluster, where a request's keys
 * span slots and the one-script steps of a single Redis become rounds of calls run in
 * parallel over the masters (store_run): each call with the key that routes it, a script
 * call naming its keys (KEYS) so that a migrating slot answers ASK or TRYAGAIN before
 * anything runs. Used by store_write.c and store_read.c (docs/CONSISTENCY.md "On a Redis
 * Cluster"); works on one Redis too (one pipelined round trip).
 */
#ifndef PARTNERD_STORE_ROUND_H
#define PARTNERD_STORE_ROUND_H

#include <stddef.h>

#include "store.h"

struct store_round_call {
	struct store_argv a;
	char key[160];
	int script;
};

struct store_round {
	struct store_round_call *ops;
	size_t n, cap;
	redisReply **rep;               /* after store_round_run: one per call */
	enum store_op_status *st;
};

/* A command (script -1) routed by key: the caller adds its arguments to the argv returned. */
struct store_argv *store_round_add(struct store_round *r, int script, const char *key);
/* A script call: numkeys and key (its first KEY, which routes it) are added here; the caller
 * adds the other nkeys - 1 keys, then the script's ARGV. */
struct store_argv *store_round_script(struct store_round *r, enum store_script which, size_t nkeys,
                                      const char *key);
/* Runs every call in parallel; 0 when every one got its reply (rep[i], st[i] per call). */
int store_round_run(struct store *st, struct store_round *r);
/* Call i's reply when it is a string or status, else NULL. */
const char *store_round_str(const struct store_round *r, size_t i);
void store_round_free(struct store_round *r);
/* Argument i of a (borrowed, or in a's arena). */
const char *store_round_arg(const struct store_argv *a, size_t i);

#endif
