/*
 * store: the Redis side of partnerd and partnerctl. One struct store per worker thread
 * (hiredis contexts are not thread-safe), and one per partnerctl run (store_admin.h). A
 * broken connection is thrown away and reconnected, with a backoff during which calls
 * fail at once (the caller answers 503).
 *
 * Replies: every reply the store returns (store_eval, store_pipeline, store_command) is
 * built in the store's reply arena (rarena.h) and stays valid, across later calls and
 * reconnects, until store_replies_release. Never give one to freeReplyObject. In partnerd
 * the worker calls store_replies_release once per request, after the request is answered,
 * and nothing else does: a handler may keep any reply of its request (and auth's) for as
 * long as it runs. partnerctl's session (store_admin.c) releases them before each call;
 * the queue (store_queue) ends its replies' life after their callbacks.
 */
#ifndef PARTNERD_STORE_H
#define PARTNERD_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "rconn.h"

struct store;

/* A growable argv for one Redis command (borrowed pointers plus lengths). */
struct store_argv {
	size_t n, cap;
	const char **v;         /* borrowed arguments (NULL for an arena one) */
	size_t *len;
	size_t *off;            /* offset in the arena of a formatted argument */
	char *owned;            /* arena for numbers and keys formatted here */
	size_t owned_len, owned_cap;
};

void store_argv_init(struct store_argv *a);
void store_argv_free(struct store_argv *a);
void store_argv_reset(struct store_argv *a);   /* empty again, memory kept */
/* Room for about nargs arguments and nbytes of copied ones, allocated at once (a hint). */
void store_argv_presize(struct store_argv *a, size_t nargs, size_t nbytes);
void store_argv_add(struct store_argv *a, const char *p, size_t len);  /* borrowed */
void store_argv_addcopy(struct store_argv *a, const char *p, size_t len); /* copied */
void store_argv_addf(struct store_argv *a, const char *fmt, ...)        /* copied */
	__attribute__((format(printf, 2, 3)));

struct store *store_new(const struct rconn_cfg *cfg);
void store_free(struct store *s);

/* Last error text (valid until the next call). */
const char *store_error(const struct store *s);

/* Number of Redis round trips this store has made (for metrics and tests). */
uint64_t store_round_trips(const struct store *s);

enum store_script { STORE_BEGIN = 0, STORE_COMMIT = 1, STORE_READ = 2, STORE_IDEM = 3, STORE_SETTLE = 4,
                    STORE_RESOLVE = 5, STORE_HDEL_IF = 6, STORE_HELD = 7, STORE_CLAIM = 8,
                    STORE_UNLOCK = 9, STORE_NSCRIPTS };

/*
 * Runs one of the embedded scripts with the given ARGV (no KEYS), by EVALSHA, loading it
 * on NOSCRIPT. Returns the reply (valid until store_replies_release) or NULL when Redis is
 * not reachable or answered an error (see store_error).
 *
 * Connections (all calls): a connection found closed before a command is sent (a Redis
 * restart) is replaced and the command sent on the new one; so is one whose send fails
 * before its first byte left. A command of which a byte was sent is never sent again.
 * After a timeout or an I/O error the connection is thrown away and the next call
 * reconnects at once; failed connects back off (calls fail at once meanwhile).
 */
redisReply *store_eval(struct store *s, enum store_script which, struct store_argv *argv);

/*
 * After a call failed (store_eval NULL, store_pipeline -1): 1 when it may have run in
 * Redis (some of it was sent and its reply was lost, or Redis answered an error), 0 when
 * it surely did not (nothing of it was sent).
 */
int store_maybe_ran(const struct store *s);

/*
 * Runs resolve.lua (ARGV as described there) for a commit whose reply was lost, within one
 * --redis-timeout-ms from now in all: a reconnect (back-off or not) and the call. NULL
 * when that did not succeed in time.
 */
redisReply *store_resolve(struct store *s, struct store_argv *argv);

/*
 * Sends the commands (each an argv) in one pipelined round trip and returns their
 * replies in *replies (an array of n; the array and the replies are valid until
 * store_replies_release, neither is freed by the caller). Returns 0, or -1 when Redis is
 * not reachable.
 */
