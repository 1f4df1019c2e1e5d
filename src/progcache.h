/*
 * progcache: program definitions parsed by this worker thread, keyed by their exact stored
 * bytes, for the write pipeline and the read routes alike: the same few definitions come
 * back in every request, and parsing one with json-c cost more than a Redis call. A
 * changed definition (partnerctl load) has other bytes, so it is parsed afresh; the cache
 * holds no more than a few entries per thread.
 */
#ifndef PARTNERD_PROGCACHE_H
#define PARTNERD_PROGCACHE_H

#include <stddef.h>

#include "rules_codec.h"

/* rules_program_parse through the cache: 0 with *out (owned by the caller), or -1. */
int progcache_parse(const char *def, size_t len, struct rules_program *out);

/* Frees what the calling thread cached; call before it exits. */
void progcache_thread_exit(void);

#endif
