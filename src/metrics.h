/*
 * metrics: process-wide counters in Prometheus text format (SPEC §6). Every worker
 * thread updates them with relaxed atomics; the metrics route renders a snapshot.
 */
#ifndef PARTNERD_METRICS_H
#define PARTNERD_METRICS_H

#include <stddef.h>

/* Counts a finished request: its route name ("-" for none), HTTP status and duration. */
void metrics_request(const char *route, int status, double seconds);

/* Counts the Redis round trips a finished request made (each a set of calls pipelined to
 * every node it needs, written before any reply is read), by route. */
void metrics_redis_rounds(const char *route, unsigned long n);

/* Counts one item outcome (200, 2002, ...) or customer-level code (8015, ...). */
void metrics_item(int code);

/* Redis: a call that failed (connection, timeout, script error). */
void metrics_redis_error(void);

/* Locks: a retry round because a customer was busy; a customer given up with 2010. */
void metrics_lock_wait(void);
void metrics_lock_timeout(void);
/* A commit refused by the fence (token or version changed). */
void metrics_fenced(void);

/* Logins: a failed password check (or unknown username); a 429 for too many failures (by
 * address or by username) without hashing; a 503 because no password check could start. */
void metrics_login_failed(void);
void metrics_login_limited(int by_addr);
void metrics_login_busy(void);
/* n Redis round trips made by one credential check (also in its request's route count). */
void metrics_login_rounds(unsigned long n);
/* A connection found closed before a command was sent on it, replaced at once. */
void metrics_redis_reconnect(void);

/* Outcomes of resolving a commit whose reply was lost (per customer). */
enum metrics_in_doubt { MI_APPLIED, MI_NOT_APPLIED, MI_UNKNOWN, MI_FAILED, MI_N };
void metrics_in_doubt(enum metrics_in_doubt outcome);

/* Renders all metrics; the caller frees the result. */
char *metrics_render(size_t *len);

#endif
