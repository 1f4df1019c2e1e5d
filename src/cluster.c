/*
 * cluster: the Redis Cluster router (see cluster.h and docs/CLUSTER.md).
 *
 * Learned from the Redis Cluster specification (key slots, hash tags, MOVED/ASK, ASKING)
 * and from how redis-py's cluster client and hiredis-cluster route; written for this
 * project on hiredis 0.14 (no code taken from them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* POLLRDHUP: a closed peer seen without reading */
#endif
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "cluster.h"
#include "hex.h"
#include "rarena.h"
#include "rconn.h"

#define REPLY_CHUNK (64 * 1024)
#define MAX_NODES 256           /* addresses a router keeps (seeds, primaries, redirects) */
#define MAX_REDIRECTS 8         /* MOVED + ASK followed for one command in one call */
#define NODE_BACKOFF_MIN_MS 50  /* a node whose connect failed is not tried again for... */
#define NODE_BACKOFF_MAX_MS 1000
#define WAIT_MIN_MS 10          /* the wait before resending TRYAGAIN/CLUSTERDOWN/down... */
#define WAIT_MAX_MS 200         /* ...doubling up to this */
#define DEFAULT_TIMEOUT_MS 1000

/* ==== pure: slots ====================================================================== */

uint16_t
cluster_crc16(const char *buf, size_t len)
{
	uint16_t crc = 0;
	size_t i;
	int b;

	for (i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned
cluster_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL) {
		size_t after = (size_t)(open - key) + 1;
		const char *close = memchr(open + 1, '}', len - after);

		/* "{}" (an empty tag) hashes the whole key */
		if (close != NULL && close > open + 1)
			return cluster_crc16(open + 1, (size_t)(close - open - 1)) & (CLUSTER_SLOTS - 1);
	}
	return cluster_crc16(key, len) & (CLUSTER_SLOTS - 1);
}

/* ==== pure: seeds ====================================================================== */

static int
fail(char *err, size_t errsz, const char *fmt, const char *arg)
{
	snprintf(err, errsz, fmt, arg);
	return -1;
}

/* One HOST:PORT of a seed list, by rconn's URL rules for host and port ([v6] included). */
static int
parse_seed(const char *item, size_t len, struct cluster_addr *out, char *err, size_t errsz)
{
	char url[600], one[300];
	struct rconn_cfg cfg = { .timeout_ms = 0 };
	const char *colon;
	char why[200];

	if (len >= sizeof one)
		return fail(err, errsz, "redis cluster seeds: seed too long: %.40s...", item);
	memcpy(one, item, len);
	one[len] = '\0';
	if (memchr(one, '@', len) != NULL || memchr(one, '/', len) != NULL)
		return fail(err, errsz,
		            "redis cluster seeds: \"%s\" is not HOST:PORT (a user and password go "
		            "once, first: redis-cluster://[user]:password@HOST:PORT,HOST:PORT)", one);
	colon = one[0] == '[' ? strstr(one, "]:") : strchr(one, ':');
	if (colon == NULL || colon[one[0] == '[' ? 2 : 1] == '\0')
		return fail(err, errsz, "redis cluster seeds: \"%s\" has no port (HOST:PORT)", one);
	snprintf(url, sizeof url, "redis://%s", one);
	if (rconn_parse_url(url, &cfg, why, sizeof why) != 0) {
		/* rconn's messages start with "redis URL: " */
		snprintf(err, errsz, "redis cluster seeds: \"%s\": %s", one,
		         strncmp(why, "redis URL: ", 11) == 0 ? why + 11 : why);
		return -1;
	}
	memcpy(out->host, cfg.host, sizeof out->host);
	out->port = cfg.port;
	return 0;
}

/* [user]:password (rest[0..n)), %XX-decoded as in redis:// URLs. */
static int
parse_userinfo(const char *rest, size_t n, struct cluster_seeds *out, char *err, size_t errsz)
{
	const char *colon = memchr(rest, ':', n);

	if (colon == NULL)
		return fail(err, errsz, "redis cluster seeds: %s",
		            "the userinfo must be [user]:password");
	if (hex_pct_decode(rest, (size_t)(colon - rest), 0, out->user, sizeof out->user) < 0 ||
	    hex_pct_decode(colon + 1, n - (size_t)(colon - rest) - 1, 0, out->password,
	                   sizeof out->password) < 0)
		return fail(err, errsz, "redis cluster seeds: %s",
		            "bad user or password encoding (%XX escapes, no NUL, at most 255 bytes)");
	return 0;
}

