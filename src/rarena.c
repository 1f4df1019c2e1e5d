/*
 * rarena: an arena for hiredis reply objects (see rarena.h).
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rarena.h"

/* Sanitizer builds give every allocation its own malloc (see rarena.h). */
#if defined(__SANITIZE_ADDRESS__)
#define RARENA_EACH_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RARENA_EACH_MALLOC 1
#endif
#endif
#ifndef RARENA_EACH_MALLOC
#define RARENA_EACH_MALLOC 0
#endif

#define RARENA_ALIGN _Alignof(max_align_t)
#define RARENA_EXTRA_MAX ((size_t)1 << 20)      /* extra chunks double up to this size */

struct rarena_chunk {
	struct rarena_chunk *next;      /* next older chunk of the extra list */
	size_t size;                    /* bytes of data */
	max_align_t data[];             /* the allocations, aligned as malloc's */
};

void
rarena_init(struct rarena *a, size_t chunk)
{
	memset(a, 0, sizeof(*a));
	a->chunk = chunk < 1024 ? 1024 : chunk;
	a->next = a->chunk;
}

/* A chunk of size data bytes; NULL when out of memory. */
static struct rarena_chunk *
chunk_new(struct rarena *a, size_t size)
{
	struct rarena_chunk *c;

	if (size > SIZE_MAX - sizeof(*c))
		return NULL;
	c = malloc(sizeof(*c) + size);
	if (c == NULL)
		return NULL;
	c->size = size;
	a->held += size;
	return c;
}

static void
free_extra(struct rarena *a)
{
	struct rarena_chunk *c, *next;

	for (c = a->extra; c != NULL; c = next) {
		next = c->next;
		a->held -= c->size;
		free(c);
	}
	a->extra = NULL;
	a->next = a->chunk;
}

void
rarena_free(struct rarena *a)
{
	free_extra(a);
	free(a->kept);
	rarena_init(a, a->chunk);
}

/* n bytes in a chunk of their own, freed at the next reset. */
static void *
alloc_own(struct rarena *a, size_t n)
{
	struct rarena_chunk *c = chunk_new(a, n);

	if (c == NULL)
		return NULL;
	c->next = a->extra;
	a->extra = c;
	return c->data;
}

/* The chunk being filled has no room for need bytes (n rounded up), or need is 0. */
static void *
alloc_slow(struct rarena *a, size_t n, size_t need)
{
	struct rarena_chunk *c;
	char *p;

	if (n == 0) {
		need = RARENA_ALIGN;    /* a distinct pointer, as malloc(0) may give */
		if (need <= a->left) {
			p = a->p;
			a->p += need;
			a->left -= need;
			return p;
		}
	} else if (need == 0) {
		return NULL;            /* n + RARENA_ALIGN - 1 wrapped around */
	}

	/* A large allocation gets its own chunk: the room left in the current one stays usable. */
	if (need > a->chunk / 4)
		return alloc_own(a, need);
	if (a->kept == NULL) {
		c = a->kept = chunk_new(a, a->chunk);
	} else {
		c = chunk_new(a, a->next);
		if (c != NULL) {
			c->next = a->extra;
			a->extra = c;
			if (a->next < RARENA_EXTRA_MAX)
				a->next *= 2;
		}
	}
	if (c == NULL)
		return NULL;
	p = (char *)c->data;
	a->p = p + need;
	a->left = c->size - need;
	return p;
}

void *
rarena_alloc(struct rarena *a, size_t n)
{
	size_t need = (n + RARENA_ALIGN - 1) & ~(RARENA_ALIGN - 1);
	void *p;

	if (RARENA_EACH_MALLOC)
		return alloc_own(a, n);         /* exactly n bytes: ASan sees an overrun */
	if (need == 0 || need > a->left)
		return alloc_slow(a, n, need);
	p = a->p;
	a->p += need;
	a->left -= need;
	return p;
}

void
rarena_reset(struct rarena *a)
{
	if (a->extra != NULL)
		free_extra(a);
	if (a->kept != NULL) {
		a->p = (char *)a->kept->data;
		a->left = a->kept->size;
	}
}

