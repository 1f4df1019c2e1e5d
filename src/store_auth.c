/*
 * store_auth: credentials, org settings and failed-login counters (store_auth.h). Key
 * names from keys.h; a credential is the JSON {"org": ..., "hash": ...} that partnerctl
 * stores (docs/DATA-MODEL.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "keys.h"
#include "store_auth.h"

#define COUNTER_KEY_MAX 48

/* The stored credential text (NUL-terminated) into *cred. */
static void
credential_of(const char *text, struct store_credential *cred)
{
	struct json_object *o = json_tokener_parse(text), *v;
	const char *org = NULL, *hash = NULL;

	cred->found = 1;
	if (o != NULL && json_object_object_get_ex(o, "org", &v))
		org = json_object_get_string(v);
	if (org != NULL && json_object_object_get_ex(o, "hash", &v))
		hash = json_object_get_string(v);
	if (hash != NULL && strlen(org) < sizeof(cred->org) && strlen(hash) < sizeof(cred->hash)) {
		memcpy(cred->org, org, strlen(org) + 1);
		memcpy(cred->hash, hash, strlen(hash) + 1);
		cred->readable = 1;
	}
	json_object_put(o);
}

/* The name of counter which (0: username, 1: address) for hex, in key; NULL when hex is. */
static const char *
counter_key(int which, const char *hex, char key[COUNTER_KEY_MAX])
{
	if (hex == NULL)
		return NULL;
	snprintf(key, COUNTER_KEY_MAX, which == 0 ? KEYS_LOGIN_FAIL_USER_FMT : KEYS_LOGIN_FAIL_ADDR_FMT, hex);
	return key;
}

static void
count_of(const redisReply *count, const redisReply *pttl, struct store_login_count *out)
{
	out->count = count->type == REDIS_REPLY_STRING ? atoll(count->str) : 0;
	out->ttl_ms = pttl->type == REDIS_REPLY_INTEGER ? pttl->integer : 0;
}

int
store_auth_fetch(struct store *st, const char *user, const char *user_hex, const char *addr_hex,
                 struct store_credential *cred, struct store_login_count *user_count,
                 struct store_login_count *addr_count)
{
	struct store_argv cmds[5];
	const char *hex[2] = { user_hex, addr_hex };
	struct store_login_count *counts[2] = { user_count, addr_count };
	char key[2][COUNTER_KEY_MAX];
	redisReply **rep = NULL;
	size_t i, n = 1;
	int rc = 0;

	memset(cred, 0, sizeof(*cred));
	memset(user_count, 0, sizeof(*user_count));
	memset(addr_count, 0, sizeof(*addr_count));
	for (i = 0; i < 5; i++)
		store_argv_init(&cmds[i]);
	store_argv_add(&cmds[0], "HGET", 4);
	store_argv_add(&cmds[0], KEYS_CREDS, strlen(KEYS_CREDS));
	store_argv_add(&cmds[0], user, strlen(user));
	for (i = 0; i < 2; i++) {
		if (counter_key((int)i, hex[i], key[i]) == NULL)
			continue;
		store_argv_add(&cmds[n], "GET", 3);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
		store_argv_add(&cmds[n], "PTTL", 4);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
	}
	if (store_pipeline(st, cmds, n, &rep) != 0) {
		rc = -1;
		goto out;
	}
	if (rep[0]->type == REDIS_REPLY_STRING)
		credential_of(rep[0]->str, cred);
	for (n = 1, i = 0; i < 2; i++) {
		if (hex[i] == NULL)
			continue;
		count_of(rep[n], rep[n + 1], counts[i]);
		n += 2;
	}
out:
	for (i = 0; i < 5; i++)
		store_argv_free(&cmds[i]);
	return rc;
}

void
store_auth_count_failure(struct store *st, const char *user_hex, const char *addr_hex, int window_s)
{
	struct store_argv cmds[4];
	const char *hex[2] = { user_hex, addr_hex };
	char key[2][COUNTER_KEY_MAX];
	redisReply **rep = NULL;
	size_t i, n = 0;

	for (i = 0; i < 4; i++)
		store_argv_init(&cmds[i]);
	for (i = 0; i < 2; i++) {
		if (counter_key((int)i, hex[i], key[i]) == NULL)
			continue;
		store_argv_add(&cmds[n], "INCR", 4);
		store_argv_add(&cmds[n++], key[i], strlen(key[i]));
		store_argv_add(&cmds[n], "EXPIRE", 6);
		store_argv_add(&cmds[n], key[i], strlen(key[i]));
		store_argv_addf(&cmds[n], "%d", window_s);
		store_argv_add(&cmds[n++], "NX", 2);
	}
	if (n > 0)
		(void)store_pipeline(st, cmds, n, &rep);
	for (i = 0; i < 4; i++)
		store_argv_free(&cmds[i]);
}

int
store_auth_org(struct store *st, const char *org, struct store_org_settings *out)
{
	struct store_argv cmds[2];
	redisReply **rep = NULL, *r;
	int down;
	size_t i;

	store_argv_init(&cmds[0]);
	store_argv_init(&cmds[1]);
	store_argv_add(&cmds[0], "HGETALL", 7);
	store_argv_addf(&cmds[0], KEYS_ORG_FMT, org);
	store_argv_add(&cmds[1], "SISMEMBER", 9);
	store_argv_add(&cmds[1], KEYS_ORGS, strlen(KEYS_ORGS));
	store_argv_add(&cmds[1], org, strlen(org));
	down = store_pipeline(st, cmds, 2, &rep) != 0;
	store_argv_free(&cmds[0]);
	store_argv_free(&cmds[1]);
	if (down)
		return -1;
	r = rep[0];
	if (!(rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer == 1) || r->type != REDIS_REPLY_ARRAY ||
	    r->elements == 0)
		return 0;
	out->country_code[0] = '\0';
	out->national_len = 0;
	for (i = 0; i + 1 < r->elements; i += 2) {
		if (strcmp(r->element[i]->str, "defaultCountryCode") == 0)
			snprintf(out->country_code, sizeof(out->country_code), "%s", r->element[i + 1]->str);
		else if (strcmp(r->element[i]->str, "nationalNumberLength") == 0)
			out->national_len = atoi(r->element[i + 1]->str);
	}
	return 1;
}
