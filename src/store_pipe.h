/*
 * store_pipe: one Redis connection shared by several threads (store layer; only store.c
 * uses it). Each caller writes its commands under the pipe's mutex and waits for its
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

/* What a call did (store_pipe_trip). */
struct store_pipe_result {
	size_t got;             /* replies read into out[0..got) */
	int sent;               /* some of the commands' bytes were written (they may have run) */
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

#endif