int store_pipeline(struct store *s, struct store_argv *cmds, size_t n, redisReply ***replies);

/* ---- queued commands: partnerctl's batches ------------------------------------------ */

/*
 * Called with the reply of a queued command, in the order of the queue, during
 * store_queue (when the queue was full) or store_flush. r lives only until the callback
 * returns (the arena is released after each round trip: a queue's user holds no other
 * reply across store_queue and store_flush). Returns 0, or -1 to mark the queue failed
 * (the callback keeps its own message); the other replies are still read and handed on.
 */
typedef int (*store_reply_fn)(void *arg, const redisReply *r);

/* At most max commands in flight (default 1000): a full queue is sent before the next. */
void store_queue_limit(struct store *s, size_t max);

/*
 * Queues one command, with fn (NULL: an error reply marks the queue failed, its text in
 * store_error). Returns 0, or -1 once the connection broke during this queue's life:
 * nothing more is queued or sent until store_flush has reported it.
 */
int store_queue(struct store *s, const struct store_argv *cmd, store_reply_fn fn, void *arg);

/*
 * Queues EVAL of one of the embedded scripts, with its text; args starts with numkeys,
 * then the keys and the arguments. Not EVALSHA: a queued command cannot be sent again
 * after a NOSCRIPT reply (the script cache emptied during a run: SCRIPT FLUSH, a failover
 * behind a proxy), and inside MULTI/EXEC the transaction's other writes would commit
 * without it. Redis compiles the text once and keeps it by its SHA1.
 */
int store_queue_script(struct store *s, enum store_script which, const struct store_argv *args,
                       store_reply_fn fn, void *arg);

/*
 * Writes what is queued without waiting for the replies: Redis runs it while the caller
 * prepares more. The replies are read (and handed to their callbacks) by the next
 * store_flush, store_command or full queue. Returns 0, or -2 when the connection broke.
 */
int store_send(struct store *s);

/*
 * Sends what is queued and hands every reply to its callback. Returns 0; -1 when a reply
 * was an error or a callback failed since the last store_flush; -2 when the connection
 * broke meanwhile (store_error says why; what was queued after that was not sent).
 */
int store_flush(struct store *s);

/*
 * Sends one command and waits (after flushing the queue: call store_flush first to see
 * the queue's failures). Returns the reply (valid until store_replies_release or the next
 * queue round trip), NULL when Redis is not reachable (store_error: "redis: ..."). An
 * error reply is returned as such, with store_error "redis refused CMD: ...".
 */
redisReply *store_command(struct store *s, const struct store_argv *cmd);

/*
 * Ends the life of every reply returned since the last call (see the top of this file):
 * once per request, when no reply of it is used any more. Keeps the arena's first chunk
 * for the next request and frees the rest; cheap when the request read no reply.
 */
void store_replies_release(struct store *s);

/*
 * n bytes in the reply arena, for a typed result built from replies (store_read.h,
 * store_auth.h): valid as long as the replies, until store_replies_release. NULL when out
 * of memory.
 */
void *store_alloc(struct store *s, size_t n);

/*
 * A check run on every new connection, after the scripts are loaded (partnerd's: the
 * stored key layout, store_layout.h). It may send commands on s; it returns 0, or -1 with
 * the reason in msg: the connection is then dropped as if it had failed (back-off, calls
 * fail at once meanwhile), store_error gives msg and store_check_refused 1 until a later
 * connection passes the check.
 */
typedef int (*store_check_fn)(struct store *s, char *msg, size_t sz);

/*
 * Redis connections shared by the stores of a process (partnerd --redis-pipes N): N to the
 * one Redis of cfg (store_pipe.h), or N to each node of its cluster (cluster_share in
 * cluster.h); each connects at its first use. From store_share on, s's round trips
 * (store_eval, store_pipeline, store_run, store_command) go over connection k (mod N):
 * concurrent callers' commands reach Redis together. On one Redis, s's own connection is
 * still made (it loads the scripts, and its making runs the connect check, whose commands
 * go over the shared one like every other call) and carries the queue (store_queue); on a
 * cluster every call goes over the shared ones. sh must outlive s.
 */
