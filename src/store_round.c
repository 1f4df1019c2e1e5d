/*
 * store_round: a round of calls on a Redis Cluster (see store_round.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_round.h"
#include "xmalloc.h"

struct store_argv *
store_round_add(struct store_round *r, int script, const char *key)
{
	struct store_round_call *o;

	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 16;
		r->ops = xrealloc(r->ops, r->cap * sizeof(*r->ops));
	}
	o = &r->ops[r->n++];
	store_argv_init(&o->a);
	snprintf(o->key, sizeof(o->key), "%s", key);
	o->script = script;
	return &o->a;
}

struct store_argv *
store_round_script(struct store_round *r, enum store_script which, size_t nkeys, const char *key)
{
	struct store_argv *a = store_round_add(r, (int)which, key);

	store_argv_addf(a, "%zu", nkeys);
	store_argv_addcopy(a, key, strlen(key));
	return a;
}

int
store_round_run(struct store *st, struct store_round *r)
{
	struct store_op *ops;
	size_t i;
	int rc;

	if (r->n == 0)
		return 0;
	ops = xcalloc(r->n, sizeof(*ops));
	r->rep = xcalloc(r->n, sizeof(*r->rep));
	r->st = xcalloc(r->n, sizeof(*r->st));
	for (i = 0; i < r->n; i++) {
		ops[i].key = r->ops[i].key;
		ops[i].keylen = strlen(r->ops[i].key);
		ops[i].script = r->ops[i].script;
		ops[i].argv = &r->ops[i].a;
	}
	rc = store_run(st, ops, r->n, 0, r->rep, r->st);
	free(ops);
	return rc;
}

const char *
store_round_str(const struct store_round *r, size_t i)
{
	const redisReply *x = r->st != NULL && r->st[i] == STORE_OP_OK ? r->rep[i] : NULL;

	return x != NULL && (x->type == REDIS_REPLY_STRING || x->type == REDIS_REPLY_STATUS) ? x->str : NULL;
}

void
store_round_free(struct store_round *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		store_argv_free(&r->ops[i].a);
	free(r->ops);
	free(r->rep);
	free(r->st);
	memset(r, 0, sizeof(*r));
}

const char *
store_round_arg(const struct store_argv *a, size_t i)
{
	return a->v[i] != NULL ? a->v[i] : a->owned + a->off[i];
}