int
cluster_parse_seeds(const char *spec, struct cluster_seeds *out, char *err, size_t errsz)
{
	static const char scheme[] = "redis-cluster://";
	const char *list, *end, *p;

	memset(out, 0, sizeof *out);
	if (spec == NULL || spec[0] == '\0')
		return fail(err, errsz, "redis cluster seeds: %s",
		            "none given (expected HOST:PORT[,HOST:PORT...] or "
		            "redis-cluster://[[user]:password@]HOST:PORT[,HOST:PORT...])");
	if (strncmp(spec, scheme, sizeof scheme - 1) == 0) {
		const char *rest = spec + sizeof scheme - 1, *slash, *at = NULL, *q;

		slash = strchr(rest, '/');
		end = slash != NULL ? slash : rest + strlen(rest);
		if (slash != NULL && strcmp(slash, "/") != 0 && strcmp(slash, "/0") != 0)
			return fail(err, errsz, "redis cluster seeds: %s",
			            "a cluster has no database but 0: drop the /N from the URL");
		for (q = rest; q < end; q++)
			if (*q == '@')
				at = q;         /* the last '@' ends the userinfo */
		if (at != NULL) {
			if (parse_userinfo(rest, (size_t)(at - rest), out, err, errsz) != 0)
				return -1;
			rest = at + 1;
		}
		list = rest;
	} else {
		if (strstr(spec, "://") != NULL)
			return fail(err, errsz,
			            "redis cluster seeds: \"%.60s\": the only URL scheme for a cluster "
			            "is redis-cluster://", spec);
		list = spec;
		end = spec + strlen(spec);
	}
	for (p = list; ; ) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *iend = comma != NULL ? comma : end;

		if (iend == p)
			return fail(err, errsz, "redis cluster seeds: %s",
			            "an empty seed (two commas, or a comma at an end)");
		if (out->n == CLUSTER_MAX_SEEDS)
			return fail(err, errsz, "redis cluster seeds: %s",
			            "more than 16 seeds (a few of the nodes are enough)");
		if (parse_seed(p, (size_t)(iend - p), &out->addr[out->n], err, errsz) != 0)
			return -1;
		out->n++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

/* ==== pure: the slot map and the error replies ======================================== */

static int
reply_int(const redisReply *r, long long *v)
{
	if (r->type != REDIS_REPLY_INTEGER)
		return -1;
	*v = r->integer;
	return 0;
}

int
cluster_parse_slots(const redisReply *r, const struct cluster_addr *asked,
                    struct cluster_range **out, size_t *n, char *err, size_t errsz)
{
	struct cluster_range *rs;
	size_t i;

	*out = NULL;
	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			return fail(err, errsz, "CLUSTER SLOTS refused: %.150s", r->str);
		return fail(err, errsz, "CLUSTER SLOTS: %s", "the reply is not an array");
	}
	if (r->elements == 0)
		return fail(err, errsz, "CLUSTER SLOTS: %s", "no slot is assigned");
	rs = calloc(r->elements, sizeof *rs);
	if (rs == NULL)
		abort();
	for (i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *node;
		long long lo, hi, port;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    reply_int(e->element[0], &lo) != 0 || reply_int(e->element[1], &hi) != 0 ||
		    lo < 0 || hi < lo || hi >= CLUSTER_SLOTS)
			goto bad;
		node = e->element[2];
		if (node->type != REDIS_REPLY_ARRAY || node->elements < 2 ||
		    node->element[0]->type != REDIS_REPLY_STRING ||
		    reply_int(node->element[1], &port) != 0 || port < 1 || port > 65535 ||
		    node->element[0]->len >= sizeof rs[i].primary.host)
			goto bad;
		rs[i].lo = (int)lo;
		rs[i].hi = (int)hi;
		rs[i].primary.port = (int)port;
		if (node->element[0]->len == 0) {
			/* "the same endpoint as the node that answered" */
			if (asked == NULL)
				goto bad;
			memcpy(rs[i].primary.host, asked->host, sizeof rs[i].primary.host);
		} else {
			memcpy(rs[i].primary.host, node->element[0]->str, node->element[0]->len);
			rs[i].primary.host[node->element[0]->len] = '\0';
		}
		if (node->elements >= 3 && node->element[2]->type == REDIS_REPLY_STRING &&
		    node->element[2]->len < sizeof rs[i].id) {
			memcpy(rs[i].id, node->element[2]->str, node->element[2]->len);
			rs[i].id[node->element[2]->len] = '\0';
		}
	}
	*out = rs;
	*n = r->elements;
	return 0;
