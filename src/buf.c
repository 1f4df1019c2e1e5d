/*
 * buf: a growable byte buffer with a hard cap, in the manner of curl's dynbuf. See buf.h
 * for the contract; the out-of-memory policy is "abort": a buffer only grows within its
 * cap, and the caps are what bound the memory clients can make us take.
 */
#include "buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_ALLOC 64

/* Aborts: see the out-of-memory policy in buf.h. */
static void buf_oom(size_t n)
{
	fprintf(stderr, "out of memory allocating %zu bytes\n", n);
	abort();
}

/* Makes room for len + extra + 1 bytes (the NUL). The cap was checked by the caller. */
static void buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, ncap;
	char *np;

	if (need <= b->cap)
		return;
	ncap = b->cap ? b->cap : BUF_MIN_ALLOC;
	while (ncap < need) {
		if (ncap > ((size_t)-1) / 2) {
			ncap = need;
			break;
		}
		ncap *= 2;
	}
	np = realloc(b->p, ncap);
	if (np == NULL)
		buf_oom(ncap);
	b->p = np;
	b->cap = ncap;
}

void buf_presize(struct buf *b, size_t n)
{
	if (n > b->max)
		n = b->max;
	if (n > b->len)
		buf_reserve(b, n - b->len);
	if (b->p != NULL && b->len == 0)
		b->p[0] = '\0';
}

void buf_init(struct buf *b, size_t max)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

int buf_append_grow(struct buf *b, const void *p, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return -1;
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0 || (size_t)n > b->max || b->len > b->max - (size_t)n)
		return -1;
	buf_reserve(b, (size_t)n);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = buf_vappendf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

char *buf_take(struct buf *b)
{
	char *p;

	buf_reserve(b, 0);
	b->p[b->len] = '\0';
	p = b->p;
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	return p;
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
}
