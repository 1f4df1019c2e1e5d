/*
 * xmalloc: allocation that cannot fail, for both programs and the pure core (after
 * tmux's xmalloc.c).
 *
 * Out-of-memory policy (one for the whole code base): a failed allocation prints
 * "<program>: out of memory allocating N bytes" to stderr and aborts the process. That
 * is right for partnerd (a supervised daemon: systemd restarts it, and a half-done
 * request is never committed, because nothing reaches Redis before the commit script)
 * and for partnerctl (an admin run, repeated after the cause is fixed). Allocations whose
 * size a client or an input file chooses are not bounded by this policy but capped where
 * the data comes in (struct buf's max, the body and line limits), so that a large input is
 * an error answer, not an abort. The few places that turn a failed allocation into an
 * answer of their own (e.g. json-c's parser reporting OOM as a 503) keep doing so.
 */
#ifndef PARTNERD_XMALLOC_H
#define PARTNERD_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);                       /* size 0 is taken as 1 */
void *xcalloc(size_t n, size_t size);             /* zeroed; n or size 0 is taken as 1 */
void *xrealloc(void *p, size_t size);             /* size 0 is taken as 1 */
/* A NUL-terminated copy of the n bytes at p (which may hold NULs); free() it. */
char *xmemdup(const void *p, size_t n);
/* A copy of at most n bytes of the C string s, NUL-terminated; free() it. */
char *xstrndup(const char *s, size_t n);

#endif
