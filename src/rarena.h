/*
 * rarena: an arena for hiredis reply objects. hiredis's default reader functions make
 * one malloc per reply object and one per string, and freeReplyObject walks the tree to
 * free them again: callgrind counted 33k of the 152k instructions of a single-customer
 * update there. Here a reply and its string (or its element array) are carved from a
 * chunk with a bump pointer, and all are released together by rarena_reset.
 *
 * Memory: the first chunk (its size given to rarena_init) is kept across resets; chunks
 * added for a bigger reply, and any allocation larger than a quarter of a chunk (which
 * gets a chunk of its own), are freed at the next reset. So a huge reply costs memory only
 * until its request is done, and an idle arena holds one chunk at most.
 *
 * Built with AddressSanitizer, every allocation is its own malloc and a reset frees them
 * all (nothing is reused): a reply used after its reset, or read past its end, is then
 * reported by ASan as it would be with hiredis's own functions.
 *
 * No I/O: the reply functions are driven by hiredis's protocol reader (read.c), which a
 * test can feed bytes directly. Not thread-safe: one arena per connection.
 */
#ifndef PARTNERD_RARENA_H
#define PARTNERD_RARENA_H

#include <stddef.h>

#include <hiredis/hiredis.h>

struct rarena_chunk;

struct rarena {
	struct rarena_chunk *kept;      /* first chunk, kept across resets; NULL until used */
	struct rarena_chunk *extra;     /* chunks added since the last reset, newest first */
	char *p;                        /* free room of the chunk being filled... */
	size_t left;                    /* ...and its size in bytes */
	size_t chunk;                   /* size of the kept chunk (and of the first extra one) */
	size_t next;                    /* size of the next extra chunk (doubles, capped) */
	size_t held;                    /* bytes held in chunks, headers excluded */
};

/* An empty arena whose kept chunk will be chunk bytes (allocated at the first use). */
void rarena_init(struct rarena *a, size_t chunk);

/* Frees every chunk; the arena is empty (and usable) afterwards. */
void rarena_free(struct rarena *a);

/*
 * n bytes aligned for any type (as malloc's), valid until the next rarena_reset or
 * rarena_free. NULL when out of memory (a reply is request-sized: the caller fails the
 * reply rather than the process).
 */
void *rarena_alloc(struct rarena *a, size_t n);

/*
 * Ends the life of everything allocated since the last reset: extra chunks are freed, the
 * kept chunk is reused from its start. Cheap when nothing was allocated.
 */
void rarena_reset(struct rarena *a);

/* Bytes the arena holds in chunks now (for tests: it is bounded after a reset). */
size_t rarena_held(const struct rarena *a);

/*
 * Makes reader build its replies in a: redisReply objects laid out as hiredis's defaults
 * lay them out (type, str with a trailing NUL and len, integer, element and elements), so
 * that code reading replies does not change. They must never be given to freeReplyObject:
 * they are freed by rarena_reset (hiredis's own calls to the reader's freeObject, e.g. for
 * a reply abandoned by a protocol error, do nothing). Set it again on every new context.
 */
void rarena_attach(redisReader *reader, struct rarena *a);

/*
 * A deep copy of reply r (built by any reader: hiredis's, or an arena's) in a, laid out as
 * rarena_attach's replies are. NULL when out of memory.
 */
redisReply *rarena_copy_reply(struct rarena *a, const redisReply *r);

#endif
