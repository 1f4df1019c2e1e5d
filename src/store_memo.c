/* store_memo: the memo of identifiers and program definitions (store_memo.h). */
#include "store_memo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "xmalloc.h"

#define MEMO_STRIPES 64                 /* mutexes; a slot's is its index mod this */

/* A program definition's slot. */
struct memo_slot {
	char *key;                      /* org NUL "0" NUL name (owned), NULL when empty */
	size_t keylen;
	char *def;                      /* owned */
	size_t deflen;
	int64_t at_ms;                  /* when read */
};

/* An identifier's slot: the keyed hash of its key (0: empty) and its customer id. A false
 * match (two keys of one 64-bit SipHash) would only give begin a customer whose re-check
 * fails; the process's random key keeps clients from making one on purpose. */
struct memo_id {
	uint64_t h;
	int64_t cid;
};

struct store_memo {
	pthread_mutex_t lock[MEMO_STRIPES];
	unsigned char hkey[crypto_shorthash_KEYBYTES];
	struct memo_id *ids;            /* STORE_MEMO_IDS */
	struct memo_slot defs[STORE_MEMO_DEFS];
};

/* The key of (org, kind, val) in buf (malloc'd when it does not fit); its length. */
static char *
memo_key(const char *org, int kind, const char *val, size_t len, char *buf, size_t sz, size_t *klen)
{
	size_t ol = strlen(org);
	char *k;

	*klen = ol + 3 + len;
	k = *klen <= sz ? buf : xmalloc(*klen);
	memcpy(k, org, ol);
	k[ol] = '\0';
	k[ol + 1] = (char)('0' + kind);
	k[ol + 2] = '\0';
	memcpy(k + ol + 3, val, len);
	return k;
}

/* FNV-1a, 64 bits. */
static uint64_t
memo_hash(const char *k, size_t n)
{
	uint64_t h = UINT64_C(14695981039346656037);

	while (n-- > 0)
		h = (h ^ (unsigned char)*k++) * UINT64_C(1099511628211);
	return h;
}

/* The keyed hash of (org, kind, val), never 0. */
static uint64_t
memo_id_hash(const struct store_memo *m, const char *org, int kind, const char *val, size_t len)
{
	char buf[256], *k;
	size_t klen;
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	k = memo_key(org, kind, val, len, buf, sizeof(buf), &klen);
	crypto_shorthash(out, (const unsigned char *)k, klen, m->hkey);
	if (k != buf)
		free(k);
	memcpy(&h, out, sizeof(h));
	return h != 0 ? h : 1;
}

/* Identifier (org, kind, val)'s slot, locked: its hash in *h. */
static struct memo_id *
memo_id_lock(struct store_memo *m, const char *org, int kind, const char *val, size_t len, uint64_t *h,
             pthread_mutex_t **mu)
{
	size_t i;

	*h = memo_id_hash(m, org, kind, val, len);
	i = (size_t)(*h % STORE_MEMO_IDS);
	*mu = &m->lock[i % MEMO_STRIPES];
	pthread_mutex_lock(*mu);
	return &m->ids[i];
}

/* A looked-up key: its slot (locked by memo_lock), whether the slot holds it. */
struct memo_at {
	char buf[256], *k;
	size_t klen;
	struct memo_slot *s;
	pthread_mutex_t *mu;
	int hit;
};

static void
memo_lock(struct store_memo *m, struct memo_slot *tab, size_t n, const char *org, int kind, const char *val,
          size_t len, struct memo_at *at)
{
	size_t i;

	at->k = memo_key(org, kind, val, len, at->buf, sizeof(at->buf), &at->klen);
	i = (size_t)(memo_hash(at->k, at->klen) % n);
	at->s = &tab[i];
	at->mu = &m->lock[i % MEMO_STRIPES];
	pthread_mutex_lock(at->mu);
	at->hit = at->s->key != NULL && at->s->keylen == at->klen && memcmp(at->s->key, at->k, at->klen) == 0;
}

/* Unlocks; when put, the slot holds the key from now on. */
static void
memo_unlock(struct memo_at *at, int put)
{
	if (put && !at->hit) {
		free(at->s->key);
		at->s->key = xmemdup(at->k, at->klen);
		at->s->keylen = at->klen;
	}
	pthread_mutex_unlock(at->mu);
	if (at->k != at->buf)
		free(at->k);
}

struct store_memo *
store_memo_new(void)
{
	struct store_memo *m = xcalloc(1, sizeof(*m));
	size_t i;

	m->ids = xcalloc(STORE_MEMO_IDS, sizeof(*m->ids));
	if (sodium_init() < 0)
		abort();
	randombytes_buf(m->hkey, sizeof(m->hkey));
	for (i = 0; i < MEMO_STRIPES; i++)
		pthread_mutex_init(&m->lock[i], NULL);
	return m;
}

void
store_memo_free(struct store_memo *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < STORE_MEMO_DEFS; i++) {
		free(m->defs[i].key);
		free(m->defs[i].def);
	}
	for (i = 0; i < MEMO_STRIPES; i++)
		pthread_mutex_destroy(&m->lock[i]);
	free(m->ids);
	free(m);
}

static struct store_memo *memo_shared;
static pthread_once_t memo_once = PTHREAD_ONCE_INIT;

static void
memo_make_shared(void)
{
	memo_shared = store_memo_new();
}

struct store_memo *
store_memo_shared(void)
{
	pthread_once(&memo_once, memo_make_shared);
	return memo_shared;
}

int64_t
store_memo_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len)
{
	pthread_mutex_t *mu;
	uint64_t h;
	struct memo_id *s = memo_id_lock(m, org, kind, val, len, &h, &mu);
	int64_t cid = s->h == h ? s->cid : 0;

	pthread_mutex_unlock(mu);
	return cid;
}

void
store_memo_put_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len, int64_t cid)
{
	pthread_mutex_t *mu;
	uint64_t h;
	struct memo_id *s = memo_id_lock(m, org, kind, val, len, &h, &mu);

	s->h = h;
	s->cid = cid;
	pthread_mutex_unlock(mu);
}

void
store_memo_drop_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len)
{
	pthread_mutex_t *mu;
	uint64_t h;
	struct memo_id *s = memo_id_lock(m, org, kind, val, len, &h, &mu);

	if (s->h == h) {
		s->h = 0;
		s->cid = 0;
	}
	pthread_mutex_unlock(mu);
}

char *
store_memo_def(struct store_memo *m, const char *org, const char *name, size_t nlen, int64_t now_ms, size_t *len,
               void *(*alloc)(void *ctx, size_t n), void *ctx)
{
	struct memo_at at;
	char *d = NULL;

	memo_lock(m, m->defs, STORE_MEMO_DEFS, org, 0, name, nlen, &at);
	if (at.hit && now_ms >= at.s->at_ms && now_ms - at.s->at_ms <= STORE_MEMO_DEF_TTL_MS &&
	    (d = alloc(ctx, at.s->deflen + 1)) != NULL) {
		memcpy(d, at.s->def, at.s->deflen);
		d[at.s->deflen] = '\0';
		*len = at.s->deflen;
	}
	memo_unlock(&at, 0);
	return d;
}

void
store_memo_put_def(struct store_memo *m, const char *org, const char *name, size_t nlen, const char *def,
                   size_t len, int64_t now_ms)
{
	struct memo_at at;

	memo_lock(m, m->defs, STORE_MEMO_DEFS, org, 0, name, nlen, &at);
	free(at.s->def);
	at.s->def = xmemdup(def, len);
	at.s->deflen = len;
	at.s->at_ms = now_ms;
	memo_unlock(&at, 1);
}
