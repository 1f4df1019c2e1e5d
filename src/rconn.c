/*
 * rconn: Redis connection settings from a URL, and connecting with timeouts. Errors come
 * back as text that never contains the password.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* POLLRDHUP: a closed peer seen without reading */
#endif
#include "rconn.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "hex.h"

#define RCONN_DEFAULT_PORT 6379
#define RCONN_DEFAULT_TIMEOUT_MS 1000

/* Parses a non-negative decimal int of 1 to 9 digits from s[0..n). -1 when not one. */
static int rconn_num(const char *s, size_t n)
{
	int v = 0;

	if (n == 0 || n > 9)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int rconn_fail(char *err, size_t errsz, const char *msg)
{
	snprintf(err, errsz, "%s", msg);
	return -1;
}

/* unix:///path[?db=N] */
static int rconn_parse_unix(const char *rest, struct rconn_cfg *cfg, char *err,
                            size_t errsz)
{
	const char *q = strchr(rest, '?');
	size_t plen = q ? (size_t)(q - rest) : strlen(rest);

	if (plen == 0 || rest[0] != '/')
		return rconn_fail(err, errsz, "redis URL: unix:// needs an absolute socket path");
	if (plen >= sizeof cfg->path)
		return rconn_fail(err, errsz, "redis URL: socket path too long");
	memcpy(cfg->path, rest, plen);
	cfg->path[plen] = '\0';
	if (q != NULL) {
		if (strncmp(q + 1, "db=", 3) != 0 ||
		    (cfg->db = rconn_num(q + 4, strlen(q + 4))) < 0)
			return rconn_fail(err, errsz, "redis URL: the only query is ?db=N");
	}
	return 0;
}

/* [[user]:password@]host[:port][/db] ; host may be [v6-address]. */
static int rconn_parse_tcp(const char *rest, struct rconn_cfg *cfg, char *err,
                           size_t errsz)
{
	const char *end = rest + strlen(rest);
	const char *slash = strchr(rest, '/');
	const char *auth_end = memchr(rest, '@', (size_t)((slash ? slash : end) - rest));
	const char *h, *hend, *port = NULL, *hostend;

	/* The last '@' before the path ends the userinfo. */
	if (auth_end != NULL) {
		const char *at;

		while ((at = memchr(auth_end + 1, '@',
		                    (size_t)((slash ? slash : end) - auth_end - 1))) != NULL)
			auth_end = at;
	}
	if (auth_end != NULL) {
		const char *colon = memchr(rest, ':', (size_t)(auth_end - rest));

		if (colon == NULL)
			return rconn_fail(err, errsz,
			                  "redis URL: userinfo must be [user]:password");
		/* %XX-decoded: a password may hold ':', '@' or '/' only escaped */
		if (hex_pct_decode(rest, (size_t)(colon - rest), 0, cfg->user, sizeof cfg->user) < 0 ||
		    hex_pct_decode(colon + 1, (size_t)(auth_end - colon - 1), 0, cfg->password,
		                   sizeof cfg->password) < 0)
			return rconn_fail(err, errsz, "redis URL: bad user or password encoding");
		h = auth_end + 1;
	} else {
		h = rest;
	}
	hend = slash ? slash : end;

	if (h < hend && *h == '[') {
		const char *rb = memchr(h, ']', (size_t)(hend - h));

		if (rb == NULL)
			return rconn_fail(err, errsz, "redis URL: unterminated [address]");
		hostend = rb + 1;
		if (hostend < hend) {
			if (*hostend != ':')
				return rconn_fail(err, errsz, "redis URL: junk after [address]");
			port = hostend + 1;
		}
		h++;
		hostend = rb;
	} else {
		const char *colon = memchr(h, ':', (size_t)(hend - h));

		hostend = colon ? colon : hend;
		if (colon != NULL)
			port = colon + 1;
	}
	if (hostend == h)
		return rconn_fail(err, errsz, "redis URL: missing host");
	if ((size_t)(hostend - h) >= sizeof cfg->host)
		return rconn_fail(err, errsz, "redis URL: host too long");
	memcpy(cfg->host, h, (size_t)(hostend - h));
	cfg->host[hostend - h] = '\0';
	if (port != NULL) {
		cfg->port = rconn_num(port, (size_t)(hend - port));
		if (cfg->port < 1 || cfg->port > 65535)
			return rconn_fail(err, errsz, "redis URL: bad port");
	}
	if (slash != NULL && slash + 1 < end) {
		cfg->db = rconn_num(slash + 1, (size_t)(end - slash - 1));
		if (cfg->db < 0)
			return rconn_fail(err, errsz, "redis URL: the path must be a db number");
	}
	return 0;
}

int rconn_parse_url(const char *url, struct rconn_cfg *cfg, char *err, size_t errsz)
{
	int timeout_ms = cfg->timeout_ms;

	memset(cfg, 0, sizeof *cfg);
	cfg->timeout_ms = timeout_ms;
	cfg->port = RCONN_DEFAULT_PORT;
	if (url == NULL)
		return rconn_fail(err, errsz, "redis URL: missing");
	if (strncmp(url, "unix://", 7) == 0)
		return rconn_parse_unix(url + 7, cfg, err, errsz);
	if (strncmp(url, "redis://", 8) == 0)
		return rconn_parse_tcp(url + 8, cfg, err, errsz);
	if (strncmp(url, "redis-cluster://", 16) == 0) {
		if (strlen(url) >= sizeof cfg->cluster)
			return rconn_fail(err, errsz, "redis URL: redis-cluster:// URL too long");
		strcpy(cfg->cluster, url);
		return 0;
	}
	return rconn_fail(err, errsz,
	                  "redis URL: expected redis://[:password@]host[:port][/db], "
	                  "unix:///path[?db=N] or redis-cluster://[[user]:password@]host:port[,...]");
}

/* Where we connect, for messages: never includes the password. */
static void rconn_where(const struct rconn_cfg *cfg, char *out, size_t outsz)
{
	if (cfg->path[0] != '\0')
		snprintf(out, outsz, "redis unix:%s", cfg->path);
	else
		snprintf(out, outsz, "redis %s:%d", cfg->host, cfg->port);
}

/* Runs one command that must answer +OK; -1 with a message (prefixed by what) otherwise. */
static int rconn_expect_ok(redisContext *c, int argc, const char **argv, const char *what,
                           const char *where, char *err, size_t errsz)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	int rc = -1;

	if (r == NULL)
		snprintf(err, errsz, "%s: %s failed: %s", where, what, c->errstr);
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(err, errsz, "%s: %s refused: %s", where, what, r->str);
	else
		rc = 0;
	if (r != NULL)
		freeReplyObject(r);
	return rc;
}

