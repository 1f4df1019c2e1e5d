/*
 * store_admin: the admin verbs' store calls (see store_admin.h): key names, commands and
 * reply shapes of docs/DATA-MODEL.md for partnerctl, on store.c's connection and queue.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "keys.h"
#include "layout.h"
#include "store.h"
#include "store_admin.h"
#include "store_layout.h"
#include "xmalloc.h"

struct store_admin {
	struct store *s;
	struct store_argv cmd;           /* the command being built (reset per call) */
	store_admin_report_fn report;
	void *report_arg;
	int in_tx;                       /* replies between MULTI and EXEC are being read */
	int cluster;                     /* the store is a Redis Cluster (store_is_cluster) */
	char err[512];
};

/* ---- session ------------------------------------------------------------------------ */

struct store_admin *
store_admin_open(const char *url, int timeout_ms, store_admin_report_fn report, void *arg)
{
	struct rconn_cfg cfg = { .timeout_ms = timeout_ms };
	struct store_admin *a;
	char err[512];
	const char *why;

	if (rconn_parse_url(url, &cfg, err, sizeof(err)) < 0) {
		report(arg, err);
		return NULL;
	}
	a = xcalloc(1, sizeof(*a));
	a->s = store_new(&cfg);
	a->report = report;
	a->report_arg = arg;
	store_argv_init(&a->cmd);
	store_queue_limit(a->s, STORE_ADMIN_IN_FLIGHT);
	a->cluster = store_is_cluster(a->s);
	if (store_warm(a->s) != 0) {
		/* rconn's message names Redis and the address already */
		why = store_error(a->s);
		if (strncmp(why, "redis: ", 7) == 0)
			why += 7;
		report(arg, why);
		store_admin_close(a);
		return NULL;
	}
	return a;
}

void
store_admin_set_report(struct store_admin *a, store_admin_report_fn report, void *arg)
{
	a->report = report;
	a->report_arg = arg;
}

void
store_admin_close(struct store_admin *a)
{
	if (a == NULL)
		return;
	store_free(a->s);
	store_argv_free(&a->cmd);
	free(a);
}

int
store_admin_is_cluster(const struct store_admin *a)
{
	return a->cluster;
}

const char *
store_admin_error(const struct store_admin *a)
{
	return a->err[0] ? a->err : store_error(a->s);
}

int
store_admin_flush(struct store_admin *a)
{
	int rc = store_flush(a->s);

	if (rc == -2)
		a->report(a->report_arg, store_error(a->s));
	return rc < 0 ? -1 : 0;
}

int
store_admin_send(struct store_admin *a)
{
	if (store_send(a->s) != 0) {
		a->report(a->report_arg, store_error(a->s));
		return -1;
	}
	return 0;
}

/* Starts a command: argv reset, the command name. */
static struct store_argv *
cmd_start(struct store_admin *a, const char *name)
{
	store_argv_reset(&a->cmd);
	a->err[0] = '\0';
	store_argv_add(&a->cmd, name, strlen(name));
	return &a->cmd;
}

static void
add_str(struct store_argv *c, const char *s)
{
	store_argv_add(c, s, strlen(s));
}

/*
 * Runs the command built in a->cmd and returns its reply (valid until the next call),
 * or NULL with the cause in store_admin_error.
 */
static const redisReply *
run(struct store_admin *a)
{
	const redisReply *r;

	store_replies_release(a->s);
	r = store_command(a->s, &a->cmd);
	return r != NULL && r->type == REDIS_REPLY_ERROR ? NULL : r;
}

/*
 * The same, with an error reply returned as such: a read of a key of another type is an
 * answer, not a failure (check reports it).
 */
static const redisReply *
run_any(struct store_admin *a)
{
	store_replies_release(a->s);
	return store_command(a->s, &a->cmd);
}

/* A failure found in the pipeline: reported now, kept for store_admin_error. */
static int
fail(struct store_admin *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(struct store_admin *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->err, sizeof(a->err), fmt, ap);
	va_end(ap);
	a->report(a->report_arg, a->err);
	return -1;
}

static const char *
reply_error(const redisReply *r)
{
	return r->type == REDIS_REPLY_ERROR ? r->str : "?";
}

/* A queued command's context: the session, the caller's callback and its argument. */
struct qctx {
	struct store_admin *a;
	void (*fn)(void);             /* the caller's callback, cast back by the handler */
	void *arg;
	const char *org;              /* borrowed (the caller's org outlives the queue) */
	int64_t cid;
	int kind;
	size_t n;
};

static struct qctx *
qctx_new(struct store_admin *a, const char *org, void (*fn)(void), void *arg)
{
	struct qctx *q = xcalloc(1, sizeof(*q));

	q->a = a;
	q->fn = fn;
	q->arg = arg;
	q->org = org;
	return q;
}