bad:
	free(rs);
	snprintf(err, errsz, "CLUSTER SLOTS: entry %zu is not [start, end, [host, port, ...], ...]",
	         i);
	return -1;
}

/* "SLOT HOST:PORT" (the port after the last ':', so that an IPv6 host keeps its colons). */
static int
parse_redirect(const char *s, size_t len, struct cluster_redirect *rd)
{
	const char *sp = memchr(s, ' ', len), *colon = NULL, *p;
	long slot = 0, port = 0;
	size_t hlen;

	if (sp == NULL || sp == s || sp - s > 5)
		return -1;
	for (p = s; p < sp; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		slot = slot * 10 + (*p - '0');
	}
	for (p = sp + 1; p < s + len; p++)
		if (*p == ':')
			colon = p;
	if (colon == NULL || colon + 1 == s + len || s + len - colon > 6)
		return -1;
	for (p = colon + 1; p < s + len; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		port = port * 10 + (*p - '0');
	}
	hlen = (size_t)(colon - sp - 1);
	if (slot >= CLUSTER_SLOTS || port < 1 || port > 65535 || hlen >= sizeof rd->to.host)
		return -1;
	rd->slot = (int)slot;
	rd->to.port = (int)port;
	memcpy(rd->to.host, sp + 1, hlen);
	rd->to.host[hlen] = '\0';
	return 0;
}

static int
starts(const char *s, size_t len, const char *word)
{
	size_t n = strlen(word);

	return len >= n && memcmp(s, word, n) == 0 && (len == n || s[n] == ' ');
}

enum cluster_kind
cluster_classify(const char *err, size_t len, struct cluster_redirect *rd)
{
	if (starts(err, len, "MOVED"))
		return len > 6 && parse_redirect(err + 6, len - 6, rd) == 0 ? CLUSTER_MOVED
		                                                            : CLUSTER_REPLY;
	if (starts(err, len, "ASK"))
		return len > 4 && parse_redirect(err + 4, len - 4, rd) == 0 ? CLUSTER_ASK
		                                                            : CLUSTER_REPLY;
	if (starts(err, len, "TRYAGAIN"))
		return CLUSTER_TRYAGAIN;
	if (starts(err, len, "CLUSTERDOWN"))
		return CLUSTER_CLUSTERDOWN;
	if (starts(err, len, "NOSCRIPT"))
		return CLUSTER_NOSCRIPT;
	return CLUSTER_REPLY;
}

/* ==== the router: nodes and connections =============================================== */

struct node {
	struct cluster_addr addr;
	redisContext *c;        /* NULL while not connected */
	int64_t retry_at;       /* monotonic ms before which no connect is tried */
	int backoff_ms;
	int primary;            /* owns slots in the current map */
	/* one round's commands for this node */
	char *out;              /* their RESP text */
	size_t out_len, out_cap;
	size_t *q;              /* job indices, in the order sent */
	size_t nq, qcap;
};

struct cluster {
	struct cluster_seeds seeds;
	int timeout_ms;
	char **scripts;         /* copies of the script texts */
	size_t nscripts;
	char (*sha)[41];        /* each script's SHA1 (hex), "" until a node loaded it */
	struct node **nodes;    /* stable indices: nodes are never removed */
	size_t nnodes;
	int16_t slot[CLUSTER_SLOTS];    /* node index of each slot's primary, -1 unknown */
	int have_map;
	int stale;              /* reload the map at the start of the next call */
	struct rarena replies;
	struct cluster_stats stats;
	char err[300];
};

/* A command's state within one cluster_run. */
struct job {
	int target;             /* this round's node, -1 none */
	int ask;                /* node index given by -ASK (send ASKING first), -1 none */
	int load;               /* SCRIPT LOAD its script first (after NOSCRIPT) */
	int wait;               /* resend after a back-off (TRYAGAIN, CLUSTERDOWN, down) */
	int redirects, noscripts;
	int done;
	size_t start;           /* offset of its first byte in its node's out */
};

