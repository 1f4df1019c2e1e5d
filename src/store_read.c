/*
 * store_read: read.lua and settle.lua behind a typed interface (store_read.h). The key
 * names come from keys.h, the script arguments and reply shapes are described in the
 * scripts themselves.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "layout.h"
#include "store_read.h"
#include "store_round.h"

static struct store_text
text_of(const redisReply *r)
{
	struct store_text t = { "", 0 };

	if (r->type == REDIS_REPLY_STRING) {
		t.p = r->str;
		t.len = r->len;
	}
	return t;
}

/* Picks the identifiers, the version and the memberships out of the customer hash h. */
static void
customer_of(const redisReply *h, struct store_read_result *res)
{
	size_t i;

	if (h->type != REDIS_REPLY_ARRAY)
		return;
	for (i = 0; i + 1 < h->elements; i += 2) {
		const redisReply *f = h->element[i], *v = h->element[i + 1];

		if (f->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(f->str, "id") == 0)
			res->id = text_of(v);
		else if (strcmp(f->str, "mobile") == 0)
			res->mobile = text_of(v);
		else if (strcmp(f->str, "email") == 0)
			res->email = text_of(v);
		else if (strcmp(f->str, "externalId") == 0)
			res->external_id = text_of(v);
		else if (strcmp(f->str, "v") == 0)
			res->version = text_of(v);
		else if (f->len > 2 && f->str[0] == 'm' && f->str[1] == ':' && v->type == REDIS_REPLY_STRING)
			(void)rules_customer_load_slot(&res->customer, atoi(f->str + 2), v->str, v->len);
	}
}

/* The org's program hash (name, definition pairs) as an array in the reply arena. */
static int
programs_of(struct store *st, const redisReply *h, struct store_read_result *res)
{
	size_t i;

	if (h->type != REDIS_REPLY_ARRAY || h->elements < 2)
		return 0;
	res->programs = store_alloc(st, h->elements / 2 * sizeof(*res->programs));
	if (res->programs == NULL)
		return -1;
	for (i = 0; i + 1 < h->elements; i += 2) {
		res->programs[res->nprograms].name = text_of(h->element[i]);
		res->programs[res->nprograms++].def = text_of(h->element[i + 1]);
	}
	return 0;
}

/* The page's entries (the strings of it; read.lua returns nothing else). */
static int
page_of(struct store *st, const redisReply *page, struct store_read_result *res)
{
	size_t i;

	if (page->elements == 0)
		return 0;
	res->page = store_alloc(st, page->elements * sizeof(*res->page));
	if (res->page == NULL)
		return -1;
	for (i = 0; i < page->elements; i++)
		if (page->element[i]->type == REDIS_REPLY_STRING)
			res->page[res->npage++] = text_of(page->element[i]);
	return 0;
}

/*
 * On a Redis Cluster (docs/CONSISTENCY.md "On a Redis Cluster"): round 1 finds the customer
 * (its index bucket, or its hash's existence), counts the rate window and, for the
 * programs route, reads the org's programs; round 2 reads the customer (HGETALL, or read.lua
 * for a history page, in the customer's slot). The identifier was looked up apart from the
 * customer: when the customer read no longer has it (an import moved it meanwhile), the
 * lookup is made again.
 */
