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

#include <sodium.h>

#include "auth.h"
#include "clock.h"
#include "ident.h"
#include "metrics.h"
#include "store_auth.h"

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

/* The names of a login's failed-login counters (store_auth.h). */
struct login_keys {
	char user_hex[33];              /* BLAKE2b-128 of the username: also auth_org.cred */
	char addr_hex[33];              /* BLAKE2b-128 of the client address bucket */
	int has_addr;                   /* the address is counted */
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
	char bucket[INET6_ADDRSTRLEN + 8];

	hex_digest(user, k->user_hex);
	k->has_addr = auth_addr_bucket(client_addr, bucket, sizeof(bucket)) == 0;
	if (k->has_addr)
		hex_digest(bucket, k->addr_hex);
}

/* Seconds until a counter's window ends. */
static int
window_left(const struct store_login_count *c)
{
	if (c->ttl_ms <= 0)
		return AUTH_FAIL_WINDOW_S;
	return (int)((c->ttl_ms + 999) / 1000);
}

/*
 * One round trip: the stored credential of user and, with check_limits, the failed-login
 * counters. Returns AUTH_OK with *cred (cred->found 0 for an unknown username),
 * AUTH_LIMITED_* with *retry_after, or AUTH_STORE_DOWN.
 */
static enum auth_result
fetch(struct store *st, const char *user, const struct login_keys *k, int check_limits,
      struct store_credential *cred, int *retry_after)
{
	int limit[2] = { check_limits ? limit_user : 0, check_limits && k->has_addr ? limit_addr : 0 };
	struct store_login_count count[2];
	enum auth_result r = AUTH_OK;
	size_t i;

	if (store_auth_fetch(st, user, limit[0] > 0 ? k->user_hex : NULL, limit[1] > 0 ? k->addr_hex : NULL,
	                     cred, &count[0], &count[1]) != 0)
		return AUTH_STORE_DOWN;
	for (i = 0; i < 2; i++) {
		if (limit[i] > 0 && count[i].count >= limit[i]) {
			int left = window_left(&count[i]);

			if (r == AUTH_OK)
				r = i == 0 ? AUTH_LIMITED_USER : AUTH_LIMITED_ADDR;
			if (left > *retry_after)
				*retry_after = left;
		}
	}
	return r;
}

/*
 * Counts one failed login against the username and the address, in one round trip. A
 * failure to count is not the client's problem.
 */
static void
count_failure(struct store *st, const struct login_keys *k)
{
	metrics_login_failed();
	store_auth_count_failure(st, limit_user > 0 ? k->user_hex : NULL,
	                         limit_addr > 0 && k->has_addr ? k->addr_hex : NULL, AUTH_FAIL_WINDOW_S);
}

/* ---- verification --------------------------------------------------------------------- */

/*
 * Checks pass against the stored credential (a hashing slot is awaited until
 * slot_deadline) and reads the org's settings. AUTH_OK fills *out (but out->cred);
 * AUTH_DENIED, AUTH_BUSY (no slot in time) or AUTH_STORE_DOWN otherwise.
 */
static enum auth_result
verify(struct store *st, const char *pass, const struct store_credential *cred, struct auth_org *out,
       int64_t slot_deadline)
{
	struct store_org_settings set;
	int verified, rc;

	if (!cred->readable || !ident_valid_org(cred->org))
		return AUTH_DENIED;
	if (slot_take(slot_deadline) != 0)
		return AUTH_BUSY;
	verified = crypto_pwhash_str_verify(cred->hash, pass, strlen(pass)) == 0;
	slot_give();
	if (!verified)
		return AUTH_DENIED;
	snprintf(out->org, sizeof(out->org), "%s", cred->org);

	/* The org must still exist (its settings and its place in pp:orgs): a removed org's
	 * credentials are refused. */
	rc = store_auth_org(st, out->org, &set);
	if (rc < 0)
		return AUTH_STORE_DOWN;
	if (rc == 0)
		return AUTH_DENIED;
	memcpy(out->country_code, set.country_code, sizeof(out->country_code));
	out->national_len = set.national_len;
	return AUTH_OK;
}

/* One auth_check call: what its steps share. */
struct attempt {
	char user[CRED_MAX + 1], pass[CRED_MAX + 1];  /* pass is zeroed before auth_check returns */
	unsigned char key[crypto_generichash_BYTES];  /* the credential cache's key (cache_key) */
	enum cache_verdict v;                         /* the cache's answer for key */
	struct auth_org cached;                       /* the cached entry (CACHE_REFRESH) */
	struct login_keys k;                          /* the failed-login counters of the request */
	struct store_credential stored;               /* the credential as stored, once fetched */
};

