/*
 * write: the three write routes' pipeline, driven by a description of each route's field
 * names (request.h req_names): authenticate (handler.c) -> read and parse the body
 * (http.c, request.c) -> Idempotency-Key claim (idem.c) -> identify the entries
 * (write_state.c) -> rounds of begin -> decide -> commit until every entry is decided
 * (write_round.c) -> respond (respond.c, http.c).
 */
#ifndef PARTNERD_WRITE_H
#define PARTNERD_WRITE_H

#include "handler.h"             /* struct routes_cfg, struct routes_outcome */
#include "http.h"
#include "store.h"

/* Serves a write request; kind is its enum req_kind (the route table's .kind). */
void write_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
                  struct routes_outcome *out);

#endif
