/*
 * store: Redis connection handling, scripts and pipelines for partnerd (see store.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cluster.h"
#include "dates.h"
#include "layout.h"
#include "lua_scripts.h"
#include "metrics.h"
#include "rarena.h"
#include "store_pipe.h"
#include "resp.h"
#include "store.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
/*
 * The reply arena's kept chunk: a single-customer write's replies (a begin reply with a
 * customer's HGETALL, the commit's) take a few KiB; a 50-customer batch takes a few chunks
 * more, which are freed when the request is done.
 */
#define REPLY_CHUNK (64 * 1024)

/*
 * The queue on a cluster: the commands' arguments copied (the caller reuses its argv),
 * run at once with cluster_run when the queue is sent.
 */
struct cq_op {
	size_t arg0, argc;      /* its arguments: args[arg0 .. arg0+argc) */
	long key;               /* the argument that routes it, -1: none */
	int script;             /* -1, or the script it runs (EVALSHA, argv = numkeys...) */
};

struct cq {
	struct cq_op *op;       /* one per queued command (s->q holds its callback) */
	size_t opcap;
	size_t *off, *len;      /* each argument's bytes in buf */
	size_t nargs, argcap;
	char *buf;
	size_t buflen, bufcap;
};

struct store {
	struct rconn_cfg cfg;
	redisContext *c;        /* NULL while disconnected */
	int64_t retry_at;       /* monotonic ms before which no reconnect is tried */
	int backoff_ms;
	uint64_t trips;
	char err[256];
	char sha[STORE_NSCRIPTS][41];   /* SHA1 of each loaded script, hex; "" until loaded */
	struct resp_out out;    /* the RESP text of the commands being sent (reused) */
	struct rarena replies;  /* every reply read on c, until store_replies_release */
	int maybe_ran;          /* the last failed call may have run in Redis (see store.h) */
	int64_t deadline;       /* monotonic ms that bounds connect and calls; 0: none */
	struct store_qslot *q;  /* queued commands' callbacks (store_queue), in order */
	size_t qn, qcap, qmax;  /* queued, allocated, sent at once (0: QUEUE_MAX) */
	size_t qsent;           /* the first qsent queued were written (store_send) */
	int qfailed;            /* an error reply or a failed callback since store_flush */
	int qbroken;            /* the connection broke since store_flush: queue nothing */
	store_check_fn check;   /* run on each new connection (store_set_connect_check) */
	int refused;            /* the last connect was refused by check: err says why */
	/* a Redis Cluster (cfg.cluster set): the router, and what replaces s->c's checks */
	struct cluster *cl;     /* NULL: one Redis */
	char bad_seeds[256];    /* cfg.cluster did not parse: every call fails with this */
	int checked;            /* the connect check passed on this store's router */
	int in_check;           /* the check runs: its own calls skip it */
	uint64_t cl_fails;      /* cluster calls that failed (the check's round tells by it) */
	char check_msg[256];    /* the check's refusal, given again during the back-off */
	struct cq cq;           /* the queue's commands (store_queue on a cluster) */
	struct store_pipe *pipe;        /* shared with other stores (store_share), or NULL */
};

/* A queued command's reply callback. */
struct store_qslot {
	store_reply_fn fn;
	void *arg;
};

#define QUEUE_MAX 1000

/* A Redis Cluster's side of the calls (the end of this file). */
static redisReply *cl_command(struct store *s, const struct store_argv *cmd, const size_t *pin);
static int cl_pipeline(struct store *s, struct store_argv *cmds, size_t n, redisReply ***replies);
static int cl_queue_send(struct store *s);
static int cl_queue_add(struct store *s, const struct store_argv *a, int script, store_reply_fn fn,
                        void *arg);
static int queue_slot(struct store *s, store_reply_fn fn, void *arg);
static int cl_store_run(struct store *s, const struct store_op *ops, size_t n, int64_t deadline_ms,
                        redisReply **replies, enum store_op_status *st);
static int cl_ping(struct store *s);
static void cq_reset(struct store *s);
static void cq_free(struct cq *q);

static const char *const script_source[STORE_NSCRIPTS] = {
	[STORE_BEGIN] = lua_begin,
	[STORE_COMMIT] = lua_commit,
	[STORE_READ] = lua_read,
	[STORE_IDEM] = lua_idem,
	[STORE_SETTLE] = lua_settle,
	[STORE_RESOLVE] = lua_resolve,
	[STORE_HDEL_IF] = lua_hdel_if,
	[STORE_HELD] = lua_held,
	[STORE_CLAIM] = lua_claim,
	[STORE_UNLOCK] = lua_unlock,
};

/* The scripts' names, for messages. */
static const char *const script_name[STORE_NSCRIPTS] = {
	[STORE_BEGIN] = "begin", [STORE_COMMIT] = "commit", [STORE_READ] = "read",
	[STORE_IDEM] = "idem", [STORE_SETTLE] = "settle", [STORE_RESOLVE] = "resolve",
	[STORE_HDEL_IF] = "hdel_if", [STORE_HELD] = "held", [STORE_CLAIM] = "claim",
	[STORE_UNLOCK] = "unlock",
};

/*
 * The scripts as Redis runs them: the embedded text with the placeholder of tags.lua
 * replaced by the partition tags of key layout 2 (layout_tags_text), once per process.
 * The tags come from layout.c's search at run time rather than from the build, so that
 * the C side and the scripts cannot disagree about them.
 */
#define TAGS_PLACEHOLDER "@LAYOUT_TAGS@"

static const char *script_text[STORE_NSCRIPTS];
static pthread_once_t script_once = PTHREAD_ONCE_INIT;

static void
scripts_build(void)
{
	const char *tags = layout_tags_text();
	size_t tlen = strlen(tags), plen = strlen(TAGS_PLACEHOLDER);
	int k;

	for (k = 0; k < STORE_NSCRIPTS; k++) {
		const char *src = script_source[k], *at = strstr(src, TAGS_PLACEHOLDER);
		size_t len = strlen(src);
		char *t;

		if (at == NULL) {
			script_text[k] = src;
			continue;
		}
		t = malloc(len - plen + tlen + 1);
		if (t == NULL)
			abort();
		memcpy(t, src, (size_t)(at - src));
		memcpy(t + (at - src), tags, tlen);
		memcpy(t + (at - src) + tlen, at + plen, len - (size_t)(at - src) - plen + 1);
		script_text[k] = t;     /* kept for the process's life */
	}
}

/* ---- argv --------------------------------------------------------------------------- */

void
store_argv_init(struct store_argv *a)
{
	memset(a, 0, sizeof(*a));
}

void
store_argv_reset(struct store_argv *a)
{
	a->n = 0;
	a->owned_len = 0;
}

void
store_argv_free(struct store_argv *a)
{
	free(a->v);
	free(a->len);
	free(a->off);
	free(a->owned);
	memset(a, 0, sizeof(*a));
}

/* Makes the argument arrays hold cap entries. */
static void
argv_grow(struct store_argv *a, size_t cap)
{
	a->cap = cap;
	a->v = realloc(a->v, a->cap * sizeof(*a->v));
	a->len = realloc(a->len, a->cap * sizeof(*a->len));
	a->off = realloc(a->off, a->cap * sizeof(*a->off));
	if (a->v == NULL || a->len == NULL || a->off == NULL)
		abort();
}

