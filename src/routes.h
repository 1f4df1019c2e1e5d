/*
 * routes: the route table and its dispatch: a request's method and path -> its handler
 * (write.c for the three write routes, reads.c for the two read routes; health and
 * metrics here).
 */
#ifndef PARTNERD_ROUTES_H
#define PARTNERD_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "handler.h"             /* struct routes_cfg, struct routes_outcome */
#include "http.h"
#include "store.h"

/* Frees what the calling worker thread cached (program definitions); call before it exits. */
void routes_thread_exit(void);

/* Serves one request on a worker's store. */
void routes_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r,
                   struct routes_outcome *out);

#endif