/* The cache's key of a->user and a->pass: BLAKE2b, keyed with this process's random salt,
 * of the username, a NUL and the password. */
static void
cache_key(struct attempt *a)
{
	crypto_generichash_state h;

	crypto_generichash_init(&h, cache_salt, sizeof(cache_salt), sizeof(a->key));
	crypto_generichash_update(&h, (const unsigned char *)a->user, strlen(a->user) + 1);
	crypto_generichash_update(&h, (const unsigned char *)a->pass, strlen(a->pass));
	crypto_generichash_final(&h, a->key, sizeof(a->key));
}

/* A cache miss: the credential and the failed-login counters in one round trip, refused
 * over a limit; an unknown username fails (counted) without hashing. AUTH_OK goes on. */
static enum auth_result
fetch_on_miss(struct store *st, struct attempt *a, int *retry_after)
{
	enum auth_result r = fetch(st, a->user, &a->k, 1, &a->stored, retry_after);

	if (r == AUTH_LIMITED_USER || r == AUTH_LIMITED_ADDR)
		metrics_login_limited(r == AUTH_LIMITED_ADDR);
	if (r == AUTH_OK && !a->stored.found) {
		count_failure(st, &a->k);       /* unknown username: nothing to hash */
		r = AUTH_DENIED;
	}
	return r;
}

/* The flight leader's check: a refresh reads the credential again (no limits: it was right
 * a moment ago); then the password check, bounded, and a success cached. */
static enum auth_result
lead_check(struct store *st, struct attempt *a, struct auth_org *out, int *retry_after)
{
	enum auth_result r = AUTH_OK;

	if (a->v == CACHE_REFRESH) {
		r = fetch(st, a->user, &a->k, 0, &a->stored, retry_after);
		if (r == AUTH_OK && !a->stored.found)
			r = AUTH_DENIED;
	}
	if (r == AUTH_OK)
		r = verify(st, a->pass, &a->stored, out,
		           a->v == CACHE_REFRESH ? 0 : mono_ms() + AUTH_SLOT_WAIT_MS);
	if (r == AUTH_OK) {
		snprintf(out->cred, sizeof(out->cred), "%s", a->k.user_hex);
		cache_done(a->key, out, 0);
	}
	return r;
}

/* The end of a refresh with result r: when it could not run now (no capacity, Redis away)
 * the cached entry keeps serving; a refused credential leaves the cache. */
static enum auth_result
refresh_end(const struct attempt *a, enum auth_result r, struct auth_org *out)
{
	if (r == AUTH_BUSY || r == AUTH_STORE_DOWN) {
		cache_done(a->key, NULL, 0);
		*out = a->cached;
		return AUTH_OK;
	}
	if (r != AUTH_OK)
		cache_done(a->key, NULL, 1);
	return r;
}

/* The password check of a key, once at a time: the flight's leader checks, the others take
 * its answer (no flight free: busy). Then a refresh's end, a failure counted, busy's wait. */
static enum auth_result
check_in_flight(struct store *st, struct attempt *a, struct auth_org *out, int *retry_after)
{
	enum auth_result r;
	struct flight *f;
	int leader = 0;

	f = flight_join(a->key, &leader);
	if (f == NULL) {
		r = AUTH_BUSY;
	} else if (!leader) {
		r = flight_follow(f, out);
	} else {
		r = lead_check(st, a, out, retry_after);
		flight_finish(f, r, out);
	}
	if (a->v == CACHE_REFRESH)
		r = refresh_end(a, r, out);
	if (r == AUTH_DENIED)
		count_failure(st, &a->k);
	if (r == AUTH_BUSY) {
		metrics_login_busy();
		*retry_after = AUTH_BUSY_RETRY_S;
	}
	return r;
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
	struct attempt a;
	enum auth_result r;

	*retry_after = 0;
	if (auth_parse_basic(header, a.user, sizeof(a.user), a.pass, sizeof(a.pass)) != 0)
		return AUTH_DENIED;
	cache_key(&a);
	a.v = cache_get(a.key, &a.cached);
	if (a.v == CACHE_HIT) {
		*out = a.cached;
		r = AUTH_OK;
	} else {
		uint64_t trips = store_round_trips(st);

		login_keys(a.user, client_addr, &a.k);
		r = a.v == CACHE_MISS ? fetch_on_miss(st, &a, retry_after) : AUTH_OK;
		if (r == AUTH_OK)
			r = check_in_flight(st, &a, out, retry_after);
		metrics_login_rounds((unsigned long)(store_round_trips(st) - trips));
	}
	sodium_memzero(a.pass, sizeof(a.pass));
	return r;
}
