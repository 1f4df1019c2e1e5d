/*
 * store_pipe: one Redis connection shared by several threads (see store_pipe.h).
 *
 * Callers queue up in write order (a list of waiters). The caller that finds nobody
 * reading becomes the reader: it reads replies for the waiter at the head of the list
 * until its own replies are in, then hands the role to the first waiter still waiting.
 * Replies are parsed in the pipe's own arena (only the reader touches it) and copied into
 * the owner's arena under the mutex, so a waiter that leaves at its deadline is never
 * written to afterwards: it leaves a ghost in the list that takes its remaining replies.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* POLLRDHUP: a closed peer seen without reading */
#endif
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "resp.h"
#include "store_pipe.h"

#define SCRATCH_CHUNK (64 * 1024)
#define LATE_READS_MAX 16       /* reads of what had come, after the reader's deadline */

struct store_pipe {
	pthread_mutex_t mu;
	pthread_condattr_t cattr;
	struct rconn_cfg cfg;
	redisContext *c;        /* NULL until connected, and after a break */
	redisContext *reader_c; /* the connection the reader reads (while reading) */
	redisContext *old;      /* a broken connection the reader still reads: it frees it */
	struct store_pipe_call *head, *tail;
	int reading;            /* a caller reads for everyone */
	struct rarena scratch;  /* replies as parsed, before their copy (the reader's) */
	char why[160];          /* what broke the last connection */
};

struct store_pipe *
store_pipe_new(const struct rconn_cfg *cfg)
{
	struct store_pipe *p = calloc(1, sizeof(*p));

	if (p == NULL)
		abort();
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&p->cattr);
	pthread_condattr_setclock(&p->cattr, CLOCK_MONOTONIC);
	p->cfg = *cfg;
	rarena_init(&p->scratch, SCRATCH_CHUNK);
	return p;
}

