/*
 * routes: the route table and the handlers. The three write routes are one pipeline
 * (parse, auth, resolve+lock+read, rules, fenced commit, respond) driven by a
 * description of each route's field names (request.h req_names).
 */
#ifndef PARTNERD_ROUTES_H
#define PARTNERD_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "store.h"

struct routes_cfg {
	size_t max_body;                /* request body cap, bytes */
	int lock_ttl_ms;                /* expiry of a customer lock */
	int lock_wait_ms;               /* bound on waiting for a busy lock (then 2010) */
	int rate_limit;                 /* requests per minute per credential; 0: no limit */
	int history_max;                /* history entries kept per customer */
	int feed_max;                   /* approximate length bound of an org's change feed */
};

/* What one request did, for the log line. */
struct routes_outcome {
	const char *route;              /* route name or "-" */
	int status;                     /* HTTP status answered */
	char org[65];                   /* org of the credential, or "-" */
	int items_ok, items_failed;
};

struct auth_org;

/*
 * Authenticates the request (auth_check, with the client address nginx passes as
 * REMOTE_ADDR). Returns 0 with *org filled, or -1 after answering it: 401 with
 * WWW-Authenticate; 429 with Retry-After (too many failed logins for the username or
 * from the address); 503 with Retry-After (too many password checks at once, or Redis
 * cannot be asked).
 */
int routes_authenticate(struct store *st, struct http_req *r, struct auth_org *org,
                        struct routes_outcome *out);

/*
 * Answers 503 (with Retry-After) for a store failure before anything was applied: says that
 * the store is out of memory when Redis refused a write at maxmemory (store_error holds its
 * OOM reply), else gives message.
 */
void routes_store_unavailable(struct store *st, struct http_req *r, struct routes_outcome *out,
                              const char *message);

/* Serves one request on a worker's store. */
/* Frees what the calling worker thread cached (program definitions); call before it exits. */
void routes_thread_exit(void);

void routes_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
                   struct routes_outcome *out);

#endif