static enum store_read_status
read_cluster_once(struct store *st, const struct store_read_query *q, struct store_read_result *res,
                  int *again)
{
	int history = q->what == STORE_READ_HISTORY, byid = strcmp(q->id_kind, "id") == 0;
	struct store_round r1 = { 0 }, r2 = { 0 };
	size_t rate_op = (size_t)-1, progs_op = (size_t)-1, id_op;
	enum store_read_status rs = STORE_READ_DOWN;
	struct store_argv *a;
	const redisReply *x, *rep;
	char key[160], cid[24];
	int64_t c;

	if (q->rate_limit > 0) {
		snprintf(key, sizeof(key), KEYS_RATE_FMT, layout_tag_of(q->cred, strlen(q->cred)), q->org, q->cred);
		rate_op = r1.n;
		a = store_round_script(&r1, STORE_BEGIN, 1, key);
		store_argv_add(a, q->org, strlen(q->org));
		store_argv_add(a, "", 0);
		store_argv_add(a, "0", 1);
		store_argv_addcopy(a, key, strlen(key));
		store_argv_addf(a, "%d", q->rate_limit);
		store_argv_add(a, "0", 1);
	}
	if (!history) {
		snprintf(key, sizeof(key), KEYS_PROGS_FMT, q->org);
		progs_op = r1.n;
		a = store_round_add(&r1, -1, key);
		store_argv_add(a, "HGETALL", 7);
		store_argv_addcopy(a, key, strlen(key));
	}
	id_op = r1.n;
	if (byid) {
		snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(strtoll(q->id_value, NULL, 10)), q->org,
		         (long long)strtoll(q->id_value, NULL, 10));
		a = store_round_add(&r1, -1, key);
		store_argv_add(a, "EXISTS", 6);
	} else {
		snprintf(key, sizeof(key), KEYS_IX_FMT, layout_tag_of(q->id_value, strlen(q->id_value)), q->org, q->id_kind);
		a = store_round_add(&r1, -1, key);
		store_argv_add(a, "HGET", 4);
	}
	store_argv_addcopy(a, key, strlen(key));
	if (!byid)
		store_argv_add(a, q->id_value, strlen(q->id_value));
	if (store_round_run(st, &r1) != 0)
		goto out;
	if (rate_op != (size_t)-1) {
		x = r1.rep[rate_op];
		if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 && x->element[0]->type == REDIS_REPLY_STRING &&
		    strcmp(x->element[0]->str, "LIMITED") == 0) {
			int sec = x->element[1]->type == REDIS_REPLY_STRING ? atoi(x->element[1]->str) : 0;

			res->retry_after = sec > 0 ? sec : 1;
			rs = STORE_READ_LIMITED;
			goto out;
		}
	}
	x = r1.rep[id_op];
	if (x->type == REDIS_REPLY_ERROR)
		goto out;
	if (byid ? !(x->type == REDIS_REPLY_INTEGER && x->integer == 1) : x->type != REDIS_REPLY_STRING) {
		rs = STORE_READ_NOT_FOUND;
		goto out;
	}
	snprintf(cid, sizeof(cid), "%s", byid ? q->id_value : x->str);
	c = strtoll(cid, NULL, 10);
	snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(c), q->org, (long long)c);
	if (history) {
		a = store_round_script(&r2, STORE_READ, 2, key);
		store_argv_addf(a, KEYS_HIST_FMT, layout_tag_of_cid(c), q->org, (long long)c);
		store_argv_add(a, q->org, strlen(q->org));
		store_argv_add(a, "id", 2);
		store_argv_add(a, cid, strlen(cid));
		store_argv_add(a, "", 0);
		store_argv_add(a, "history", 7);
		store_argv_add(a, "", 0);
		store_argv_add(a, "0", 1);
		store_argv_addf(a, "%d", q->offset);
		store_argv_addf(a, "%d", q->limit);
		store_argv_add(a, q->program != NULL ? q->program : "", q->program != NULL ? strlen(q->program) : 0);
		store_argv_addf(a, "%d", q->scan_max);
	} else {
		a = store_round_add(&r2, -1, key);
		store_argv_add(a, "HGETALL", 7);
		store_argv_addcopy(a, key, strlen(key));
	}
	if (store_round_run(st, &r2) != 0)
		goto out;
	rep = r2.rep[0];
	if (rep->type == REDIS_REPLY_ERROR) {
		rs = STORE_READ_MALFORMED;
		goto out;
	}
	if (history) {
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) {
			rs = rep->type == REDIS_REPLY_ARRAY ? STORE_READ_NOT_FOUND : STORE_READ_MALFORMED;
			goto out;
		}
		if (rep->elements != 4 || rep->element[2]->type != REDIS_REPLY_ARRAY ||
		    rep->element[3]->type != REDIS_REPLY_INTEGER) {
			rs = STORE_READ_MALFORMED;
			goto out;
		}
		customer_of(rep->element[1], res);
		res->total = rep->element[3]->integer;
		if (page_of(st, rep->element[2], res) != 0)
			goto out;
	} else {
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) {
			rs = STORE_READ_NOT_FOUND;      /* deleted since round 1 */
			goto out;
		}
		customer_of(rep, res);
		if (programs_of(st, r1.rep[progs_op], res) != 0)
			goto out;
	}
	res->customer.cid = c;
	if (!byid) {
		const struct store_text *have = strcmp(q->id_kind, "mobile") == 0 ? &res->mobile :
		                                strcmp(q->id_kind, "email") == 0 ? &res->email : &res->external_id;

		if (have->len != strlen(q->id_value) || memcmp(have->p, q->id_value, have->len) != 0) {
			*again = 1;
			rules_customer_free(&res->customer);
			goto out;
		}
	}
	rs = STORE_READ_OK;
