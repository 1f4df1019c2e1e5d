/* Unit tests for src/store_keys.c: the key layout table, the classifier and key names. */
#include <string.h>

#include "store_keys.h"
#include "test.h"

static struct store_key_parts kp;

static int kind_of(const char *k)
{
	return store_key_classify(k, strlen(k), &kp);
}

int main(void)
{
	char name[256], org[65];
	const char *hex32 = "0123456789abcdef0123456789abcdef";

	TEST("every named kind's name classifies back as that kind with its parts") {
		static const struct { enum store_key kind; int64_t id; } k[] = {
			{ STORE_KEY_ORGS, 0 }, { STORE_KEY_CREDS, 0 }, { STORE_KEY_ORG, 0 },
			{ STORE_KEY_PROGS, 0 }, { STORE_KEY_PSEQ, 0 }, { STORE_KEY_FEED, 0 },
			{ STORE_KEY_IX, STORE_IDENT_EXTERNAL_ID }, { STORE_KEY_MID, 2147483647 },
			{ STORE_KEY_CUST, INT64_MAX }, { STORE_KEY_LOCK, 1 }, { STORE_KEY_HIST, 42 },
		};

		for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
			store_key_name(name, sizeof name, k[i].kind, "Org_1.prod-EU", k[i].id);
			CHECK(kind_of(name) == (int)k[i].kind);
			if (store_key_defs[k[i].kind].part[0] == STORE_PART_ORG)
				CHECK(strcmp(kp.org, "Org_1.prod-EU") == 0);
		}
		CHECK(kind_of("pp:{acme:9223372036854775807}:c") == STORE_KEY_CUST &&
		      kp.cid == INT64_MAX);
		CHECK(kind_of("pp:{acme}:mid:7") == STORE_KEY_MID && kp.pid == 7);
		CHECK(kind_of("pp:{acme}:ix:email") == STORE_KEY_IX && kp.ident == STORE_IDENT_EMAIL);
	}
	TEST("names follow keys.h") {
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0), "pp:orgs") == 0);
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_CUST, "acme", 1001),
		             "pp:{acme:1001}:c") == 0);
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_IX, "acme", STORE_IDENT_MOBILE),
		             "pp:{acme}:ix:mobile") == 0);
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_MID, "acme", 3),
		             "pp:{acme}:mid:3") == 0);
		/* digests are not named from an id */
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_IDEM, "acme", 3), "") == 0);
	}
	TEST("operational keys with digests classify: login, rate, idem, import") {
		snprintf(name, sizeof name, "pp:login:u:%s", hex32);
		CHECK(kind_of(name) == STORE_KEY_LOGIN_USER);
		snprintf(name, sizeof name, "pp:login:a:%s", hex32);
		CHECK(kind_of(name) == STORE_KEY_LOGIN_ADDR);
		snprintf(name, sizeof name, "pp:{acme}:rate:%s:29384756", hex32);
		CHECK(kind_of(name) == STORE_KEY_RATE);
		snprintf(name, sizeof name, "pp:{acme}:idem:%s", hex32);
		CHECK(kind_of(name) == STORE_KEY_IDEM);
		CHECK(kind_of("pp:{acme}:import:0a") == STORE_KEY_IMPORT);
	}
	TEST("names off the layout are stray") {
		CHECK(kind_of("pp:junk") == -1);
		CHECK(kind_of("pp:{acme}:junk") == -1);
		CHECK(kind_of("pp:{acme:01}:c") == -1);
		CHECK(kind_of("pp:{acme:0}:c") == -1);
		CHECK(kind_of("pp:{acme:9223372036854775808}:c") == -1);
		CHECK(kind_of("pp:{acme:5}:feed") == -1);
		CHECK(kind_of("pp:{acme}:c") == -1);
		CHECK(kind_of("pp:{acme}:mid:0") == -1);
		CHECK(kind_of("pp:{acme}:mid:2147483648") == -1);
		CHECK(kind_of("pp:{acme}:ix:phone") == -1);
		CHECK(kind_of("pp:{acme}:ix:emails") == -1);
		CHECK(kind_of("pp:{acme}:") == -1);
		CHECK(kind_of("pp:{a b}:org") == -1);
		CHECK(kind_of("pp:{acme}:import:") == -1);
		CHECK(kind_of("pp:{acme}:import:0A") == -1);
		CHECK(kind_of("pp:{acme}:rate:0123:1") == -1);
		snprintf(name, sizeof name, "pp:{acme}:rate:%s:", hex32);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{acme}:idem:%.31s", hex32);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:login:u:%sa", hex32);
		CHECK(kind_of(name) == -1);
		CHECK(kind_of("pp:orgsx") == -1);
	}
	TEST("the org of a hash-tagged name, valid tag or not of a known kind") {
		CHECK(store_key_tag_org("pp:{acme:5}:c", 13, org) == 0 && strcmp(org, "acme") == 0);
		CHECK(store_key_tag_org("pp:{acme}:", 10, org) == 0 && strcmp(org, "acme") == 0);
		CHECK(store_key_tag_org("pp:{acme}:junk", 14, org) == 0);
		CHECK(store_key_tag_org("pp:{acme:01}:c", 14, org) == -1);
		CHECK(store_key_tag_org("pp:{acme}", 9, org) == -1);
		CHECK(store_key_tag_org("pp:{acme}x", 10, org) == -1);
		CHECK(store_key_tag_org("pp:{}:org", 9, org) == -1);
		CHECK(store_key_tag_org("pp:orgs", 7, org) == -1);
	}
	TEST_MAIN_END();
}
