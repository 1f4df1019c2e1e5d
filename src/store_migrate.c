/*
 * store_migrate: key layouts 1 and 2 -> 3 for `partnerctl migrate` (see store_migrate.h):
 * the layout-1 key names (keys_v1.h) taken apart, their names since layout 2 (keys.h,
 * layout.h), and the pipelined commands that move the data; layout 2 -> 3 (the customer
 * locks moved into the customer hashes) moves nothing: no layout-2 lock may be left.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ident.h"
#include "keys.h"
#include "keys_v1.h"
#include "layout.h"
#include "store.h"
#include "store_keys.h"
#include "store_migrate.h"
#include "xmalloc.h"

#define MG_SHOWN_MAX 20                 /* problems reported one by one per phase */
#define MG_NAME_MAX 256                 /* a key name built here (org <= 64 bytes) */
#define MG_FEED_CID_FIELD "customerId"  /* the feed entry's customer (docs/CHANGE-FEED.md) */
#define MG_SCAN_MAX 10000               /* SCAN's COUNT at most: one call blocks Redis briefly */

/* ---- layout-1 key names ------------------------------------------------------------- */

/* The layout-1 keys that migrate moves; the others keep their names in layout 2. */
enum v1_kind { V1_CUST, V1_HIST, V1_LOCK, V1_IX, V1_MID, V1_FEED, V1_RATE, V1_IDEM, V1_NKINDS };

enum v1_part { P_NONE, P_ORG, P_CID, P_KIND, P_PID, P_HEX32, P_DIGITS };

static const struct v1_def {
	const char *fmt;                /* keys_v1.h's format */
	enum v1_part part[3];           /* what each conversion is */
} v1_defs[V1_NKINDS] = {
	[V1_CUST] = { KEYS_V1_CUST_FMT, { P_ORG, P_CID } },
	[V1_HIST] = { KEYS_V1_HIST_FMT, { P_ORG, P_CID } },
	[V1_LOCK] = { KEYS_V1_LOCK_FMT, { P_ORG, P_CID } },
	[V1_IX] = { KEYS_V1_IX_FMT, { P_ORG, P_KIND } },
	[V1_MID] = { KEYS_V1_MID_FMT, { P_ORG, P_PID } },
	[V1_FEED] = { KEYS_V1_FEED_FMT, { P_ORG } },
	/* a rate window: KEYS_V1_RATE_FMT, then ":MINUTE" */
	[V1_RATE] = { KEYS_V1_RATE_FMT ":%s", { P_ORG, P_HEX32, P_DIGITS } },
	[V1_IDEM] = { KEYS_V1_IDEM_FMT, { P_ORG, P_HEX32 } },
};

/* A layout-1 key name taken apart. */
struct v1_key {
	char org[65];
	int64_t cid;
	int pid;
	int ident;                      /* enum store_ident */
	char hex[33];                   /* the 32 hex digits of an Idempotency-Key or rate window */
	char minute[24];                /* a rate window's minute */
};

#define ORG_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

static size_t
span(const char *s, size_t n, const char *set)
{
	size_t i = 0;

	while (i < n && s[i] != '\0' && strchr(set, s[i]) != NULL)
		i++;
	return i;
}

/* Matches one part at k[0..n): the bytes it takes, or 0. */
static size_t
v1_part(enum v1_part part, const char *k, size_t n, struct v1_key *out)
{
	size_t m;
	int64_t v;
	int i;

	switch (part) {
	case P_ORG:
		m = span(k, n, ORG_CHARS);
		if (m == 0 || m >= sizeof(out->org))
			return 0;
		memcpy(out->org, k, m);
		out->org[m] = '\0';
		return ident_valid_org(out->org) ? m : 0;
	case P_CID:
	case P_PID:
		m = span(k, n, "0123456789");
		if (m == 0 || ident_parse_cid(k, m, &v) < 0 || (part == P_PID && v > 0x7fffffff))
			return 0;
		if (part == P_CID)
			out->cid = v;
		else
			out->pid = (int)v;
		return m;
	case P_KIND:
		for (i = 0; i < STORE_NIDENTS; i++) {
			m = strlen(store_ident_name[i]);
			if (m <= n && memcmp(k, store_ident_name[i], m) == 0) {
				out->ident = i;
				return m;
			}
		}
		return 0;
	case P_HEX32:
		if (n < 32 || span(k, 32, "0123456789abcdef") != 32)
			return 0;
		memcpy(out->hex, k, 32);
		out->hex[32] = '\0';
		return 32;
	case P_DIGITS:
		m = span(k, n, "0123456789");
		if (m >= sizeof(out->minute))
			return 0;
		memcpy(out->minute, k, m);
		out->minute[m] = '\0';
		return m;
	case P_NONE:
		break;
	}
	return 0;
}

static int
v1_match(const struct v1_def *def, const char *k, size_t len, struct v1_key *out)
{
	const char *f = def->fmt;
	size_t at = 0, m;
	int argi = 0;

	while (*f != '\0') {
		if (*f != '%') {
			if (at == len || k[at] != *f)
				return 0;
			at++;
			f++;
			continue;
		}
		f += f[1] == 'l' ? 4 : 2;       /* %s, %d or %lld */
		if (argi == 3 || (m = v1_part(def->part[argi++], k + at, len - at, out)) == 0)
			return 0;
		at += m;
	}
	return at == len;
}

/* The kind of a layout-1 key that migrate moves, or -1 (a key it leaves alone). */
static int
v1_classify(const char *k, size_t len, struct v1_key *out)
{
	int kind;

	memset(out, 0, sizeof(*out));
	for (kind = 0; kind < V1_NKINDS; kind++)
		if (v1_match(&v1_defs[kind], k, len, out))
			return kind;
	return -1;
}