static void arena_reserve(struct store_argv *a, size_t n);

void
store_argv_presize(struct store_argv *a, size_t nargs, size_t nbytes)
{
	if (nargs > a->cap)
		argv_grow(a, nargs);
	arena_reserve(a, nbytes);
}

static void
argv_push(struct store_argv *a, const char *p, size_t len, size_t off)
{
	if (a->n == a->cap)
		argv_grow(a, a->cap ? a->cap * 2 : 16);
	a->v[a->n] = p;
	a->len[a->n] = len;
	a->off[a->n] = off;
	a->n++;
}

void
store_argv_add(struct store_argv *a, const char *p, size_t len)
{
	argv_push(a, p != NULL ? p : "", len, 0);
}

/* Makes room for n more bytes (and a NUL) in the arena. */
static void
arena_reserve(struct store_argv *a, size_t n)
{
	if (a->owned_cap - a->owned_len > n)
		return;
	a->owned_cap = a->owned_cap ? a->owned_cap * 2 : 256;
	while (a->owned_cap - a->owned_len <= n)
		a->owned_cap *= 2;
	a->owned = realloc(a->owned, a->owned_cap);
	if (a->owned == NULL)
		abort();
}

/*
 * The formats partnerd uses (keys.h and counts) take only %s, %d, %lld and %zu: those are
 * done here (vsnprintf cost more than the Redis call it prepared); any other conversion
 * goes through vsnprintf. Returns the length written at the arena's end, or -1 for "not
 * handled" (nothing written).
 */
static int
fast_format(struct store_argv *a, const char *fmt, va_list ap)
{
	size_t len = 0;
	const char *f;

	for (f = fmt; *f; f++) {
		if (*f != '%') {
			arena_reserve(a, len + 1);
			a->owned[a->owned_len + len++] = *f;
			continue;
		}
		if (f[1] == 's') {
			const char *str = va_arg(ap, const char *);
			size_t n = strlen(str);

			arena_reserve(a, len + n);
			memcpy(a->owned + a->owned_len + len, str, n);
			len += n;
			f += 1;
		} else if (f[1] == 'd') {
			int v = va_arg(ap, int);

			arena_reserve(a, len + 24);
			len += resp_put_u64(a->owned + a->owned_len + len,
			                    v < 0 ? (uint64_t)0 - (uint64_t)(int64_t)v : (uint64_t)v, v < 0);
			f += 1;
		} else if (f[1] == 'l' && f[2] == 'l' && f[3] == 'd') {
			long long v = va_arg(ap, long long);

			arena_reserve(a, len + 24);
			len += resp_put_u64(a->owned + a->owned_len + len,
			                    v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, v < 0);
			f += 3;
		} else if (f[1] == 'z' && f[2] == 'u') {
			size_t v = va_arg(ap, size_t);

			arena_reserve(a, len + 24);
			len += resp_put_u64(a->owned + a->owned_len + len, (uint64_t)v, 0);
			f += 2;
		} else {
			return -1;
		}
	}
	arena_reserve(a, len);
	a->owned[a->owned_len + len] = '\0';
	return (int)len;
}

void
store_argv_addcopy(struct store_argv *a, const char *p, size_t len)
{
	arena_reserve(a, len);
	if (len > 0)
		memcpy(a->owned + a->owned_len, p, len);
	a->owned[a->owned_len + len] = '\0';
	argv_push(a, NULL, len, a->owned_len);
	a->owned_len += len + 1;
}

/* Formatted arguments live in an arena that may move as it grows: they are kept as offsets. */
void
store_argv_addf(struct store_argv *a, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = fast_format(a, fmt, ap);
	va_end(ap);
	while (n < 0) {
		size_t room = a->owned_cap - a->owned_len;

		va_start(ap, fmt);
		n = vsnprintf(a->owned ? a->owned + a->owned_len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			abort();
		if ((size_t)n >= room) {
			arena_reserve(a, (size_t)n);
			n = -1;
		}
	}
	argv_push(a, NULL, (size_t)n, a->owned_len);
	a->owned_len += (size_t)n + 1;
}

/* Argument i: borrowed, or an arena offset turned into a pointer. */
static const char *
argv_at(const struct store_argv *a, size_t i)
{
	return a->v[i] != NULL ? a->v[i] : a->owned + a->off[i];
}

/* The argument pointers, with arena offsets turned into pointers. */
static void
argv_resolve(const struct store_argv *a, const char **out)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		out[i] = argv_at(a, i);
}

/* ---- connection --------------------------------------------------------------------- */

struct store *
store_new(const struct rconn_cfg *cfg)
{
	struct store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		abort();
	pthread_once(&script_once, scripts_build);
	s->cfg = *cfg;
	s->backoff_ms = BACKOFF_MIN_MS;
	rarena_init(&s->replies, REPLY_CHUNK);
	if (cfg->cluster[0] != '\0') {
		struct cluster_seeds seeds;

		/* a bad list fails every call with its message (partnerd checked it at start) */
		if (cluster_parse_seeds(cfg->cluster, &seeds, s->bad_seeds, sizeof(s->bad_seeds)) == 0)
			s->cl = cluster_new(&seeds, cfg->timeout_ms, script_text, STORE_NSCRIPTS);
		else if (s->bad_seeds[0] == '\0')
			snprintf(s->bad_seeds, sizeof(s->bad_seeds), "redis cluster seeds: bad");
	}
	return s;
}

void
store_free(struct store *s)
{
	if (s == NULL)
		return;
	if (s->c != NULL)
		redisFree(s->c);
	cluster_free(s->cl);
	cq_free(&s->cq);
	resp_free(&s->out);
	free(s->q);
	rarena_free(&s->replies);
	free(s);
}

void
store_replies_release(struct store *s)
{
	rarena_reset(&s->replies);
	if (s->cl != NULL)
		cluster_replies_release(s->cl);
}

void *
store_alloc(struct store *s, size_t n)
{
	return rarena_alloc(&s->replies, n);
}

const char *
store_error(const struct store *s)
{
	return s->err;
}

uint64_t
store_round_trips(const struct store *s)
{
	struct cluster_stats cs;

	if (s->cl == NULL)
		return s->trips;
	cluster_get_stats(s->cl, &cs);
	return s->trips + cs.rounds;
}

/* No reconnect is tried before the back-off has passed; the back-off doubles. */
static void
back_off(struct store *s)
{
	s->retry_at = mono_ms() + s->backoff_ms;
	s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
}

/*
 * Throws the connection away after an I/O error or a timeout on it: a hiredis context is
 * unusable after one (and a late reply would answer the next command). The next call
 * reconnects at once: a connection that worked is retried without back-off (a single slow
 * reply must not fail the worker's next requests); only failed connects back off.
 */
static void
drop(struct store *s, const char *why)
{
	metrics_redis_error();
	if (s->c != NULL) {
		snprintf(s->err, sizeof(s->err), "redis: %s", why);
		redisFree(s->c);
		s->c = NULL;
	}
}

