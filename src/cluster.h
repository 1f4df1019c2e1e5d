/*
 * cluster: the Redis Cluster router of the store layer, on plain hiredis 0.14 (which has no
 * cluster support). It owns "which node serves this key": key -> slot (CRC16 with hash
 * tags) -> primary node (the slot map, from CLUSTER SHARDS or SLOTS), one connection per
 * node, and the answers a cluster gives to a command sent to the wrong node or at the wrong
 * moment (MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN, READONLY, NOSCRIPT, a
 * node down). Nothing above the store layer knows a slot exists. docs/CLUSTER.md says
 * what the router does on each reply and what it guarantees.
 *
 * Threads: one struct cluster per worker thread; nothing in it is shared or locked, except
 * the connections of a cluster_share (partnerd --redis-pipes), which are store_pipes.
 *
 * Replies: every reply the router returns is built in its reply arena (rarena.h) and stays
 * valid until cluster_replies_release; never give one to freeReplyObject.
 *
 * The pure parts (slots, seeds, the slot map and redirect parsers) need no server and are
 * what tests/unit/test_cluster.c covers; the rest is tested against a real 3+3 cluster by
 * tests/integration/test_cluster.py through tests/cluster/router_probe.c.
 */
#ifndef PARTNERD_CLUSTER_H
#define PARTNERD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define CLUSTER_SLOTS 16384
#define CLUSTER_MAX_SEEDS 16

/* ---- pure: slots ---------------------------------------------------------------------- */

/* CRC16-CCITT (XMODEM: poly 0x1021, init 0), as Redis Cluster's key slots use it. */
uint16_t cluster_crc16(const char *buf, size_t len);

/*
 * The slot of a key: CRC16 mod 16384 of its hash tag when it has one (the bytes between
 * the first '{' and the first '}' after it, when there is at least one byte between them),
 * else of the whole key.
 */
unsigned cluster_key_slot(const char *key, size_t len);

/* ---- pure: seeds ---------------------------------------------------------------------- */

struct cluster_addr {
	char host[256];         /* IP address or name, without [] for IPv6 */
	int port;
};

struct cluster_seeds {
	size_t n;                                       /* 1..CLUSTER_MAX_SEEDS */
	struct cluster_addr addr[CLUSTER_MAX_SEEDS];
	char user[256];         /* ACL user, or "" */
	char password[256];     /* AUTH password (the same on every node), or "" */
};

/*
 * Parses a seed list: `HOST:PORT[,HOST:PORT...]` or
 * `redis-cluster://[[user]:password@]HOST:PORT[,HOST:PORT...]` (an IPv6 host in [], a
 * password %XX-encoded, as rconn's redis:// URLs). Every seed needs its port; a cluster has
 * no db but 0 and no unix sockets. Returns 0, or -1 with a message naming the fault in err.
 */
int cluster_parse_seeds(const char *spec, struct cluster_seeds *out, char *err, size_t errsz);

/* ---- pure: the slot map and the error replies ----------------------------------------- */

/* One range of slots and the address of its primary. */
struct cluster_range {
	int lo, hi;                     /* inclusive, 0..16383 */
	struct cluster_addr primary;
	char id[41];                    /* the primary's node id, or "" when not given */
};

/*
 * Parses a CLUSTER SLOTS reply into ranges (*out, malloc'd, freed by the caller; *n of
 * them). A primary announced with an empty host is at `asked` (the node that answered),
 * as the Redis Cluster spec says. Replicas are skipped: writes and reads go to primaries.
 * Returns 0, or -1 with a message in err (nothing allocated).
 */
int cluster_parse_slots(const redisReply *r, const struct cluster_addr *asked,
                        struct cluster_range **out, size_t *n, char *err, size_t errsz);