/* The SCAN glob of a layout-1 format: each conversion a '*'. */
static void
v1_glob(const char *fmt, char *out, size_t sz)
{
	size_t o = 0;

	while (*fmt != '\0' && o + 1 < sz) {
		if (*fmt == '%') {
			fmt += fmt[1] == 'l' ? 4 : 2;
			out[o++] = '*';
		} else {
			out[o++] = *fmt++;
		}
	}
	out[o] = '\0';
}

/* ---- layout-2 key names ------------------------------------------------------------- */

static const char *
tag(unsigned p)
{
	return layout_tag(p, NULL);
}

/* The layout-2 name of a renamed key (customer hash, history, Idempotency-Key, rate). */
static void
v2_name(int kind, const struct v1_key *k, char *out, size_t sz)
{
	unsigned p;

	switch (kind) {
	case V1_CUST:
		snprintf(out, sz, KEYS_CUST_FMT, tag(layout_part_of_cid(k->cid)), k->org,
		         (long long)k->cid);
		break;
	case V1_HIST:
		snprintf(out, sz, KEYS_HIST_FMT, tag(layout_part_of_cid(k->cid)), k->org,
		         (long long)k->cid);
		break;
	case V1_IDEM:
		p = layout_bucket_of(k->hex, 32);
		snprintf(out, sz, KEYS_IDEM_FMT, tag(p), k->org, k->hex);
		break;
	case V1_RATE:
		/* the TAG of HEX; the minute appended as partnerd's scripts append it */
		p = layout_bucket_of(k->hex, 32);
		snprintf(out, sz, KEYS_RATE_FMT ":%s", tag(p), k->org, k->hex, k->minute);
		break;
	default:
		out[0] = '\0';
	}
}

/* ---- session ------------------------------------------------------------------------ */

/* An index or feed of an org that store_migrate_keys found. */
struct mg_split {
	int kind;                       /* V1_IX, V1_MID or V1_FEED */
	char org[65];
	int id;                         /* the ident (V1_IX) or the pid (V1_MID) */
};

/* One thing of a batch: a key, an index field or a feed entry. Offsets into m->arena. */
struct mg_item {
	struct store_migrate *m;
	int kind;                       /* V1_* of a key; for an entry its state (below) */
	size_t off, len;                /* the key name, the field, or the entry id */
	size_t voff, vlen;              /* the layout-2 name, or the field's value */
	size_t f0, nf;                  /* an entry: its fields are m->spans[f0 .. f0 + 2nf) */
	unsigned p;                     /* the bucket or partition */
	uint64_t ms, seq;               /* an entry's id */
};

/* A feed entry's state. */
enum { E_ADD, E_CHECK, E_AGAIN, E_BAD };

struct mg_span {
	size_t off, len;
};

struct store_migrate {
	struct store *s;
	struct store_argv cmd;
	size_t batch;
	store_migrate_report_fn report;
	void *report_arg;
	store_migrate_tick_fn tick;
	void *tick_arg;
	char err[512];

	struct mg_split *split;         /* found by the key pass */
	size_t nsplit, capsplit;

	struct buf arena;               /* the batch's bytes */
	struct mg_item *items;          /* the batch */
	size_t nitems, capitems;
	struct mg_span *spans;          /* the batch's feed entry fields */
	size_t nspans, capspans;

	struct store_migrate_counts *c; /* the phase's counts */
	uint64_t shown;                 /* problems reported one by one in this phase */
	int tx_failed;                  /* a batch's MULTI/EXEC did not apply (m->err says why) */
	uint64_t tx_n;                  /* what the batch in flight moves, counted when it */
	uint64_t *tx_count;             /*   applied into *tx_count */
};

struct store_migrate *
store_migrate_open(const char *url, int timeout_ms, size_t batch, store_migrate_report_fn report,
                   void *arg)
{
	struct rconn_cfg cfg = { .timeout_ms = timeout_ms };
	struct store_migrate *m;
	char err[512];
	const char *why;

	if (rconn_parse_url(url, &cfg, err, sizeof(err)) < 0) {
		report(arg, err);
		return NULL;
	}
	m = xcalloc(1, sizeof(*m));
	m->s = store_new(&cfg);
	m->batch = batch;
	m->report = report;
	m->report_arg = arg;
	store_argv_init(&m->cmd);
	buf_init(&m->arena, (size_t)-1 / 2);
	store_queue_limit(m->s, 2 * batch + 16);
	if (store_warm(m->s) != 0) {
		why = store_error(m->s);
		if (strncmp(why, "redis: ", 7) == 0)
			why += 7;
		report(arg, why);
		store_migrate_close(m);
		return NULL;
	}
	return m;
}

void
store_migrate_close(struct store_migrate *m)
{
	if (m == NULL)
		return;
	store_free(m->s);
	store_argv_free(&m->cmd);
	buf_free(&m->arena);
	free(m->split);
	free(m->items);
	free(m->spans);
	free(m);
}

void
store_migrate_set_tick(struct store_migrate *m, store_migrate_tick_fn fn, void *arg)
{
	m->tick = fn;
	m->tick_arg = arg;
}

const char *
store_migrate_error(const struct store_migrate *m)
{
	return m->err[0] ? m->err : store_error(m->s);
}

