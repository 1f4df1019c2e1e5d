/*
 * handler: what every route handler is given and shares, below the route table (routes.c)
 * and the handlers (write.c's pipeline, reads.c): the settings, the outcome for the
 * log line, authentication as HTTP answers and the answer for an unavailable store.
 */
#ifndef PARTNERD_HANDLER_H
#define PARTNERD_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
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

/*
 * Authenticates the request (auth_check, with the client address nginx passes as
 * REMOTE_ADDR). Returns 0 with *org filled, or -1 after answering it: 401 with
 * WWW-Authenticate; 429 with Retry-After (too many failed logins for the username or
 * from the address); 503 with Retry-After (too many password checks at once, or Redis
 * cannot be asked).
 */
int handler_authenticate(struct store *st, struct http_req *r, struct auth_org *org,
                         struct routes_outcome *out);

/*
 * Answers 503 (with Retry-After) for a store failure before anything was applied: says that
 * the store is out of memory when Redis refused a write at maxmemory (store_error holds its
 * OOM reply), else gives message.
 */
void handler_store_unavailable(struct store *st, struct http_req *r, struct routes_outcome *out,
                               const char *message);

#endif