static void seterr(struct cluster *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
seterr(struct cluster *cl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cl->err, sizeof cl->err, fmt, ap);
	va_end(ap);
}

static int
node_index(struct cluster *cl, const struct cluster_addr *a)
{
	struct node *nd;
	size_t i;

	for (i = 0; i < cl->nnodes; i++)
		if (cl->nodes[i]->addr.port == a->port && strcmp(cl->nodes[i]->addr.host, a->host) == 0)
			return (int)i;
	if (cl->nnodes == MAX_NODES)
		return -1;
	nd = calloc(1, sizeof *nd);
	if (nd == NULL)
		abort();
	nd->addr = *a;
	nd->backoff_ms = NODE_BACKOFF_MIN_MS;
	cl->nodes[cl->nnodes] = nd;
	return (int)cl->nnodes++;
}

struct cluster *
cluster_new(const struct cluster_seeds *seeds, int timeout_ms, const char *const *scripts,
            size_t nscripts)
{
	struct cluster *cl = calloc(1, sizeof *cl);
	size_t i;

	if (cl == NULL)
		abort();
	cl->seeds = *seeds;
	cl->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
	cl->nodes = calloc(MAX_NODES, sizeof *cl->nodes);
	cl->scripts = calloc(nscripts + 1, sizeof *cl->scripts);
	cl->sha = calloc(nscripts + 1, sizeof *cl->sha);
	if (cl->nodes == NULL || cl->scripts == NULL || cl->sha == NULL)
		abort();
	for (i = 0; i < nscripts; i++)
		if ((cl->scripts[i] = strdup(scripts[i])) == NULL)
			abort();
	cl->nscripts = nscripts;
	for (i = 0; i < CLUSTER_SLOTS; i++)
		cl->slot[i] = -1;
	for (i = 0; i < seeds->n; i++)
		node_index(cl, &seeds->addr[i]);
	rarena_init(&cl->replies, REPLY_CHUNK);
	return cl;
}

void
cluster_free(struct cluster *cl)
{
	size_t i;

	if (cl == NULL)
		return;
	for (i = 0; i < cl->nnodes; i++) {
		if (cl->nodes[i]->c != NULL)
			redisFree(cl->nodes[i]->c);
		free(cl->nodes[i]->out);
		free(cl->nodes[i]->q);
		free(cl->nodes[i]);
	}
	for (i = 0; i < cl->nscripts; i++)
		free(cl->scripts[i]);
	free(cl->scripts);
	free(cl->sha);
	free(cl->nodes);
	rarena_free(&cl->replies);
	free(cl);
}

const char *
cluster_error(const struct cluster *cl)
{
	return cl->err;
}

void
cluster_get_stats(const struct cluster *cl, struct cluster_stats *out)
{
	*out = cl->stats;
}

void
cluster_replies_release(struct cluster *cl)
{
	rarena_reset(&cl->replies);
}

/* Throws a connection away (after an I/O error or a timeout it is unusable). */
static void
node_drop(struct node *nd)
{
	if (nd->c != NULL) {
		redisFree(nd->c);
		nd->c = NULL;
	}
}

/*
 * Whether the connection is closed or unusable, found without sending anything (the same
 * test as store.c's conn_gone; the two become one when store.c routes through this file).
 */
static int
conn_gone(const redisContext *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	char b;
	ssize_t n;

	if (c->err)
		return 1;
	if (poll(&p, 1, 0) < 0)
		return 0;
	if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return 1;
	if (!(p.revents & POLLIN))
		return 0;
	n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0)
		return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	return 1;
}

/* Sets c's read/write timeout to the configured one, or what is left before deadline. */
static int
set_timeout(struct cluster *cl, redisContext *c, int64_t deadline)
{
	int64_t ms = deadline - mono_ms();
	struct timeval tv;

	if (ms <= 0)
		return -1;
	if (ms > cl->timeout_ms)
		ms = cl->timeout_ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return redisSetTimeout(c, tv) == REDIS_OK ? 0 : -1;
}

