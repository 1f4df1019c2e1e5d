/* buf: a small growable byte buffer with a hard size cap. */
#ifndef PARTNERD_BUF_H
#define PARTNERD_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

/*
 * p holds len bytes followed by a NUL (once anything was appended; p is NULL before),
 * so text can be used as a C string. max caps len: it is fixed when the buffer is made,
 * and an append that would go over it fails without changing the buffer (the caller turns
 * that into its own "too big" error, e.g. 413). Out-of-memory policy: growing the
 * allocation aborts the process on malloc failure; the cap is what bounds client-sized
 * data.
 */
struct buf {
	char *p;    /* contents, NUL-terminated, or NULL while empty */
	size_t len; /* bytes used, excluding the NUL */
	size_t cap; /* bytes allocated */
	size_t max; /* hard cap on len */
};

/* Makes b an empty buffer holding at most max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes. Returns 0, or -1 (b unchanged) when len would exceed max. */
int buf_append_grow(struct buf *b, const void *p, size_t n);

/*
 * buf_append's common case inline (the bytes and the NUL fit in the allocation): JSON
 * output makes ~80 appends per customer entry, most of them short literals whose copy the
 * compiler then inlines. Anything else is buf_append_grow.
 */
static inline int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (n < b->cap - b->len && n <= b->max && b->len <= b->max - n) {
		if (n > 0)
			memcpy(b->p + b->len, p, n);
		b->len += n;
		b->p[b->len] = '\0';
		return 0;
	}
	return buf_append_grow(b, p, n);
}

/*
 * v in decimal (a '-' first when negative), written at the end of d: returns where the text
 * starts; it runs to d + BUF_DEC_LEN, without a NUL. For hand-built text (answer heads, log
 * lines) where printf would cost more than the rest of the line.
 */
#define BUF_DEC_LEN 24
static inline const char *
buf_dec(char d[BUF_DEC_LEN], long long v)
{
	char *p = d + BUF_DEC_LEN;
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--p = '-';
	return p;
}

/* Appends printf-formatted text. Returns 0, or -1 (b unchanged) over the cap. */
int buf_appendf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int buf_vappendf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

/*
 * Allocates room for n bytes now (at most max), so that appending up to n bytes does not
 * reallocate: for outputs whose size is known roughly in advance. Never shrinks.
 */
void buf_presize(struct buf *b, size_t n);

/* Empties b, keeping its allocation and cap. */
void buf_reset(struct buf *b);

/*
 * Hands the contents over: returns p (the caller frees it with free(); never NULL: an
 * empty buffer yields an allocated "") and leaves b empty, ready for reuse.
 */
char *buf_take(struct buf *b);

/* Frees the contents; b is empty afterwards and may be reused. */
void buf_free(struct buf *b);

#endif