/*
 * Loads every script on a new connection (one pipelined round trip per connection, not
 * per request) and keeps their SHA1s, so that requests only ever send EVALSHA. The
 * replies are the arena's, like every reply read on s->c.
 */
static int
load_scripts(struct store *s)
{
	int k;

	for (k = 0; k < STORE_NSCRIPTS; k++)
		if (redisAppendCommand(s->c, "SCRIPT LOAD %s", script_text[k]) != REDIS_OK)
			return -1;
	s->trips++;
	for (k = 0; k < STORE_NSCRIPTS; k++) {
		redisReply *r = NULL;

		if (redisGetReply(s->c, (void **)&r) != REDIS_OK || r == NULL) {
			snprintf(s->err, sizeof(s->err), "redis: SCRIPT LOAD: %s", s->c->errstr);
			return -1;
		}
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			snprintf(s->err, sizeof(s->err), "redis: SCRIPT LOAD failed: %.150s",
			         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
			return -1;
		}
		memcpy(s->sha[k], r->str, 40);
		s->sha[k][40] = '\0';
	}
	return 0;
}

/* Makes sure there is a connection; -1 while Redis cannot be reached (fail fast). */
static int
ensure(struct store *s)
{
	char err[200];
	struct rconn_cfg cfg;

	if (s->c != NULL)
		return 0;
	if (s->cfg.cluster[0] != '\0') {
		/* not reached: every call of a cluster's store goes through cl_run */
		snprintf(s->err, sizeof(s->err), "%s", s->bad_seeds[0] ? s->bad_seeds
		         : "store: a call of one Redis on a cluster's store");
		return -1;
	}
	cfg = s->cfg;
	if (s->deadline != 0) {
		/* a bounded call (store_resolve) tries once, back-off or not, within its time */
		int64_t left = s->deadline - mono_ms();

		if (left <= 0) {
			snprintf(s->err, sizeof(s->err), "redis: no time left to reconnect");
			return -1;
		}
		if (cfg.timeout_ms <= 0 || left < cfg.timeout_ms)
			cfg.timeout_ms = (int)left;
	} else if (mono_ms() < s->retry_at) {
		return -1;
	}
	s->c = rconn_connect(&cfg, err, sizeof(err));
	if (s->c == NULL) {
		metrics_redis_error();
		snprintf(s->err, sizeof(s->err), "redis: %s", err);
		back_off(s);
		return -1;
	}
	/*
	 * From here on every reply of this context is built in the arena (the AUTH and SELECT
	 * replies of rconn_connect were hiredis's own, freed there by freeReplyObject). A new
	 * context is the only place a reader is made: a dropped one is never reconnected.
	 */
	rarena_attach(s->c->reader, &s->replies);
	if (load_scripts(s) != 0) {
		char why[sizeof(s->err)];

		memcpy(why, s->err, sizeof(why));
		drop(s, why);
		back_off(s);
		return -1;
	}
	if (s->check != NULL) {
		char msg[sizeof(s->err)];
		int maybe_ran = s->maybe_ran, rc;

		msg[0] = '\0';
		rc = s->check(s, msg, sizeof(msg));     /* its commands go on s->c (connected) */
		s->maybe_ran = maybe_ran;
		if (s->c == NULL)
			return -1;                      /* its round trip failed: s->err says why */
		if (rc != 0) {
			drop(s, msg);
			snprintf(s->err, sizeof(s->err), "%s", msg);
			s->refused = 1;
			back_off(s);
			return -1;
		}
	}
	s->refused = 0;
	s->backoff_ms = BACKOFF_MIN_MS;
	return 0;
}

struct store_share {
	struct store_pipe **pipes;      /* n, to one Redis */
	int n;
	struct cluster_share *cl;       /* or n to each node of a cluster */
};

struct store_share *
store_share_new(const struct rconn_cfg *cfg, int n)
{
	struct store_share *sh = calloc(1, sizeof(*sh));
	int i;

	if (sh == NULL)
		abort();
	sh->n = n > 0 ? n : 1;
	if (cfg->cluster[0] != '\0') {
		struct cluster_seeds seeds;
		char err[200];

		/* a bad list: nothing is shared, and every call fails with its message */
		if (cluster_parse_seeds(cfg->cluster, &seeds, err, sizeof(err)) == 0)
			sh->cl = cluster_share_new(&seeds, cfg->timeout_ms, sh->n);
		return sh;
	}
	if ((sh->pipes = calloc((size_t)sh->n, sizeof(*sh->pipes))) == NULL)
		abort();
	for (i = 0; i < sh->n; i++)
		sh->pipes[i] = store_pipe_new(cfg);
	return sh;
}

void
store_share(struct store *s, struct store_share *sh, int k)
{
	k = (k < 0 ? 0 : k) % sh->n;
	if (s->cl != NULL && sh->cl != NULL)
		cluster_use_share(s->cl, sh->cl, k);
	else if (s->cfg.cluster[0] == '\0' && sh->pipes != NULL)
		s->pipe = sh->pipes[k];
}

void
store_set_connect_check(struct store *s, store_check_fn fn)
{
	s->check = fn;
}

int
store_check_refused(const struct store *s)
{
	return s->refused;
}

/*
 * Makes sure there is a connection that is not known to be dead (SPEC §6: a connection
 * found dead before anything was sent on it is replaced at once, so that a Redis restart
 * does not fail each worker's next request). -1 while Redis cannot be reached.
 */
static int
prepare(struct store *s)
{
	if (ensure(s) != 0)
		return -1;
	if (!rconn_gone(s->c))
		return 0;
	redisFree(s->c);
	s->c = NULL;
	metrics_redis_reconnect();
	return ensure(s);
}

/*
 * ensure() for a send that is retried on a new connection: the connect check sends its own
 * commands through s->out, so the commands to retry are kept aside meanwhile.
 */
static int
reconnect_keeping_out(struct store *s)
{
	struct resp_out kept = s->out;
	int rc;

	memset(&s->out, 0, sizeof(s->out));
	rc = ensure(s);
	resp_free(&s->out);
	s->out = kept;
	return rc;
}

/*
 * Writes s->out on a prepared connection. A send that fails before its first byte left
 * because the peer is gone (EPIPE, ECONNRESET) is sent once more on a new connection when
 * retry allows it (nothing else awaits a reply on the old one); once a byte went out,
 * never again: the command may have reached Redis. Returns 0, or -1 with the connection
 * dropped and s->maybe_ran telling whether any of it was sent.
 */
static int
send_all(struct store *s, int retry)
{
	size_t sent;
	int again = retry, e;

	for (;;) {
		if (s->deadline != 0) {
			int64_t left = s->deadline - mono_ms();
			struct timeval tv;

			if (left <= 0) {
				snprintf(s->err, sizeof(s->err), "redis: no time left");
				return -1;
			}
			if (s->cfg.timeout_ms > 0 && left > s->cfg.timeout_ms)
				left = s->cfg.timeout_ms;
			tv.tv_sec = left / 1000;
			tv.tv_usec = (left % 1000) * 1000;
			redisSetTimeout(s->c, tv);
		}
		s->trips++;
		/* hiredis's output buffer is empty: every command goes out through s->out */
		sent = resp_write(s->c->fd, s->out.p, s->out.len);
		if (sent == s->out.len)
			break;
		e = errno;
		if (sent > 0)
			s->maybe_ran = 1;
		drop(s, strerror(e));
		if (sent > 0 || !again || (e != EPIPE && e != ECONNRESET) || reconnect_keeping_out(s) != 0)
			return -1;
		again = 0;
		metrics_redis_reconnect();
	}
	s->maybe_ran = 1;
	return 0;
}