/*
 * Parses a CLUSTER SHARDS reply (Redis 7) into the same ranges: each shard's slot pairs
 * mapped to its node whose role is "master", at its "endpoint" (as CLUSTER SLOTS names
 * it), else its "ip" when the endpoint is "" or "?", else at `asked`. Fields are found by
 * name (unknown ones skipped); a shard with no slots or no node whose role is "master" is
 * skipped (its slots stay unknown). Returns 0, or -1 with a message in err (nothing allocated).
 */
int cluster_parse_shards(const redisReply *r, const struct cluster_addr *asked,
                         struct cluster_range **out, size_t *n, char *err, size_t errsz);

enum cluster_kind {
	CLUSTER_REPLY,          /* a reply to return: a value, or an error that is the command's */
	CLUSTER_MOVED,          /* -MOVED slot host:port: the slot lives there now */
	CLUSTER_ASK,            /* -ASK slot host:port: this key is there, for this command only */
	CLUSTER_TRYAGAIN,       /* -TRYAGAIN: keys of a migrating slot split across two nodes */
	CLUSTER_CLUSTERDOWN,    /* -CLUSTERDOWN: the cluster cannot serve the slot now */
	CLUSTER_NOSCRIPT,       /* -NOSCRIPT: this node's script cache lacks the script */
	CLUSTER_LOADING,        /* -LOADING: the node is loading its data set */
	CLUSTER_MASTERDOWN,     /* -MASTERDOWN: a replica whose link to its primary is down */
	CLUSTER_READONLY,       /* -READONLY: a write reached a replica (a demoted primary) */
};

struct cluster_redirect {
	int slot;
	struct cluster_addr to; /* host "" when the node gave none: the same host as the sender's */
};

/*
 * What an error reply text (without the leading '-') asks of the router. For MOVED and
 * ASK, *rd is filled; a MOVED or ASK that does not parse (a bad slot, no port) is
 * CLUSTER_REPLY: the caller gets it as the command's error.
 */
enum cluster_kind cluster_classify(const char *err, size_t len, struct cluster_redirect *rd);

/* ---- the router ----------------------------------------------------------------------- */

struct cluster;

/*
 * A router for the given seeds. timeout_ms bounds each connect and each read or write (as
 * rconn's), within a call's own deadline. scripts[0..nscripts) are the Lua scripts
 * commands may run by index (struct cluster_cmd.script): each node loads them on its first
 * connection (over a cluster_share: the router's first use of it), and again on NOSCRIPT.
 * Connects nothing yet.
 */
struct cluster *cluster_new(const struct cluster_seeds *seeds, int timeout_ms,
                            const char *const *scripts, size_t nscripts);
void cluster_free(struct cluster *cl);

/*
 * Connections to each node shared by the routers of a process (partnerd --redis-pipes on a
 * cluster): npipes per node, made as routers first send to the node (keyed by its
 * address) and kept until cluster_share_free. Each is a store_pipe (store_pipe.h): the
 * commands of concurrent routers reach a node together. Thread-safe.
 */
struct cluster_share;
struct cluster_share *cluster_share_new(const struct cluster_seeds *seeds, int timeout_ms,
                                        int npipes);
void cluster_share_free(struct cluster_share *sh);      /* no router may use it any more */

/*
 * From now on cl talks to every node over sh's connection k (mod npipes) to it, not over
 * a connection of its own. Before cl's first call; sh must outlive cl.
 */
void cluster_use_share(struct cluster *cl, struct cluster_share *sh, int k);

/* Last error text (valid until the next call). */
const char *cluster_error(const struct cluster *cl);

/* One command, and the key that routes it. */
struct cluster_cmd {
	const char *key;                /* its slot chooses the node */
	size_t keylen;
	int script;                     /* -1: argv is the command; else a script index: */
	                                /* EVALSHA sha argv... (argv: numkeys keys args) */
	size_t argc;
	const char *const *argv;
	const size_t *argvlen;
};

enum cluster_status {
	CLUSTER_OK,             /* the reply is the command's (a value or its own error) */
	CLUSTER_UNAVAILABLE,    /* it did not run: no node could take it before the deadline */
	CLUSTER_INDOUBT,        /* it was sent and its reply lost (I/O error): it may have run */
};

