/*
 * store_auth: auth's side of the store (docs/DATA-MODEL.md: the credentials, the orgs and
 * the failed-login counters), in auth's terms. Key names and reply shapes stay in
 * store_auth.c; the policy (cache, hashing, limits) stays in auth.c.
 *
 * A failed-login counter is named by a hex digest (auth.c makes it): of the username, or
 * of the client address bucket.
 */
#ifndef PARTNERD_STORE_AUTH_H
#define PARTNERD_STORE_AUTH_H

#include <stdint.h>

#include "store.h"

/* A stored credential, as far as it could be read. */
struct store_credential {
	int found;                      /* the username has a credential */
	int readable;                   /* found, and it holds an org and a hash (as text) */
	char org[64 + 1];               /* NUL-terminated; "" unless readable (a longer org
	                                 * is no valid one, ident_valid_org: not readable) */
	char hash[512];                 /* the argon2id string; "" unless readable */
};

/* A failed-login counter as read. */
struct store_login_count {
	int64_t count;                  /* failures counted in the window; 0 when none */
	int64_t ttl_ms;                 /* the window's time left; <= 0 when unknown */
};

/*
 * One round trip: the credential of user and the failed-login counters named user_hex
 * and addr_hex (NULL: that counter is not read). Returns 0 with *cred, *user_count and
 * *addr_count filled (a counter not read is 0), or -1 when Redis could not be asked.
 */
int store_auth_fetch(struct store *st, const char *user, const char *user_hex, const char *addr_hex,
                     struct store_credential *cred, struct store_login_count *user_count,
                     struct store_login_count *addr_count);

/*
 * Counts one failed login on the counters named user_hex and addr_hex (NULL: not that
 * one): INCR, and an expiry of window_s for a new window (EXPIRE NX never extends a
 * running one), in one round trip. The replies are not looked at.
 */
void store_auth_count_failure(struct store *st, const char *user_hex, const char *addr_hex,
                              int window_s);

/* An org's settings (SPEC §3). */
struct store_org_settings {
	char country_code[8];           /* defaultCountryCode; "" when not set */
	int national_len;               /* nationalNumberLength; 0 when not set */
};

/*
 * Reads the settings of org, which must still exist (its settings and its place in the
 * set of orgs), in one round trip. Returns 1 with *out filled, 0 when the org does not
 * exist, or -1 when Redis could not be asked.
 */
int store_auth_org(struct store *st, const char *org, struct store_org_settings *out);

#endif
