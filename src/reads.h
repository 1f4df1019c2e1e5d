/*
 * reads: the read routes of SPEC §5, a customer's current memberships and its history.
 */
#ifndef PARTNERD_READS_H
#define PARTNERD_READS_H

#include "handler.h"
#include "http.h"
#include "store.h"

enum reads_kind { READS_PROGRAMS = 1, READS_HISTORY = 2 };

/* GET customerPartnerPrograms / customerActivityHistory (kind is an enum reads_kind). */
void reads_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
                  struct routes_outcome *out);

#endif
