/*
 * metrics: process-wide counters (see metrics.h).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "metrics.h"

static const char *const route_names[] = {
	"linkCustomer", "customerPartnerProgramUpdate", "deLinkCustomer",
	"customerPartnerPrograms", "customerActivityHistory", "health", "metrics", "-",
};
#define NROUTES (sizeof(route_names) / sizeof(route_names[0]))

static const int statuses[] = { 200, 400, 401, 404, 405, 409, 411, 413, 415, 422, 429, 500, 503 };
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))      /* plus one slot: other */

static const int codes[] = { 200, 400, 1000, 2001, 2011, 2002, 2003, 2004, 2005, 2006, 2007, 2009,
                             2010, 2101, 2102, 2103, 2104, 2105, 8015, 8016 };
#define NCODES (sizeof(codes) / sizeof(codes[0]))

/* Latency buckets, seconds (upper bounds); the last counter is +Inf. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static atomic_ulong requests[NROUTES][NSTATUS + 1];
static atomic_ulong latency[NROUTES][NBUCKETS + 1];
static atomic_ulong latency_sum_us[NROUTES];
static atomic_ulong rounds[NROUTES];
static atomic_ulong items[NCODES + 1];
static atomic_ulong login_failed, login_limited_user, login_limited_addr, login_busy, login_rounds;
static atomic_ulong redis_errors, lock_waits, lock_timeouts, fenced, redis_reconnects;
static atomic_ulong in_doubt[MI_N];
static const char *const in_doubt_names[MI_N] = {
	[MI_APPLIED] = "applied", [MI_NOT_APPLIED] = "not_applied",
	[MI_UNKNOWN] = "unknown", [MI_FAILED] = "failed",
};

static size_t
route_index(const char *route)
{
	size_t i;

	for (i = 0; i + 1 < NROUTES; i++)
		if (strcmp(route, route_names[i]) == 0)
			return i;
	return NROUTES - 1;
}

void
metrics_request(const char *route, int status, double seconds)
{
	size_t r = route_index(route), s, b;

	for (s = 0; s < NSTATUS && statuses[s] != status; s++)
		;
	atomic_fetch_add_explicit(&requests[r][s], 1, memory_order_relaxed);
	for (b = 0; b < NBUCKETS && seconds > buckets[b]; b++)
		;
	atomic_fetch_add_explicit(&latency[r][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&latency_sum_us[r], (unsigned long)(seconds * 1e6), memory_order_relaxed);
}

void
metrics_redis_rounds(const char *route, unsigned long n)
{
	atomic_fetch_add_explicit(&rounds[route_index(route)], n, memory_order_relaxed);
}

void
metrics_item(int code)
{
	size_t c;

	for (c = 0; c < NCODES && codes[c] != code; c++)
		;
	atomic_fetch_add_explicit(&items[c], 1, memory_order_relaxed);
}

void metrics_redis_error(void) { atomic_fetch_add_explicit(&redis_errors, 1, memory_order_relaxed); }
void metrics_lock_wait(void) { atomic_fetch_add_explicit(&lock_waits, 1, memory_order_relaxed); }
void metrics_lock_timeout(void) { atomic_fetch_add_explicit(&lock_timeouts, 1, memory_order_relaxed); }
void metrics_fenced(void) { atomic_fetch_add_explicit(&fenced, 1, memory_order_relaxed); }
void metrics_login_failed(void) { atomic_fetch_add_explicit(&login_failed, 1, memory_order_relaxed); }
void metrics_login_busy(void) { atomic_fetch_add_explicit(&login_busy, 1, memory_order_relaxed); }

void
metrics_login_rounds(unsigned long n)
{
	atomic_fetch_add_explicit(&login_rounds, n, memory_order_relaxed);
}

void
metrics_login_limited(int by_addr)
{
	atomic_fetch_add_explicit(by_addr ? &login_limited_addr : &login_limited_user, 1, memory_order_relaxed);
}

void metrics_redis_reconnect(void) { atomic_fetch_add_explicit(&redis_reconnects, 1, memory_order_relaxed); }

void
metrics_in_doubt(enum metrics_in_doubt outcome)
{
	if (outcome < MI_N)
		atomic_fetch_add_explicit(&in_doubt[outcome], 1, memory_order_relaxed);
}

static unsigned long
get(atomic_ulong *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

/* partnerd_requests_total: by route and status. */
static void
render_requests(struct buf *b)
{
	size_t r, s;

	buf_appendf(b, "# HELP partnerd_requests_total Requests answered, by route and HTTP status.\n"
	               "# TYPE partnerd_requests_total counter\n");
	for (r = 0; r < NROUTES; r++) {
		for (s = 0; s <= NSTATUS; s++) {
			unsigned long n = get(&requests[r][s]);

			if (n == 0)
				continue;
			if (s < NSTATUS)
				buf_appendf(b, "partnerd_requests_total{route=\"%s\",status=\"%d\"} %lu\n",
				            route_names[r], statuses[s], n);
			else
				buf_appendf(b, "partnerd_requests_total{route=\"%s\",status=\"other\"} %lu\n",
				            route_names[r], n);
		}
	}
}

/* partnerd_redis_round_trips_total: by route, for the routes that made any. */
static void
render_rounds(struct buf *b)
{
	size_t r;

	buf_appendf(b, "# HELP partnerd_redis_round_trips_total Redis round trips made by requests, by route "
	               "(on a cluster: rounds, each pipelined to every master it needs at once).\n"
	               "# TYPE partnerd_redis_round_trips_total counter\n");
	for (r = 0; r < NROUTES; r++)
		if (get(&rounds[r]) > 0)
			buf_appendf(b, "partnerd_redis_round_trips_total{route=\"%s\"} %lu\n", route_names[r],
			            get(&rounds[r]));
}

