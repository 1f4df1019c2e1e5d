/*
 * auth: HTTP Basic credentials -> the org they belong to (SPEC §2).
 *
 * Secrets are stored as libsodium crypto_pwhash_str strings (argon2id). A verified
 * credential is cached in memory (keyed by a BLAKE2b hash of username and password, never
 * the password itself) for a configurable time, so auth costs no Redis call and no
 * password hashing on the hot path. The cache is shared by all worker threads.
 */
#ifndef PARTNERD_AUTH_H
#define PARTNERD_AUTH_H

#include "store.h"

#define AUTH_ORG_MAX 64

struct auth_org {
	char org[AUTH_ORG_MAX + 1];
	char country_code[8];           /* defaultCountryCode digits */
	int national_len;               /* nationalNumberLength */
	char cred[33];                  /* hex BLAKE2b-128 of the username: names its rate window */
};

/* Sets the cache lifetime; call once before the workers start. 0 disables the cache. */
void auth_init(int cache_seconds);

/*
 * Checks an Authorization header value. Returns 0 and fills *out, 401 when the
 * credentials are missing or wrong, or 503 when Redis could not be asked.
 */
int auth_check(struct store *s, const char *authorization, struct auth_org *out);

/* Parses "Basic base64(user:pass)" into the buffers; 0 on success, -1 when malformed. */
int auth_parse_basic(const char *header, char *user, size_t usersz, char *pass, size_t passsz);

#endif