static int
fail(struct store_migrate *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failure that stops the phase: reported, kept for store_migrate_error. -1. */
static int
fail(struct store_migrate *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(m->err, sizeof(m->err), fmt, ap);
	va_end(ap);
	m->report(m->report_arg, m->err);
	return -1;
}

static void
problem(struct store_migrate *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Something left where it is (the phase goes on): reported while few, always counted. */
static void
problem(struct store_migrate *m, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	m->c->problems++;
	if (m->shown++ >= MG_SHOWN_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	m->report(m->report_arg, msg);
}

/* Starts a phase: its counts, its problem count. */
static uint64_t
phase_start(struct store_migrate *m, struct store_migrate_counts *c)
{
	m->c = c;
	m->shown = 0;
	m->err[0] = '\0';
	return c->problems;
}

/* A phase's result: -1 already decided by the caller; 1 when it reported problems. */
static int
phase_end(struct store_migrate *m, uint64_t problems_before)
{
	if (m->shown > MG_SHOWN_MAX) {
		char msg[128];

		snprintf(msg, sizeof(msg), "... and %" PRIu64 " more such problem(s) not shown",
		         m->shown - MG_SHOWN_MAX);
		m->report(m->report_arg, msg);
	}
	return m->c->problems > problems_before ? 1 : 0;
}

static void
tick(struct store_migrate *m, enum store_migrate_phase ph, uint64_t done, uint64_t total)
{
	if (m->tick != NULL)
		m->tick(m->tick_arg, ph, done, total);
}

static struct store_argv *
cmd_start(struct store_migrate *m, const char *name)
{
	store_argv_reset(&m->cmd);
	store_argv_add(&m->cmd, name, strlen(name));
	return &m->cmd;
}

static void
add_str(struct store_argv *c, const char *s)
{
	store_argv_add(c, s, strlen(s));
}

/* Sends what is queued and reads every reply (their callbacks ran). 0, or -1 (broken). */
static int
flush(struct store_migrate *m)
{
	if (store_flush(m->s) == -2)
		return fail(m, "%s", store_error(m->s));
	return 0;
}

/* Writes what is queued without waiting. 0, or -1 (broken). */
static int
send_queued(struct store_migrate *m)
{
	if (store_send(m->s) != 0)
		return fail(m, "%s", store_error(m->s));
	return 0;
}

/* Runs m->cmd after the queue's replies: the reply (valid until the next queue round
   trip), or NULL with the failure reported. An error reply is returned as such. */
static const redisReply *
run(struct store_migrate *m)
{
	const redisReply *r;

	if (flush(m) < 0)
		return NULL;
	store_replies_release(m->s);
	if ((r = store_command(m->s, &m->cmd)) == NULL)
		fail(m, "%s", store_error(m->s));
	return r;
}

static int
queue(struct store_migrate *m, store_reply_fn fn, void *arg)
{
	if (store_queue(m->s, &m->cmd, fn, arg) != 0)
		return fail(m, "%s", store_error(m->s));
	return 0;
}

/* ---- the batch ---------------------------------------------------------------------- */

static void
batch_reset(struct store_migrate *m)
{
	buf_reset(&m->arena);
	m->nitems = 0;
	m->nspans = 0;
}

/* Copies bytes into the arena: their offset. */
static size_t
keep(struct store_migrate *m, const char *p, size_t len)
{
	size_t off = m->arena.len;

	if (buf_append(&m->arena, p, len) < 0 || buf_append(&m->arena, "", 1) < 0)
		abort();        /* the arena's cap is half the address space */
	return off;
}

static const char *
at(const struct store_migrate *m, size_t off)
{
	return m->arena.p + off;
}

static struct mg_item *
item_new(struct store_migrate *m)
{
	struct mg_item *it;

	if (m->nitems == m->capitems) {
		m->capitems = m->capitems ? m->capitems * 2 : 256;
		m->items = xrealloc(m->items, m->capitems * sizeof(*m->items));
	}
	it = &m->items[m->nitems++];
	memset(it, 0, sizeof(*it));
	it->m = m;
	return it;
}

static size_t
span_add(struct store_migrate *m, const char *p, size_t len)
{
	if (m->nspans == m->capspans) {
		m->capspans = m->capspans ? m->capspans * 2 : 1024;
		m->spans = xrealloc(m->spans, m->capspans * sizeof(*m->spans));
	}
	m->spans[m->nspans].off = keep(m, p, len);
	m->spans[m->nspans].len = len;
	return m->nspans++;
}

/* A SCAN-like reply: the new cursor into cursor and the array of items, or NULL. */
static const redisReply *
scan_reply(const redisReply *r, char cursor[32])
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= 32 ||
	    r->element[1]->type != REDIS_REPLY_ARRAY)
		return NULL;
	memcpy(cursor, r->element[0]->str, r->element[0]->len);
	cursor[r->element[0]->len] = '\0';
	return r->element[1];
}

/* MULTI's and the queued commands' replies: errors show in EXEC's. */
static int
on_tx_plain(void *arg, const redisReply *r)
{
	(void)arg;
	(void)r;
	return 0;
}

/*
 * EXEC: applied when every reply in it is not an error. A batch's copies and the deletes
 * of the old copies go in one MULTI/EXEC, so that a crash or a refusal (Redis refuses the
 * whole transaction when a write in it is refused at queueing time, e.g. OOM) leaves
 * neither; the errors Redis gives only while executing (a key of the wrong type, an XADD
 * id not above the stream's) are ruled out before the batch is queued (the buckets' and
 * partitions' types are checked first; an entry goes to its partition only above the
 * partition's last id).
 */
static int
on_exec(void *arg, const redisReply *r)
{
	struct store_migrate *m = arg;
	size_t i;

	if (r->type != REDIS_REPLY_ARRAY) {
		m->tx_failed = 1;
		snprintf(m->err, sizeof(m->err), "%s",
		         r->type == REDIS_REPLY_ERROR ? r->str : "the transaction was not applied");
		return 0;
	}
	for (i = 0; i < r->elements; i++) {
		if (r->element[i]->type == REDIS_REPLY_ERROR) {
			m->tx_failed = 1;
			snprintf(m->err, sizeof(m->err), "%s", r->element[i]->str);
		}
	}
	if (!m->tx_failed && m->tx_count != NULL)
		*m->tx_count += m->tx_n;
	return 0;
}

static int
q_multi(struct store_migrate *m)
{
	cmd_start(m, "MULTI");
	return queue(m, on_tx_plain, m);
}

/* Ends the transaction: n things move when it applies, counted into *count. */
static int
q_exec(struct store_migrate *m, uint64_t n, uint64_t *count)
{
	m->tx_n = n;
	m->tx_count = count;
	cmd_start(m, "EXEC");
	return queue(m, on_exec, m);
}

/*
 * After the replies of a batch's transaction were read: 0 when it applied (or there was
 * none), else 1 with the problem reported (what it held stays where it was).
 */
static int
tx_check(struct store_migrate *m, const char *old)
{
	if (!m->tx_failed)
		return 0;
	m->tx_failed = 0;
	problem(m, "%s: a batch could not be moved: %s (left as it is; run migrate again)", old,
	        m->err);
	m->err[0] = '\0';
	return 1;
}

/* TYPE of an index bucket: none or hash, else *bad. */
static int
on_type(void *arg, const redisReply *r)
{
	int *bad = arg;

	if (r->type != REDIS_REPLY_STATUS ||
	    (strcmp(r->str, "none") != 0 && strcmp(r->str, "hash") != 0))
		*bad = 1;
	return 0;
}

/* ---- what the Redis holds ------------------------------------------------------------ */

int
store_migrate_layout(struct store_migrate *m, char *val, size_t valsz)
{
	const redisReply *r;
	char want[16];
	size_t i, o = 0;

	val[0] = '\0';
	add_str(cmd_start(m, "GET"), KEYS_LAYOUT);
	if ((r = run(m)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ERROR)
		return fail(m, "%s: %s", KEYS_LAYOUT, r->str);
	if (r->type == REDIS_REPLY_STRING) {
		snprintf(want, sizeof(want), "%d", LAYOUT_VERSION);
		for (i = 0; i < r->len && o + 5 < valsz && i < 64; i++) {
			unsigned char ch = (unsigned char)r->str[i];

			if (ch >= 0x20 && ch < 0x7f)
				val[o++] = (char)ch;
			else
				o += (size_t)snprintf(val + o, valsz - o, "\\x%02x", ch);
		}
		val[o] = '\0';
		if (strlen(want) == r->len && memcmp(r->str, want, r->len) == 0)
			return STORE_MIGRATE_CURRENT;
		return r->len == 1 && r->str[0] == '2' ? STORE_MIGRATE_V2 : STORE_MIGRATE_OTHER;
	}
	add_str(cmd_start(m, "EXISTS"), KEYS_ORGS);
	if ((r = run(m)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_INTEGER)
		return fail(m, "EXISTS %s: unexpected reply", KEYS_ORGS);
	if (r->integer == 0)
		return STORE_MIGRATE_EMPTY;
	/* the migration's SCANs, renames and transactions are of one Redis */
	return store_is_cluster(m->s) ? STORE_MIGRATE_CLUSTER : STORE_MIGRATE_V1;
}

/* What scan_count counts: a key name SCAN found, and the caller's want. */
typedef int (*scan_want_fn)(const char *k, size_t len, unsigned want);

/* A layout-1 key whose kind is in want (a bit per V1_ kind). */
static int
want_v1(const char *k, size_t len, unsigned want)
{
	struct v1_key key;
	int kind = v1_classify(k, len, &key);

	return kind >= 0 && (want & (1u << kind)) != 0;
}

/* A layout-2 customer lock key (keys.h's KEYS_LOCK_FMT). */
static int
want_v2_lock(const char *k, size_t len, unsigned want)
{
	struct store_key_parts kp;

	(void)want;
	return store_key_classify(k, len, &kp) == STORE_KEY_LOCK;
}

/*
 * SCANs the key space (MATCH glob) of master (SCAN_ONE: the one Redis migrate works on)
 * and counts the keys fn wants: *n grows, the first one's name goes in first (when empty).
 */
#define SCAN_ONE ((size_t)-1)

static int
scan_count(struct store_migrate *m, size_t master, const char *glob, scan_want_fn fn, unsigned want,
           uint64_t *n, char *first, size_t firstsz)
{
	char cursor[32] = "0";

	do {
		struct store_argv *c = cmd_start(m, "SCAN");
		const redisReply *r, *keys;
		size_t i;

		add_str(c, cursor);
		add_str(c, "MATCH");
		add_str(c, glob);
		add_str(c, "COUNT");
		store_argv_addf(c, "%d", MG_SCAN_MAX);
		if (master == SCAN_ONE) {
			if ((r = run(m)) == NULL)
				return -1;
		} else {
			store_replies_release(m->s);
			if ((r = store_command_on(m->s, master, &m->cmd)) == NULL)
				return fail(m, "%s", store_error(m->s));
		}
		if ((keys = scan_reply(r, cursor)) == NULL)
			return fail(m, "SCAN: unexpected reply");
		for (i = 0; i < keys->elements; i++) {
			const redisReply *e = keys->element[i];

			if (e->type != REDIS_REPLY_STRING || !fn(e->str, e->len, want))
				continue;
			if ((*n)++ == 0)
				snprintf(first, firstsz, "%.*s", (int)e->len, e->str);
		}
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

int
store_migrate_locks(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz)
{
	char glob[64];

	m->err[0] = '\0';
	*n = 0;
	first[0] = '\0';
	v1_glob(KEYS_V1_LOCK_FMT, glob, sizeof(glob));
	return scan_count(m, SCAN_ONE, glob, want_v1, 1u << V1_LOCK, n, first, firstsz);
}

/* ---- key layout 2 -> 3 ---------------------------------------------------------------- */

int
store_migrate_v2_locks(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz)
{
	size_t master, nm;
	char glob[64];

	m->err[0] = '\0';
	*n = 0;
	first[0] = '\0';
	/* the layout-2 lock keys: pp:{TAG}:lock:ORG:CID (keys.h), on every master */
	snprintf(glob, sizeof(glob), KEYS_LOCK_FMT, "*", "*", 0LL);
	glob[strlen(glob) - 1] = '*';
	if ((nm = store_masters(m->s)) == 0)
		return fail(m, "%s", store_error(m->s));
	for (master = 0; master < nm; master++)
		if (scan_count(m, master, glob, want_v2_lock, 0, n, first, firstsz) < 0)
			return -1;
	return 0;
}

/* SET pp:layout LAYOUT_VERSION with its condition (NX, XX) and GET when get: the reply, or
 * NULL when it failed (reported; an error reply too). */
static const redisReply *
layout_set(struct store_migrate *m, const char *cond, int get)
{
	struct store_argv *c = cmd_start(m, "SET");
	const redisReply *r;

	m->err[0] = '\0';
	add_str(c, KEYS_LAYOUT);
	store_argv_addf(c, "%d", LAYOUT_VERSION);
	add_str(c, cond);
	if (get)
		add_str(c, "GET");
	if ((r = run(m)) == NULL)
		return NULL;
	if (r->type == REDIS_REPLY_ERROR) {
		fail(m, "SET %s: %s", KEYS_LAYOUT, r->str);
		return NULL;
	}
	return r;
}

int
store_migrate_v2_finish(struct store_migrate *m)
{
	struct store_argv *c;
	const redisReply *r;
	char v[64];

	if ((r = layout_set(m, "XX", 1)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STRING && r->len == 1 && r->str[0] == '2')
		return 0;
	if (r->type != REDIS_REPLY_STRING)     /* XX: pp:layout went away meanwhile, nothing set */
		return fail(m, "%s went away during the run: nothing recorded", KEYS_LAYOUT);
	/* changed meanwhile (another migrate, a load): what it held is put back */
	snprintf(v, sizeof(v), "%.*s", (int)(r->len < 40 ? r->len : 40), r->str);
	c = cmd_start(m, "SET");
	add_str(c, KEYS_LAYOUT);
	add_str(c, v);
	if (run(m) == NULL)
		return -1;
	return fail(m, "%s changed to \"%s\" during the run (another migrate?): left as it was",
	            KEYS_LAYOUT, v);
}

int
store_migrate_left(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz)
{
	char glob[64];

	m->err[0] = '\0';
	/* every layout-1 key migrate moves has a hash tag: "pp:{" */
	v1_glob(KEYS_V1_ORG_FMT, glob, sizeof(glob));
	glob[strcspn(glob, "*") + 1] = '\0';
	*n = 0;
	first[0] = '\0';
	return scan_count(m, SCAN_ONE, glob, want_v1, (1u << V1_NKINDS) - 1, n, first, firstsz);
}

static int64_t
dbsize(struct store_migrate *m)
{
	const redisReply *r;

	cmd_start(m, "DBSIZE");
	if ((r = run(m)) == NULL)
		return -1;
	return r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
}

/* ---- phase 1: the keys that are renamed ---------------------------------------------- */

static void
split_add(struct store_migrate *m, int kind, const struct v1_key *k)
{
	int id = kind == V1_IX ? k->ident : kind == V1_MID ? k->pid : 0;
	size_t i;

	for (i = 0; i < m->nsplit; i++)
		if (m->split[i].kind == kind && m->split[i].id == id &&
		    strcmp(m->split[i].org, k->org) == 0)
			return;         /* SCAN may return a key twice */
	if (m->nsplit == m->capsplit) {
		m->capsplit = m->capsplit ? m->capsplit * 2 : 16;
		m->split = xrealloc(m->split, m->capsplit * sizeof(*m->split));
	}
	m->split[m->nsplit].kind = kind;
	m->split[m->nsplit].id = id;
	memcpy(m->split[m->nsplit].org, k->org, sizeof(k->org));
	m->nsplit++;
}

static int
on_rename(void *arg, const redisReply *r)
{
	struct mg_item *it = arg;
	struct store_migrate *m = it->m;

	if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
		switch (it->kind) {
		case V1_CUST: m->c->customers++; break;
		case V1_HIST: m->c->histories++; break;
		case V1_IDEM: m->c->idem++; break;
		case V1_RATE: m->c->rate++; break;
		}
	} else if (r->type == REDIS_REPLY_INTEGER) {
		problem(m, "%s: not moved: its layout-2 name %s exists already", at(m, it->off),
		        at(m, it->voff));
	} else if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "no such key") != NULL) {
		/* SCAN gave the key twice, and it moved the first time (or it expired) */
	} else {
		problem(m, "%s: RENAMENX failed: %s", at(m, it->off),
		        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
	}
	return 0;
}

/* One SCAN batch: the keys to rename queued, the indexes and feeds noted. */
static int
keys_batch(struct store_migrate *m, const redisReply *keys, int *lock)
{
	char v2[MG_NAME_MAX];
	struct v1_key k;
	size_t i;

	batch_reset(m);
	for (i = 0; i < keys->elements; i++) {
		const redisReply *e = keys->element[i];
		int kind = v1_classify(e->str, e->len, &k);
		struct mg_item *it;

		if (kind == V1_LOCK) {
			if (!*lock)
				fail(m, "%.*s: a layout-1 lock: a partnerd is serving this Redis; stop "
				     "every partnerd, then run migrate again", (int)e->len, e->str);
			*lock = 1;
		} else if (kind == V1_IX || kind == V1_MID || kind == V1_FEED) {
			split_add(m, kind, &k);
		} else if (kind >= 0) {
			v2_name(kind, &k, v2, sizeof(v2));
			it = item_new(m);
			it->kind = kind;
			it->off = keep(m, e->str, e->len);
			it->len = e->len;
			it->voff = keep(m, v2, strlen(v2));
			it->vlen = strlen(v2);
		}
	}
	if (*lock)
		return -1;
	for (i = 0; i < m->nitems; i++) {
		struct mg_item *it = &m->items[i];
		struct store_argv *c = cmd_start(m, "RENAMENX");

		store_argv_add(c, at(m, it->off), it->len);
		store_argv_add(c, at(m, it->voff), it->vlen);
		if (queue(m, on_rename, it) < 0)
			return -1;
	}
	return send_queued(m);
}

int
store_migrate_keys(struct store_migrate *m, struct store_migrate_counts *c)
{
	uint64_t before = phase_start(m, c);
	char cursor[32] = "0", glob[64];
	int64_t total = dbsize(m);
	int lock = 0;

	if (total < 0)
		return -1;
	v1_glob(KEYS_V1_ORG_FMT, glob, sizeof(glob));
	glob[strcspn(glob, "*") + 1] = '\0';            /* "pp:{*": tagged keys only */
	do {
		struct store_argv *cmd = cmd_start(m, "SCAN");
		const redisReply *r, *keys;

		add_str(cmd, cursor);
		add_str(cmd, "MATCH");
		add_str(cmd, glob);
		add_str(cmd, "COUNT");
		store_argv_addf(cmd, "%zu", m->batch < MG_SCAN_MAX ? m->batch : (size_t)MG_SCAN_MAX);
		if ((r = run(m)) == NULL)
			return -1;
		if ((keys = scan_reply(r, cursor)) == NULL)
			return fail(m, "SCAN: unexpected reply: %s",
			            r->type == REDIS_REPLY_ERROR ? r->str : "?");
		c->keys += keys->elements;
		if (keys_batch(m, keys, &lock) < 0) {
			flush(m);
			return -1;
		}
		tick(m, STORE_MIGRATE_KEYS, c->keys, (uint64_t)total);
	} while (strcmp(cursor, "0") != 0);
	if (flush(m) < 0)
		return -1;
	tick(m, STORE_MIGRATE_KEYS, c->keys, c->keys);  /* DBSIZE was an estimate */
	return phase_end(m, before);
}

/* ---- phase 2: indexes into buckets --------------------------------------------------- */

static void
split_name(const struct mg_split *s, char *out, size_t sz)
{
	if (s->kind == V1_IX)
		snprintf(out, sz, KEYS_V1_IX_FMT, s->org, store_ident_name[s->id]);
	else if (s->kind == V1_MID)
		snprintf(out, sz, KEYS_V1_MID_FMT, s->org, s->id);
	else
		snprintf(out, sz, KEYS_V1_FEED_FMT, s->org);
}

/* The layout-2 name of bucket or partition p of an index or feed. */
static void
split_v2_name(const struct mg_split *s, unsigned p, char *out, size_t sz)
{
	if (s->kind == V1_IX)
		snprintf(out, sz, KEYS_IX_FMT, tag(p), s->org, store_ident_name[s->id]);
	else if (s->kind == V1_MID)
		snprintf(out, sz, KEYS_MID_FMT, tag(p), s->org, s->id);
	else
		snprintf(out, sz, KEYS_FEED_FMT, tag(p), s->org);
}

static int
on_total(void *arg, const redisReply *r)
{
	uint64_t *total = arg;

	if (r->type == REDIS_REPLY_INTEGER && r->integer > 0)
		*total += (uint64_t)r->integer;
	return 0;
}

/* The fields (HLEN) or entries (XLEN) of the splits of the given kinds, for the progress. */
static int
split_total(struct store_migrate *m, int feeds, uint64_t *total)
{
	char name[MG_NAME_MAX];
	size_t i;

	*total = 0;
	for (i = 0; i < m->nsplit; i++) {
		if ((m->split[i].kind == V1_FEED) != feeds)
			continue;
		split_name(&m->split[i], name, sizeof(name));
		add_str(cmd_start(m, feeds ? "XLEN" : "HLEN"), name);
		if (queue(m, on_total, total) < 0)
			return -1;
	}
	return flush(m);
}

static int
by_bucket(const void *a, const void *b)
{
	const struct mg_item *x = a, *y = b;

	return x->p < y->p ? -1 : x->p > y->p;
}

/*
 * One HSCAN batch of index old (the fields and values copied into m's batch): one
 * MULTI/EXEC of an HSET per bucket and the HDEL of the fields from old, sent without
 * waiting (the next HSCAN reads its reply). 0, or -1.
 */
static int
hash_batch(struct store_migrate *m, const struct mg_split *s, const char *old)
{
	char name[MG_NAME_MAX];
	struct store_argv *c;
	size_t i, j;

	qsort(m->items, m->nitems, sizeof(*m->items), by_bucket);
	if (q_multi(m) < 0)
		return -1;
	for (i = 0; i < m->nitems; i = j) {
		split_v2_name(s, m->items[i].p, name, sizeof(name));
		c = cmd_start(m, "HSET");
		add_str(c, name);
		for (j = i; j < m->nitems && m->items[j].p == m->items[i].p; j++) {
			store_argv_add(c, at(m, m->items[j].off), m->items[j].len);
			store_argv_add(c, at(m, m->items[j].voff), m->items[j].vlen);
		}
		if (queue(m, on_tx_plain, m) < 0)
			return -1;
	}
	c = cmd_start(m, "HDEL");
	add_str(c, old);
	for (i = 0; i < m->nitems; i++)
		store_argv_add(c, at(m, m->items[i].off), m->items[i].len);
	if (queue(m, on_tx_plain, m) < 0 ||
	    q_exec(m, m->nitems, s->kind == V1_IX ? &m->c->ix : &m->c->mid) < 0)
		return -1;
	return send_queued(m);
}

/* Moves one index into its buckets. 0, 1 (a problem reported), -1. */
static int
hash_move(struct store_migrate *m, const struct mg_split *s, uint64_t *done, uint64_t total)
{
	char cursor[32] = "0", old[MG_NAME_MAX], name[MG_NAME_MAX];
	int bad = 0;
	unsigned p;

	split_name(s, old, sizeof(old));
	for (p = 0; p < LAYOUT_PARTS; p++) {
		split_v2_name(s, p, name, sizeof(name));
		add_str(cmd_start(m, "TYPE"), name);
		if (queue(m, on_type, &bad) < 0)
			return -1;
	}
	if (flush(m) < 0)
		return -1;
	if (bad) {
		problem(m, "%s: a bucket of its layout-2 index is not a hash: left as it is", old);
		return 1;
	}
	do {
		struct store_argv *c = cmd_start(m, "HSCAN");
		const redisReply *r, *f;
		size_t i;

		add_str(c, old);
		add_str(c, cursor);
		add_str(c, "COUNT");
		store_argv_addf(c, "%zu", m->batch);
		if ((r = run(m)) == NULL)
			return -1;
		if (tx_check(m, old))
			return 1;
		if ((f = scan_reply(r, cursor)) == NULL) {
			problem(m, "%s: cannot be read as a hash (%s): left as it is", old,
			        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			return 1;
		}
		batch_reset(m);
		for (i = 0; i + 1 < f->elements; i += 2) {
			struct mg_item *it = item_new(m);

			it->off = keep(m, f->element[i]->str, f->element[i]->len);
			it->len = f->element[i]->len;
			it->voff = keep(m, f->element[i + 1]->str, f->element[i + 1]->len);
			it->vlen = f->element[i + 1]->len;
			it->p = layout_bucket_of(f->element[i]->str, f->element[i]->len);
		}
		if (m->nitems > 0 && hash_batch(m, s, old) < 0)
			return -1;
		*done += m->nitems;
		tick(m, STORE_MIGRATE_HASHES, *done, total);
	} while (strcmp(cursor, "0") != 0);
	if (flush(m) < 0)
		return -1;
	return tx_check(m, old);
}

int
store_migrate_hashes(struct store_migrate *m, struct store_migrate_counts *c)
{
	uint64_t before = phase_start(m, c), total, done = 0;
	size_t i;

	if (split_total(m, 0, &total) < 0)
		return -1;
	tick(m, STORE_MIGRATE_HASHES, 0, total);
	for (i = 0; i < m->nsplit; i++)
		if (m->split[i].kind != V1_FEED && hash_move(m, &m->split[i], &done, total) < 0)
			return -1;
	tick(m, STORE_MIGRATE_HASHES, done, done > total ? done : total);
	return phase_end(m, before);
}

/* ---- phase 3: feeds into partitions -------------------------------------------------- */

/* The last ids of the partitions of one feed, read before it moves. */
struct mg_tops {
	struct store_migrate *m;
	uint64_t ms[LAYOUT_PARTS], seq[LAYOUT_PARTS];
	int has[LAYOUT_PARTS];
	int bad;                        /* a partition is not a stream */
	unsigned p;                     /* for on_top: the partition the next reply is of */
};

/* "MS-SEQ" -> ms, seq. 0, or -1. */
static int
parse_id(const char *s, size_t len, uint64_t *ms, uint64_t *seq)
{
	char buf[48], *end;
	const char *dash;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	dash = strchr(buf, '-');
	if (dash == NULL || dash == buf || dash[1] == '\0' ||
	    strspn(buf, "0123456789-") != len)
		return -1;
	*ms = strtoull(buf, &end, 10);
	if (end != dash)
		return -1;
	*seq = strtoull(dash + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

static int
on_top(void *arg, const redisReply *r)
{
	struct mg_tops *t = arg;
	unsigned p = t->p++;

	if (r->type != REDIS_REPLY_ARRAY) {
		t->bad = 1;
		return 0;
	}
	if (r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
	    r->element[0]->elements == 2 && r->element[0]->element[0]->type == REDIS_REPLY_STRING &&
	    parse_id(r->element[0]->element[0]->str, r->element[0]->element[0]->len, &t->ms[p],
	             &t->seq[p]) == 0)
		t->has[p] = 1;
	return 0;
}

static int
id_le(uint64_t ms, uint64_t seq, uint64_t tms, uint64_t tseq)
{
	return ms < tms || (ms == tms && seq <= tseq);
}

/* The reply of XRANGE P ID ID for an entry found at or below its partition's last id. */
static int
on_check(void *arg, const redisReply *r)
{
	struct mg_item *it = arg;

	if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
		it->kind = E_AGAIN;     /* the killed run copied it */
	return 0;
}

/* The customer of an entry: its customerId field, a customer id. 0, or -1. */
static int
entry_cid(const struct store_migrate *m, const struct mg_item *it, int64_t *cid)
{
	size_t j;

	for (j = 0; j < it->nf; j++) {
		const struct mg_span *f = &m->spans[it->f0 + 2 * j], *v = f + 1;

		if (f->len == strlen(MG_FEED_CID_FIELD) &&
		    memcmp(at(m, f->off), MG_FEED_CID_FIELD, f->len) == 0)
			return ident_parse_cid(at(m, v->off), v->len, cid);
	}
	return -1;
}

/* Copies the entries of an XRANGE reply into m's batch; their partitions and states. */
static void
feed_take(struct store_migrate *m, const redisReply *r, struct mg_tops *t, const char *old)
{
	size_t i, j;

	batch_reset(m);
	for (i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		struct mg_item *it;
		int64_t cid;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_ARRAY)
			continue;
		it = item_new(m);
		it->off = keep(m, e->element[0]->str, e->element[0]->len);
		it->len = e->element[0]->len;
		it->f0 = m->nspans;
		it->nf = e->element[1]->elements / 2;
		for (j = 0; j < 2 * it->nf; j++)
			span_add(m, e->element[1]->element[j]->str, e->element[1]->element[j]->len);
		if (parse_id(at(m, it->off), it->len, &it->ms, &it->seq) < 0 ||
		    entry_cid(m, it, &cid) < 0) {
			it->kind = E_BAD;
			problem(m, "%s: entry %s has no customer id (field %s): left in the old feed; "
			        "delete it (XDEL) and run migrate again", old, at(m, it->off),
			        MG_FEED_CID_FIELD);
			continue;
		}
		it->p = layout_part_of_cid(cid);
		if (t->has[it->p] && id_le(it->ms, it->seq, t->ms[it->p], t->seq[it->p])) {
			it->kind = E_CHECK;
		} else {
			it->kind = E_ADD;
			t->has[it->p] = 1;
			t->ms[it->p] = it->ms;
			t->seq[it->p] = it->seq;
		}
	}
}

/*
 * One XRANGE batch of feed old: the entries found at or below their partition's last id
 * looked up there (a killed run copied them, or not), then one MULTI/EXEC of the XADDs of
 * the others and the XDEL from old of both, sent without waiting (the next XRANGE reads
 * its reply). 0, or -1.
 */
static int
feed_batch(struct store_migrate *m, const struct mg_split *s, const char *old)
{
	char name[MG_NAME_MAX];
	struct store_argv *c;
	size_t i, j, nchk = 0, ndel = 0;

	for (i = 0; i < m->nitems; i++) {
		struct mg_item *it = &m->items[i];

		if (it->kind != E_CHECK)
			continue;
		split_v2_name(s, it->p, name, sizeof(name));
		c = cmd_start(m, "XRANGE");
		add_str(c, name);
		store_argv_add(c, at(m, it->off), it->len);
		store_argv_add(c, at(m, it->off), it->len);
		if (queue(m, on_check, it) < 0)
			return -1;
		nchk++;
	}
	if (nchk > 0 && flush(m) < 0)
		return -1;
	if (q_multi(m) < 0)
		return -1;
	for (i = 0; i < m->nitems; i++) {
		struct mg_item *it = &m->items[i];

		if (it->kind != E_ADD)
			continue;
		split_v2_name(s, it->p, name, sizeof(name));
		c = cmd_start(m, "XADD");
		add_str(c, name);
		store_argv_add(c, at(m, it->off), it->len);
		for (j = 0; j < 2 * it->nf; j++)
			store_argv_add(c, at(m, m->spans[it->f0 + j].off), m->spans[it->f0 + j].len);
		if (queue(m, on_tx_plain, m) < 0)
			return -1;
	}
	c = cmd_start(m, "XDEL");
	add_str(c, old);
	for (i = 0; i < m->nitems; i++) {
		struct mg_item *it = &m->items[i];

		if (it->kind == E_CHECK) {
			split_v2_name(s, it->p, name, sizeof(name));
			problem(m, "%s: entry %s is older than the last entry of %s but not in it (it "
			        "cannot be added in order): left in the old feed; delete it (XDEL) and "
			        "run migrate again", old, at(m, it->off), name);
			continue;
		}
		if (it->kind == E_BAD)
			continue;
		store_argv_add(c, at(m, it->off), it->len);
		ndel++;
		if (it->kind == E_AGAIN)
			m->c->feed_again++;
	}
	if ((ndel > 0 && queue(m, on_tx_plain, m) < 0) || q_exec(m, ndel, &m->c->feed) < 0)
		return -1;
	return send_queued(m);
}

/* Moves one feed into its partitions. 0, 1 (a problem reported), -1. */
static int
feed_move(struct store_migrate *m, const struct mg_split *s, uint64_t *done, uint64_t total)
{
	struct mg_tops *t = xcalloc(1, sizeof(*t));
	char old[MG_NAME_MAX], name[MG_NAME_MAX], start[64] = "-";
	uint64_t problems = m->c->problems;
	const redisReply *r;
	unsigned p;

	split_name(s, old, sizeof(old));
	for (p = 0; p < LAYOUT_PARTS; p++) {
		struct store_argv *c = cmd_start(m, "XREVRANGE");

		split_v2_name(s, p, name, sizeof(name));
		add_str(c, name);
		add_str(c, "+");
		add_str(c, "-");
		add_str(c, "COUNT");
		add_str(c, "1");
		if (queue(m, on_top, t) < 0)
			goto fail;
	}
	if (flush(m) < 0)
		goto fail;
	if (t->bad) {
		problem(m, "%s: a partition of its layout-2 feed is not a stream: left as it is", old);
		goto out;
	}
	for (;;) {
		struct store_argv *c = cmd_start(m, "XRANGE");

		add_str(c, old);
		add_str(c, start);
		add_str(c, "+");
		add_str(c, "COUNT");
		store_argv_addf(c, "%zu", m->batch);
		if ((r = run(m)) == NULL)
			goto fail;
		if (tx_check(m, old))
			goto out;
		if (r->type != REDIS_REPLY_ARRAY) {
			problem(m, "%s: cannot be read as a stream (%s): left as it is", old,
			        r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			goto out;
		}
		if (r->elements == 0)
			break;
		feed_take(m, r, t, old);
		if (m->nitems == 0)
			break;
		snprintf(start, sizeof(start), "(%s", at(m, m->items[m->nitems - 1].off));
		if (feed_batch(m, s, old) < 0)
			goto fail;
		*done += m->nitems;
		tick(m, STORE_MIGRATE_FEEDS, *done, total);
	}
	if (flush(m) < 0)
		goto fail;
	tx_check(m, old);
	if (m->c->problems == problems) {
		/* every entry moved: the old stream is empty (XDEL keeps the key) */
		add_str(cmd_start(m, "XLEN"), old);
		if ((r = run(m)) == NULL)
			goto fail;
		if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
			add_str(cmd_start(m, "DEL"), old);
			if ((r = run(m)) == NULL)
				goto fail;
		}
	}
out:
	free(t);
	return m->c->problems > problems;
fail:
	free(t);
	return -1;
}

int
store_migrate_feeds(struct store_migrate *m, struct store_migrate_counts *c)
{
	uint64_t before = phase_start(m, c), total, done = 0;
	size_t i;

	if (split_total(m, 1, &total) < 0)
		return -1;
	tick(m, STORE_MIGRATE_FEEDS, 0, total);
	for (i = 0; i < m->nsplit; i++)
		if (m->split[i].kind == V1_FEED && feed_move(m, &m->split[i], &done, total) < 0)
			return -1;
	tick(m, STORE_MIGRATE_FEEDS, done, done > total ? done : total);
	return phase_end(m, before);
}

/* ---- the end ------------------------------------------------------------------------ */

int
store_migrate_finish(struct store_migrate *m)
{
	const redisReply *r;
	char v[64];

	if ((r = layout_set(m, "NX", 0)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_STATUS)
		return 0;
	if (store_migrate_layout(m, v, sizeof(v)) == STORE_MIGRATE_CURRENT)
		return 0;
	return fail(m, "%s holds \"%s\" already: not changed", KEYS_LAYOUT, v);
}