/* Reads n replies into out. Returns 0, or -1 with the connection dropped. */
static int
read_replies(struct store *s, size_t n, redisReply **out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		void *r = NULL;

		if (redisGetReply(s->c, &r) != REDIS_OK || r == NULL) {
			/* The replies read so far stay in the arena until the request is done. */
			drop(s, s->c->errstr[0] ? s->c->errstr : "I/O error");
			return -1;
		}
		out[i] = r;
	}
	s->maybe_ran = 0;
	return 0;
}

/*
 * s->out (n commands) over the shared pipe (store_share): their n replies into out, *got
 * of them read when it fails. Returns 0, or -1 with s->maybe_ran telling whether any of it
 * was sent (the pipe replaced its connection if that was at fault).
 */
static int
pipe_trip(struct store *s, size_t n, redisReply **out, size_t *got)
{
	struct store_pipe_result res;
	int64_t deadline = mono_ms() + (s->cfg.timeout_ms > 0 ? s->cfg.timeout_ms : 1000);
	int rc;

	if (s->deadline != 0 && s->deadline < deadline)
		deadline = s->deadline;
	s->trips++;
	rc = store_pipe_trip(s->pipe, s->out.p, s->out.len, n, out, &s->replies, deadline, &res);
	while (res.reconnects-- > 0)
		metrics_redis_reconnect();
	if (rc == 0) {
		*got = n;
		s->maybe_ran = 0;
		return 0;
	}
	*got = res.got;
	s->maybe_ran = res.sent;
	metrics_redis_error();
	snprintf(s->err, sizeof(s->err), "%s", res.err);
	return -1;      /* the worker's own connection had no part in it: it is kept */
}

/*
 * Sends s->out (n commands) on a prepared connection and reads their n replies into out
 * (see send_all), or over the shared pipe. Returns 0, or -1 with the connection dropped.
 */
static int
round_trip(struct store *s, size_t n, redisReply **out)
{
	size_t got;

	if (s->pipe != NULL)
		return pipe_trip(s, n, out, &got);
	if (send_all(s, 1) != 0)
		return -1;
	return read_replies(s, n, out);
}

/* One command, one round trip; NULL when Redis cannot be reached (connection dropped). */
static redisReply *
command(struct store *s, size_t argc, const char **argv, const size_t *lens)
{
	redisReply *r = NULL;

	s->maybe_ran = 0;
	if (prepare(s) != 0)
		return NULL;
	s->out.len = 0;
	resp_command(&s->out, argc, argv, lens);
	if (round_trip(s, 1, &r) != 0)
		return NULL;
	return r;
}

/* Sends s->out and reads one reply; NULL on an I/O error (connection dropped). */
static redisReply *
send_out(struct store *s)
{
	redisReply *r = NULL;

	if (round_trip(s, 1, &r) != 0)
		return NULL;
	return r;
}

/* EVALSHA sha 0 ARGV... (or EVAL text 0 ARGV... when text is given) in s->out. */
static void
format_eval(struct store *s, enum store_script which, const struct store_argv *a, int with_text)
{
	size_t i;

	s->out.len = 0;
	resp_count(&s->out, '*', a->n + 3);
	if (with_text) {
		resp_arg(&s->out, "EVAL", 4);
		resp_arg(&s->out, script_text[which], strlen(script_text[which]));
	} else {
		resp_arg(&s->out, "EVALSHA", 7);
		resp_arg(&s->out, s->sha[which], 40);
	}
	resp_arg(&s->out, "0", 1);
	for (i = 0; i < a->n; i++)
		resp_arg(&s->out, argv_at(a, i), a->len[i]);
}

redisReply *
store_eval(struct store *s, enum store_script which, struct store_argv *a)
{
	redisReply *r = NULL;

	s->maybe_ran = 0;
	if (s->cfg.cluster[0] != '\0') {
		/* with no KEYS there is no node to send it to: store_run names them */
		snprintf(s->err, sizeof(s->err), "redis cluster: script %s needs its keys on a "
		         "cluster (store_run with its KEYS)",
		         (unsigned)which < STORE_NSCRIPTS && script_name[which] ? script_name[which]
		                                                                : "?");
		return NULL;
	}
	if (prepare(s) != 0)
		return NULL;
	format_eval(s, which, a, 0);
	r = send_out(s);
	if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		/*
		 * The script cache was emptied (restart, failover, SCRIPT FLUSH): send the text.
		 * EVAL caches it again under the same SHA1, so later calls are EVALSHA again.
		 * (The NOSCRIPT reply stays in the arena until the request is done.)
		 */
		format_eval(s, which, a, 1);
		r = send_out(s);
	}
	if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		/* it ran and failed, or was refused: which one, the text alone does not say */
		s->maybe_ran = 1;
		metrics_redis_error();
		snprintf(s->err, sizeof(s->err), "redis: script error: %.200s", r->str);
		r = NULL;
	}
	if (s->out.cap > (1u << 20))
		resp_free(&s->out);     /* a big batch's text is not kept for the worker's lifetime */
	return r;
}

int
store_pipeline(struct store *s, struct store_argv *cmds, size_t n, redisReply ***replies)
{
	redisReply **out;
	size_t i, maxn = 0;
	const char **argv;
	int rc;

	*replies = NULL;
	s->maybe_ran = 0;
	if (s->cfg.cluster[0] != '\0')
		return cl_pipeline(s, cmds, n, replies);
	if (prepare(s) != 0)
		return -1;
	for (i = 0; i < n; i++)
		if (cmds[i].n > maxn)
			maxn = cmds[i].n;
	argv = malloc((maxn + 1) * sizeof(*argv));
	out = rarena_alloc(&s->replies, (n + 1) * sizeof(*out));
	if (argv == NULL || out == NULL)
		abort();
	s->out.len = 0;
	for (i = 0; i < n; i++) {
		argv_resolve(&cmds[i], argv);
		resp_command(&s->out, cmds[i].n, argv, cmds[i].len);
	}
	free(argv);
	rc = round_trip(s, n, out);
	if (rc == 0)
		*replies = out;
	return rc;
}

/* ---- queued commands ---------------------------------------------------------------- */

void
store_queue_limit(struct store *s, size_t max)
{
	s->qmax = max;
}

/* Writes what is queued and not written yet (s->out). -1 when the connection broke. */
static int
queue_write(struct store *s)
{
	if (s->qn == s->qsent)
		return 0;
	if (s->qsent == 0 && prepare(s) != 0)
		return -1;
	/* behind commands already written, a failed send is not retried on a new connection */
	if (send_all(s, s->qsent == 0) != 0)
		return -1;
	s->qsent = s->qn;
	s->out.len = 0;
	return 0;
}

