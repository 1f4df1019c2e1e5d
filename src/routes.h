/*
 * routes: the route table and the handlers. The three write routes are one pipeline
 * (parse, auth, resolve+lock+read, rules, fenced commit, respond) driven by a
 * description of each route's field names (request.h req_names).
 */
#ifndef PARTNERD_ROUTES_H
#define PARTNERD_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "handler.h"             /* struct routes_cfg, struct routes_outcome */
#include "http.h"
#include "store.h"

/* Serves one request on a worker's store. */
/* Frees what the calling worker thread cached (program definitions); call before it exits. */
void routes_thread_exit(void);

void routes_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
                   struct routes_outcome *out);

#endif