/* Queues a->cmd with handler h and context q (freed by h); -1 frees q. */
static int
queue(struct store_admin *a, store_reply_fn h, struct qctx *q)
{
	if (store_queue(a->s, &a->cmd, h, q) != 0) {
		free(q);
		return -1;
	}
	return 0;
}

/* An error reply of a command whose result nobody waits for. */
static int
on_plain(void *arg, const redisReply *r)
{
	struct store_admin *a = arg;

	if (r->type == REDIS_REPLY_ERROR)
		return fail(a, "redis refused a %s: %s", a->in_tx ? "write" : "command", r->str);
	return 0;
}

/* ---- key names (key layout 2, keys.h) ------------------------------------------------ */

/* The index bucket of identifier val of the given kind. */
static void
add_ix_key(struct store_argv *c, const char *org, enum store_ident kind, const char *val, size_t len)
{
	store_argv_addf(c, KEYS_IX_FMT, layout_tag_of(val, len), org, store_ident_name[kind]);
}

/*
 * Adds the name of the key of the given kind to c: org, then id (a cid, a pid or an enum
 * store_ident, as store_key_name takes them); part is the partition of a partitioned kind
 * (STORE_KEY_IX, STORE_KEY_MID, STORE_KEY_FEED), ignored for the others (a customer's keys
 * take the tag of their cid).
 */
static void
add_part_key(struct store_argv *c, enum store_key kind, const char *org, int64_t id, unsigned part)
{
	switch (kind) {
	case STORE_KEY_ORGS:
		store_argv_add(c, KEYS_ORGS, strlen(KEYS_ORGS));
		break;
	case STORE_KEY_CREDS:
		store_argv_add(c, KEYS_CREDS, strlen(KEYS_CREDS));
		break;
	case STORE_KEY_ORG:
		store_argv_addf(c, KEYS_ORG_FMT, org);
		break;
	case STORE_KEY_PROGS:
		store_argv_addf(c, KEYS_PROGS_FMT, org);
		break;
	case STORE_KEY_PSEQ:
		store_argv_addf(c, KEYS_PSEQ_FMT, org);
		break;
	case STORE_KEY_CUST:
		store_argv_addf(c, KEYS_CUST_FMT, layout_tag_of_cid(id), org, (long long)id);
		break;
	case STORE_KEY_LOCK:
		store_argv_addf(c, KEYS_LOCK_FMT, layout_tag_of_cid(id), org, (long long)id);
		break;
	case STORE_KEY_HIST:
		store_argv_addf(c, KEYS_HIST_FMT, layout_tag_of_cid(id), org, (long long)id);
		break;
	case STORE_KEY_IX:
		store_argv_addf(c, KEYS_IX_FMT, layout_tag(part, NULL), org,
		                id >= 0 && id < STORE_NIDENTS ? store_ident_name[id] : "?");
		break;
	case STORE_KEY_MID:
		store_argv_addf(c, KEYS_MID_FMT, layout_tag(part, NULL), org, (int)id);
		break;
	case STORE_KEY_FEED:
		store_argv_addf(c, KEYS_FEED_FMT, layout_tag(part, NULL), org);
		break;
	default:                /* kinds named by a digest: not read by kind */
		store_argv_add(c, "", 0);
		break;
	}
}

static void
add_key(struct store_argv *c, enum store_key kind, const char *org, int64_t id)
{
	add_part_key(c, kind, org, id, 0);
}

/* Whether a kind is split into LAYOUT_PARTS keys per org (and id). */
static int
partitioned(enum store_key kind)
{
	return kind == STORE_KEY_IX || kind == STORE_KEY_MID || kind == STORE_KEY_FEED;
}

/* ---- layout ------------------------------------------------------------------------- */

int
store_admin_layout(struct store_admin *a)
{
	char msg[400];

	store_replies_release(a->s);
	a->err[0] = '\0';
	switch (store_layout_read(a->s, msg, sizeof(msg))) {
	case STORE_LAYOUT_CURRENT:
	case STORE_LAYOUT_EMPTY:
		return 0;
	case STORE_LAYOUT_REFUSED:
		snprintf(a->err, sizeof(a->err), "%s", msg);
		break;
	case STORE_LAYOUT_DOWN:
		snprintf(a->err, sizeof(a->err), "%s", store_error(a->s));
		break;
	}
	a->report(a->report_arg, a->err);
	return -1;
}

