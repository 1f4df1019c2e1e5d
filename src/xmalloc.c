/* xmalloc: allocation that aborts on out-of-memory. See xmalloc.h for the policy. */
#define _GNU_SOURCE 1 /* program_invocation_short_name */
#include "xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
oom(size_t size)
{
	fprintf(stderr, "%s: out of memory allocating %zu bytes\n",
	        program_invocation_short_name, size);
	abort();
}

void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		oom(size);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
		oom(n * size);
	return p;
}

void *
xrealloc(void *p, size_t size)
{
	void *np = realloc(p, size ? size : 1);

	if (np == NULL)
		oom(size);
	return np;
}

char *
xmemdup(const void *p, size_t n)
{
	char *s = xmalloc(n + 1);

	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

char *
xstrndup(const char *s, size_t n)
{
	const char *nul = memchr(s, '\0', n);

	return xmemdup(s, nul ? (size_t)(nul - s) : n);
}