/* The queue after a broken connection: nothing more is sent until store_flush. */
static int
queue_broken(struct store *s)
{
	s->qn = 0;
	s->qsent = 0;
	s->out.len = 0;
	s->qbroken = 1;
	s->qfailed = 1;
	cq_reset(s);
	store_replies_release(s);
	return -1;
}

/*
 * Sends the queued commands (their RESP text is s->out) and reads their replies in one
 * round trip, hands each reply to its callback, then ends the replies' life. -1 when the
 * connection broke.
 */
static int
queue_send(struct store *s)
{
	redisReply **out;
	size_t i;

	if (s->qn == 0)
		return 0;
	if (s->cfg.cluster[0] != '\0')
		return cl_queue_send(s);
	out = malloc(s->qn * sizeof(*out));
	if (out == NULL)
		abort();
	s->maybe_ran = 0;
	if (queue_write(s) != 0 || read_replies(s, s->qn, out) != 0) {
		free(out);
		return queue_broken(s);
	}
	for (i = 0; i < s->qn; i++) {
		struct store_qslot *q = &s->q[i];

		if (q->fn != NULL) {
			if (q->fn(q->arg, out[i]) < 0)
				s->qfailed = 1;
		} else if (out[i]->type == REDIS_REPLY_ERROR) {
			snprintf(s->err, sizeof(s->err), "redis refused a command: %.200s", out[i]->str);
			s->qfailed = 1;
		}
	}
	free(out);
	s->qn = 0;
	s->qsent = 0;
	s->out.len = 0;
	rarena_reset(&s->replies);
	return 0;
}

int
store_send(struct store *s)
{
	if (s->qbroken)
		return -2;
	if (s->cfg.cluster[0] != '\0')
		return 0;       /* the queue runs at store_flush or when full (store.h) */
	if (queue_write(s) != 0) {
		queue_broken(s);
		return -2;
	}
	return 0;
}

/* Makes room for one more queued command (sending a full queue first). */
static int
queue_slot(struct store *s, store_reply_fn fn, void *arg)
{
	size_t max = s->qmax ? s->qmax : QUEUE_MAX;

	if (s->qbroken)
		return -1;
	if (s->qn >= max && queue_send(s) != 0)
		return -1;
	if (s->qn == 0)
		s->out.len = 0;
	if (s->qn == s->qcap) {
		s->qcap = s->qcap ? s->qcap * 2 : 64;
		s->q = realloc(s->q, s->qcap * sizeof(*s->q));
		if (s->q == NULL)
			abort();
	}
	s->q[s->qn].fn = fn;
	s->q[s->qn].arg = arg;
	s->qn++;
	return 0;
}

int
store_queue(struct store *s, const struct store_argv *cmd, store_reply_fn fn, void *arg)
{
	size_t i;

	if (s->cfg.cluster[0] != '\0')
		return cl_queue_add(s, cmd, -1, fn, arg);
	if (queue_slot(s, fn, arg) != 0)
		return -1;
	resp_count(&s->out, '*', cmd->n);
	for (i = 0; i < cmd->n; i++)
		resp_arg(&s->out, argv_at(cmd, i), cmd->len[i]);
	return 0;
}

int
store_queue_script(struct store *s, enum store_script which, const struct store_argv *args,
                   store_reply_fn fn, void *arg)
{
	size_t i;

	if (s->cfg.cluster[0] != '\0')
		return cl_queue_add(s, args, (int)which, fn, arg);
	if (queue_slot(s, fn, arg) != 0)
		return -1;
	/* EVAL with the text, not EVALSHA: see store.h */
	resp_count(&s->out, '*', args->n + 2);
	resp_arg(&s->out, "EVAL", 4);
	resp_arg(&s->out, script_text[which], strlen(script_text[which]));
	for (i = 0; i < args->n; i++)
		resp_arg(&s->out, argv_at(args, i), args->len[i]);
	return 0;
}

int
store_flush(struct store *s)
{
	int failed;

	if (!s->qbroken)
		queue_send(s);
	failed = s->qbroken ? -2 : s->qfailed ? -1 : 0;
	s->qfailed = 0;
	s->qbroken = 0;
	return failed;
}

redisReply *
store_command(struct store *s, const struct store_argv *cmd)
{
	const char **argv;
	redisReply *r;

	if (store_flush(s) == -2)
		return NULL;
	if (s->cfg.cluster[0] != '\0') {
		r = cl_command(s, cmd, NULL);
	} else {
		argv = malloc((cmd->n + 1) * sizeof(*argv));
		if (argv == NULL)
			abort();
		argv_resolve(cmd, argv);
		r = command(s, cmd->n, argv, cmd->len);
		free(argv);
	}
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		snprintf(s->err, sizeof(s->err), "redis refused %.*s: %.200s",
		         (int)(cmd->len[0] < 32 ? cmd->len[0] : 32), argv_at(cmd, 0), r->str);
	return r;
}

int
store_maybe_ran(const struct store *s)
{
	return s->maybe_ran;
}

/* Ends a call bounded by s->deadline: the connection gets the configured timeout back. */
static void
bounded_end(struct store *s)
{
	int ms = s->cfg.timeout_ms > 0 ? s->cfg.timeout_ms : 1000;

	s->deadline = 0;
	if (s->c != NULL) {
		/* back to the configured timeout (rconn_connect set it, or send_all lowered it) */
		struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

		if (redisSetTimeout(s->c, tv) != REDIS_OK)
			drop(s, "cannot set the timeout");
	}
}

redisReply *
store_resolve(struct store *s, struct store_argv *a)
{
	int ms = s->cfg.timeout_ms > 0 ? s->cfg.timeout_ms : 1000;
	redisReply *r;

	s->deadline = mono_ms() + ms;
	r = store_eval(s, STORE_RESOLVE, a);
	bounded_end(s);
	return r;
}

int
store_warm(struct store *s)
{
	if (s->cfg.cluster[0] != '\0')
		return cl_ping(s);      /* the map, every master connected, the check */
	return ensure(s);
}

int
store_ping(struct store *s)
{
	const char *argv[1] = { "PING" };
	size_t len[1] = { 4 };
	redisReply *r;
	int ok;

	if (s->cfg.cluster[0] != '\0')
		return cl_ping(s);
	r = command(s, 1, argv, len);
	if (r == NULL)
		return -1;
	ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
	return ok ? 0 : -1;
}

/* ---- rounds of keyed commands (store_run), masters ---------------------------------- */

int
store_is_cluster(const struct store *s)
{
	return s->cfg.cluster[0] != '\0';
}

/* Op i's command as RESP text in s->out: EVALSHA sha (or EVAL text) argv..., or argv. */
static void
format_op(struct store *s, const struct store_op *op, int with_text)
{
	const struct store_argv *a = op->argv;
	size_t i;

	if (op->script >= 0) {
		resp_count(&s->out, '*', a->n + 2);
		if (with_text) {
			resp_arg(&s->out, "EVAL", 4);
			resp_arg(&s->out, script_text[op->script], strlen(script_text[op->script]));
		} else {
			resp_arg(&s->out, "EVALSHA", 7);
			resp_arg(&s->out, s->sha[op->script], 40);
		}
	} else {
		resp_count(&s->out, '*', a->n);
	}
	for (i = 0; i < a->n; i++)
		resp_arg(&s->out, argv_at(a, i), a->len[i]);
}

