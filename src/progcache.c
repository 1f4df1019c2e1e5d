/* progcache: a per-thread cache of parsed program definitions (progcache.h). */
#include <stdlib.h>
#include <string.h>

#include "progcache.h"
#include "xmalloc.h"

#define PROG_CACHE 16
struct prog_cache_entry {
	char *def;
	size_t len;
	struct rules_program p;
};
static __thread struct prog_cache_entry prog_cache[PROG_CACHE];
static __thread unsigned prog_cache_next;

int
progcache_parse(const char *def, size_t len, struct rules_program *out)
{
	struct prog_cache_entry *e;
	size_t i;

	for (i = 0; i < PROG_CACHE; i++) {
		e = &prog_cache[i];
		if (e->def != NULL && e->len == len && memcmp(e->def, def, len) == 0) {
			rules_program_copy(out, &e->p);
			return 0;
		}
	}
	if (rules_program_parse(def, len, out) != 0)
		return -1;
	e = &prog_cache[prog_cache_next++ % PROG_CACHE];
	free(e->def);
	rules_program_free(&e->p);
	e->def = xmemdup(def, len);
	e->len = len;
	rules_program_copy(&e->p, out);
	return 0;
}

void
progcache_thread_exit(void)
{
	size_t i;

	for (i = 0; i < PROG_CACHE; i++) {
		free(prog_cache[i].def);
		rules_program_free(&prog_cache[i].p);
		prog_cache[i].def = NULL;
	}
}