int
store_admin_q_layout(struct store_admin *a)
{
	struct store_argv *c = cmd_start(a, "SET");

	add_str(c, KEYS_LAYOUT);
	store_argv_addf(c, "%d", LAYOUT_VERSION);
	add_str(c, "NX");
	return store_queue(a->s, c, on_plain, a);
}

/* ---- reads -------------------------------------------------------------------------- */

int
store_admin_org_exists(struct store_admin *a, const char *org)
{
	struct store_argv *c = cmd_start(a, "SISMEMBER");
	const redisReply *r;

	add_str(c, KEYS_ORGS);
	add_str(c, org);
	if ((r = run(a)) == NULL)
		return -1;
	return r->type == REDIS_REPLY_INTEGER && r->integer == 1;
}

int
store_admin_org_settings(struct store_admin *a, const char *org, struct store_org_settings *out)
{
	struct store_argv *c = cmd_start(a, "HMGET");
	const redisReply *r;

	memset(out, 0, sizeof(*out));
	store_argv_addf(c, KEYS_ORG_FMT, org);
	add_str(c, "defaultCountryCode");
	add_str(c, "nationalNumberLength");
	if ((r = run(a)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		snprintf(a->err, sizeof(a->err), "org %s: unexpected reply to HMGET of its settings",
		         org);
		return -1;
	}
	if (r->element[0]->type == REDIS_REPLY_STRING) {
		out->cc = r->element[0]->str;
		out->cc_len = r->element[0]->len;
	}
	if (r->element[1]->type == REDIS_REPLY_STRING) {
		out->nlen = r->element[1]->str;
		out->nlen_len = r->element[1]->len;
	}
	return 0;
}

int
store_admin_ix_get(struct store_admin *a, const char *org, enum store_ident kind, const char *val,
                   size_t len, int64_t *cid)
{
	struct store_argv *c = cmd_start(a, "HGET");
	const redisReply *r;

	add_ix_key(c, org, kind, val, len);
	store_argv_add(c, val, len);
	if ((r = run(a)) == NULL)
		return -1;
	return r->type == REDIS_REPLY_STRING && ident_parse_cid(r->str, r->len, cid) == 0;
}

/* Hands the field/value pairs of an HGETALL reply to fn. */
static int
each_field(const redisReply *r, store_field_fn fn, void *arg)
{
	size_t i;

	for (i = 0; i + 1 < r->elements; i += 2)
		if (fn(arg, r->element[i]->str, r->element[i]->len, r->element[i + 1]->str,
		       r->element[i + 1]->len) < 0)
			return -1;
	return 0;
}

/* An answer that is not the type asked for: an error reply (WRONGTYPE) or another shape. */
static int
wrongtype(const redisReply *r, int type)
{
	return r->type != type;
}

int
store_admin_hash(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                 store_field_fn fn, void *arg)
{
	const redisReply *r;

	add_key(cmd_start(a, "HGETALL"), kind, org, id);
	if ((r = run_any(a)) == NULL)
		return -1;
	if (wrongtype(r, REDIS_REPLY_ARRAY))
		return STORE_ADMIN_WRONGTYPE;
	if (each_field(r, fn, arg) < 0)
		return -1;
	return (int)(r->elements / 2);
}

/* HSCAN of one key (partition part of a partitioned kind). */
int
store_admin_hash_scan_at(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                         unsigned part, store_field_fn fn, void *arg)
{
	char cursor[32] = "0";

	do {
		struct store_argv *c = cmd_start(a, "HSCAN");
		const redisReply *r;

		add_part_key(c, kind, org, id, part);
		add_str(c, cursor);
		add_str(c, "COUNT");
		add_str(c, "1000");
		if ((r = run_any(a)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->len >= sizeof(cursor) || r->element[1]->type != REDIS_REPLY_ARRAY)
			return STORE_ADMIN_WRONGTYPE;
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		if (each_field(r->element[1], fn, arg) < 0)
			return -1;
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

int
store_admin_hash_scan(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                      store_field_fn fn, void *arg)
{
	unsigned p, np = partitioned(kind) ? LAYOUT_PARTS : 1;
	int rc;

	for (p = 0; p < np; p++)
		if ((rc = store_admin_hash_scan_at(a, kind, org, id, p, fn, arg)) != 0)
			return rc;
	return 0;
}

/*
 * Runs the command built in a->cmd and hands each item of its array reply to fn.
 * 0, STORE_ADMIN_WRONGTYPE, or -1.
 */
static int
run_items(struct store_admin *a, store_text_fn fn, void *arg)
{
	const redisReply *r;
	size_t i;

	if ((r = run_any(a)) == NULL)
		return -1;
	if (wrongtype(r, REDIS_REPLY_ARRAY))
		return STORE_ADMIN_WRONGTYPE;
	for (i = 0; i < r->elements; i++)
		if (fn(arg, r->element[i]->str, r->element[i]->len) < 0)
			return -1;
	return 0;
}

int
store_admin_list(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                 long first, long last, store_text_fn fn, void *arg)
{
	struct store_argv *c = cmd_start(a, "LRANGE");

	add_key(c, kind, org, id);
	store_argv_addf(c, "%lld", (long long)first);
	store_argv_addf(c, "%lld", (long long)last);
	return run_items(a, fn, arg);
}

int
store_admin_org_ids(struct store_admin *a, store_text_fn fn, void *arg)
{
	add_str(cmd_start(a, "SMEMBERS"), KEYS_ORGS);
	return run_items(a, fn, arg);
}

int
store_admin_string(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                   const char **s, size_t *len)
{
	const redisReply *r;

	add_key(cmd_start(a, "GET"), kind, org, id);
	if ((r = run_any(a)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_STRING)
		return 0;
	*s = r->str;
	*len = r->len;
	return 1;
}

/* SCAN of one master's keys of the layout. */
static int
scan_master(struct store_admin *a, size_t master, store_key_fn fn, void *arg)
{
	char cursor[32] = "0";

	do {
		struct store_argv *c = cmd_start(a, "SCAN");
		const redisReply *r, *keys;
		size_t i;

		add_str(c, cursor);
		add_str(c, "MATCH");
		add_str(c, "pp:*");
		add_str(c, "COUNT");
		add_str(c, "1000");
		store_replies_release(a->s);
		if ((r = store_command_on(a->s, master, &a->cmd)) == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ERROR) {
			snprintf(a->err, sizeof(a->err), "SCAN refused: %.200s", r->str);
			return -1;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof(cursor)) {
			snprintf(a->err, sizeof(a->err), "unexpected reply to SCAN");
			return -1;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		keys = r->element[1];
		for (i = 0; keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++)
			fn(arg, keys->element[i]->str, keys->element[i]->len);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

int
store_admin_scan(struct store_admin *a, store_key_fn fn, void *arg)
{
	size_t m, n;

	a->err[0] = '\0';
	/* a cluster's key space is the union of its masters' (each key on one) */
	if ((n = store_masters(a->s)) == 0)
		return -1;
	for (m = 0; m < n; m++)
		if (scan_master(a, m, fn, arg) < 0)
			return -1;
	return 0;
}

int
store_admin_time(struct store_admin *a, int64_t *ms)
{
	const redisReply *r;

	cmd_start(a, "TIME");
	if ((r = run(a)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
		snprintf(a->err, sizeof(a->err), "TIME: unexpected reply");
		return -1;
	}
	*ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
	      strtoll(r->element[1]->str, NULL, 10) / 1000;
	return 0;
}

/* The field/value pairs (or the items, in v) of an array reply; caller frees. */
static struct store_pair *
pairs_of(const redisReply *r, int items, size_t *n)
{
	struct store_pair *p;
	size_t i, step = items ? 1 : 2;

	*n = r->elements / step;
	p = xcalloc(*n + 1, sizeof(*p));
	for (i = 0; i < *n; i++) {
		const redisReply *v = r->element[i * step + (items ? 0 : 1)];

		if (!items) {
			p[i].k = r->element[i * step]->str;
			p[i].klen = r->element[i * step]->len;
		}
		p[i].v = v->str;
		p[i].vlen = v->len;
	}
	return p;
}

/* The newest count entries of one stream, to fn with indexes from *at on. */
static int
stream_newest_one(struct store_admin *a, enum store_key kind, const char *org, unsigned part,
                  size_t count, store_entry_fn fn, void *arg, size_t *at)
{
	struct store_argv *c = cmd_start(a, "XREVRANGE");
	const redisReply *r;
	size_t i;

	add_part_key(c, kind, org, 0, part);
	add_str(c, "+");
	add_str(c, "-");
	add_str(c, "COUNT");
	store_argv_addf(c, "%zu", count);
	if ((r = run_any(a)) == NULL)
		return -1;
	if (wrongtype(r, REDIS_REPLY_ARRAY)) {
		struct store_stream_entry se = { .part = part, .wrongtype = 1 };

		fn(arg, (*at)++, &se);
		return 0;
	}
	for (i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		struct store_stream_entry se = { .part = part };
		struct store_pair *f = NULL;

		if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
		    e->element[0]->type == REDIS_REPLY_STRING &&
		    e->element[1]->type == REDIS_REPLY_ARRAY) {
			se.id = e->element[0]->str;
			se.idlen = e->element[0]->len;
			se.f = f = pairs_of(e->element[1], 0, &se.nf);
			se.odd = e->element[1]->elements % 2 != 0;
		}
		fn(arg, (*at)++, &se);
		free(f);
	}
	return 0;
}

int
store_admin_stream_newest(struct store_admin *a, enum store_key kind, const char *org,
                          size_t count, store_entry_fn fn, void *arg)
{
	unsigned p, np = partitioned(kind) ? LAYOUT_PARTS : 1;
	size_t at = 0;
	int rc;

	for (p = 0; p < np; p++)
		if ((rc = stream_newest_one(a, kind, org, p, count, fn, arg, &at)) != 0)
			return rc;
	return 0;
}

/* ---- queued reads ------------------------------------------------------------------- */

static int
on_customer_ids(void *arg, const redisReply *r)
{
	struct qctx *q = arg;
	struct store_cust_ids ids = { 0 };
	int k, rc;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
		rc = fail(q->a, "org %s: customer %" PRId64 ": unexpected reply to HMGET: %s", q->org,
		          q->cid, reply_error(r));
		free(q);
		return rc;
	}
	ids.has_v = r->element[4]->type == REDIS_REPLY_STRING;
	ids.stored = ids.has_v || r->element[0]->type == REDIS_REPLY_STRING;
	for (k = 0; k < STORE_NIDENTS; k++) {
		const redisReply *e = r->element[1 + k];

		if (e->type == REDIS_REPLY_STRING) {
			ids.val[k] = e->str;
			ids.len[k] = e->len;
		}
	}
	rc = ((store_cust_ids_fn)q->fn)(q->arg, &ids);
	free(q);
	return rc;
}

int
store_admin_q_customer_ids(struct store_admin *a, const char *org, int64_t cid,
                           store_cust_ids_fn fn, void *arg)
{
	struct store_argv *c = cmd_start(a, "HMGET");
	struct qctx *q = qctx_new(a, org, (void (*)(void))fn, arg);
	int k;

	q->cid = cid;
	add_key(c, STORE_KEY_CUST, org, cid);
	add_str(c, "id");
	for (k = 0; k < STORE_NIDENTS; k++)
		add_str(c, store_ident_name[k]);
	add_str(c, "v");
	return queue(a, on_customer_ids, q);
}

/*
 * The values of a batch grouped by their index bucket (key layout 2): order[] lists the
 * indexes of vals bucket by bucket, start[p]..start[p+1] those of bucket p.
 */
struct ix_groups {
	size_t *order;
	size_t start[LAYOUT_PARTS + 1];
	unsigned *part;
};

static void
ix_group(struct ix_groups *g, size_t n, const char *const *vals, const size_t *lens)
{
	size_t count[LAYOUT_PARTS] = { 0 }, at[LAYOUT_PARTS], i;
	unsigned p;

	g->order = xcalloc(n + 1, sizeof(*g->order));
	g->part = xcalloc(n + 1, sizeof(*g->part));
	for (i = 0; i < n; i++)
		count[g->part[i] = layout_bucket_of(vals[i], lens[i])]++;
	g->start[0] = 0;
	for (p = 0; p < LAYOUT_PARTS; p++) {
		g->start[p + 1] = g->start[p] + count[p];
		at[p] = g->start[p];
	}
	for (i = 0; i < n; i++)
		g->order[at[g->part[i]]++] = i;
}

static void
ix_groups_free(struct ix_groups *g)
{
	free(g->order);
	free(g->part);
}

/* One HMGET of a bucket: its values' indexes in the caller's batch follow the context. */
struct ix_hctx {
	struct qctx q;
	size_t idx[];
};

static int
on_ix_holders(void *arg, const redisReply *r)
{
	struct ix_hctx *h = arg;
	struct qctx *q = &h->q;
	size_t i;
	int rc = 0;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != q->n) {
		rc = fail(q->a, "org %s: unexpected reply to HMGET of the %s index: %s", q->org,
		          store_ident_name[q->kind], reply_error(r));
	} else {
		for (i = 0; i < q->n; i++) {
			const redisReply *e = r->element[i];
			int64_t hd = 0;

			if (e->type == REDIS_REPLY_STRING && ident_parse_cid(e->str, e->len, &hd) < 0)
				hd = -1;
			((store_holder_fn)q->fn)(q->arg, h->idx[i], hd);
		}
	}
	free(h);
	return rc;
}

int
store_admin_q_ix_holders(struct store_admin *a, const char *org, enum store_ident kind, size_t n,
                         const char *const *vals, const size_t *lens, store_holder_fn fn,
                         void *arg)
{
	struct ix_groups g;
	unsigned p;
	int rc = 0;

	ix_group(&g, n, vals, lens);
	for (p = 0; p < LAYOUT_PARTS && rc == 0; p++) {
		size_t m = g.start[p + 1] - g.start[p], i;
		struct ix_hctx *h;
		struct store_argv *c;

		if (m == 0)
			continue;
		h = xcalloc(1, sizeof(*h) + m * sizeof(h->idx[0]));
		h->q = (struct qctx){ .a = a, .fn = (void (*)(void))fn, .arg = arg, .org = org,
		                      .kind = kind, .n = m };
		c = cmd_start(a, "HMGET");
		store_argv_addf(c, KEYS_IX_FMT, layout_tag(p, NULL), org, store_ident_name[kind]);
		for (i = 0; i < m; i++) {
			size_t j = g.order[g.start[p] + i];

			h->idx[i] = j;
			store_argv_add(c, vals[j], lens[j]);
		}
		if (store_queue(a->s, c, on_ix_holders, h) != 0) {
			free(h);
			rc = -1;
		}
	}
	ix_groups_free(&g);
	return rc;
}

/* ---- queued writes ------------------------------------------------------------------ */

int
store_admin_q_org(struct store_admin *a, const char *org, const char *cc, int nlen)
{
	struct store_argv *c = cmd_start(a, "SADD");

	add_str(c, KEYS_ORGS);
	add_str(c, org);
	if (store_queue(a->s, c, on_plain, a) != 0)
		return -1;
	c = cmd_start(a, "HSET");
	store_argv_addf(c, KEYS_ORG_FMT, org);
	add_str(c, "defaultCountryCode");
	add_str(c, cc);
	add_str(c, "nationalNumberLength");
	store_argv_addf(c, "%d", nlen);
	return store_queue(a->s, c, on_plain, a);
}

static int
on_next_pid(void *arg, const redisReply *r)
{
	struct qctx *q = arg;
	int rc;

	if (r->type != REDIS_REPLY_INTEGER || r->integer < 1 || r->integer > 0x7fffffff)
		rc = fail(q->a, "INCR of the program sequence failed: %s",
		          r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
	else
		rc = ((store_pid_fn)q->fn)(q->arg, (int)r->integer);
	free(q);
	return rc;
}

int
store_admin_q_next_pid(struct store_admin *a, const char *org, store_pid_fn fn, void *arg)
{
	struct store_argv *c = cmd_start(a, "INCR");

	store_argv_addf(c, KEYS_PSEQ_FMT, org);
	return queue(a, on_next_pid, qctx_new(a, org, (void (*)(void))fn, arg));
}

int
store_admin_q_program(struct store_admin *a, const char *org, const char *name, size_t nlen,
                      const char *val, size_t vlen)
{
	struct store_argv *c = cmd_start(a, "HSET");

	store_argv_addf(c, KEYS_PROGS_FMT, org);
	store_argv_add(c, name, nlen);
	store_argv_add(c, val, vlen);
	return store_queue(a->s, c, on_plain, a);
}

int
store_admin_q_credential_set(struct store_admin *a, const char *user, size_t ulen, const char *val,
                             size_t vlen)
{
	struct store_argv *c = cmd_start(a, "HSET");

	add_str(c, KEYS_CREDS);
	store_argv_add(c, user, ulen);
	store_argv_add(c, val, vlen);
	return store_queue(a->s, c, on_plain, a);
}

int
store_admin_q_credential_del(struct store_admin *a, const char *user, size_t ulen)
{
	struct store_argv *c = cmd_start(a, "HDEL");

	add_str(c, KEYS_CREDS);
	store_argv_add(c, user, ulen);
	return store_queue(a->s, c, on_plain, a);
}

int
store_admin_q_ix_release(struct store_admin *a, const char *org, enum store_ident kind,
                         const char *val, size_t len, int64_t cid)
{
	struct store_argv *c = cmd_start(a, "1");

	add_ix_key(c, org, kind, val, len);
	store_argv_add(c, val, len);
	store_argv_addf(c, "%lld", (long long)cid);
	return store_queue_script(a->s, STORE_HDEL_IF, c, on_plain, a);
}

int
store_admin_q_ix_set(struct store_admin *a, const char *org, enum store_ident kind, size_t n,
                     const char *const *vals, const size_t *lens, const int64_t *cids)
{
	struct ix_groups g;
	unsigned p;
	int queued = 0;

	ix_group(&g, n, vals, lens);
	for (p = 0; p < LAYOUT_PARTS && queued >= 0; p++) {
		struct store_argv *c;
		size_t i;

		if (g.start[p + 1] == g.start[p])
			continue;
		c = cmd_start(a, "HSET");
		store_argv_addf(c, KEYS_IX_FMT, layout_tag(p, NULL), org, store_ident_name[kind]);
		for (i = g.start[p]; i < g.start[p + 1]; i++) {
			store_argv_add(c, vals[g.order[i]], lens[g.order[i]]);
			store_argv_addf(c, "%lld", (long long)cids[g.order[i]]);
		}
		queued = store_queue(a->s, c, on_plain, a) != 0 ? -1 : queued + 1;
	}
	ix_groups_free(&g);
	return queued;
}

int
store_ident_changed(const struct store_cust_ids *ids, int k, const char *val, size_t len)
{
	if ((ids->val[k] == NULL) != (val == NULL))
		return 1;
	return ids->val[k] != NULL && (ids->len[k] != len || memcmp(ids->val[k], val, len) != 0);
}

/* Queues HINCRBY v 1 of the customer's hash. */
static int
q_bump_v(struct store_admin *a, const char *org, int64_t cid)
{
	struct store_argv *c = cmd_start(a, "HINCRBY");

	add_key(c, STORE_KEY_CUST, org, cid);
	add_str(c, "v");
	add_str(c, "1");
	return store_queue(a->s, c, on_plain, a);
}

/*
 * On one Redis v is bumped after the identifiers change (inside import's MULTI/EXEC, or
 * in load's pipeline, which Redis runs in order): a partnerd commit that read the
 * customer before the change is fenced. On a cluster nothing spans the commands and a
 * killed partnerctl may leave any prefix of them applied: v is bumped first, so that a
 * customer whose identifiers changed always has its v bumped (a re-run that finds them
 * unchanged does not bump it; one that finds them still old bumps it again, which is
 * harmless: v only has to grow).
 */
int
store_admin_q_customer_write(struct store_admin *a, const char *org, int64_t cid,
                             const struct store_cust_ids *ids, const char *const val[STORE_NIDENTS],
                             const size_t len[STORE_NIDENTS])
{
	struct store_argv *c;
	int changed = 0, removed = 0, queued = 0, k;

	for (k = 0; k < STORE_NIDENTS; k++)
		changed |= store_ident_changed(ids, k, val[k], len[k]);
	if (a->cluster && ids->stored && changed) {
		if (q_bump_v(a, org, cid) != 0)
			return -1;
		queued++;
	}
	c = cmd_start(a, "HSET");
	add_key(c, STORE_KEY_CUST, org, cid);
	if (!ids->stored) {
		add_str(c, "id");
		store_argv_addf(c, "%lld", (long long)cid);
	}
	for (k = 0; k < STORE_NIDENTS; k++) {
		if (!store_ident_changed(ids, k, val[k], len[k]))
			continue;
		if (val[k] == NULL) {
			removed = 1;
			continue;
		}
		add_str(c, store_ident_name[k]);
		store_argv_add(c, val[k], len[k]);
	}
	if (!ids->has_v) {
		add_str(c, "v");
		add_str(c, "0");
	}
	if (c->n > 2) {
		if (store_queue(a->s, c, on_plain, a) != 0)
			return -1;
		queued++;
	}
	if (removed) {
		c = cmd_start(a, "HDEL");
		add_key(c, STORE_KEY_CUST, org, cid);
		for (k = 0; k < STORE_NIDENTS; k++)
			if (val[k] == NULL && ids->val[k] != NULL)
				add_str(c, store_ident_name[k]);
		if (store_queue(a->s, c, on_plain, a) != 0)
			return -1;
		queued++;
	}
	if (!a->cluster && ids->stored && changed) {
		if (q_bump_v(a, org, cid) != 0)
			return -1;
		queued++;
	}
	return queued;
}

/* ---- transactions ------------------------------------------------------------------- */

static int
on_multi(void *arg, const redisReply *r)
{
	struct store_admin *a = arg;

	a->in_tx = 1;
	return on_plain(a, r);
}

/* EXEC's reply: one reply per queued command, none an error. */
static int
on_exec(void *arg, const redisReply *r)
{
	struct qctx *q = arg;
	struct store_admin *a = q->a;
	size_t j;
	int rc = 0;

	a->in_tx = 1;
	if (r->type == REDIS_REPLY_ERROR) {
		rc = on_plain(a, r);
	} else if (q->n > 0) {
		if (r->type != REDIS_REPLY_ARRAY || r->elements != q->n)
			rc = fail(a, "the batch's transaction was not applied");
		for (j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements; j++)
			if (r->element[j]->type == REDIS_REPLY_ERROR)
				rc = fail(a, "redis refused a write: %s", r->element[j]->str);
	}
	a->in_tx = 0;
	free(q);
	return rc;
}

/* A transaction cannot span a cluster's nodes (and the store refuses MULTI there). */
static int
no_tx(struct store_admin *a)
{
	return fail(a, "no transaction on a Redis Cluster (a batch's keys are on several "
	            "masters)");
}

int
store_admin_q_multi(struct store_admin *a)
{
	if (a->cluster)
		return no_tx(a);
	return store_queue(a->s, cmd_start(a, "MULTI"), on_multi, a);
}

int
store_admin_q_exec(struct store_admin *a, int nqueued)
{
	struct qctx *q;

	if (a->cluster)
		return no_tx(a);
	q = qctx_new(a, NULL, NULL, NULL);
	q->n = nqueued > 0 ? (size_t)nqueued : 0;
	cmd_start(a, nqueued > 0 ? "EXEC" : "DISCARD");
	return queue(a, on_exec, q);
}

/* ---- import checkpoints ------------------------------------------------------------- */

static const char *const ckpt_field[7] = { "offset", "line", "read", "new", "changed", "unchanged",
                                           "rejected" };

void
store_import_ckpt_init(struct store_import_ckpt *c, const char *org, const char *hex)
{
	snprintf(c->key, sizeof(c->key), KEYS_IMPORT_FMT, org, hex);
}

/* A stored count: 1..19 decimal digits. */
static int
parse_count(const redisReply *e, uint64_t *out)
{
	char *end;

	if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 19 ||
	    strspn(e->str, "0123456789") != e->len)
		return -1;
	*out = strtoull(e->str, &end, 10);
	return 0;
}

int
store_admin_import_ckpt_read(struct store_admin *a, const struct store_import_ckpt *c,
                             struct store_import_mark *m)
{
	struct store_argv *cmd = cmd_start(a, "HMGET");
	const redisReply *r;
	uint64_t v[7];
	size_t i;

	add_str(cmd, c->key);
	for (i = 0; i < 7; i++)
		add_str(cmd, ckpt_field[i]);
	if ((r = run(a)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 7)
		return -2;
	if (r->element[0]->type == REDIS_REPLY_NIL)
		return 0;
	for (i = 0; i < 7; i++)
		if (parse_count(r->element[i], &v[i]) < 0)
			return -2;
	*m = (struct store_import_mark){ .offset = v[0], .line = v[1], .read = v[2], .new = v[3],
	                                 .changed = v[4], .unchanged = v[5], .rejected = v[6] };
	return 1;
}

int
store_admin_q_import_ckpt(struct store_admin *a, const struct store_import_ckpt *c,
                          const struct store_import_mark *m, long ttl_s)
{
	const uint64_t v[7] = { m->offset, m->line, m->read, m->new, m->changed, m->unchanged,
	                        m->rejected };
	struct store_argv *cmd = cmd_start(a, "HSET");
	size_t i;

	add_str(cmd, c->key);
	for (i = 0; i < 7; i++) {
		add_str(cmd, ckpt_field[i]);
		store_argv_addf(cmd, "%lld", (long long)v[i]);
	}
	if (store_queue(a->s, cmd, on_plain, a) != 0)
		return -1;
	cmd = cmd_start(a, "EXPIRE");
	add_str(cmd, c->key);
	store_argv_addf(cmd, "%lld", (long long)ttl_s);
	return store_queue(a->s, cmd, on_plain, a);
}

int
store_admin_import_ckpt_del(struct store_admin *a, const struct store_import_ckpt *c)
{
	add_str(cmd_start(a, "DEL"), c->key);
	return run(a) != NULL ? 0 : -1;
}

/* ---- queued whole reads ------------------------------------------------------------- */

static int
on_pairs(void *arg, const redisReply *r, int items)
{
	struct qctx *q = arg;
	struct store_pair *p = NULL;
	size_t n = 0;
	int rc;

	if (r->type == REDIS_REPLY_ARRAY)
		p = pairs_of(r, items, &n);
	rc = ((store_pairs_fn)q->fn)(q->arg, p, n);
	free(p);
	free(q);
	return rc;
}

static int
on_hash(void *arg, const redisReply *r)
{
	return on_pairs(arg, r, 0);
}

static int
on_list(void *arg, const redisReply *r)
{
	return on_pairs(arg, r, 1);
}

int
store_admin_q_hash(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                   store_pairs_fn fn, void *arg)
{
	add_key(cmd_start(a, "HGETALL"), kind, org, id);
	return queue(a, on_hash, qctx_new(a, org, (void (*)(void))fn, arg));
}

int
store_admin_q_list(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                   store_pairs_fn fn, void *arg)
{
	struct store_argv *c = cmd_start(a, "LRANGE");

	add_key(c, kind, org, id);
	add_str(c, "0");
	add_str(c, "-1");
	return queue(a, on_list, qctx_new(a, org, (void (*)(void))fn, arg));
}