/* partnerd_request_duration_seconds: a histogram per route that answered a request. */
static void
render_latency(struct buf *b)
{
	size_t r, k;

	buf_appendf(b, "# HELP partnerd_request_duration_seconds Time from accepting a request to its answer.\n"
	               "# TYPE partnerd_request_duration_seconds histogram\n");
	for (r = 0; r < NROUTES; r++) {
		unsigned long cum = 0;

		for (k = 0; k <= NBUCKETS; k++)
			cum += get(&latency[r][k]);
		if (cum == 0)
			continue;
		cum = 0;
		for (k = 0; k <= NBUCKETS; k++) {
			cum += get(&latency[r][k]);
			if (k < NBUCKETS)
				buf_appendf(b, "partnerd_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %lu\n",
				            route_names[r], buckets[k], cum);
			else
				buf_appendf(b, "partnerd_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n",
				            route_names[r], cum);
		}
		buf_appendf(b, "partnerd_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
		            route_names[r], (double)get(&latency_sum_us[r]) / 1e6);
		buf_appendf(b, "partnerd_request_duration_seconds_count{route=\"%s\"} %lu\n", route_names[r], cum);
	}
}

/* partnerd_items_total: by code. */
static void
render_items(struct buf *b)
{
	size_t k;

	buf_appendf(b, "# HELP partnerd_items_total Item and customer outcomes of the write routes, by code.\n"
	               "# TYPE partnerd_items_total counter\n");
	for (k = 0; k <= NCODES; k++) {
		unsigned long n = get(&items[k]);

		if (n == 0)
			continue;
		if (k < NCODES)
			buf_appendf(b, "partnerd_items_total{code=\"%d\"} %lu\n", codes[k], n);
		else
			buf_appendf(b, "partnerd_items_total{code=\"other\"} %lu\n", n);
	}
}

/* The single counters: Redis, locks, logins, reconnects, commits in doubt. */
static void
render_counters(struct buf *b)
{
	size_t k;

	buf_appendf(b, "# HELP partnerd_redis_errors_total Redis calls that failed (connection, timeout, script error).\n"
	               "# TYPE partnerd_redis_errors_total counter\n"
	               "partnerd_redis_errors_total %lu\n"
	               "# HELP partnerd_lock_waits_total Retry rounds of write requests: a customer was locked "
	               "by another request, or a membership id it named was claimed by another customer meanwhile.\n"
	               "# TYPE partnerd_lock_waits_total counter\n"
	               "partnerd_lock_waits_total %lu\n"
	               "# HELP partnerd_lock_timeouts_total Customers given up with 2010 after waiting for their lock.\n"
	               "# TYPE partnerd_lock_timeouts_total counter\n"
	               "partnerd_lock_timeouts_total %lu\n"
	               "# HELP partnerd_commits_fenced_total Customer commits refused because the lock or version changed.\n"
	               "# TYPE partnerd_commits_fenced_total counter\n"
	               "partnerd_commits_fenced_total %lu\n",
	            get(&redis_errors), get(&lock_waits), get(&lock_timeouts), get(&fenced));
	buf_appendf(b, "# HELP partnerd_login_failures_total Failed logins: wrong password or unknown username.\n"
	               "# TYPE partnerd_login_failures_total counter\n"
	               "partnerd_login_failures_total %lu\n"
	               "# HELP partnerd_login_limited_total Logins refused with 429 for too many failures, without a password check.\n"
	               "# TYPE partnerd_login_limited_total counter\n"
	               "partnerd_login_limited_total{by=\"username\"} %lu\n"
	               "partnerd_login_limited_total{by=\"address\"} %lu\n"
	               "# HELP partnerd_login_busy_total Logins answered 503 because no password check could start in time.\n"
	               "# TYPE partnerd_login_busy_total counter\n"
	               "partnerd_login_busy_total %lu\n"
	               "# HELP partnerd_login_redis_round_trips_total Redis round trips of credential checks (cache misses, refreshes, "
	               "failures counted); each is also in its request's partnerd_redis_round_trips_total.\n"
	               "# TYPE partnerd_login_redis_round_trips_total counter\n"
	               "partnerd_login_redis_round_trips_total %lu\n",
	            get(&login_failed), get(&login_limited_user), get(&login_limited_addr), get(&login_busy),
	            get(&login_rounds));
	buf_appendf(b, "# HELP partnerd_redis_reconnects_total Connections found closed before a command was sent, replaced at once.\n"
	               "# TYPE partnerd_redis_reconnects_total counter\n"
	               "partnerd_redis_reconnects_total %lu\n"
	               "# HELP partnerd_commits_in_doubt_total Customers whose commit reply was lost, by what resolving it found "
	               "(failed: the resolution itself did not succeed in time; items answered 2011 for it and for unknown).\n"
	               "# TYPE partnerd_commits_in_doubt_total counter\n",
	            get(&redis_reconnects));
	for (k = 0; k < MI_N; k++)
		buf_appendf(b, "partnerd_commits_in_doubt_total{outcome=\"%s\"} %lu\n", in_doubt_names[k],
		            get(&in_doubt[k]));
}

char *
metrics_render(size_t *len)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	render_requests(&b);
	render_latency(&b);
	render_rounds(&b);
	render_items(&b);
	render_counters(&b);
	*len = b.len;
	return buf_take(&b);
}
