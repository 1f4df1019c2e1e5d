/*
 * rconn: Redis connection settings parsed from a URL, connecting with timeouts, and the
 * check that a connection is still alive.
 */
#ifndef PARTNERD_RCONN_H
#define PARTNERD_RCONN_H

#include <hiredis/hiredis.h>

struct rconn_cfg {
	char host[256];     /* TCP host, or "" when path is set */
	int port;           /* TCP port (default 6379) */
	char path[256];     /* unix socket path, or "" */
	char password[256]; /* AUTH password, or "" */
	int db;             /* SELECT db, 0 by default */
	int timeout_ms;     /* connect and read/write timeout */
	char user[256];     /* ACL user for AUTH (Redis 6+), or "" for the default user */
	char cluster[1024]; /* a Redis Cluster's seed list (cluster_parse_seeds), or "": one Redis */
};

/*
 * Parses redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N] into cfg
 * (timeout_ms is left as it was). A redis-cluster://... URL is kept whole in cfg->cluster
 * (the seeds are parsed by cluster_parse_seeds, when the store is made). Returns 0, or -1
 * with a message in err (errsz bytes).
 */
int rconn_parse_url(const char *url, struct rconn_cfg *cfg, char *err, size_t errsz);

/*
 * Connects, sets the read/write timeout (hiredis' connect timeout does not bound reads),
 * sends AUTH and SELECT when configured. Returns a usable context, or NULL with a message
 * in err. The caller frees the context with redisFree.
 */
redisContext *rconn_connect(const struct rconn_cfg *cfg, char *err, size_t errsz);

/*
 * Whether c is closed or unusable, found without sending anything (a connection found dead
 * before a command is replaced, not used: SPEC §6). 1: gone; 0: not known to be gone.
 */
int rconn_gone(const redisContext *c);

#endif