struct store_share;
struct store_share *store_share_new(const struct rconn_cfg *cfg, int n);
void store_share(struct store *s, struct store_share *sh, int k);
void store_set_connect_check(struct store *s, store_check_fn fn);
int store_check_refused(const struct store *s);

/*
 * Connects now (and loads the scripts) rather than at the first request; 0 when connected.
 * On a cluster: loads the slot map and connects to every master (and runs the connect
 * check once).
 */
int store_warm(struct store *s);

/* PING; 0 when Redis answers (on a cluster: when every master answers). */
int store_ping(struct store *s);

/* ---- one Redis or a Redis Cluster ------------------------------------------------------ */

/*
 * A store is made for one Redis, or for a Redis Cluster when cfg->cluster holds a seed list
 * (docs/CLUSTER.md "The store on a cluster"). On a cluster every call above routes by key:
 * store_command, store_pipeline and store_queue by the command's first key (argv[1]; for
 * EVAL/EVALSHA the first of its KEYS), store_queue_script by its first key; a command with
 * no key (PING, TIME, INFO...) goes to any master. store_eval (a script with no KEYS) fails
 * there ("needs its keys on a cluster"); MULTI, EXEC, DISCARD, WATCH and UNWATCH are refused
 * (a transaction cannot span nodes); store_send does nothing (the queue runs, every node's
 * commands pipelined, at store_flush or when full). The connect check runs once per store,
 * at its first call, with its commands routed by key.
 */

/* 1 when the store talks to a Redis Cluster. */
int store_is_cluster(const struct store *s);

/* One command of a round, with the key that routes it on a cluster. */
struct store_op {
	const char *key;                /* its slot chooses the node (ignored on one Redis) */
	size_t keylen;
	int script;                     /* -1: argv is the command; else an enum store_script: */
	                                /* EVALSHA sha argv... (argv = numkeys, keys..., args...) */
	const struct store_argv *argv;
};

enum store_op_status {
	STORE_OP_OK,                    /* replies[i] is its reply (a value or its own error) */
	STORE_OP_UNAVAILABLE,           /* it did not run */
	STORE_OP_INDOUBT,               /* it was sent and its reply lost: it may have run */
};

/*
 * Runs ops[0..n) in one round: one pipelined round trip on one Redis (a NOSCRIPT reply
 * answered by EVAL with the text, in a second one, as store_eval does); on a cluster every
 * node's ops pipelined, all nodes written before any is read, MOVED/ASK/TRYAGAIN/
 * CLUSTERDOWN/... followed or retried until deadline_ms (monotonic, clock.h; 0: now + the
 * redis timeout). On one Redis a deadline_ms other than 0 bounds the reconnect and the
 * reads (each at most the redis timeout) and a reconnect is tried even during the back-off,
 * as store_resolve does; 0 is an ordinary call. replies[i] is op i's reply (valid until
 * store_replies_release; an error reply is the op's reply, with STORE_OP_OK) or NULL when
 * st[i] is not STORE_OP_OK. Counts as one round trip (two after NOSCRIPT). Returns 0 when
 * every op is STORE_OP_OK, -1 otherwise (store_error says why; store_maybe_ran is 1 when
 * an op is STORE_OP_INDOUBT).
 */
int store_run(struct store *s, const struct store_op *ops, size_t n, int64_t deadline_ms,
              redisReply **replies, enum store_op_status *st);

/* The number of masters (1 on one Redis); on a cluster the slot map is loaded first (0
 * when it cannot be). Masters are numbered in the order of their first slot. */
size_t store_masters(struct store *s);

/*
 * store_command on master i (0..store_masters-1): SCAN, INFO, DBSIZE, TIME... NULL when
 * that master cannot be reached (or i is out of range), with store_error saying why.
 */
redisReply *store_command_on(struct store *s, size_t master, const struct store_argv *cmd);

#endif
