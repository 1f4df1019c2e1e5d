/*
 * store_pipe: one Redis connection shared by several threads (store layer: store.c's on
 * one Redis, cluster.c's to each node of a cluster). Each caller writes its commands under the pipe's mutex and waits for its
 * replies; one caller at a time reads for all of them, in the order they were written, so
 * the commands of concurrent callers reach Redis together and Redis reads and answers
 * several per event instead of one per connection (docs/PERFORMANCE.md: auto-pipelining).
 *
 * Replies are copied into each caller's arena (rarena), so a caller that gives up at its
 * deadline leaves nothing behind: the replies still owed to it are read and dropped by
 * whoever reads next. A write cut short, an I/O or a protocol error breaks the pipe: every
 * caller waiting on it gets an error (its commands may have run), and the next call
 * connects again.
 */
#ifndef PARTNERD_STORE_PIPE_H
#define PARTNERD_STORE_PIPE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "rarena.h"
#include "rconn.h"

struct store_pipe;

/* A pipe to the Redis of cfg (one Redis, not a cluster); it connects at its first call. */
struct store_pipe *store_pipe_new(const struct rconn_cfg *cfg);

/* Closes it; nobody may be using it. */
void store_pipe_free(struct store_pipe *p);

/* What a call did (store_pipe_trip, store_pipe_send, store_pipe_wait). */
struct store_pipe_result {
	size_t got;             /* replies read into out[0..got) */
	int sent;               /* some of the commands' bytes were written (they may have run) */
	size_t written;         /* how many of them: a command that begins at or after this */
	                        /* offset did not reach Redis */
	int unreachable;        /* no connection could be made (nothing was written) */
	int reconnects;         /* connections found closed before a write (a new one is made) */
	char err[200];          /* why it failed */
};

/*
 * Writes the n commands of text[0..len) and reads their n replies into out, built in
 * arena. Gives up at deadline_ms (monotonic ms). A write that fails before its first byte
 * left because the connection was gone is made once more on a new one. Returns 0, or -1
 * with res telling how far it got.
 */
int store_pipe_trip(struct store_pipe *p, const char *text, size_t len, size_t n, redisReply **out,
                    struct rarena *arena, int64_t deadline_ms, struct store_pipe_result *res);

/*
 * A caller's place among the pipe's waiters, from store_pipe_send to store_pipe_wait. The
 * caller provides it and keeps it alive in between; its fields are the pipe's.
 */
struct store_pipe_call {
	size_t n, got;          /* replies owed, read */
	redisReply **out;
	struct rarena *arena;   /* NULL: a ghost (its caller left): replies are dropped */
	int done, failed;
	int waiting;            /* its thread sleeps on cv (a hand-over may wake it) */
	pthread_cond_t cv;
	struct store_pipe_call *next;
};

/*
 * store_pipe_trip in two halves, so that a caller can send to several pipes before it
 * waits on any (the cluster router sends a round to every node, then reads each).
 * store_pipe_send writes the n commands of text[0..len) and queues call for their replies;
 * 0: written, and store_pipe_wait(call) must follow, even after the deadline (it is what
 * lets go of call); -1: call is not queued (res tells how much was written). Replies may
 * be copied into arena by another caller of the pipe until store_pipe_wait returns: an
 * arena is given to one call in flight at a time.
 */
int store_pipe_send(struct store_pipe *p, const char *text, size_t len, size_t n, redisReply **out,
                    struct rarena *arena, int64_t deadline_ms, struct store_pipe_call *call,
                    struct store_pipe_result *res);

/* Waits for call's replies until deadline_ms: 0 when all are in, else -1 (res->got, res->err). */
int store_pipe_wait(struct store_pipe *p, struct store_pipe_call *call, int64_t deadline_ms,
                    struct store_pipe_result *res);

#endif
