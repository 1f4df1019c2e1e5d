/* Unit tests for src/store_keys.c: the key layout table (layout 2), the classifier, the
 * placement check and key names. */
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "layout.h"
#include "store_keys.h"
#include "test.h"

static struct store_key_parts kp;

static int kind_of(const char *k)
{
	return store_key_classify(k, strlen(k), &kp);
}

/* 1 when the classified key k is placed right (store_key_placed). */
static int placed(const char *k)
{
	int kind = kind_of(k);

	return kind >= 0 && store_key_placed(k, strlen(k), kind, &kp);
}

int main(void)
{
	char name[256], org[65], k2[256];
	const char *hex32 = "0123456789abcdef0123456789abcdef";
	const char *t42 = layout_tag(layout_part_of_cid(42), NULL);      /* cid 42's tag */
	const char *t0 = layout_tag(0, NULL), *t255 = layout_tag(255, NULL);

	TEST("every named kind's name classifies back as that kind with its parts") {
		static const struct { enum store_key kind; int64_t id; } k[] = {
			{ STORE_KEY_LAYOUT, 0 }, { STORE_KEY_ORGS, 0 }, { STORE_KEY_CREDS, 0 },
			{ STORE_KEY_ORG, 0 }, { STORE_KEY_PROGS, 0 }, { STORE_KEY_PSEQ, 0 },
			{ STORE_KEY_FEED, 0 }, { STORE_KEY_FEED, 255 },
			{ STORE_KEY_CUST, INT64_MAX }, { STORE_KEY_LOCK, 1 }, { STORE_KEY_HIST, 42 },
		};

		for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
			store_key_name(name, sizeof name, k[i].kind, "Org_1.prod-EU", k[i].id);
			CHECK(kind_of(name) == (int)k[i].kind);
			if (store_key_defs[k[i].kind].part[0] != STORE_PART_NONE)
				CHECK(strcmp(kp.org, "Org_1.prod-EU") == 0);
			CHECK(kp.tagged == store_key_tagged(k[i].kind));
			CHECK(store_key_placed(name, strlen(name), kind_of(name), &kp) == 1);
		}
		/* the ix and mid buckets, named in a partition */
		for (unsigned p = 0; p < LAYOUT_PARTS; p += 85) {
			store_key_name_at(name, sizeof name, STORE_KEY_IX, p, "acme", STORE_IDENT_EXTERNAL_ID);
			CHECK(kind_of(name) == STORE_KEY_IX && kp.ident == STORE_IDENT_EXTERNAL_ID &&
			      kp.part == p && kp.tagged);
			store_key_name_at(name, sizeof name, STORE_KEY_MID, p, "acme", 2147483647);
			CHECK(kind_of(name) == STORE_KEY_MID && kp.pid == 2147483647 && kp.part == p);
			store_key_name_at(name, sizeof name, STORE_KEY_FEED, p, "acme", 0);
			CHECK(kind_of(name) == STORE_KEY_FEED && kp.part == p);
		}
		snprintf(name, sizeof name, "pp:{%s}:c:acme:9223372036854775807",
		         layout_tag(layout_part_of_cid(INT64_MAX), NULL));
		CHECK(kind_of(name) == STORE_KEY_CUST && kp.cid == INT64_MAX &&
		      kp.part == layout_part_of_cid(INT64_MAX));
		snprintf(name, sizeof name, "pp:{%s}:mid:acme:7", t0);
		CHECK(kind_of(name) == STORE_KEY_MID && kp.pid == 7 && kp.part == 0);
		snprintf(name, sizeof name, "pp:{%s}:ix:acme:email", t255);
		CHECK(kind_of(name) == STORE_KEY_IX && kp.ident == STORE_IDENT_EMAIL && kp.part == 255);
		/* an org whose id looks like a tag is still an org */
		snprintf(name, sizeof name, "pp:{%s}:org", t0);
		CHECK(kind_of(name) == STORE_KEY_ORG && strcmp(kp.org, t0) == 0 && !kp.tagged);
	}
	TEST("names follow keys.h: a customer's keys carry its cid's tag") {
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0), "pp:orgs") == 0);
		CHECK(strcmp(store_key_name(name, sizeof name, STORE_KEY_LAYOUT, NULL, 0), "pp:layout") == 0);
		snprintf(k2, sizeof k2, "pp:{%s}:c:acme:42", t42);
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_CUST, "acme", 42), k2);
		snprintf(k2, sizeof k2, "pp:{%s}:lock:acme:42", t42);
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_LOCK, "acme", 42), k2);
		snprintf(k2, sizeof k2, "pp:{%s}:h:acme:42", t42);
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_HIST, "acme", 42), k2);
		snprintf(k2, sizeof k2, "pp:{%s}:feed:acme", t255);
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_FEED, "acme", 255), k2);
		snprintf(k2, sizeof k2, "pp:{%s}:ix:acme:mobile", t0);
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_IX, 0, "acme", STORE_IDENT_MOBILE), k2);
		snprintf(k2, sizeof k2, "pp:{%s}:mid:acme:3", t255);
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_MID, 255, "acme", 3), k2);
		/* a customer's key in a partition given (a misplaced key, for a message) */
		snprintf(k2, sizeof k2, "pp:{%s}:c:acme:42", t0);
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_CUST, 0, "acme", 42), k2);
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_ORG, 7, "acme", 0), "pp:{acme}:org");
		/* the keys.h formats, with the tag first */
		snprintf(k2, sizeof k2, KEYS_CUST_FMT, t42, "acme", 42LL);
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_CUST, "acme", 42), k2);
		/* an index without a bucket: all of its buckets, "{*}" (messages, a glob) */
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_IX, "acme", STORE_IDENT_MOBILE),
		             "pp:{*}:ix:acme:mobile");
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_MID, "acme", 3), "pp:{*}:mid:acme:3");
		CHECK(kind_of(name) == -1);             /* a glob, no key */
		/* not named: digests, ids out of range */
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_IX, "acme", STORE_NIDENTS), "");
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_MID, "acme", 0), "");
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_IDEM, "acme", 3), "");
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_FEED, "acme", 256), "");
		CHECK_EQ_STR(store_key_name(name, sizeof name, STORE_KEY_FEED, "acme", -1), "");
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_IX, 256, "acme", 0), "");
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_IX, 0, "acme", STORE_NIDENTS), "");
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_MID, 0, "acme", 0), "");
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_RATE, 0, "acme", 0), "");
		CHECK_EQ_STR(store_key_name_at(name, sizeof name, STORE_KEY_IDEM, 0, "acme", 0), "");
	}
	TEST("operational keys with digests classify: login, rate, idem, import") {
		unsigned b = layout_bucket_of(hex32, 32);

		snprintf(name, sizeof name, "pp:login:u:%s", hex32);
		CHECK(kind_of(name) == STORE_KEY_LOGIN_USER);
		snprintf(name, sizeof name, "pp:login:a:%s", hex32);
		CHECK(kind_of(name) == STORE_KEY_LOGIN_ADDR);
		snprintf(name, sizeof name, "pp:{%s}:rate:acme:%s:29384756", layout_tag(b, NULL), hex32);
		CHECK(kind_of(name) == STORE_KEY_RATE && kp.part == b && kp.hex_len == 32 &&
		      memcmp(name + kp.hex_at, hex32, 32) == 0);
		snprintf(name, sizeof name, "pp:{%s}:idem:acme:%s", layout_tag(b, NULL), hex32);
		CHECK(kind_of(name) == STORE_KEY_IDEM && kp.part == b);
		CHECK(kind_of("pp:{acme}:import:0a") == STORE_KEY_IMPORT);
	}
	TEST("placement: a customer's keys in its cid's partition, rate and idem in their HEX's") {
		unsigned b = layout_bucket_of(hex32, 32);

		snprintf(name, sizeof name, "pp:{%s}:c:acme:42", t42);
		CHECK(placed(name));
		snprintf(name, sizeof name, "pp:{%s}:h:acme:42", layout_tag((layout_part_of_cid(42) + 1) % LAYOUT_PARTS, NULL));
		CHECK(kind_of(name) == STORE_KEY_HIST && !placed(name));
		snprintf(name, sizeof name, "pp:{%s}:lock:acme:42", layout_tag((layout_part_of_cid(42) + 255) % LAYOUT_PARTS, NULL));
		CHECK(kind_of(name) == STORE_KEY_LOCK && !placed(name));
		snprintf(name, sizeof name, "pp:{%s}:idem:acme:%s", layout_tag(b, NULL), hex32);
		CHECK(placed(name));
		snprintf(name, sizeof name, "pp:{%s}:idem:acme:%s", layout_tag((b + 1) % LAYOUT_PARTS, NULL), hex32);
		CHECK(kind_of(name) == STORE_KEY_IDEM && !placed(name));
		snprintf(name, sizeof name, "pp:{%s}:rate:acme:%s:1", layout_tag((b + 1) % LAYOUT_PARTS, NULL), hex32);
		CHECK(kind_of(name) == STORE_KEY_RATE && !placed(name));
		/* buckets: their fields decide, so any partition passes here */
		snprintf(name, sizeof name, "pp:{%s}:ix:acme:mobile", t0);
		CHECK(placed(name));
		CHECK(placed("pp:{acme}:org"));
	}
	TEST("home: the partition a key's name gives it; retag: its name in another partition") {
		unsigned b = layout_bucket_of(hex32, 32), p42 = layout_part_of_cid(42);
		unsigned wrong = (p42 + 1) % LAYOUT_PARTS;
		char out[256];

		snprintf(name, sizeof name, "pp:{%s}:h:acme:42", layout_tag(wrong, NULL));
		CHECK(kind_of(name) == STORE_KEY_HIST);
		CHECK(store_key_home(name, strlen(name), STORE_KEY_HIST, &kp) == (int)p42);
		snprintf(k2, sizeof k2, "pp:{%s}:h:acme:42", t42);
		CHECK_EQ_STR(store_key_retag(out, sizeof out, name, strlen(name), p42), k2);
		snprintf(name, sizeof name, "pp:{%s}:rate:acme:%s:29000000", layout_tag(wrong, NULL), hex32);
		CHECK(kind_of(name) == STORE_KEY_RATE);
		CHECK(store_key_home(name, strlen(name), STORE_KEY_RATE, &kp) == (int)b);
		snprintf(k2, sizeof k2, "pp:{%s}:rate:acme:%s:29000000", layout_tag(b, NULL), hex32);
		CHECK_EQ_STR(store_key_retag(out, sizeof out, name, strlen(name), b), k2);
		snprintf(name, sizeof name, "pp:{%s}:ix:acme:mobile", t0);
		CHECK(store_key_home(name, strlen(name), kind_of(name), &kp) == -1);
		CHECK(store_key_home("pp:{acme}:org", 13, STORE_KEY_ORG, &kp) == -1);
		/* no partition tag, out of range, or too small a buffer: "" */
		CHECK_EQ_STR(store_key_retag(k2, sizeof k2, "pp:{acme}:org", 13, 0), "");
		CHECK_EQ_STR(store_key_retag(k2, sizeof k2, "pp:{p0.x}:c", 11, 0), "");
		CHECK_EQ_STR(store_key_retag(k2, sizeof k2, name, strlen(name), LAYOUT_PARTS), "");
		CHECK_EQ_STR(store_key_retag(k2, 8, name, strlen(name), 1), "");
	}
	TEST("names off the layout are stray") {
		CHECK(kind_of("pp:junk") == -1);
		CHECK(kind_of("pp:{acme}:junk") == -1);
		CHECK(kind_of("pp:layoutx") == -1);
		/* layout 1's names */
		CHECK(kind_of("pp:{acme:42}:c") == -1);
		CHECK(kind_of("pp:{acme:42}:lock") == -1);
		CHECK(kind_of("pp:{acme}:feed") == -1);
		CHECK(kind_of("pp:{acme}:ix:email") == -1);
		CHECK(kind_of("pp:{acme}:mid:7") == -1);
		snprintf(name, sizeof name, "pp:{acme}:idem:%s", hex32);
		CHECK(kind_of(name) == -1);
		/* a tag that is no partition's: another suffix, a leading zero, out of range */
		CHECK(kind_of("pp:{p0.0}:c:acme:1") == -1 || strcmp(t0, "p0.0") == 0);
		snprintf(name, sizeof name, "pp:{%sx}:c:acme:42", t42);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{p0%s}:c:acme:42", t42 + 1);
		CHECK(kind_of(name) == -1);
		CHECK(kind_of("pp:{p256.1}:feed:acme") == -1);
		CHECK(kind_of("pp:{p99999999999999999999.1}:feed:acme") == -1);
		CHECK(kind_of("pp:{acme}:c:acme:42") == -1);
		CHECK(kind_of("pp:{}:c:acme:42") == -1);
		/* the parts after a valid tag */
		snprintf(name, sizeof name, "pp:{%s}:c:acme:01", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:c:acme:0", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:c:acme:9223372036854775808", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:c:acme", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:feed:acme:5", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:mid:acme:0", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:mid:acme:2147483648", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:ix:acme:phone", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:ix:acme:emails", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:ix:a b:email", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:rate:acme:0123:1", t0);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:rate:acme:%s:", t0, hex32);
		CHECK(kind_of(name) == -1);
		snprintf(name, sizeof name, "pp:{%s}:idem:acme:%.31s", t0, hex32);
		CHECK(kind_of(name) == -1);
		CHECK(kind_of("pp:{acme}:") == -1);
		CHECK(kind_of("pp:{a b}:org") == -1);
		CHECK(kind_of("pp:{acme}:import:") == -1);
		CHECK(kind_of("pp:{acme}:import:0A") == -1);
		snprintf(name, sizeof name, "pp:login:u:%sa", hex32);
		CHECK(kind_of(name) == -1);
		CHECK(kind_of("pp:orgsx") == -1);
	}
	TEST("the org of a key name, known kind or stray") {
		snprintf(name, sizeof name, "pp:{%s}:c:acme:5", t0);
		CHECK(store_key_tag_org(name, strlen(name), org) == 0 && strcmp(org, "acme") == 0);
		snprintf(name, sizeof name, "pp:{%s}:feed:acme", t255);
		CHECK(store_key_tag_org(name, strlen(name), org) == 0 && strcmp(org, "acme") == 0);
		snprintf(name, sizeof name, "pp:{%s}:junk:acme:x:y", t0);
		CHECK(store_key_tag_org(name, strlen(name), org) == 0 && strcmp(org, "acme") == 0);
		CHECK(store_key_tag_org("pp:{acme}:org", 13, org) == 0 && strcmp(org, "acme") == 0);
		CHECK(store_key_tag_org("pp:{acme}:junk", 14, org) == 0 && strcmp(org, "acme") == 0);
		/* an org named like a tag owns its own keys */
		snprintf(name, sizeof name, "pp:{%s}:org", t0);
		CHECK(store_key_tag_org(name, strlen(name), org) == 0 && strcmp(org, t0) == 0);
		/* layout 1's customer keys: no org (stray for check) */
		CHECK(store_key_tag_org("pp:{acme:5}:c", 13, org) == -1);
		CHECK(store_key_tag_org("pp:{acme}:", 10, org) == -1);
		CHECK(store_key_tag_org("pp:{acme}", 9, org) == -1);
		CHECK(store_key_tag_org("pp:{acme}x", 10, org) == -1);
		CHECK(store_key_tag_org("pp:{}:org", 9, org) == -1);
		CHECK(store_key_tag_org("pp:orgs", 7, org) == -1);
		snprintf(name, sizeof name, "pp:{%s}:c:a b:5", t0);     /* an invalid org after the tag */
		CHECK(store_key_tag_org(name, strlen(name), org) == 0 && strcmp(org, t0) == 0);
	}
	TEST_MAIN_END();
}
