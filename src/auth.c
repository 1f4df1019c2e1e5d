/*
 * auth: Basic auth, verification against stored argon2id hashes, and the credential cache.
 */
#include <pthread.h>
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
};

static struct cache_slot cache[CACHE_SLOTS];
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static int cache_ms = 60000;
static unsigned char cache_salt[crypto_generichash_KEYBYTES];

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

static int
cache_get(const unsigned char *key, struct auth_org *out)
{
	struct cache_slot *s = &cache[(key[0] | (key[1] << 8)) % CACHE_SLOTS];
	int hit = 0;

	pthread_mutex_lock(&cache_lock);
	if (s->expires > mono_ms() && sodium_memcmp(s->key, key, sizeof(s->key)) == 0) {
		*out = s->org;
		hit = 1;
	}
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

static void
cache_put(const unsigned char *key, const struct auth_org *org)
{
	struct cache_slot *s = &cache[(key[0] | (key[1] << 8)) % CACHE_SLOTS];

	if (cache_ms <= 0)
		return;
	pthread_mutex_lock(&cache_lock);
	memcpy(s->key, key, sizeof(s->key));
	s->org = *org;
	s->expires = mono_ms() + cache_ms;
	pthread_mutex_unlock(&cache_lock);
}

/* Reads the credential and the org settings; 0 found, 401 unknown, 503 Redis down. */
static int
lookup(struct store *st, const char *user, const char *pass, struct auth_org *out)
{
	struct store_argv cmd;
	redisReply **rep = NULL, *r;
	struct json_object *cred = NULL, *v;
	const char *org, *hash;
	int rc = 401;
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
	if (crypto_pwhash_str_verify(hash, pass, strlen(pass)) != 0)
		goto out;
	snprintf(out->org, sizeof(out->org), "%s", org);
	freeReplyObject(r);
	free(rep);
	rep = NULL;

	/* The org must still exist: a deleted org's credentials are refused. */
	store_argv_init(&cmd);
	store_argv_add(&cmd, "HGETALL", 7);
	store_argv_addf(&cmd, KEYS_ORG_FMT, out->org);
	if (store_pipeline(st, &cmd, 1, &rep) != 0) {
		store_argv_free(&cmd);
		json_object_put(cred);
		return 503;
	}
	store_argv_free(&cmd);
	r = rep[0];
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		goto out;
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
	if (rep != NULL) {
		freeReplyObject(rep[0]);
		free(rep);
	}
	json_object_put(cred);
	return rc;
}

int
auth_check(struct store *st, const char *header, struct auth_org *out)
{
	char user[CRED_MAX + 1], pass[CRED_MAX + 1];
	unsigned char key[crypto_generichash_BYTES];
	crypto_generichash_state h;
	int rc;

	if (auth_parse_basic(header, user, sizeof(user), pass, sizeof(pass)) != 0)
		return 401;
	crypto_generichash_init(&h, cache_salt, sizeof(cache_salt), sizeof(key));
	crypto_generichash_update(&h, (const unsigned char *)user, strlen(user) + 1);
	crypto_generichash_update(&h, (const unsigned char *)pass, strlen(pass));
	crypto_generichash_final(&h, key, sizeof(key));
	if (cache_get(key, out)) {
		sodium_memzero(pass, sizeof(pass));
		return 0;
	}
	rc = lookup(st, user, pass, out);
	sodium_memzero(pass, sizeof(pass));
	if (rc == 0) {
		unsigned char uh[16];

		crypto_generichash(uh, sizeof(uh), (const unsigned char *)user, strlen(user), NULL, 0);
		sodium_bin2hex(out->cred, sizeof(out->cred), uh, sizeof(uh));
		cache_put(key, out);
	}
	return rc;
}
