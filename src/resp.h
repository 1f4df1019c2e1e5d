/*
 * resp: Redis commands as RESP text in a growable buffer, and writing that buffer on a
 * socket (store layer: store.c and cluster.c build every command they send here).
 *
 * The text is handed to the socket as it is: hiredis's own argv formatting (sdscatfmt per
 * argument) cost about a tenth of a write request's CPU. The small appenders are inline:
 * a write request appends a few hundred arguments.
 */
#ifndef PARTNERD_RESP_H
#define PARTNERD_RESP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A buffer of RESP commands; all zero is an empty one. */
struct resp_out {
	char *p;
	size_t len, cap;
};

/* Makes room for n more bytes (the buffer doubles from 4 KiB; aborts when out of memory). */
void resp_grow(struct resp_out *o, size_t n);

/* Frees the buffer's memory; it is an empty buffer again. */
void resp_free(struct resp_out *o);

/* Appends one command: "*argc", then argv[i] (lens[i] bytes) as bulk strings. */
void resp_command(struct resp_out *o, size_t argc, const char *const *argv, const size_t *lens);

/*
 * Writes p[0..len) on fd (send, no SIGPIPE; EINTR resumed). Returns the bytes written:
 * fewer than len on an error or a timeout, with errno set (EPIPE when the peer took none).
 */
size_t resp_write(int fd, const char *p, size_t len);

/*
 * Writes u in decimal (with a '-' before it when neg) at d, which has room for 21 bytes.
 * Returns the length written (no NUL). snprintf cost more than the Redis call it prepared.
 */
static inline size_t
resp_put_u64(char *d, uint64_t u, int neg)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	size_t n;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (neg)
		*--p = '-';
	n = (size_t)(tmp + sizeof(tmp) - p);
	memcpy(d, p, n);
	return n;
}

/* Makes room for n more bytes. */
static inline void
resp_reserve(struct resp_out *o, size_t n)
{
	if (o->cap - o->len < n)
		resp_grow(o, n);
}

/* "*N\r\n" (kind '*': a command of N arguments) or "$N\r\n" (kind '$': N bytes follow). */
static inline void
resp_count(struct resp_out *o, char kind, size_t n)
{
	resp_reserve(o, 24);
	o->p[o->len++] = kind;
	o->len += resp_put_u64(o->p + o->len, (uint64_t)n, 0);
	o->p[o->len++] = '\r';
	o->p[o->len++] = '\n';
}

/* One argument: p[0..len) as a bulk string. */
static inline void
resp_arg(struct resp_out *o, const char *p, size_t len)
{
	resp_count(o, '$', len);
	resp_reserve(o, len + 2);
	memcpy(o->p + o->len, p, len);
	o->len += len;
	o->p[o->len++] = '\r';
	o->p[o->len++] = '\n';
}

#endif