/*
 * One round trip of the ops whose index is in idx[0..m) (s->out holds their text, in that
 * order): their replies, or their status when it failed. Returns -1 when the connection
 * broke (what was not read is in doubt, or did not run when nothing was sent).
 */
static int
run_one_trip(struct store *s, const size_t *idx, size_t m, redisReply **replies,
             enum store_op_status *st)
{
	size_t k;

	if (s->pipe != NULL) {
		redisReply **got_r = rarena_alloc(&s->replies, (m ? m : 1) * sizeof(*got_r));
		size_t got = 0;
		int rc;

		if (got_r == NULL)
			abort();
		rc = pipe_trip(s, m, got_r, &got);
		for (k = 0; k < m; k++) {
			if (k < got) {
				replies[idx[k]] = got_r[k];
				st[idx[k]] = STORE_OP_OK;
			} else {
				st[idx[k]] = s->maybe_ran ? STORE_OP_INDOUBT : STORE_OP_UNAVAILABLE;
			}
		}
		return rc;
	}
	if (send_all(s, 1) != 0) {
		for (k = 0; k < m; k++)
			st[idx[k]] = s->maybe_ran ? STORE_OP_INDOUBT : STORE_OP_UNAVAILABLE;
		return -1;
	}
	for (k = 0; k < m; k++) {
		void *r = NULL;

		if (redisGetReply(s->c, &r) != REDIS_OK || r == NULL) {
			drop(s, s->c->errstr[0] ? s->c->errstr : "I/O error");
			for (; k < m; k++)
				st[idx[k]] = STORE_OP_INDOUBT;
			return -1;
		}
		replies[idx[k]] = r;
		st[idx[k]] = STORE_OP_OK;
	}
	return 0;
}