out:
	store_round_free(&r1);
	store_round_free(&r2);
	return rs;
}

static enum store_read_status
read_cluster(struct store *st, const struct store_read_query *q, struct store_read_result *res)
{
	enum store_read_status rs = STORE_READ_NOT_FOUND;
	int tries, again = 1;

	for (tries = 0; tries < 3 && again; tries++) {
		memset(res, 0, sizeof(*res));
		again = 0;
		rs = read_cluster_once(st, q, res, &again);
	}
	return again ? STORE_READ_NOT_FOUND : rs;
}

enum store_read_status
store_read(struct store *st, const struct store_read_query *q, struct store_read_result *res)
{
	int history = q->what == STORE_READ_HISTORY;
	const char *vtag;
	struct store_argv a;
	redisReply *rep;

	if (store_is_cluster(st))
		return read_cluster(st, q, res);
	memset(res, 0, sizeof(*res));
	store_argv_init(&a);
	store_argv_add(&a, q->org, strlen(q->org));
	store_argv_add(&a, q->id_kind, strlen(q->id_kind));
	store_argv_add(&a, q->id_value, strlen(q->id_value));
	vtag = strcmp(q->id_kind, "id") == 0 ? "" : layout_tag_of(q->id_value, strlen(q->id_value));
	store_argv_add(&a, vtag, strlen(vtag));
	store_argv_add(&a, history ? "history" : "programs", history ? 7 : 8);
	store_argv_addf(&a, KEYS_RATE_FMT, layout_tag_of(q->cred, strlen(q->cred)), q->org, q->cred);
	store_argv_addf(&a, "%d", q->rate_limit);
	if (history) {
		store_argv_addf(&a, "%d", q->offset);
		store_argv_addf(&a, "%d", q->limit);
		store_argv_add(&a, q->program != NULL ? q->program : "", q->program != NULL ? strlen(q->program) : 0);
		store_argv_addf(&a, "%d", q->scan_max);
	}
	rep = store_eval(st, STORE_READ, &a);
	store_argv_free(&a);
	if (rep != NULL && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
	    rep->element[0]->type == REDIS_REPLY_STRING && strcmp(rep->element[0]->str, "LIMITED") == 0) {
		int s = rep->element[1]->type == REDIS_REPLY_STRING ? atoi(rep->element[1]->str) : 0;

		res->retry_after = s > 0 ? s : 1;
		return STORE_READ_LIMITED;
	}
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY)
		return STORE_READ_DOWN;
	if (rep->elements < 3)
		return STORE_READ_NOT_FOUND;
	if (rep->element[0]->type != REDIS_REPLY_STRING ||
	    (history && (rep->elements != 4 || rep->element[2]->type != REDIS_REPLY_ARRAY ||
	                 rep->element[3]->type != REDIS_REPLY_INTEGER)))
		return STORE_READ_MALFORMED;
	res->customer.cid = strtoll(rep->element[0]->str, NULL, 10);
	customer_of(rep->element[1], res);
	if (history) {
		res->total = rep->element[3]->integer;
		if (page_of(st, rep->element[2], res) != 0)
			return STORE_READ_DOWN;
	} else if (programs_of(st, rep->element[2], res) != 0) {
		return STORE_READ_DOWN;
	}
	return STORE_READ_OK;
}

/* A settled slot whose membership id is not the one it was read with. */
static int
left_id(const struct rules_slot *s)
{
	return s->dirty && s->present && s->orig_mid != NULL &&
	       !(s->orig_mid_len == s->m.v.mid_len && memcmp(s->orig_mid, s->m.v.mid, s->m.v.mid_len) == 0);
}

/* settle.lua's (mid_index_key, membership_id) pairs: the ids read (old) or held now. */
static void
add_mids(struct store_argv *a, const char *org, const struct rules_customer *c, int old)
{
	size_t i, n = 0;

	for (i = 0; i < c->nslots; i++)
		if (left_id(&c->slots[i]))
			n++;
	store_argv_addf(a, "%zu", n);
	for (i = 0; i < c->nslots; i++) {
		const struct rules_slot *s = &c->slots[i];

		if (!left_id(s))
			continue;
		if (old) {
			store_argv_addf(a, KEYS_MID_FMT, layout_tag_of(s->orig_mid, s->orig_mid_len), org, s->pid);
			store_argv_add(a, s->orig_mid, s->orig_mid_len);
		} else {
			store_argv_addf(a, KEYS_MID_FMT, layout_tag_of(s->m.v.mid, s->m.v.mid_len), org, s->pid);
			store_argv_add(a, s->m.v.mid, s->m.v.mid_len);
		}
	}
}

