/*
 * auth: Basic auth, verification against stored argon2id hashes, and the credential cache.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <sodium.h>

#include "auth.h"
#include "ident.h"
#include "keys.h"

#define CACHE_SLOTS 1024
#define CRED_MAX 512

struct cache_slot {
	unsigned char key[crypto_generichash_BYTES];
	int64_t expires;                /* monotonic ms; 0 = empty */
	struct auth_org org;
	int busy;                       /* a thread is verifying this key (miss or refresh) */
};

static struct cache_slot cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cache_cond = PTHREAD_COND_INITIALIZER;   /* a verification ended */
static int cache_ms = 60000;
static unsigned char cache_salt[crypto_generichash_KEYBYTES];
#define PWHASH_CONCURRENCY 4
static sem_t pwhash_slots;      /* password checks allowed to run at once */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
auth_init(int cache_seconds)
{
	cache_ms = cache_seconds * 1000;
	sem_init(&pwhash_slots, 0, PWHASH_CONCURRENCY);
	randombytes_buf(cache_salt, sizeof(cache_salt));
}

int
auth_parse_basic(const char *h, char *user, size_t usersz, char *pass, size_t passsz)
{
	char dec[CRED_MAX + 1];
	size_t declen = 0;
	const char *colon, *end;

	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		return -1;
	h += 6;
	while (*h == ' ')
		h++;
	if (sodium_base642bin((unsigned char *)dec, CRED_MAX, h, strlen(h), NULL, &declen, &end,
	                      sodium_base64_VARIANT_ORIGINAL) != 0)
		return -1;
	while (*end == ' ')
		end++;
	if (*end != '\0')
		return -1;
	dec[declen] = '\0';
	if (memchr(dec, '\0', declen) != NULL)
		return -1;
	colon = memchr(dec, ':', declen);
	if (colon == NULL || colon == dec)
		return -1;
	if ((size_t)(colon - dec) >= usersz || declen - (size_t)(colon - dec) > passsz)
		return -1;
	memcpy(user, dec, (size_t)(colon - dec));
	user[colon - dec] = '\0';
	memcpy(pass, colon + 1, declen - (size_t)(colon - dec) - 1);
	pass[declen - (size_t)(colon - dec) - 1] = '\0';
	sodium_memzero(dec, sizeof(dec));
	return 0;
}

/*
 * The cache, with single flight: of the requests that present the same credential while
 * it is not cached, one verifies it and the others wait for its answer (Argon2id costs
 * ~20 ms and 19 MiB; a burst of requests at start or at expiry must not pay it N times).
 * An entry is refreshed by one request in the last tenth of its life while the others
 * keep using it, so a busy credential never expires under load.
 */
enum cache_verdict { CACHE_HIT, CACHE_VERIFY, CACHE_REFRESH };

static struct cache_slot *
slot_of(const unsigned char *key)
{
	return &cache[(key[0] | (key[1] << 8)) % CACHE_SLOTS];
}

static enum cache_verdict
cache_get(const unsigned char *key, struct auth_org *out)
{
	struct cache_slot *s = slot_of(key);
	enum cache_verdict v;

	pthread_mutex_lock(&cache_lock);
	for (;;) {
		int64_t now = mono_ms();
		int same = sodium_memcmp(s->key, key, sizeof(s->key)) == 0;

		if (same && s->expires > now) {
			*out = s->org;
			if (!s->busy && s->expires - now < cache_ms / 10) {
				s->busy = 1;
				v = CACHE_REFRESH;
			} else {
				v = CACHE_HIT;
			}
			break;
		}
		if (!s->busy) {
			/* This thread verifies; the slot is claimed for this key meanwhile. */
			memcpy(s->key, key, sizeof(s->key));
			s->expires = 0;
			s->busy = 1;
			v = CACHE_VERIFY;
			break;
		}
		/* Another thread verifies this slot's key (ours or a colliding one): wait. */
		pthread_cond_wait(&cache_cond, &cache_lock);
	}
	pthread_mutex_unlock(&cache_lock);
	return v;
}

/* Ends a verification: org != NULL caches it; NULL leaves the slot empty (or as it was). */
static void
cache_done(const unsigned char *key, const struct auth_org *org, int keep_old)
{
	struct cache_slot *s = slot_of(key);

	pthread_mutex_lock(&cache_lock);
	if (org != NULL && cache_ms > 0) {
		memcpy(s->key, key, sizeof(s->key));
		s->org = *org;
		s->expires = mono_ms() + cache_ms;
	} else if (!keep_old) {
		s->expires = 0;
	}
	s->busy = 0;
	pthread_cond_broadcast(&cache_cond);
	pthread_mutex_unlock(&cache_lock);
}

/*
 * Reads the credential and the org settings; 0 found, 401 unknown, 503 Redis down. The
 * replies are the store's, released when the request is done (store.h).
 */