/*
 * Runs cmds[0..n) and puts each one's reply in replies[i] (NULL unless st[i] is
 * CLUSTER_OK), in the caller's order. The commands are grouped by node and each round
 * sends every node its commands before any reply is read (one round trip when nothing is
 * redirected). A command answered MOVED, ASK, TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN,
 * READONLY or NOSCRIPT did not run and is sent again: MOVED to the new owner (the slot
 * updated at once, the whole map reloaded when due), ASK once to the target after
 * ASKING, NOSCRIPT after SCRIPT LOAD on that node; TRYAGAIN, CLUSTERDOWN, LOADING,
 * MASTERDOWN, READONLY and a node that cannot be reached are retried with a short
 * back-off (the map reloaded when due; not for TRYAGAIN) until deadline_ms (monotonic,
 * clock.h), and are then CLUSTER_UNAVAILABLE. The map is loaded at most once per refresh
 * interval (100 ms unless cluster_set_refresh_interval says otherwise). A command of which a byte was sent and whose reply was lost is
 * never sent again: CLUSTER_INDOUBT. Returns 0 when every command is CLUSTER_OK, -1
 * otherwise (cluster_error says why, for the first that is not).
 */
int cluster_run(struct cluster *cl, const struct cluster_cmd *cmds, size_t n,
                int64_t deadline_ms, redisReply **replies, enum cluster_status *st);

/*
 * The number of masters in the slot map (loaded first when there is none or it is due, as
 * cluster_run does); 0 when no map could be loaded (cluster_error says why). Masters are
 * numbered 0.. in the order of their first slot, so a master keeps its number across a
 * failover (its promoted replica takes its slots).
 */
size_t cluster_masters(struct cluster *cl, int64_t deadline_ms);

/*
 * cluster_run with command j sent to master masters[j] (a number of cluster_masters)
 * rather than to its key's node: commands that have no key (PING, INFO, DBSIZE, SCAN...).
 * Each round finds the master of a number again (after a failover: the promoted replica).
 * A redirection is not followed: a MOVED or ASK is that master's reply (CLUSTER_OK); the
 * rest is as cluster_run.
 */
int cluster_run_on(struct cluster *cl, const size_t *masters, const struct cluster_cmd *cmds,
                   size_t n, int64_t deadline_ms, redisReply **replies, enum cluster_status *st);

/* cluster_run of one command: its reply, or NULL with *st telling why. */
redisReply *cluster_command(struct cluster *cl, const struct cluster_cmd *cmd,
                            int64_t deadline_ms, enum cluster_status *st);

/* Reloads the slot map now (from a known node, else a seed); 0 when done. */
int cluster_refresh(struct cluster *cl, int64_t deadline_ms);

/*
 * The least time between two loads of the slot map that the router starts by itself
 * (after MOVED, CLUSTERDOWN, a node down...): 100 ms by default, ms < 0 restores it.
 * Tests set it long to see what a MOVED alone does to the map.
 */
void cluster_set_refresh_interval(struct cluster *cl, int ms);

/* What the router has done since cluster_new (for metrics and tests). */
struct cluster_stats {
	uint64_t rounds;        /* round trips: each node written to and read once per round */
	uint64_t sends;         /* commands sent (ASKING and SCRIPT LOAD not counted) */
	uint64_t moved, ask, tryagain, clusterdown, noscript;  /* such replies received */
	uint64_t loading, masterdown, readonly;                 /* such replies received */
	uint64_t down;          /* sends given up because a node could not be reached */
	uint64_t refreshes;     /* slot maps loaded */
	uint64_t refresh_skips; /* reloads due but put off: the last was < the interval ago */
	uint64_t connects;      /* node connections opened (not counted for a share's) */
};

void cluster_get_stats(const struct cluster *cl, struct cluster_stats *out);

/* Ends the life of every reply returned since the last call. */
void cluster_replies_release(struct cluster *cl);

#endif