size_t
rarena_held(const struct rarena *a)
{
	return a->held;
}

/* ---- hiredis reply functions ----------------------------------------------------------- */

/*
 * These follow hiredis 0.14.1's defaults (hiredis.c: createStringObject and its siblings):
 * a zeroed redisReply of the task's type, linked into its parent array at the task's
 * index. The reader hands every task the reader's privdata: the arena.
 */

/* A reply of type with extra bytes after it (for its string or element array). */
static redisReply *
reply_new(const redisReadTask *task, int type, size_t extra)
{
	redisReply *r;

	if (extra > SIZE_MAX - sizeof(*r))
		return NULL;
	r = rarena_alloc(task->privdata, sizeof(*r) + extra);
	if (r == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->type = type;
	if (task->parent != NULL) {
		redisReply *parent = task->parent->obj;

		assert(parent->type == REDIS_REPLY_ARRAY);
		parent->element[task->idx] = r;
	}
	return r;
}

static void *
create_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r;

	assert(task->type == REDIS_REPLY_ERROR || task->type == REDIS_REPLY_STATUS ||
	       task->type == REDIS_REPLY_STRING);
	if (len == SIZE_MAX)
		return NULL;
	r = reply_new(task, task->type, len + 1);
	if (r == NULL)
		return NULL;
	r->str = (char *)(r + 1);
	memcpy(r->str, str, len);
	r->str[len] = '\0';
	r->len = len;
	return r;
}

static void *
create_array(const redisReadTask *task, int elements)
{
	size_t n = elements > 0 ? (size_t)elements : 0;
	redisReply *r;

	if (n > (SIZE_MAX - sizeof(*r)) / sizeof(*r->element))
		return NULL;
	r = reply_new(task, REDIS_REPLY_ARRAY, n * sizeof(*r->element));
	if (r == NULL)
		return NULL;
	if (n > 0) {
		/* Zeroed as hiredis's calloc: the reader fills it in element by element. */
		r->element = (redisReply **)(r + 1);
		memset(r->element, 0, n * sizeof(*r->element));
	}
	r->elements = n;
	return r;
}

static void *
create_integer(const redisReadTask *task, long long value)
{
	redisReply *r = reply_new(task, REDIS_REPLY_INTEGER, 0);

	if (r != NULL)
		r->integer = value;
	return r;
}

static void *
create_nil(const redisReadTask *task)
{
	return reply_new(task, REDIS_REPLY_NIL, 0);
}

/* The arena frees its replies at rarena_reset. */
static void
free_object(void *reply)
{
	(void)reply;
}

/* Not const: hiredis's reader takes a plain pointer (it never writes through it). */
static redisReplyObjectFunctions reply_functions = {
	.createString = create_string,
	.createArray = create_array,
	.createInteger = create_integer,
	.createNil = create_nil,
	.freeObject = free_object,
};

void
rarena_attach(redisReader *reader, struct rarena *a)
{
	reader->fn = &reply_functions;
	reader->privdata = a;
}

redisReply *
rarena_copy_reply(struct rarena *a, const redisReply *r)
{
	redisReply *o = rarena_alloc(a, sizeof(*o));
	size_t i;

	if (o == NULL)
		return NULL;
	*o = *r;
	if (r->str != NULL) {
		if ((o->str = rarena_alloc(a, r->len + 1)) == NULL)
			return NULL;
		memcpy(o->str, r->str, r->len);
		o->str[r->len] = '\0';
	}
	if (r->element != NULL) {
		if ((o->element = rarena_alloc(a, (r->elements ? r->elements : 1) * sizeof(*o->element))) == NULL)
			return NULL;
		for (i = 0; i < r->elements; i++) {
			o->element[i] = NULL;
			if (r->element[i] != NULL &&
			    (o->element[i] = rarena_copy_reply(a, r->element[i])) == NULL)
				return NULL;
		}
	}
	return o;
}
