/*
 * store_read: read.lua and settle.lua behind a typed interface (store_read.h). The key
 * names come from keys.h, the script arguments and reply shapes are described in the
 * scripts themselves.
 */
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "layout.h"
#include "store_read.h"

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

enum store_read_status
store_read(struct store *st, const struct store_read_query *q, struct store_read_result *res)
{
	int history = q->what == STORE_READ_HISTORY;
	const char *vtag;
	struct store_argv a;
	redisReply *rep;

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

void
store_settle(struct store *st, const char *org, const struct rules_customer *c,
             struct store_text version)
{
	struct store_argv a;
	size_t i, n = 0;

	store_argv_init(&a);
	store_argv_addf(&a, KEYS_LOCK_FMT, layout_tag_of_cid(c->cid), org, (long long)c->cid);
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
	add_mids(&a, org, c, 1);
	add_mids(&a, org, c, 0);
	(void)store_eval(st, STORE_SETTLE, &a);
	store_argv_free(&a);
}