redisContext *rconn_connect(const struct rconn_cfg *cfg, char *err, size_t errsz)
{
	int ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : RCONN_DEFAULT_TIMEOUT_MS;
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	char where[300], dbs[16];
	redisContext *c;

	rconn_where(cfg, where, sizeof where);
	if (cfg->path[0] != '\0')
		c = redisConnectUnixWithTimeout(cfg->path, tv);
	else
		c = redisConnectWithTimeout(cfg->host, cfg->port, tv);
	if (c == NULL) {
		snprintf(err, errsz, "%s: cannot allocate a context", where);
		return NULL;
	}
	if (c->err) {
		snprintf(err, errsz, "%s: %s", where, c->errstr);
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(err, errsz, "%s: cannot set timeout: %s", where, c->errstr);
		goto fail;
	}
	if (cfg->password[0] != '\0') {
		const char *argv[3] = { "AUTH", cfg->user, cfg->password };

		if (cfg->user[0] != '\0') {
			if (rconn_expect_ok(c, 3, argv, "AUTH", where, err, errsz) < 0)
				goto fail;
		} else {
			argv[1] = cfg->password;
			if (rconn_expect_ok(c, 2, argv, "AUTH", where, err, errsz) < 0)
				goto fail;
		}
	}
	if (cfg->db != 0) {
		const char *argv[2] = { "SELECT", dbs };

		snprintf(dbs, sizeof dbs, "%d", cfg->db);
		if (rconn_expect_ok(c, 2, argv, "SELECT", where, err, errsz) < 0)
			goto fail;
	}
	return c;
fail:
	redisFree(c);
	return NULL;
}

/*
 * One poll and, when it says readable, one MSG_PEEK: no data is consumed. Redis closed the
 * connection (a restart, a timeout of idle clients, a kill) or bytes nobody asked for wait
 * on it: either way it cannot carry the next command.
 */
int rconn_gone(const redisContext *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
	char b;
	ssize_t n;

	if (c->err)
		return 1;
	if (poll(&p, 1, 0) < 0)
		return 0;               /* cannot tell: the call will find out */
	if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
		return 1;
	if (!(p.revents & POLLIN))
		return 0;
	n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0)
		return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
	return 1;                       /* 0: closed; > 0: a reply nobody waits for */
}
