/*
 * auth: Basic auth, verification against stored argon2id hashes, the credential cache, the
 * failed-login limits and the bounds on password checks (auth.h).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <sodium.h>

#include "auth.h"
#include "clock.h"
#include "ident.h"
#include "keys.h"
#include "metrics.h"

#define CACHE_SLOTS 1024
#define CRED_MAX 512

/*
 * Bounds on password checks (SPEC §2: bounded in number and time). Argon2id takes its
 * memlimit (~19 MiB) and ~20 ms of a core per check: AUTH_HASHING checks run at once; a
 * check waits at most AUTH_SLOT_WAIT_MS for one of them; at most AUTH_FLIGHTS distinct
 * credentials are being checked (hashing or waiting) at once. Requests presenting a
 * credential that is being checked wait for that check (single flight) at most
 * AUTH_FOLLOW_WAIT_MS. Leaders and followers together never hold more than check_cap
 * workers (see auth_init). Whatever does not fit is answered AUTH_BUSY at once.
 */
#define AUTH_HASHING 4
#define AUTH_FLIGHTS (2 * AUTH_HASHING)
#define AUTH_SLOT_WAIT_MS 250
#define AUTH_FOLLOW_WAIT_MS 1000
#define AUTH_BUSY_RETRY_S 1

struct cache_slot {
	unsigned char key[crypto_generichash_BYTES];
	int64_t expires;                /* monotonic ms; 0 = empty */
	struct auth_org org;
	int refreshing;                 /* a thread re-verifies this entry */
};

