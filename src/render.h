/*
 * render: the JSON pieces that the write responses, the change feed and the read routes
 * share, written as text (jout.h conventions: each returns 0, or -1 at b's cap).
 */
#ifndef PARTNERD_RENDER_H
#define PARTNERD_RENDER_H

#include "buf.h"
#include "rules.h"

/* The API form of membership values (SPEC §5 before/after, pendingRelink). */
int render_values(struct buf *b, const struct rules_values *v);
/* The same object's members, without the braces (for objects that have more). */
int render_values_fields(struct buf *b, const struct rules_values *v);

/* A status object {"status":...,"message":...,"code":...}; message NULL: rules_message. */
int render_status(struct buf *b, int code, const char *message);

#endif
