/*
 * auth: HTTP Basic credentials -> the org they belong to (SPEC §2).
 *
 * Secrets are stored as libsodium crypto_pwhash_str strings (argon2id). A verified
 * credential is cached in memory (keyed by a BLAKE2b hash of username and password, never
 * the password itself) for a configurable time, so auth costs no Redis call and no
 * password hashing on the hot path. The cache is shared by all worker threads.
 *
 * Failed logins cannot starve anyone (SPEC §2): a request that is not a cache hit first
 * reads the failed-login counters of its username and client address from Redis (in the
 * same round trip as the credential) and is refused with AUTH_LIMITED_* over the limit,
 * without hashing; a failed check increments both counters. Password checks are bounded in
 * number and time: at most AUTH_HASHING run at once, a check waits at most
 * AUTH_SLOT_WAIT_MS for one, and at most a share of the workers (the rest are kept for
 * cached credentials, health and metrics) may be inside a password check at all; beyond
 * that a request gets AUTH_BUSY at once.
 */
#ifndef PARTNERD_AUTH_H
#define PARTNERD_AUTH_H

#include "store.h"

#define AUTH_ORG_MAX 64
#define AUTH_FAIL_WINDOW_S 60           /* failed logins are counted in windows this long */

struct auth_org {
	char org[AUTH_ORG_MAX + 1];
	char country_code[8];           /* defaultCountryCode digits */
	int national_len;               /* nationalNumberLength */
	char cred[33];                  /* hex BLAKE2b-128 of the username: names its rate window */
};

struct auth_cfg {
	int cache_seconds;              /* trust a verified credential this long; 0: no cache */
	int fail_limit_user;            /* failed logins per username and window; 0: no limit */
	int fail_limit_addr;            /* failed logins per client address and window; 0: no limit */
	int workers;                    /* worker threads of the process (sizes the check cap) */
};

enum auth_result {
	AUTH_OK = 0,
	AUTH_DENIED,                    /* 401: missing, malformed or wrong credentials */
	AUTH_LIMITED_USER,              /* 429: too many failed logins for this username */
	AUTH_LIMITED_ADDR,              /* 429: too many failed logins from this address */
	AUTH_BUSY,                      /* 503: no password check could start in time */
	AUTH_STORE_DOWN,                /* 503: Redis could not be asked */
};

/* Sets the cache lifetime and the limits; call once before the workers start. */
void auth_init(const struct auth_cfg *cfg);

/*
 * Checks an Authorization header value sent from client_addr (REMOTE_ADDR as nginx
 * passes it; NULL or "" when unknown: then only the username is limited). Returns AUTH_OK
 * and fills *out, or why not; *retry_after is set (seconds, >= 1) with AUTH_LIMITED_* and
 * AUTH_BUSY.
 */
enum auth_result auth_check(struct store *s, const char *authorization, const char *client_addr,
                            struct auth_org *out, int *retry_after);

/* Parses "Basic base64(user:pass)" into the buffers; 0 on success, -1 when malformed. */
int auth_parse_basic(const char *header, char *user, size_t usersz, char *pass, size_t passsz);

/*
 * The text a client address is counted under: an IPv4 address as it is, an IPv4-mapped
 * IPv6 address as its IPv4 address, any other IPv6 address as its /64 prefix
 * ("2001:db8:1:2::/64": one end user usually holds a whole /64). Returns 0, or -1 when
 * addr is not an IP address (then it is not counted). Pure; for the unit tests too.
 */
int auth_addr_bucket(const char *addr, char *out, size_t outsz);

#endif