/* One credential being checked: its leader hashes, followers wait for the result. */
struct flight {
	unsigned char key[crypto_generichash_BYTES];
	int used;                       /* a leader checks key, or followers still read the result */
	int done;                       /* result (and org) are in */
	enum auth_result result;
	struct auth_org org;
	int waiters;                    /* followers that have not read the result yet */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;    /* everything below */
static pthread_cond_t flight_cond;      /* a flight finished (monotonic clock) */
static pthread_cond_t slot_cond;        /* a hashing slot came free (monotonic clock) */
static struct cache_slot cache[CACHE_SLOTS];
static struct flight flights[AUTH_FLIGHTS];
static int hashing;                     /* password hashes running */
static int in_check;                    /* workers inside a password check (leaders + followers) */
static int check_cap;                   /* bound on in_check */
static int cache_ms = 60000;
static int limit_user, limit_addr;
static unsigned char cache_salt[crypto_generichash_KEYBYTES];

static void
cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/* Waits on c (lock held) until the monotonic deadline; 0 when woken, -1 when it passed. */
static int
cond_wait_until(pthread_cond_t *c, int64_t deadline_ms)
{
	struct timespec ts = { (time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L };

	return pthread_cond_timedwait(c, &lock, &ts) == 0 ? 0 : -1;
}

void
auth_init(const struct auth_cfg *cfg)
{
	int reserve = cfg->workers / 4 > 1 ? cfg->workers / 4 : 1;

	cache_ms = cfg->cache_seconds * 1000;
	limit_user = cfg->fail_limit_user;
	limit_addr = cfg->fail_limit_addr;
	/* A quarter of the workers (at least one) never waits on a password check. */
	check_cap = cfg->workers - reserve > 1 ? cfg->workers - reserve : 1;
	cond_init_monotonic(&flight_cond);
	cond_init_monotonic(&slot_cond);
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

int
auth_addr_bucket(const char *addr, char *out, size_t outsz)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (addr == NULL || *addr == '\0')
		return -1;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return inet_ntop(AF_INET, &a4, out, (socklen_t)outsz) != NULL ? 0 : -1;
	if (inet_pton(AF_INET6, addr, &a6) != 1)
		return -1;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		memcpy(&a4, &a6.s6_addr[12], 4);
		return inet_ntop(AF_INET, &a4, out, (socklen_t)outsz) != NULL ? 0 : -1;
	}
	memset(&a6.s6_addr[8], 0, 8);
	if (inet_ntop(AF_INET6, &a6, out, (socklen_t)outsz) == NULL || strlen(out) + 4 > outsz)
		return -1;
	strcat(out, "/64");
	return 0;
}

/* ---- the cache ------------------------------------------------------------------------ */

/*
 * A verified credential is kept until it expires or another verified credential takes
 * its slot: a failed check never touches the cache, so wrong passwords cannot evict a
 * working client's entry. An entry is refreshed by one request in the last tenth of its
 * life while the others keep using it, so a busy credential never expires under load.
 */
enum cache_verdict { CACHE_HIT, CACHE_MISS, CACHE_REFRESH };

static struct cache_slot *
slot_of(const unsigned char *key)
{
	return &cache[(key[0] | (key[1] << 8)) % CACHE_SLOTS];
}

static enum cache_verdict
cache_get(const unsigned char *key, struct auth_org *out)
{
	struct cache_slot *s = slot_of(key);
	enum cache_verdict v = CACHE_MISS;
	int64_t now = mono_ms();

	pthread_mutex_lock(&lock);
	if (s->expires > now && sodium_memcmp(s->key, key, sizeof(s->key)) == 0) {
		*out = s->org;
		v = CACHE_HIT;
		if (!s->refreshing && s->expires - now < cache_ms / 10) {
			s->refreshing = 1;
			v = CACHE_REFRESH;
		}
	}
	pthread_mutex_unlock(&lock);
	return v;
}

/* Ends a refresh (or a check) of key: org != NULL caches it; drop empties key's entry. */
static void
cache_done(const unsigned char *key, const struct auth_org *org, int drop)
{
	struct cache_slot *s = slot_of(key);
	int same;

	pthread_mutex_lock(&lock);
	same = sodium_memcmp(s->key, key, sizeof(s->key)) == 0;
	if (org != NULL && cache_ms > 0) {
		memcpy(s->key, key, sizeof(s->key));
		s->org = *org;
		s->expires = mono_ms() + cache_ms;
		s->refreshing = 0;
	} else if (same) {
		if (drop)
			s->expires = 0;
		s->refreshing = 0;
	}
	pthread_mutex_unlock(&lock);
}

/* ---- bounded password checks ---------------------------------------------------------- */

/*
 * Joins the check of key: as its leader (*leader = 1: hash, then flight_finish) or as a
 * follower of a check already running (flight_follow). NULL when check_cap workers are
 * already inside checks or AUTH_FLIGHTS credentials are being checked: answer AUTH_BUSY.
 */
static struct flight *
flight_join(const unsigned char *key, int *leader)
{
	struct flight *f = NULL;
	size_t i;

	pthread_mutex_lock(&lock);
	if (in_check < check_cap) {
		for (i = 0; i < AUTH_FLIGHTS && f == NULL; i++)
			if (flights[i].used && sodium_memcmp(flights[i].key, key, sizeof(flights[i].key)) == 0)
				f = &flights[i];
		if (f != NULL) {
			f->waiters++;
			*leader = 0;
		} else {
			for (i = 0; i < AUTH_FLIGHTS && f == NULL; i++)
				if (!flights[i].used)
					f = &flights[i];
			if (f != NULL) {
				memcpy(f->key, key, sizeof(f->key));
				f->used = 1;
				f->done = 0;
				f->waiters = 0;
				*leader = 1;
			}
		}
		if (f != NULL)
			in_check++;
	}
	pthread_mutex_unlock(&lock);
	return f;
}

/* The leader publishes its result (org: with AUTH_OK) to the followers and leaves. */
static void
flight_finish(struct flight *f, enum auth_result r, const struct auth_org *org)
{
	pthread_mutex_lock(&lock);
	f->result = r;
	if (org != NULL)
		f->org = *org;
	f->done = 1;
	in_check--;
	if (f->waiters == 0)
		f->used = 0;
	pthread_cond_broadcast(&flight_cond);
	pthread_mutex_unlock(&lock);
}

/* A follower waits (AUTH_FOLLOW_WAIT_MS at most: then AUTH_BUSY) for the leader's result. */
static enum auth_result
flight_follow(struct flight *f, struct auth_org *out)
{
	int64_t deadline = mono_ms() + AUTH_FOLLOW_WAIT_MS;
	enum auth_result r;

	pthread_mutex_lock(&lock);
	while (!f->done)
		if (cond_wait_until(&flight_cond, deadline) != 0)
			break;
	r = f->done ? f->result : AUTH_BUSY;
	if (r == AUTH_OK)
		*out = f->org;
	f->waiters--;
	in_check--;
	if (f->done && f->waiters == 0)
		f->used = 0;
	pthread_mutex_unlock(&lock);
	return r;
}

/* Takes a hashing slot, waiting until the monotonic deadline at most; 0 or -1. */
static int
slot_take(int64_t deadline)
{
	int rc = 0;

	pthread_mutex_lock(&lock);
	while (hashing >= AUTH_HASHING)
		if (cond_wait_until(&slot_cond, deadline) != 0 && hashing >= AUTH_HASHING) {
			rc = -1;
			break;
		}
	if (rc == 0)
		hashing++;
	pthread_mutex_unlock(&lock);
	return rc;
}

static void
slot_give(void)
{
	pthread_mutex_lock(&lock);
	hashing--;
	pthread_cond_signal(&slot_cond);
	pthread_mutex_unlock(&lock);
}

/* ---- failed-login counters (docs/DATA-MODEL.md) --------------------------------------- */

struct login_keys {
	char user_hex[33];              /* BLAKE2b-128 of the username: also auth_org.cred */
	char user[48];                  /* counter of the username */
	char addr[48];                  /* counter of the client address, "" when not counted */
};

static void
hex_digest(const char *text, char hex[33])
{
	unsigned char h[16];

	crypto_generichash(h, sizeof(h), (const unsigned char *)text, strlen(text), NULL, 0);
	sodium_bin2hex(hex, 33, h, sizeof(h));
}

static void
login_keys(const char *user, const char *client_addr, struct login_keys *k)
{
	char bucket[INET6_ADDRSTRLEN + 8], hex[33];

	hex_digest(user, k->user_hex);
	snprintf(k->user, sizeof(k->user), KEYS_LOGIN_FAIL_USER_FMT, k->user_hex);
	k->addr[0] = '\0';
	if (auth_addr_bucket(client_addr, bucket, sizeof(bucket)) == 0) {
		hex_digest(bucket, hex);
		snprintf(k->addr, sizeof(k->addr), KEYS_LOGIN_FAIL_ADDR_FMT, hex);
	}
}

/* Seconds until a counter's window ends, from its PTTL reply. */
static int
window_left(const redisReply *pttl)
{
	if (pttl->type != REDIS_REPLY_INTEGER || pttl->integer <= 0)
		return AUTH_FAIL_WINDOW_S;
	return (int)((pttl->integer + 999) / 1000);
}

/*
 * One round trip: the stored credential of user and, with check_limits, the failed-login
 * counters. Returns AUTH_OK with *cred (the store's reply, valid for the request; NULL for
 * an unknown username), AUTH_LIMITED_* with *retry_after, or AUTH_STORE_DOWN.
 */
static enum auth_result
fetch(struct store *st, const char *user, const struct login_keys *k, int check_limits,
      const redisReply **cred, int *retry_after)
{
	struct store_argv cmds[5];
	const char *key[2] = { NULL, NULL };
	int limit[2] = { 0, 0 };
	redisReply **rep = NULL;
	size_t i, n = 1;
	enum auth_result r = AUTH_OK;

	for (i = 0; i < 5; i++)
		store_argv_init(&cmds[i]);
	store_argv_add(&cmds[0], "HGET", 4);
	store_argv_add(&cmds[0], KEYS_CREDS, strlen(KEYS_CREDS));
	store_argv_add(&cmds[0], user, strlen(user));
	if (check_limits && limit_user > 0) {
		key[0] = k->user;
		limit[0] = limit_user;
	}
	if (check_limits && limit_addr > 0 && k->addr[0] != '\0') {
		key[1] = k->addr;
		limit[1] = limit_addr;
	}
	for (i = 0; i < 2; i++) {
		if (key[i] == NULL)
			continue;
		store_argv_add(&cmds[n], "GET", 3);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
		store_argv_add(&cmds[n], "PTTL", 4);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
	}
	if (store_pipeline(st, cmds, n, &rep) != 0) {
		r = AUTH_STORE_DOWN;
		goto out;
	}
	*cred = rep[0]->type == REDIS_REPLY_STRING ? rep[0] : NULL;
	for (n = 1, i = 0; i < 2; i++) {
		const redisReply *count, *pttl;

		if (key[i] == NULL)
			continue;
		count = rep[n++];
		pttl = rep[n++];
		if (count->type == REDIS_REPLY_STRING && atoll(count->str) >= limit[i]) {
			int left = window_left(pttl);

			if (r == AUTH_OK)
				r = i == 0 ? AUTH_LIMITED_USER : AUTH_LIMITED_ADDR;
			if (left > *retry_after)
				*retry_after = left;
		}
	}
out:
	for (i = 0; i < 5; i++)
		store_argv_free(&cmds[i]);
	return r;
}

/*
 * Counts one failed login against the username and the address (INCR, and an expiry for
 * a new window; EXPIRE NX never extends a running one), in one round trip. A failure to
 * count is not the client's problem: the replies are not looked at.
 */
static void
count_failure(struct store *st, const struct login_keys *k)
{
	struct store_argv cmds[4];
	const char *key[2] = { limit_user > 0 ? k->user : NULL,
	                       limit_addr > 0 && k->addr[0] != '\0' ? k->addr : NULL };
	redisReply **rep = NULL;
	size_t i, n = 0;

	metrics_login_failed();
	for (i = 0; i < 4; i++)
		store_argv_init(&cmds[i]);
	for (i = 0; i < 2; i++) {
		if (key[i] == NULL)
			continue;
		store_argv_add(&cmds[n], "INCR", 4);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
		store_argv_add(&cmds[n], "EXPIRE", 6);
		store_argv_add(&cmds[n], key[i], strlen(key[i]));
		store_argv_addf(&cmds[n], "%d", AUTH_FAIL_WINDOW_S);
		store_argv_add(&cmds[n++], "NX", 2);
	}
	if (n > 0)
		(void)store_pipeline(st, cmds, n, &rep);
	for (i = 0; i < 4; i++)
		store_argv_free(&cmds[i]);
}

/* ---- verification --------------------------------------------------------------------- */

/*
 * Checks pass against the stored credential (a hashing slot is awaited until
 * slot_deadline) and reads the org's settings. AUTH_OK fills *out (but out->cred);
 * AUTH_DENIED, AUTH_BUSY (no slot in time) or AUTH_STORE_DOWN otherwise.
 */
static enum auth_result
verify(struct store *st, const char *pass, const redisReply *stored, struct auth_org *out,
       int64_t slot_deadline)
{
	struct store_argv cmds[2];
	redisReply **rep = NULL, *r;
	struct json_object *cred, *v;
	const char *org, *hash;
	enum auth_result rc = AUTH_DENIED;
	int verified, member, down;
	size_t i;

	cred = json_tokener_parse(stored->str);
	if (cred == NULL || !json_object_object_get_ex(cred, "org", &v))
		goto out;
	org = json_object_get_string(v);
	if (!json_object_object_get_ex(cred, "hash", &v))
		goto out;
	hash = json_object_get_string(v);
	if (!ident_valid_org(org))
		goto out;
	if (slot_take(slot_deadline) != 0) {
		rc = AUTH_BUSY;
		goto out;
	}
	verified = crypto_pwhash_str_verify(hash, pass, strlen(pass)) == 0;
	slot_give();
	if (!verified)
		goto out;
	snprintf(out->org, sizeof(out->org), "%s", org);

	/* The org must still exist (its settings and its place in pp:orgs): a removed org's
	 * credentials are refused. */
	store_argv_init(&cmds[0]);
	store_argv_init(&cmds[1]);
	store_argv_add(&cmds[0], "HGETALL", 7);
	store_argv_addf(&cmds[0], KEYS_ORG_FMT, out->org);
	store_argv_add(&cmds[1], "SISMEMBER", 9);
	store_argv_add(&cmds[1], KEYS_ORGS, strlen(KEYS_ORGS));
	store_argv_add(&cmds[1], out->org, strlen(out->org));
	down = store_pipeline(st, cmds, 2, &rep) != 0;
	store_argv_free(&cmds[0]);
	store_argv_free(&cmds[1]);
	if (down) {
		rc = AUTH_STORE_DOWN;
		goto out;
	}
	member = rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer == 1;
	r = rep[0];
	if (!member || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
		goto out;
	out->country_code[0] = '\0';
	out->national_len = 0;
	for (i = 0; i + 1 < r->elements; i += 2) {
		if (strcmp(r->element[i]->str, "defaultCountryCode") == 0)
			snprintf(out->country_code, sizeof(out->country_code), "%s", r->element[i + 1]->str);
		else if (strcmp(r->element[i]->str, "nationalNumberLength") == 0)
			out->national_len = atoi(r->element[i + 1]->str);
	}
	rc = AUTH_OK;
out:
	json_object_put(cred);
	return rc;
}

/*
 * The order (SPEC §2): a cached credential is served at once (no Redis, no hash). Any
 * other request reads the credential and the failed-login counters in one round trip and
 * is refused over the limit without hashing; an unknown username fails without hashing;
 * otherwise the password check, bounded as described at the top. A failure is counted.
 *
 * A refresh (a cached entry near its end, one request per entry) checks no limit: its
 * credential was right a moment ago. When it cannot run now (no capacity, Redis away) the
 * cached entry keeps serving.
 */
enum auth_result
auth_check(struct store *st, const char *header, const char *client_addr, struct auth_org *out,
           int *retry_after)
{
	char user[CRED_MAX + 1], pass[CRED_MAX + 1];
	unsigned char key[crypto_generichash_BYTES];
	crypto_generichash_state h;
	struct auth_org cached;
	const redisReply *stored = NULL;
	struct login_keys k;
	enum cache_verdict v;
	enum auth_result r;
	struct flight *f;
	int leader = 0;

	*retry_after = 0;
	if (auth_parse_basic(header, user, sizeof(user), pass, sizeof(pass)) != 0)
		return AUTH_DENIED;
	crypto_generichash_init(&h, cache_salt, sizeof(cache_salt), sizeof(key));
	crypto_generichash_update(&h, (const unsigned char *)user, strlen(user) + 1);
	crypto_generichash_update(&h, (const unsigned char *)pass, strlen(pass));
	crypto_generichash_final(&h, key, sizeof(key));
	v = cache_get(key, &cached);
	if (v == CACHE_HIT) {
		sodium_memzero(pass, sizeof(pass));
		*out = cached;
		return AUTH_OK;
	}
	login_keys(user, client_addr, &k);
	if (v == CACHE_MISS) {
		r = fetch(st, user, &k, 1, &stored, retry_after);
		if (r == AUTH_LIMITED_USER || r == AUTH_LIMITED_ADDR)
			metrics_login_limited(r == AUTH_LIMITED_ADDR);
		if (r == AUTH_OK && stored == NULL) {
			count_failure(st, &k);          /* unknown username: nothing to hash */
			r = AUTH_DENIED;
		}
		if (r != AUTH_OK)
			goto out;
	}
	f = flight_join(key, &leader);
	if (f == NULL) {
		r = AUTH_BUSY;
	} else if (!leader) {
		r = flight_follow(f, out);
	} else {
		r = AUTH_OK;
		if (v == CACHE_REFRESH) {
			r = fetch(st, user, &k, 0, &stored, retry_after);
			if (r == AUTH_OK && stored == NULL)
				r = AUTH_DENIED;
		}
		if (r == AUTH_OK)
			r = verify(st, pass, stored, out, v == CACHE_REFRESH ? 0 : mono_ms() + AUTH_SLOT_WAIT_MS);
		if (r == AUTH_OK) {
			snprintf(out->cred, sizeof(out->cred), "%s", k.user_hex);
			cache_done(key, out, 0);
		}
		flight_finish(f, r, out);
	}
	if (v == CACHE_REFRESH) {
		if (r == AUTH_BUSY || r == AUTH_STORE_DOWN) {
			/* Could not refresh now: the credential was valid a moment ago; keep serving it. */
			cache_done(key, NULL, 0);
			*out = cached;
			r = AUTH_OK;
		} else if (r != AUTH_OK) {
			cache_done(key, NULL, 1);
		}
	}
	if (r == AUTH_DENIED)
		count_failure(st, &k);
	if (r == AUTH_BUSY) {
		metrics_login_busy();
		*retry_after = AUTH_BUSY_RETRY_S;
	}
out:
	sodium_memzero(pass, sizeof(pass));
	return r;
}