/*
 * On a Redis Cluster the index buckets are in other slots than the customer: the write-back
 * takes the customer's lock (settle.lua with a token), the relinked-away ids are released
 * and the held ones claimed in their buckets under it (hdel_if.lua, claim.lua), then the
 * lock is released (unlock.lua): three rounds more, only for a read that found a relink
 * due. a holds settle.lua's ARGV up to the memberships.
 */
#define SETTLE_LOCK_TTL_MS 5000

static void
settle_cluster(struct store *st, const char *org, const struct rules_customer *c, const struct store_argv *a)
{
	struct store_round r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	unsigned char rnd[16];
	char token[33], key[160];
	struct store_argv *k;
	const char *res;
	size_t i;

	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(token, sizeof(token), rnd, sizeof(rnd));
	snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(c->cid), org, (long long)c->cid);
	k = store_round_script(&r1, STORE_SETTLE, 1, key);
	for (i = 0; i < a->n; i++)
		store_argv_addcopy(k, store_round_arg(a, i), a->len[i]);
	store_argv_add(k, "0", 1);      /* no release, no claim in the script */
	store_argv_add(k, "0", 1);
	store_argv_add(k, token, strlen(token));
	store_argv_addf(k, "%d", SETTLE_LOCK_TTL_MS);
	if (store_round_run(st, &r1) == 0 && (res = store_round_str(&r1, 0)) != NULL && strcmp(res, "OK") == 0) {
		for (i = 0; i < c->nslots; i++) {
			const struct rules_slot *s = &c->slots[i];

			if (!left_id(s))
				continue;
			snprintf(key, sizeof(key), KEYS_MID_FMT, layout_tag_of(s->orig_mid, s->orig_mid_len), org, s->pid);
			k = store_round_script(&r2, STORE_HDEL_IF, 1, key);
			store_argv_add(k, s->orig_mid, s->orig_mid_len);
			store_argv_addf(k, "%lld", (long long)c->cid);
			snprintf(key, sizeof(key), KEYS_MID_FMT, layout_tag_of(s->m.v.mid, s->m.v.mid_len), org, s->pid);
			k = store_round_script(&r2, STORE_CLAIM, 1, key);
			store_argv_add(k, s->m.v.mid, s->m.v.mid_len);
			store_argv_addf(k, "%lld", (long long)c->cid);
			store_argv_add(k, "", 0);
		}
		(void)store_round_run(st, &r2);
		snprintf(key, sizeof(key), KEYS_CUST_FMT, layout_tag_of_cid(c->cid), org, (long long)c->cid);
		k = store_round_script(&r3, STORE_UNLOCK, 1, key);
		store_argv_add(k, token, strlen(token));
		(void)store_round_run(st, &r3);
	}
	store_round_free(&r1);
	store_round_free(&r2);
	store_round_free(&r3);
}

void
store_settle(struct store *st, const char *org, const struct rules_customer *c,
             struct store_text version)
{
	struct store_argv a;
	size_t i, n = 0;

	store_argv_init(&a);
	store_argv_addf(&a, KEYS_CUST_FMT, layout_tag_of_cid(c->cid), org, (long long)c->cid);
	store_argv_add(&a, version.p, version.len);
	store_argv_addf(&a, "%lld", (long long)c->cid);
	for (i = 0; i < c->nslots; i++)
		if (c->slots[i].dirty && c->slots[i].present)
			n++;
	store_argv_addf(&a, "%zu", n);
	for (i = 0; i < c->nslots; i++) {
		const struct rules_slot *s = &c->slots[i];
		size_t len;
		char *val;

		if (!s->dirty || !s->present)
			continue;
		val = rules_membership_encode(&s->m, &len);
		store_argv_addf(&a, KEYS_MEMBERSHIP_FIELD_FMT, s->pid);
		store_argv_addcopy(&a, val, len);
		free(val);
	}
	if (store_is_cluster(st)) {
		settle_cluster(st, org, c, &a);
		store_argv_free(&a);
		return;
	}
	add_mids(&a, org, c, 1);
	add_mids(&a, org, c, 0);
	(void)store_eval(st, STORE_SETTLE, &a);
	store_argv_free(&a);
}