void
store_pipe_free(struct store_pipe *p)
{
	if (p == NULL)
		return;
	if (p->c != NULL)
		redisFree(p->c);
	if (p->old != NULL)
		redisFree(p->old);
	while (p->head != NULL) {       /* ghosts only: nobody may be calling */
		struct store_pipe_call *g = p->head;

		p->head = g->next;
		if (g->arena == NULL)
			free(g);
	}
	rarena_free(&p->scratch);
	pthread_condattr_destroy(&p->cattr);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/*
 * Wakes the first caller asleep on the pipe, so that it becomes the reader. Not the first
 * that has a thread: that one may not wait yet (a cluster router waits on its nodes one
 * after the other), and a signal to nobody would leave every sleeper behind it asleep
 * until its deadline. A caller that comes to wait later reads itself when nobody does.
 */
static void
hand_over(struct store_pipe *p)
{
	struct store_pipe_call *w;

	for (w = p->head; w != NULL; w = w->next)
		if (w->arena != NULL && w->waiting) {
			pthread_cond_signal(&w->cv);
			return;
		}
}

/* Fails every waiter (their replies will never come) and forgets them. */
static void
fail_all(struct store_pipe *p)
{
	struct store_pipe_call *w = p->head, *next;

	for (; w != NULL; w = next) {
		next = w->next;
		w->done = w->failed = 1;
		if (w->arena == NULL)
			free(w);
		else
			pthread_cond_signal(&w->cv);
	}
	p->head = p->tail = NULL;
}

/*
 * Breaks the connection (a write cut short, an I/O or protocol error): its waiters fail.
 * A reader may still be blocked on it: then its socket is shut down (the reader wakes
 * with an error) and the reader frees it.
 */
static void
pipe_break(struct store_pipe *p, const char *why)
{
	snprintf(p->why, sizeof(p->why), "%s", why);
	fail_all(p);
	if (p->c == NULL)
		return;
	if (p->reading && p->reader_c == p->c) {
		shutdown(p->c->fd, SHUT_RDWR);
		p->old = p->c;
	} else {
		redisFree(p->c);
	}
	p->c = NULL;
}

/* The deadline as the absolute CLOCK_MONOTONIC time pthread_cond_timedwait takes. */
static struct timespec
abs_time(int64_t deadline_ms)
{
	struct timespec now, ts;
	int64_t left = deadline_ms - mono_ms();

	if (left < 0)
		left = 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ts.tv_sec = now.tv_sec + left / 1000;
	ts.tv_nsec = now.tv_nsec + (left % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/*
 * The next reply on c, parsed in the pipe's scratch arena (called without the mutex, by
 * the reader only). 1: a reply; 0: the deadline came first (and nothing more had come, or
 * *late reached its bound); -1: an I/O or protocol error.
 */
static int
next_reply(redisContext *c, void **r, int64_t deadline_ms, int *late)
{
	for (;;) {
		struct pollfd pf = { .fd = c->fd, .events = POLLIN };
		int64_t left;
		int rc;

		*r = NULL;
		if (redisReaderGetReply(c->reader, r) != REDIS_OK)
			return -1;
		if (*r != NULL)
			return 1;
		left = deadline_ms - mono_ms();
		if (left <= 0) {
			/*
			 * Past the deadline what has come is still read (a caller that comes to
			 * wait late, after waiting on other nodes' pipes, finds its replies there),
			 * a bounded number of reads: a busy connection does not keep it reading.
			 */
			left = 0;
			if ((*late)++ >= LATE_READS_MAX)
				return 0;
		}
		rc = poll(&pf, 1, left > 60000 ? 60000 : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -1;
		if (rc == 0 && left == 0)
			return 0;
		if (rc == 0)
			continue;       /* the deadline is checked again */
		if (redisBufferRead(c) != REDIS_OK)
			return -1;
	}
}

/*
 * Whether me's next reply is the connection's next one (only ghosts ahead of it). A caller
 * whose deadline comes then is the one a stuck connection keeps waiting: the connection is
 * dropped, as a worker's own is after a timeout (SPEC §6), so that what comes next (the
 * resolution of a commit in doubt, a retry) goes out on a new one; the callers behind it
 * fail too (their replies would come after the stuck one).
 */
static int
at_head(const struct store_pipe *p, const struct store_pipe_call *me)
{
	const struct store_pipe_call *w;

	for (w = p->head; w != NULL && w != me; w = w->next)
		if (w->arena != NULL)
			return 0;
	return w == me;
}

/*
 * Reads for everyone until me's replies are in, the connection breaks or me's deadline
 * comes (mutex held on entry and on return).
 */
static void
read_for_all(struct store_pipe *p, struct store_pipe_call *me, int64_t deadline_ms)
{
	int late = 0;

	p->reading = 1;
	while (!me->done) {
		redisContext *c = p->c;
		void *r = NULL;
		int rc;

		p->reader_c = c;
		pthread_mutex_unlock(&p->mu);
		rc = next_reply(c, &r, deadline_ms, &late);
		pthread_mutex_lock(&p->mu);
		if (c != p->c) {
			/* a writer broke it meanwhile: every waiter of it has failed */
			if (p->old == c)
				p->old = NULL;
			redisFree(c);
			rarena_reset(&p->scratch);
			break;
		}
		if (rc < 0) {
			char why[160];

			snprintf(why, sizeof(why), "%s", c->err ? c->errstr
			         : c->reader->err ? c->reader->errstr : strerror(errno));
			p->reading = 0;         /* so that pipe_break frees c: nobody reads it */
			pipe_break(p, why[0] ? why : "I/O error");
			rarena_reset(&p->scratch);
			break;
		}
		if (rc == 0) {
			/* my time is up; the reply in progress stays buffered, unless it is stuck */
			if (at_head(p, me)) {
				p->reading = 0;
				pipe_break(p, "no reply in time");
				rarena_reset(&p->scratch);
			}
			break;
		}
		{
			struct store_pipe_call *w = p->head;     /* me is in the list and not done: not NULL */

			if (w->arena != NULL) {
				w->out[w->got] = rarena_copy_reply(w->arena, r);
				if (w->out[w->got] == NULL)
					abort();        /* out of memory, as elsewhere in the store */
			}
			w->got++;
			rarena_reset(&p->scratch);
			if (w->got == w->n) {
				p->head = w->next;
				if (p->head == NULL)
					p->tail = NULL;
				w->done = 1;
				if (w->arena == NULL)
					free(w);
				else if (w != me)
					pthread_cond_signal(&w->cv);
			}
		}
	}
	p->reading = 0;
	p->reader_c = NULL;
}

/* me leaves before its replies are in: a ghost takes its place in the list. */
static void
leave(struct store_pipe *p, struct store_pipe_call *me)
{
	struct store_pipe_call **at, *g;

	for (at = &p->head; *at != NULL && *at != me; at = &(*at)->next)
		;
	if (*at == NULL)
		return;         /* failed and forgotten meanwhile */
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		abort();
	g->n = me->n;
	g->got = me->got;
	g->next = me->next;
	*at = g;
	if (p->tail == me)
		p->tail = g;
}

/*
 * Whether nobody waits on the connection but ghosts, and Redis closed it (a restart, a
 * kill, its idle timeout). With ghosts, replies nobody waits for may be buffered: only a
 * hang-up counts then, not readable bytes.
 */
static int
idle_and_closed(const struct store_pipe *p)
{
	const struct store_pipe_call *w;
	struct pollfd pf = { .fd = p->c->fd, .events = POLLRDHUP };

	if (p->head == NULL)
		return rconn_gone(p->c);
	for (w = p->head; w != NULL; w = w->next)
		if (w->arena != NULL)
			return 0;       /* someone waits: its reader will find out */
	if (p->c->err)
		return 1;
	return poll(&pf, 1, 0) > 0 && (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* Connects (mutex held). 0, or -1 with res->err. */
static int
connect_pipe(struct store_pipe *p, int64_t deadline_ms, struct store_pipe_result *res)
{
	struct rconn_cfg cfg = p->cfg;
	int64_t left = deadline_ms - mono_ms();
	char err[200];

	if (left <= 0) {
		snprintf(res->err, sizeof(res->err), "redis: no time left to connect");
		return -1;
	}
	if (cfg.timeout_ms <= 0 || left < cfg.timeout_ms)
		cfg.timeout_ms = (int)left;
	p->c = rconn_connect(&cfg, err, sizeof(err));
	if (p->c == NULL) {
		snprintf(res->err, sizeof(res->err), "redis: %.180s", err);
		res->unreachable = 1;
		return -1;
	}
	if (cfg.timeout_ms != p->cfg.timeout_ms && p->cfg.timeout_ms > 0) {
		struct timeval tv = { .tv_sec = p->cfg.timeout_ms / 1000,
		                      .tv_usec = (p->cfg.timeout_ms % 1000) * 1000 };

		redisSetTimeout(p->c, tv);      /* writes block at most the configured time */
	}
	{
		/*
		 * Named, so that CLIENT LIST tells the shared connections from the workers' own.
		 * A user not allowed CLIENT (an ACL, a proxy) gets an error reply: the name is
		 * then left out; only an I/O error fails the connect.
		 */
		redisReply *r = redisCommand(p->c, "CLIENT SETNAME partnerd-pipe");

		if (r != NULL)
			freeReplyObject(r);
		if (r == NULL) {
			snprintf(res->err, sizeof(res->err), "redis: CLIENT SETNAME: %.150s", p->c->errstr);
			redisFree(p->c);
			p->c = NULL;
			return -1;
		}
	}
	rarena_attach(p->c->reader, &p->scratch);
	return 0;
}

/*
 * Writes text on the connection, connecting first when there is none (mutex held): an
 * idle connection found closed (a Redis restart) is replaced before anything is written
 * on it, as a worker's own connection is (SPEC §6), and a write that fails before its
 * first byte left because the connection was gone is made once more on a new one. A busy
 * connection is watched by its reader. Returns 0, or -1 with res->err and res->sent.
 */
static int
write_locked(struct store_pipe *p, const char *text, size_t len, int64_t deadline_ms,
             struct store_pipe_result *res)
{
	int retry = 1;

	for (;;) {
		size_t sent;
		int e;

		if (p->c != NULL && !p->reading && idle_and_closed(p)) {
			pipe_break(p, "the connection was closed");
			res->reconnects++;
		}
		if (p->c == NULL && connect_pipe(p, deadline_ms, res) != 0)
			return -1;
		if (mono_ms() >= deadline_ms) {
			snprintf(res->err, sizeof(res->err), "redis: no time left");
			return -1;      /* nothing was written: it did not run */
		}
		sent = resp_write(p->c->fd, text, len);
		res->written = sent;
		if (sent == len) {
			res->sent = len > 0;
			return 0;
		}
		e = errno;
		pipe_break(p, strerror(e));
		snprintf(res->err, sizeof(res->err), "redis: %s", p->why);
		if (sent > 0 || !retry || (e != EPIPE && e != ECONNRESET)) {
			res->sent = sent > 0;
			return -1;
		}
		retry = 0;
		res->reconnects++;
	}
}

/*
 * me (queued) waits until its replies are in, reading for everyone when nobody else does,
 * or until its deadline (mutex held on entry and on return).
 */
static void
wait_replies(struct store_pipe *p, struct store_pipe_call *me, int64_t deadline_ms)
{
	while (!me->done) {
		struct timespec ts;
		int rc;

		if (!p->reading) {
			read_for_all(p, me, deadline_ms);
			if (!me->done)
				leave(p, me);
			hand_over(p);
			return;
		}
		ts = abs_time(deadline_ms);
		me->waiting = 1;
		rc = pthread_cond_timedwait(&me->cv, &p->mu, &ts);
		me->waiting = 0;
		if (rc == ETIMEDOUT && !me->done && mono_ms() >= deadline_ms) {
			if (at_head(p, me)) {
				pipe_break(p, "no reply in time");      /* me fails with them */
				return;
			}
			leave(p, me);
			if (!p->reading)
				hand_over(p);
			return;
		}
	}
}

int
store_pipe_send(struct store_pipe *p, const char *text, size_t len, size_t n, redisReply **out,
                struct rarena *arena, int64_t deadline_ms, struct store_pipe_call *call,
                struct store_pipe_result *res)
{
	memset(res, 0, sizeof(*res));
	memset(call, 0, sizeof(*call));
	call->n = n;
	call->out = out;
	call->arena = arena;
	pthread_mutex_lock(&p->mu);
	if (write_locked(p, text, len, deadline_ms, res) != 0) {
		pthread_mutex_unlock(&p->mu);
		return -1;
	}
	pthread_cond_init(&call->cv, &p->cattr);
	if (n == 0) {
		call->done = 1;
	} else {
		if (p->tail != NULL)
			p->tail->next = call;
		else
			p->head = call;
		p->tail = call;
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int
store_pipe_wait(struct store_pipe *p, struct store_pipe_call *call, int64_t deadline_ms,
                struct store_pipe_result *res)
{
	int rc = -1;

	pthread_mutex_lock(&p->mu);
	if (!call->done)
		wait_replies(p, call, deadline_ms);
	res->got = call->got;
	if (call->done && !call->failed)
		rc = 0;
	else if (call->failed)
		snprintf(res->err, sizeof(res->err), "redis: %s", p->why[0] ? p->why : "I/O error");
	else
		snprintf(res->err, sizeof(res->err), "redis: no reply in time");
	pthread_mutex_unlock(&p->mu);
	pthread_cond_destroy(&call->cv);
	return rc;
}

int
store_pipe_trip(struct store_pipe *p, const char *text, size_t len, size_t n, redisReply **out,
                struct rarena *arena, int64_t deadline_ms, struct store_pipe_result *res)
{
	struct store_pipe_call call;

	if (store_pipe_send(p, text, len, n, out, arena, deadline_ms, &call, res) != 0)
		return -1;
	return store_pipe_wait(p, &call, deadline_ms, res);
}