/* Loads every script on a new connection (one pipelined round trip) and keeps the SHA1s. */
static int
load_scripts(struct cluster *cl, struct node *nd)
{
	size_t k;

	if (cl->nscripts == 0)
		return 0;
	for (k = 0; k < cl->nscripts; k++)
		if (redisAppendCommand(nd->c, "SCRIPT LOAD %s", cl->scripts[k]) != REDIS_OK)
			return -1;
	cl->stats.rounds++;
	for (k = 0; k < cl->nscripts; k++) {
		redisReply *r = NULL;

		if (redisGetReply(nd->c, (void **)&r) != REDIS_OK || r == NULL) {
			seterr(cl, "cluster: SCRIPT LOAD on %s:%d failed", nd->addr.host, nd->addr.port);
			return -1;
		}
		if (r->type != REDIS_REPLY_STRING || r->len != 40) {
			seterr(cl, "cluster: SCRIPT LOAD refused by %s:%d", nd->addr.host, nd->addr.port);
			return -1;
		}
		memcpy(cl->sha[k], r->str, 40);
		cl->sha[k][40] = '\0';
	}
	return 0;
}

/*
 * Makes sure node i has a connection not known to be dead, opened within deadline.
 * -1 (cl->err says why) when it cannot be reached now; nothing was sent to it then.
 */
static int
node_ready(struct cluster *cl, int i, int64_t deadline)
{
	struct node *nd = cl->nodes[i];
	struct rconn_cfg cfg;
	char why[200];
	int64_t left;

	if (nd->c != NULL && !conn_gone(nd->c))
		return set_timeout(cl, nd->c, deadline) == 0 ? 0 : (node_drop(nd), -1);
	node_drop(nd);
	left = deadline - mono_ms();
	if (left <= 0) {
		seterr(cl, "cluster: no time left to connect to %s:%d", nd->addr.host, nd->addr.port);
		return -1;
	}
	if (mono_ms() < nd->retry_at) {
		seterr(cl, "cluster: %s:%d is down (connect failed a moment ago)", nd->addr.host,
		       nd->addr.port);
		return -1;
	}
	memset(&cfg, 0, sizeof cfg);
	memcpy(cfg.host, nd->addr.host, sizeof cfg.host);
	cfg.port = nd->addr.port;
	memcpy(cfg.user, cl->seeds.user, sizeof cfg.user);
	memcpy(cfg.password, cl->seeds.password, sizeof cfg.password);
	cfg.timeout_ms = left < cl->timeout_ms ? (int)left : cl->timeout_ms;
	nd->c = rconn_connect(&cfg, why, sizeof why);
	if (nd->c != NULL) {
		cl->stats.connects++;
		/* every reply read on it from here on is built in the arena */
		rarena_attach(nd->c->reader, &cl->replies);
		if (load_scripts(cl, nd) == 0 && set_timeout(cl, nd->c, deadline) == 0) {
			nd->backoff_ms = NODE_BACKOFF_MIN_MS;
			return 0;
		}
		node_drop(nd);
	} else {
		snprintf(cl->err, sizeof cl->err, "cluster: %s", why);
	}
	nd->retry_at = mono_ms() + nd->backoff_ms;
	nd->backoff_ms = nd->backoff_ms * 2 > NODE_BACKOFF_MAX_MS ? NODE_BACKOFF_MAX_MS
	                                                          : nd->backoff_ms * 2;
	return -1;
}

/* ==== the slot map ===================================================================== */

/* Asks node i for CLUSTER SLOTS and makes it the map. */
static int
refresh_from(struct cluster *cl, int i, int64_t deadline)
{
	struct node *nd = cl->nodes[i];
	struct cluster_range *rs;
	redisReply *r = NULL;
	size_t n, k;
	char why[200];
	int s;

	if (node_ready(cl, i, deadline) != 0)
		return -1;
	cl->stats.rounds++;
	if (redisAppendCommand(nd->c, "CLUSTER SLOTS") != REDIS_OK ||
	    redisGetReply(nd->c, (void **)&r) != REDIS_OK || r == NULL) {
		seterr(cl, "cluster: CLUSTER SLOTS on %s:%d: I/O error", nd->addr.host, nd->addr.port);
		node_drop(nd);
		return -1;
	}
	if (cluster_parse_slots(r, &nd->addr, &rs, &n, why, sizeof why) != 0) {
		snprintf(cl->err, sizeof cl->err, "cluster: %s:%d: %s", nd->addr.host, nd->addr.port,
		         why);
		return -1;
	}
	for (s = 0; s < CLUSTER_SLOTS; s++)
		cl->slot[s] = -1;
	for (k = 0; k < cl->nnodes; k++)
		cl->nodes[k]->primary = 0;
	for (k = 0; k < n; k++) {
		int j = node_index(cl, &rs[k].primary);

		if (j < 0)
			continue;       /* more than MAX_NODES addresses: the slots stay unknown */
		cl->nodes[j]->primary = 1;
		for (s = rs[k].lo; s <= rs[k].hi; s++)
			cl->slot[s] = (int16_t)j;
	}
	free(rs);
	/* connections to nodes that serve no slot now (a demoted primary, a seed replica) go */
	for (k = 0; k < cl->nnodes; k++)
		if (!cl->nodes[k]->primary && (int)k != i)
			node_drop(cl->nodes[k]);
	cl->have_map = 1;
	cl->stale = 0;
	cl->stats.refreshes++;
	return 0;
}

