/*
 * routes: the route table, its dispatch, and the two small routes (see routes.h). The
 * write routes are write.c's, the read routes reads.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "progcache.h"
#include "reads.h"
#include "request.h"
#include "routes.h"
#include "write.h"

struct route {
	const char *method;
	const char *path;
	const char *name;               /* for logs and metrics */
	int kind;                       /* handler-specific: enum req_kind, enum reads_kind */
	void (*handler)(const struct routes_cfg *, struct store *, struct http_req *, int kind,
	                struct routes_outcome *);
};

static void handle_health(const struct routes_cfg *, struct store *, struct http_req *, int,
                          struct routes_outcome *);
static void handle_metrics(const struct routes_cfg *, struct store *, struct http_req *, int,
                           struct routes_outcome *);

static const struct route route_table[] = {
	{ .method = "POST", .path = "/v2/partnerProgram/linkCustomer", .name = "linkCustomer",
	  .kind = REQ_LINK, .handler = write_handle },
	{ .method = "POST", .path = "/v2/partnerProgram/customerPartnerProgramUpdate",
	  .name = "customerPartnerProgramUpdate", .kind = REQ_UPDATE, .handler = write_handle },
	{ .method = "POST", .path = "/v2/partnerProgram/deLinkCustomer", .name = "deLinkCustomer",
	  .kind = REQ_DELINK, .handler = write_handle },
	{ .method = "GET", .path = "/v2/partnerProgram/customerPartnerPrograms",
	  .name = "customerPartnerPrograms", .kind = READS_PROGRAMS, .handler = reads_handle },
	{ .method = "GET", .path = "/v2/partnerProgram/customerActivityHistory",
	  .name = "customerActivityHistory", .kind = READS_HISTORY, .handler = reads_handle },
	{ .method = "GET", .path = "/v2/partnerProgram/health", .name = "health",
	  .handler = handle_health },
	{ .method = "GET", .path = "/v2/partnerProgram/metrics", .name = "metrics",
	  .handler = handle_metrics },
};

void
routes_thread_exit(void)
{
	req_thread_exit();
	progcache_thread_exit();
}

static void
handle_health(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
              struct routes_outcome *out)
{
	static const char ok[] = "{\"status\":\"ok\",\"redis\":\"ok\"}";
	static const char down[] = "{\"status\":\"unavailable\",\"redis\":\"unreachable\"}";

	(void)cfg;
	(void)kind;
	if (store_ping(st) == 0) {
		out->status = 200;
		http_respond(r, 200, NULL, ok, sizeof(ok) - 1);
	} else {
		out->status = 503;
		http_respond(r, 503, "Retry-After: 1\r\n", down, sizeof(down) - 1);
	}
}

static void
handle_metrics(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
               struct routes_outcome *out)
{
	size_t len;
	char *text = metrics_render(&len);

	(void)cfg;
	(void)st;
	(void)kind;
	out->status = 200;
	http_respond_type(r, 200, "text/plain; version=0.0.4", NULL, text, len);
	free(text);
}

void
routes_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
              struct routes_outcome *out)
{
	const struct route *match = NULL, *same_path = NULL;
	char allow[64];
	size_t i;

	out->route = "-";
	out->status = 0;
	memcpy(out->org, "-", 2);
	for (i = 0; i < sizeof(route_table) / sizeof(route_table[0]); i++) {
		if (strcmp(route_table[i].path, r->path) != 0)
			continue;
		same_path = &route_table[i];    /* the last one names the method in Allow */
		if (strcmp(route_table[i].method, r->method) == 0 ||
		    (strcmp(route_table[i].method, "GET") == 0 && strcmp(r->method, "HEAD") == 0))
			match = &route_table[i];
	}
	if (match == NULL) {
		if (same_path != NULL) {
			snprintf(allow, sizeof(allow), "Allow: %s\r\n", same_path->method);
			out->status = 405;
			http_error(r, 405, 405, "method not allowed on this route", allow);
		} else {
			out->status = 404;
			http_error(r, 404, 404, "no such route", NULL);
		}
		return;
	}
	out->route = match->name;
	match->handler(cfg, st, r, match->kind, out);
}
