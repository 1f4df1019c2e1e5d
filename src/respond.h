/*
 * respond: the JSON texts a write request produces (jout.h, render.h): the response body
 * of the three write routes, and the history entry / change-feed event of an applied
 * item (its compact record, activity.h). Pure: no I/O, no counters.
 */
#ifndef PARTNERD_RESPOND_H
#define PARTNERD_RESPOND_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "request.h"
#include "rules.h"
#include "write_state.h"

/*
 * The response body for the entries es[0..n) of a request of this kind, every entry
 * decided and every item answered. Returns it (the caller frees it), its length in *len.
 */
char *respond_body(enum req_kind kind, const struct write_entry *es, size_t n, size_t *len);

/*
 * Appends the history entry of applied item it (result res) to out: the activity's compact
 * record (activity.h), which the commit also makes the change-feed entry's fields of.
 */
void respond_event(struct buf *out, const struct rules_result *res, const struct req_item *it,
                   int64_t cid, const char *rid, int64_t now_ms);

#endif