int
cluster_refresh(struct cluster *cl, int64_t deadline_ms)
{
	size_t i;
	int pass;

	/* connected primaries first (no connect), then every other address, seeds included */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < cl->nnodes; i++) {
			int connected = cl->nodes[i]->c != NULL && cl->nodes[i]->primary;

			if ((pass == 0) != connected)
				continue;
			if (mono_ms() >= deadline_ms)
				return -1;
			if (refresh_from(cl, (int)i, deadline_ms) == 0)
				return 0;
		}
	return -1;
}

/* ==== the router: rounds =============================================================== */

static void
out_reserve(struct node *nd, size_t n)
{
	if (nd->out_cap - nd->out_len >= n)
		return;
	while (nd->out_cap - nd->out_len < n)
		nd->out_cap = nd->out_cap ? nd->out_cap * 2 : 4096;
	nd->out = realloc(nd->out, nd->out_cap);
	if (nd->out == NULL)
		abort();
}

static void
out_count(struct node *nd, char kind, size_t n)
{
	out_reserve(nd, 24);
	nd->out_len += (size_t)snprintf(nd->out + nd->out_len, 24, "%c%zu\r\n", kind, n);
}

static void
out_arg(struct node *nd, const char *p, size_t len)
{
	out_count(nd, '$', len);
	out_reserve(nd, len + 2);
	memcpy(nd->out + nd->out_len, p, len);
	nd->out_len += len;
	nd->out[nd->out_len++] = '\r';
	nd->out[nd->out_len++] = '\n';
}

/* Appends job j's command (after ASKING and/or SCRIPT LOAD when due) to its node's out. */
static void
queue_job(struct cluster *cl, struct node *nd, const struct cluster_cmd *cmd, struct job *jb,
          size_t j)
{
	size_t i;

	jb->start = nd->out_len;
	if (jb->load) {
		out_count(nd, '*', 3);
		out_arg(nd, "SCRIPT", 6);
		out_arg(nd, "LOAD", 4);
		out_arg(nd, cl->scripts[cmd->script], strlen(cl->scripts[cmd->script]));
	}
	if (jb->ask >= 0) {
		out_count(nd, '*', 1);
		out_arg(nd, "ASKING", 6);
	}
	if (cmd->script >= 0) {
		out_count(nd, '*', cmd->argc + 2);
		out_arg(nd, "EVALSHA", 7);
		out_arg(nd, cl->sha[cmd->script], strlen(cl->sha[cmd->script]));
	} else {
		out_count(nd, '*', cmd->argc);
	}
	for (i = 0; i < cmd->argc; i++)
		out_arg(nd, cmd->argv[i], cmd->argvlen[i]);
	if (nd->nq == nd->qcap) {
		nd->qcap = nd->qcap ? nd->qcap * 2 : 16;
		nd->q = realloc(nd->q, nd->qcap * sizeof *nd->q);
		if (nd->q == NULL)
			abort();
	}
	nd->q[nd->nq++] = j;
	cl->stats.sends++;
}