static int
is_noscript(const redisReply *r)
{
	return r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

int
store_run(struct store *s, const struct store_op *ops, size_t n, int64_t deadline_ms,
          redisReply **replies, enum store_op_status *st)
{
	size_t i, m = 0, *idx;
	int rc = 0;

	if (s->cfg.cluster[0] != '\0')
		return cl_store_run(s, ops, n, deadline_ms, replies, st);
	for (i = 0; i < n; i++) {
		replies[i] = NULL;
		st[i] = STORE_OP_UNAVAILABLE;
	}
	s->maybe_ran = 0;
	if (n == 0)
		return 0;
	idx = malloc(n * sizeof(*idx));
	if (idx == NULL)
		abort();
	s->deadline = deadline_ms;
	if (prepare(s) != 0) {
		rc = -1;
		goto out;
	}
	s->out.len = 0;
	for (i = 0; i < n; i++) {
		format_op(s, &ops[i], 0);
		idx[i] = i;
	}
	if (run_one_trip(s, idx, n, replies, st) != 0) {
		rc = -1;
		goto out;
	}
	/*
	 * The script cache was emptied (restart, failover, SCRIPT FLUSH): the ops answered
	 * NOSCRIPT did not run; they go again with their text (EVAL caches it under the same
	 * SHA1). The NOSCRIPT replies stay in the arena until the request is done.
	 */
	s->out.len = 0;
	for (i = 0; i < n; i++)
		if (ops[i].script >= 0 && is_noscript(replies[i])) {
			format_op(s, &ops[i], 1);
			idx[m++] = i;
			replies[i] = NULL;
			st[i] = STORE_OP_UNAVAILABLE;
		}
	if (m > 0 && run_one_trip(s, idx, m, replies, st) != 0)
		rc = -1;
out:
	s->maybe_ran = 0;
	for (i = 0; i < n; i++)
		if (st[i] == STORE_OP_INDOUBT)
			s->maybe_ran = 1;
	if (deadline_ms != 0)
		bounded_end(s);
	if (s->out.cap > (1u << 20))
		resp_free(&s->out);     /* a big batch's text is not kept for the worker's lifetime */
	free(idx);
	return rc;
}

size_t
store_masters(struct store *s)
{
	size_t n;

	if (s->cfg.cluster[0] == '\0')
		return 1;
	if (s->cl == NULL) {
		snprintf(s->err, sizeof(s->err), "%s", s->bad_seeds);
		return 0;
	}
	n = cluster_masters(s->cl, mono_ms() + (s->cfg.timeout_ms > 0 ? s->cfg.timeout_ms : 1000));
	if (n == 0)
		snprintf(s->err, sizeof(s->err), "redis %s", cluster_error(s->cl));
	return n;
}

redisReply *
store_command_on(struct store *s, size_t master, const struct store_argv *cmd)
{
	if (s->cfg.cluster[0] != '\0') {
		redisReply *r;

		size_t n;

		if (store_flush(s) == -2)
			return NULL;
		n = store_masters(s);
		if (master >= n) {
			s->maybe_ran = 0;
			if (n > 0)
				snprintf(s->err, sizeof(s->err), "redis cluster: master %zu asked for, the "
				         "cluster has %zu", master, n);
			return NULL;
		}
		r = cl_command(s, cmd, &master);
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			snprintf(s->err, sizeof(s->err), "redis refused %.*s on master %zu: %.200s",
			         (int)(cmd->len[0] < 32 ? cmd->len[0] : 32), argv_at(cmd, 0), master,
			         r->str);
		return r;
	}
	if (master != 0) {
		snprintf(s->err, sizeof(s->err), "store: master %zu of 1 asked for", master);
		s->maybe_ran = 0;
		return NULL;
	}
	return store_command(s, cmd);
}

/* ---- a Redis Cluster (docs/CLUSTER.md "The store on a cluster") --------------------- */


/* p[0..len) is the word w (upper case), in any case. */
static int
word_is(const char *p, size_t len, const char *w)
{
	size_t i;

	if (len != strlen(w))
		return 0;
	for (i = 0; i < len; i++) {
		char c = p[i] >= 'a' && p[i] <= 'z' ? (char)(p[i] - 'a' + 'A') : p[i];

		if (c != w[i])
			return 0;
	}
	return 1;
}

/* Argument i as a count (a string of digits); -1 when it is not one. */
static long
argv_count(const struct store_argv *a, size_t i)
{
	const char *p = argv_at(a, i);
	long v = 0;
	size_t k;

	if (a->len[i] == 0 || a->len[i] > 9)
		return -1;
	for (k = 0; k < a->len[i]; k++) {
		if (p[k] < '0' || p[k] > '9')
			return -1;
		v = v * 10 + (p[k] - '0');
	}
	return v;
}

/*
 * The argument that routes command a on a cluster: argv[1], the first key of nearly every
 * command; for EVAL, EVALSHA, FCALL (and their _RO) the first of their KEYS. -1: it has
 * none (PING, TIME, a script with no KEYS): any master takes it.
 */
static long
cmd_key_arg(const struct store_argv *a)
{
	static const char *const scripts[] = { "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO",
	                                       "FCALL", "FCALL_RO" };
	size_t k;

	if (a->n < 2)
		return -1;
	for (k = 0; k < sizeof(scripts) / sizeof(scripts[0]); k++)
		if (word_is(argv_at(a, 0), a->len[0], scripts[k]))
			return a->n >= 4 && argv_count(a, 2) > 0 ? 3 : -1;
	return 1;
}

/*
 * A transaction cannot span a cluster's nodes (each command goes to its key's master):
 * MULTI, EXEC, DISCARD, WATCH and UNWATCH are refused, with the reason in s->err. 1 when a
 * is one of them.
 */
static int
refuse_tx(struct store *s, const struct store_argv *a)
{
	static const char *const tx[] = { "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH" };
	size_t k;

	if (a->n == 0)
		return 0;
	for (k = 0; k < sizeof(tx) / sizeof(tx[0]); k++)
		if (word_is(argv_at(a, 0), a->len[0], tx[k])) {
			snprintf(s->err, sizeof(s->err), "redis cluster: %s refused: a transaction "
			         "cannot span a cluster's nodes (each command goes to the master of its "
			         "key)", tx[k]);
			return 1;
		}
	return 0;
}

/* The cluster command of argv a (its pointers written to ptrs, a->n of them). */
static void
cl_cmd_of(struct cluster_cmd *c, const struct store_argv *a, const char **ptrs, int script)
{
	long key = script >= 0 ? (a->n >= 2 && argv_count(a, 0) > 0 ? 1 : -1) : cmd_key_arg(a);

	argv_resolve(a, ptrs);
	c->key = key >= 0 ? ptrs[key] : NULL;
	c->keylen = key >= 0 ? a->len[key] : 0;
	c->script = script;
	c->argc = a->n;
	c->argv = ptrs;
	c->argvlen = a->len;
}

/*
 * The connect check (store_set_connect_check) on a cluster: once per store (its router),
 * before its first call runs, with its own commands routed by key. A refusal fails the
 * calls (with its message) for a back-off, then the check runs again; a check whose
 * commands could not run fails this call and runs again at the next. 0: go on.
 */
static int
cl_ready(struct store *s)
{
	char msg[sizeof(s->err)];
	uint64_t fails;
	int rc;

	if (s->cl == NULL) {
		snprintf(s->err, sizeof(s->err), "%s", s->bad_seeds);
		return -1;
	}
	if (s->check == NULL || s->checked || s->in_check)
		return 0;
	if (s->refused && mono_ms() < s->retry_at) {
		snprintf(s->err, sizeof(s->err), "%s", s->check_msg);
		return -1;
	}
	fails = s->cl_fails;
	msg[0] = '\0';
	s->in_check = 1;
	rc = s->check(s, msg, sizeof(msg));
	s->in_check = 0;
	s->maybe_ran = 0;
	if (s->cl_fails != fails)
		return -1;              /* its round failed: s->err says why */
	if (rc != 0) {
		snprintf(s->err, sizeof(s->err), "%s", msg);
		snprintf(s->check_msg, sizeof(s->check_msg), "%s", msg);
		s->refused = 1;
		back_off(s);
		return -1;
	}
	s->refused = 0;
	s->checked = 1;
	s->backoff_ms = BACKOFF_MIN_MS;
	return 0;
}

/*
 * Runs cmds[0..n) on the cluster (to masters pins[j] when pins is given) after the connect
 * check, within deadline_ms (0: now + the redis timeout). Returns 0 when every command got
 * its reply, -1 otherwise (s->err says why; s->maybe_ran when one is in doubt).
 */
static int
cl_run(struct store *s, const struct cluster_cmd *cmds, size_t n, const size_t *pins,
       int64_t deadline_ms, redisReply **replies, enum store_op_status *st)
{
	enum cluster_status *cst;
	size_t i;
	int rc;

	s->maybe_ran = 0;
	for (i = 0; i < n; i++) {
		replies[i] = NULL;
		st[i] = STORE_OP_UNAVAILABLE;
	}
	if (n == 0)
		return 0;
	if (cl_ready(s) != 0)
		return -1;
	if (deadline_ms == 0)
		deadline_ms = mono_ms() + (s->cfg.timeout_ms > 0 ? s->cfg.timeout_ms : 1000);
	cst = malloc(n * sizeof(*cst));
	if (cst == NULL)
		abort();
	rc = pins != NULL ? cluster_run_on(s->cl, pins, cmds, n, deadline_ms, replies, cst)
	                  : cluster_run(s->cl, cmds, n, deadline_ms, replies, cst);
	for (i = 0; i < n; i++) {
		st[i] = cst[i] == CLUSTER_OK ? STORE_OP_OK
		        : cst[i] == CLUSTER_INDOUBT ? STORE_OP_INDOUBT : STORE_OP_UNAVAILABLE;
		if (st[i] == STORE_OP_INDOUBT)
			s->maybe_ran = 1;
	}
	free(cst);
	if (rc != 0) {
		s->cl_fails++;
		metrics_redis_error();
		snprintf(s->err, sizeof(s->err), "redis %.240s", cluster_error(s->cl));
	}
	return rc;
}

static int
cl_store_run(struct store *s, const struct store_op *ops, size_t n, int64_t deadline_ms,
             redisReply **replies, enum store_op_status *st)
{
	struct cluster_cmd *cmds = malloc((n + 1) * sizeof(*cmds));
	const char **ptrs, **p;
	size_t i, total = 0;
	int rc;

	for (i = 0; i < n; i++) {
		replies[i] = NULL;
		st[i] = STORE_OP_UNAVAILABLE;
		total += ops[i].argv->n;
	}
	s->maybe_ran = 0;
	ptrs = malloc((total + 1) * sizeof(*ptrs));
	if (cmds == NULL || ptrs == NULL)
		abort();
	for (i = 0, p = ptrs; i < n; i++) {
		if (ops[i].script < 0 && refuse_tx(s, ops[i].argv)) {
			free(cmds);
			free(ptrs);
			return -1;
		}
		argv_resolve(ops[i].argv, p);
		cmds[i].key = ops[i].key;
		cmds[i].keylen = ops[i].keylen;
		cmds[i].script = ops[i].script;
		cmds[i].argc = ops[i].argv->n;
		cmds[i].argv = p;
		cmds[i].argvlen = ops[i].argv->len;
		p += ops[i].argv->n;
	}
	rc = cl_run(s, cmds, n, NULL, deadline_ms, replies, st);
	free(cmds);
	free(ptrs);
	return rc;
}

static int
cl_pipeline(struct store *s, struct store_argv *cmds, size_t n, redisReply ***replies)
{
	struct cluster_cmd *cc = malloc((n + 1) * sizeof(*cc));
	enum store_op_status *st = malloc((n + 1) * sizeof(*st));
	redisReply **out = rarena_alloc(&s->replies, (n + 1) * sizeof(*out));
	const char **ptrs, **p;
	size_t i, total = 0;
	int rc = -1;

	for (i = 0; i < n; i++)
		total += cmds[i].n;
	ptrs = malloc((total + 1) * sizeof(*ptrs));
	if (cc == NULL || st == NULL || out == NULL || ptrs == NULL)
		abort();
	for (i = 0, p = ptrs; i < n; i++) {
		if (refuse_tx(s, &cmds[i]))
			goto done;
		cl_cmd_of(&cc[i], &cmds[i], p, -1);
		p += cmds[i].n;
	}
	rc = cl_run(s, cc, n, NULL, 0, out, st);
	if (rc == 0)
		*replies = out;
done:
	free(cc);
	free(st);
	free(ptrs);
	return rc == 0 ? 0 : -1;
}

/* One command, routed by its key (pin NULL) or to master *pin; NULL when it failed. */
static redisReply *
cl_command(struct store *s, const struct store_argv *cmd, const size_t *pin)
{
	const char **ptrs = malloc((cmd->n + 1) * sizeof(*ptrs));
	enum store_op_status st;
	struct cluster_cmd c;
	redisReply *r = NULL;

	if (ptrs == NULL)
		abort();
	s->maybe_ran = 0;
	if (!refuse_tx(s, cmd)) {
		cl_cmd_of(&c, cmd, ptrs, -1);
		if (pin != NULL)
			c.key = NULL, c.keylen = 0;
		cl_run(s, &c, 1, pin, 0, &r, &st);
	}
	free(ptrs);
	return r;
}

/* PING on every master, in one round; 0 when each answered PONG. */
static int
cl_ping(struct store *s)
{
	size_t n = store_masters(s), i;
	struct cluster_cmd *c;
	enum store_op_status *st;
	redisReply **r;
	size_t *pins;
	static const char *const argv[1] = { "PING" };
	static const size_t len[1] = { 4 };
	int ok = 0;

	s->maybe_ran = 0;
	if (n == 0)
		return -1;
	c = calloc(n, sizeof(*c));
	st = calloc(n, sizeof(*st));
	r = calloc(n, sizeof(*r));
	pins = calloc(n, sizeof(*pins));
	if (c == NULL || st == NULL || r == NULL || pins == NULL)
		abort();
	for (i = 0; i < n; i++) {
		c[i].script = -1;
		c[i].argc = 1;
		c[i].argv = argv;
		c[i].argvlen = len;
		pins[i] = i;
	}
	if (cl_run(s, c, n, pins, 0, r, st) == 0) {
		ok = 1;
		for (i = 0; i < n; i++)
			if (r[i]->type != REDIS_REPLY_STATUS || strcmp(r[i]->str, "PONG") != 0) {
				snprintf(s->err, sizeof(s->err), "redis cluster: master %zu answered PING "
				         "with %.150s", i, r[i]->type == REDIS_REPLY_ERROR ? r[i]->str
				         : "another reply");
				ok = 0;
			}
	}
	free(c);
	free(st);
	free(r);
	free(pins);
	return ok ? 0 : -1;
}

/* ---- the queue on a cluster --------------------------------------------------------- */

static void
cq_reset(struct store *s)
{
	s->cq.nargs = 0;
	s->cq.buflen = 0;
}

static void
cq_free(struct cq *q)
{
	free(q->op);
	free(q->off);
	free(q->len);
	free(q->buf);
	memset(q, 0, sizeof(*q));
}

/* Queues a copy of a (script -1: a command; else the script's numkeys keys args). */
static int
cl_queue_add(struct store *s, const struct store_argv *a, int script, store_reply_fn fn,
             void *arg)
{
	struct cq *q = &s->cq;
	struct cq_op *op;
	size_t i;

	if (s->qbroken)
		return -1;
	if (script < 0 && refuse_tx(s, a)) {
		s->qfailed = 1;
		return -1;
	}
	if (queue_slot(s, fn, arg) != 0)        /* a full queue runs first */
		return -1;
	if (s->qn > q->opcap) {
		q->opcap = s->qcap;
		q->op = realloc(q->op, q->opcap * sizeof(*q->op));
		if (q->op == NULL)
			abort();
	}
	op = &q->op[s->qn - 1];
	op->arg0 = q->nargs;
	op->argc = a->n;
	op->script = script;
	op->key = script >= 0 ? (a->n >= 2 && argv_count(a, 0) > 0 ? 1 : -1) : cmd_key_arg(a);
	for (i = 0; i < a->n; i++) {
		if (q->nargs == q->argcap) {
			q->argcap = q->argcap ? q->argcap * 2 : 256;
			q->off = realloc(q->off, q->argcap * sizeof(*q->off));
			q->len = realloc(q->len, q->argcap * sizeof(*q->len));
			if (q->off == NULL || q->len == NULL)
				abort();
		}
		if (q->bufcap - q->buflen < a->len[i] + 1) {
			while (q->bufcap - q->buflen < a->len[i] + 1)
				q->bufcap = q->bufcap ? q->bufcap * 2 : 4096;
			q->buf = realloc(q->buf, q->bufcap);
			if (q->buf == NULL)
				abort();
		}
		memcpy(q->buf + q->buflen, argv_at(a, i), a->len[i]);
		q->off[q->nargs] = q->buflen;
		q->len[q->nargs] = a->len[i];
		q->nargs++;
		q->buflen += a->len[i];
	}
	return 0;
}

/*
 * Runs the whole queue in one cluster_run (every node's commands pipelined) and hands each
 * reply to its callback, in queue order; then ends the replies' life. A command that could
 * not run, or whose reply was lost, breaks the queue (as a broken connection does on one
 * Redis: store_flush returns -2); the others' callbacks are called all the same.
 */
static int
cl_queue_send(struct store *s)
{
	struct cq *q = &s->cq;
	size_t n = s->qn, i;
	struct cluster_cmd *c = malloc((n + 1) * sizeof(*c));
	const char **ptrs = malloc((q->nargs + 1) * sizeof(*ptrs));
	redisReply **r = malloc((n + 1) * sizeof(*r));
	enum store_op_status *st = malloc((n + 1) * sizeof(*st));
	char why[sizeof(s->err)];
	int rc;

	if (c == NULL || ptrs == NULL || r == NULL || st == NULL)
		abort();
	for (i = 0; i < q->nargs; i++)
		ptrs[i] = q->buf + q->off[i];
	for (i = 0; i < n; i++) {
		const struct cq_op *op = &q->op[i];

		c[i].key = op->key >= 0 ? ptrs[op->arg0 + (size_t)op->key] : NULL;
		c[i].keylen = op->key >= 0 ? q->len[op->arg0 + (size_t)op->key] : 0;
		c[i].script = op->script;
		c[i].argc = op->argc;
		c[i].argv = ptrs + op->arg0;
		c[i].argvlen = q->len + op->arg0;
	}
	rc = cl_run(s, c, n, NULL, 0, r, st);
	memcpy(why, s->err, sizeof(why));
	for (i = 0; i < n; i++) {
		struct store_qslot *slot = &s->q[i];

		if (st[i] != STORE_OP_OK)
			continue;
		if (slot->fn != NULL) {
			if (slot->fn(slot->arg, r[i]) < 0)
				s->qfailed = 1;
		} else if (r[i]->type == REDIS_REPLY_ERROR) {
			snprintf(s->err, sizeof(s->err), "redis refused a command: %.200s", r[i]->str);
			s->qfailed = 1;
		}
	}
	free(c);
	free(ptrs);
	free(r);
	free(st);
	s->qn = 0;
	s->qsent = 0;
	cq_reset(s);
	store_replies_release(s);
	if (rc != 0) {
		memcpy(s->err, why, sizeof(why));
		s->qbroken = 1;
		s->qfailed = 1;
		return -1;
	}
	return 0;
}