static int
lookup(struct store *st, const char *user, const char *pass, struct auth_org *out)
{
	struct store_argv cmd;
	redisReply **rep = NULL, *r;
	struct json_object *cred = NULL, *v;
	const char *org, *hash;
	int rc = 401, verified;
	size_t i;

	store_argv_init(&cmd);
	store_argv_add(&cmd, "HGET", 4);
	store_argv_add(&cmd, KEYS_CREDS, strlen(KEYS_CREDS));
	store_argv_add(&cmd, user, strlen(user));
	if (store_pipeline(st, &cmd, 1, &rep) != 0) {
		store_argv_free(&cmd);
		return 503;
	}
	store_argv_free(&cmd);
	r = rep[0];
	if (r->type != REDIS_REPLY_STRING)
		goto out;
	cred = json_tokener_parse(r->str);
	if (cred == NULL || !json_object_object_get_ex(cred, "org", &v))
		goto out;
	org = json_object_get_string(v);
	if (!json_object_object_get_ex(cred, "hash", &v))
		goto out;
	hash = json_object_get_string(v);
	if (!ident_valid_org(org))
		goto out;
	/*
	 * Argon2id needs its memlimit of memory per check: bound how many run at once, so
	 * that a flood of wrong passwords cannot take gigabytes (a wrong password is never
	 * cached, every attempt pays the check).
	 */
	sem_wait(&pwhash_slots);
	verified = crypto_pwhash_str_verify(hash, pass, strlen(pass)) == 0;
	sem_post(&pwhash_slots);
	if (!verified)
		goto out;
	snprintf(out->org, sizeof(out->org), "%s", org);

	/* The org must still exist (its settings and its place in pp:orgs): a removed org's
	 * credentials are refused. */
	{
		struct store_argv cmds[2];
		int member;

		store_argv_init(&cmds[0]);
		store_argv_init(&cmds[1]);
		store_argv_add(&cmds[0], "HGETALL", 7);
		store_argv_addf(&cmds[0], KEYS_ORG_FMT, out->org);
		store_argv_add(&cmds[1], "SISMEMBER", 9);
		store_argv_add(&cmds[1], KEYS_ORGS, strlen(KEYS_ORGS));
		store_argv_add(&cmds[1], out->org, strlen(out->org));
		rc = store_pipeline(st, cmds, 2, &rep);
		store_argv_free(&cmds[0]);
		store_argv_free(&cmds[1]);
		if (rc != 0) {
			json_object_put(cred);
			return 503;
		}
		rc = 401;
		member = rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer == 1;
		r = rep[0];
		if (!member || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
			goto out;
	}
	out->country_code[0] = '\0';
	out->national_len = 0;
	for (i = 0; i + 1 < r->elements; i += 2) {
		if (strcmp(r->element[i]->str, "defaultCountryCode") == 0)
			snprintf(out->country_code, sizeof(out->country_code), "%s", r->element[i + 1]->str);
		else if (strcmp(r->element[i]->str, "nationalNumberLength") == 0)
			out->national_len = atoi(r->element[i + 1]->str);
	}
	rc = 0;
out:
	json_object_put(cred);
	return rc;
}

int
auth_check(struct store *st, const char *header, struct auth_org *out)
{
	char user[CRED_MAX + 1], pass[CRED_MAX + 1];
	unsigned char key[crypto_generichash_BYTES];
	crypto_generichash_state h;
	struct auth_org cached;
	enum cache_verdict v;
	int rc;

	if (auth_parse_basic(header, user, sizeof(user), pass, sizeof(pass)) != 0)
		return 401;
	crypto_generichash_init(&h, cache_salt, sizeof(cache_salt), sizeof(key));
	crypto_generichash_update(&h, (const unsigned char *)user, strlen(user) + 1);
	crypto_generichash_update(&h, (const unsigned char *)pass, strlen(pass));
	crypto_generichash_final(&h, key, sizeof(key));
	v = cache_get(key, &cached);
	if (v == CACHE_HIT) {
		sodium_memzero(pass, sizeof(pass));
		*out = cached;
		return 0;
	}
	rc = lookup(st, user, pass, out);
	sodium_memzero(pass, sizeof(pass));
	if (rc == 0) {
		unsigned char uh[16];

		crypto_generichash(uh, sizeof(uh), (const unsigned char *)user, strlen(user), NULL, 0);
		sodium_bin2hex(out->cred, sizeof(out->cred), uh, sizeof(uh));
		cache_done(key, out, 0);
		return 0;
	}
	if (v == CACHE_REFRESH && rc == 503) {
		/* Redis is away: the credential was valid a moment ago; keep serving it. */
		cache_done(key, NULL, 1);
		*out = cached;
		return 0;
	}
	cache_done(key, NULL, 0);
	return rc;
}