/* Writes nd->out; returns the bytes written (fewer than out_len on an error). */
static size_t
write_out(struct node *nd)
{
	size_t done = 0;

	while (done < nd->out_len) {
		ssize_t n = send(nd->c->fd, nd->out + done, nd->out_len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	return done;
}

/* Ends job j with st (and its reply). */
static void
finish(struct job *jb, enum cluster_status *st, redisReply **replies, size_t j,
       enum cluster_status s, redisReply *r)
{
	jb->done = 1;
	st[j] = s;
	replies[j] = s == CLUSTER_OK ? r : NULL;
}

/*
 * Reads node i's replies for this round and decides each job. Returns 1 when a job must
 * wait before it is sent again, 0 otherwise.
 */
static int
read_node(struct cluster *cl, int i, const struct cluster_cmd *cmds, struct job *jobs,
          redisReply **replies, enum cluster_status *st)
{
	struct node *nd = cl->nodes[i];
	int wait = 0;
	size_t k;

	for (k = 0; k < nd->nq; k++) {
		size_t j = nd->q[k];
		struct job *jb = &jobs[j];
		int extra = (jb->load != 0) + (jb->ask >= 0), e;
		struct cluster_redirect rd;
		redisReply *r = NULL;

		for (e = 0; e <= extra; e++) {
			r = NULL;
			if (redisGetReply(nd->c, (void **)&r) != REDIS_OK || r == NULL)
				break;
		}
		if (r == NULL || e <= extra) {
			/* sent, reply lost: this one and the rest of the node's are in doubt */
			seterr(cl, "cluster: %s:%d: I/O error after the command was sent (it may have "
			       "run)", nd->addr.host, nd->addr.port);
			node_drop(nd);
			cl->stale = 1;
			for (; k < nd->nq; k++)
				finish(&jobs[nd->q[k]], st, replies, nd->q[k], CLUSTER_INDOUBT, NULL);
			return wait;
		}
		jb->load = 0;
		jb->ask = -1;
		if (r->type != REDIS_REPLY_ERROR) {
			finish(jb, st, replies, j, CLUSTER_OK, r);
			continue;
		}
		switch (cluster_classify(r->str, r->len, &rd)) {
		case CLUSTER_REPLY:
			finish(jb, st, replies, j, CLUSTER_OK, r);
			break;
		case CLUSTER_MOVED:
		case CLUSTER_ASK: {
			int moved = r->str[0] == 'M', to;

			if (rd.to.host[0] == '\0')
				memcpy(rd.to.host, nd->addr.host, sizeof rd.to.host);
			to = node_index(cl, &rd.to);
			if (moved)
				cl->stats.moved++;
			else
				cl->stats.ask++;
			if (++jb->redirects > MAX_REDIRECTS || to < 0) {
				seterr(cl, "cluster: too many redirections (last: %.200s)", r->str);
				finish(jb, st, replies, j, CLUSTER_UNAVAILABLE, NULL);
				break;
			}
			if (moved) {
				cl->slot[rd.slot] = (int16_t)to;
				cl->nodes[to]->primary = 1;
				cl->stale = 1;  /* more slots moved, likely: reload at the next call */
			} else {
				jb->ask = to;
			}
			break;
		}
		case CLUSTER_TRYAGAIN:
			cl->stats.tryagain++;
			seterr(cl, "cluster: %.200s", r->str);
			jb->wait = wait = 1;
			break;
		case CLUSTER_CLUSTERDOWN:
			cl->stats.clusterdown++;
			seterr(cl, "cluster: %.200s", r->str);
			jb->wait = wait = 1;
			cl->stale = 1;
			break;
		case CLUSTER_NOSCRIPT:
			cl->stats.noscript++;
			if (cmds[j].script < 0 || jb->noscripts++ > 0) {
				finish(jb, st, replies, j, CLUSTER_OK, r);
				break;
			}
			jb->load = 1;
			break;
		}
	}
	return wait;
}

/*
 * One round: routes every pending job, sends each node its commands, then reads every
 * node's replies. Returns 1 when some job waits for a back-off.
 */
static int
round_once(struct cluster *cl, const struct cluster_cmd *cmds, size_t n, struct job *jobs,
           int64_t deadline, redisReply **replies, enum cluster_status *st)
{
	size_t j, i, nn = cl->nnodes;    /* read_node may add nodes (redirects): not these */
	int wait = 0, sending = 0;
	int *used = calloc(nn + 1, sizeof *used);

	if (used == NULL)
		abort();
	for (i = 0; i < nn; i++) {
		cl->nodes[i]->out_len = 0;
		cl->nodes[i]->nq = 0;
	}
	for (j = 0; j < n; j++) {
		struct job *jb = &jobs[j];
		unsigned slot;

		jb->target = -1;
		if (jb->done)
			continue;
		jb->wait = 0;
		slot = cluster_key_slot(cmds[j].key ? cmds[j].key : "", cmds[j].keylen);
		jb->target = jb->ask >= 0 ? jb->ask : cl->slot[slot];
		if (jb->target < 0) {
			seterr(cl, "cluster: slot %u has no known primary", slot);
			cl->stale = 1;
			jb->wait = wait = 1;
			continue;
		}
		if (!used[jb->target]) {
			used[jb->target] = node_ready(cl, jb->target, deadline) == 0 ? 1 : -1;
			if (used[jb->target] < 0)
				cl->stale = 1;
		}
		if (used[jb->target] < 0) {
			cl->stats.down++;
			jb->wait = wait = 1;
			jb->ask = -1;   /* the owner will say ASK again if it still must */
			continue;
		}
		queue_job(cl, cl->nodes[jb->target], &cmds[j], jb, j);
	}
	/* send to every node before reading any reply */
	for (i = 0; i < nn; i++) {
		struct node *nd = cl->nodes[i];
		size_t sent, k;

		if (used[i] <= 0 || nd->nq == 0)
			continue;
		sending = 1;
		sent = write_out(nd);
		if (sent == nd->out_len)
			continue;
		seterr(cl, "cluster: %s:%d: cannot send", nd->addr.host, nd->addr.port);
		node_drop(nd);
		cl->stale = 1;
		used[i] = -1;
		for (k = 0; k < nd->nq; k++) {
			struct job *jb = &jobs[nd->q[k]];

			jb->ask = -1;
			jb->load = 0;
			if (jb->start < sent) {
				finish(jb, st, replies, nd->q[k], CLUSTER_INDOUBT, NULL);
			} else {
				jb->wait = wait = 1;    /* nothing of it left: resend */
				cl->stats.down++;
			}
		}
	}
	if (sending)
		cl->stats.rounds++;
	for (i = 0; i < nn; i++)
		if (used[i] > 0 && cl->nodes[i]->nq > 0)
			wait |= read_node(cl, (int)i, cmds, jobs, replies, st);
	free(used);
	return wait;
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
cluster_run(struct cluster *cl, const struct cluster_cmd *cmds, size_t n, int64_t deadline_ms,
            redisReply **replies, enum cluster_status *st)
{
	struct job *jobs = calloc(n + 1, sizeof *jobs);
	int64_t wait_ms = WAIT_MIN_MS;
	size_t j, left;
	int rc = 0;

	if (jobs == NULL)
		abort();
	cl->err[0] = '\0';
	for (j = 0; j < n; j++) {
		jobs[j].ask = -1;
		st[j] = CLUSTER_UNAVAILABLE;
		replies[j] = NULL;
	}
	if (!cl->have_map || cl->stale)
		cluster_refresh(cl, deadline_ms);
	for (;;) {
		int wait = round_once(cl, cmds, n, jobs, deadline_ms, replies, st);
		int64_t now;

		for (left = 0, j = 0; j < n; j++)
			left += !jobs[j].done;
		if (left == 0)
			break;
		now = mono_ms();
		if (now >= deadline_ms)
			break;
		if (wait) {
			sleep_ms(wait_ms < deadline_ms - now ? wait_ms : deadline_ms - now);
			wait_ms = wait_ms * 2 > WAIT_MAX_MS ? WAIT_MAX_MS : wait_ms * 2;
			if (cl->stale && mono_ms() < deadline_ms)
				cluster_refresh(cl, deadline_ms);
		}
	}
	for (j = 0; j < n; j++)
		if (st[j] != CLUSTER_OK) {
			if (rc == 0 && !jobs[j].done) {
				char why[sizeof cl->err];

				memcpy(why, cl->err, sizeof why);
				snprintf(cl->err, sizeof cl->err, "cluster: not served before the deadline: %.200s",
				         why[0] ? why : "no node answered");
			}
			rc = -1;
		}
	free(jobs);
	return rc;
}

redisReply *
cluster_command(struct cluster *cl, const struct cluster_cmd *cmd, int64_t deadline_ms,
                enum cluster_status *st)
{
	redisReply *r = NULL;

	cluster_run(cl, cmd, 1, deadline_ms, &r, st);
	return r;
}
