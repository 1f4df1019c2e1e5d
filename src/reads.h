/*
 * reads: the read routes of SPEC §5, a customer's current memberships and its history.
 */
#ifndef PARTNERD_READS_H
#define PARTNERD_READS_H

#include "http.h"
#include "routes.h"
#include "store.h"

struct json_object;
struct rules_values;

/* The API form of membership values (SPEC §5 before/after, pendingRelink): a new object. */
struct json_object *reads_values_json(const struct rules_values *v);
/* The same object as JSON text appended to b (jout.h conventions: 0, or -1 at b's cap). */
struct buf;
int reads_values_put(struct buf *b, const struct rules_values *v);

enum reads_kind { READS_PROGRAMS = 1, READS_HISTORY = 2 };

/* GET customerPartnerPrograms / customerActivityHistory (kind is an enum reads_kind). */
void reads_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
                  struct routes_outcome *out);

#endif
