/* Unit tests for src/rules_codec.c: the stored forms of memberships and programs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_codec.h"
#include "test.h"

#define NOW 1800000000000LL             /* 2027-01-15 */
#define DAY 86400000LL

/* ---- stored membership values ---- */

static int values_eq(const struct rules_values *a, const struct rules_values *b)
{
	return a->mid_len == b->mid_len && memcmp(a->mid, b->mid, a->mid_len) == 0 &&
	       (a->tier == NULL) == (b->tier == NULL) &&
	       (a->tier == NULL || (a->tier_len == b->tier_len &&
	                            memcmp(a->tier, b->tier, a->tier_len) == 0)) &&
	       a->exp == b->exp && a->start == b->start && a->end == b->end;
}

static int mship_eq(const struct rules_membership *a, const struct rules_membership *b)
{
	return values_eq(&a->v, &b->v) && a->linked_on == b->linked_on &&
	       a->updated_on == b->updated_on && a->has_relink == b->has_relink &&
	       (!a->has_relink || values_eq(&a->rl, &b->rl));
}

/*
 * Encodes m, checks the bytes when want is not NULL (want_len bytes), decodes them back
 * and compares. Returns 1 when everything agrees.
 */
static int roundtrip(const struct rules_membership *m, const char *want, size_t want_len)
{
	struct rules_membership back;
	size_t len;
	char *enc = rules_membership_encode(m, &len);
	int ok = 1;

	if (want != NULL && (len != want_len || memcmp(enc, want, len) != 0)) {
		printf("  encoded %zu bytes: \"%.*s\", want \"%.*s\"\n", len, (int)len, enc,
		       (int)want_len, want);
		ok = 0;
	}
	if (enc[len] != '\0')
		ok = 0;
	if (rules_membership_parse(enc, len, &back) != 0) {
		printf("  \"%.*s\" does not decode\n", (int)len, enc);
		ok = 0;
	} else {
		ok = ok && mship_eq(m, &back);
		rules_membership_free(&back);
	}
	free(enc);
	return ok;
}

/* 1 when the value s (len bytes) is refused, and m left empty. */
static int refused(const char *s, size_t len)
{
	struct rules_membership m;
	int rc = rules_membership_parse(s, len, &m);

	if (rc == 0) {
		printf("  \"%.*s\" was accepted\n", (int)len, s);
		rules_membership_free(&m);
		return 0;
	}
	return m.v.mid == NULL && m.v.tier == NULL && m.rl.mid == NULL && m.rl.tier == NULL;
}

#define REFUSED(lit) refused(lit, sizeof(lit) - 1)
#define RT(m, lit) roundtrip(m, lit, sizeof(lit) - 1)

/* loyw3v28 = 1700000000000, mjuohr88 = 1767225599000, mywpiww0 = 1800000000000 (NOW) */
#define T1700 "loyw3v28"
#define T1767 "mjuohr88"
#define TNOW "mywpiww0"

static struct rules_membership mship(const char *mid, size_t mid_len, const char *tier)
{
	struct rules_membership m = { 0 };

	m.v.mid = (char *)mid;
	m.v.mid_len = mid_len;
	m.v.tier = (char *)tier;
	m.v.tier_len = tier ? strlen(tier) : 0;
	m.v.exp = RULES_NONE;
	m.v.start = NOW;
	m.v.end = RULES_NONE;
	m.linked_on = NOW;
	m.updated_on = NOW;
	return m;
}

static void membership_value_tests(void)
{
	struct rules_membership m, back;

	TEST("compact value: the documented example, and typical values within 64 bytes") {
		m = mship("P1-123456", 9, "Silver");
		m.v.exp = 1767225599000LL;
		m.v.start = m.linked_on = m.updated_on = 1700000000000LL;
		CHECK(RT(&m, "9:P1-123456,6:Silver," T1767 ",,," T1700 "," T1700));
		CHECK(strlen("9:P1-123456,6:Silver," T1767 ",,," T1700 "," T1700) < 64);
		/* a 20-byte mid, an 8-byte tier, an expiry and up != lk still fit in 64 bytes */
		m = mship("ABCDEFGHIJ0123456789", 20, "Platinum");
		m.v.exp = 1767225599000LL;
		m.updated_on = NOW + DAY;
		{
			size_t len;
			char *e = rules_membership_encode(&m, &len);

			CHECK(len <= 64);
			free(e);
		}
		CHECK(roundtrip(&m, NULL, 0));
	}
	TEST("compact value: null tier, exp, end, lk and up round-trip") {
		m = mship("M", 1, NULL);
		CHECK(RT(&m, "1:M,-,,,," TNOW "," TNOW));
		m.linked_on = RULES_NONE;
		m.updated_on = RULES_NONE;
		CHECK(RT(&m, "1:M,-,," TNOW ",,,"));
		m.linked_on = NOW;
		m.v.tier = (char *)"";
		m.v.tier_len = 0;
		CHECK(RT(&m, "1:M,0:,,,," TNOW ","));
	}
	TEST("compact value: start written when it is not lk, omitted when it is") {
		m = mship("M", 1, "T");
		m.v.start = NOW + DAY;
		CHECK(RT(&m, "1:M,1:T,,myy4yrk0,," TNOW "," TNOW));
		m.v.start = NOW;
		CHECK(RT(&m, "1:M,1:T,,,," TNOW "," TNOW));
		/* an explicit START equal to LK is read too */
		CHECK(rules_membership_parse("1:M,1:T,," TNOW ",," TNOW "," TNOW,
		                             strlen("1:M,1:T,," TNOW ",," TNOW "," TNOW), &back) == 0);
		CHECK(back.v.start == NOW && back.linked_on == NOW);
		rules_membership_free(&back);
	}
	TEST("compact value: negative, zero and extreme times round-trip") {
		m = mship("M", 1, NULL);
		m.v.exp = -1;
		m.v.start = -36;
		m.v.end = 0;
		m.linked_on = INT64_MAX;
		m.updated_on = -INT64_MAX;
		CHECK(RT(&m, "1:M,-,-1,-10,0,1y2p0ij32e8e7,-1y2p0ij32e8e7"));
		m.v.start = m.linked_on = -1700000000000LL;
		CHECK(RT(&m, "1:M,-,-1,,0,-" T1700 ",-1y2p0ij32e8e7"));
	}
	TEST("compact value: a pending relink round-trips, its start always written") {
		m = mship("OLD", 3, "A");
		m.has_relink = 1;
		m.rl.mid = (char *)"NEW";
		m.rl.mid_len = 3;
		m.rl.tier = NULL;
		m.rl.exp = RULES_NONE;
		m.rl.start = NOW;
		m.rl.end = NOW + DAY;
		CHECK(RT(&m, "3:OLD,1:A,,,," TNOW "," TNOW ",3:NEW,-,," TNOW ",myy4yrk0"));
		m.rl.tier = (char *)"Gold";
		m.rl.tier_len = 4;
		m.rl.exp = 5;
		CHECK(RT(&m, "3:OLD,1:A,,,," TNOW "," TNOW ",3:NEW,4:Gold,5," TNOW ",myy4yrk0"));
	}
	TEST("compact value: mids and tiers holding , : - digits NUL and control bytes") {
		static const char mid[] = "a,b:c-d,9:x\0\x1f,";
		static const char tier[] = "-,1:";

		m = mship(mid, sizeof(mid) - 1, tier);
		CHECK(RT(&m, "14:a,b:c-d,9:x\0\x1f,,4:-,1:,,,," TNOW "," TNOW));
		m.has_relink = 1;
		m.rl.mid = (char *)"\0";
		m.rl.mid_len = 1;
		m.rl.tier = (char *)",";
		m.rl.tier_len = 1;
		m.rl.exp = m.rl.end = RULES_NONE;
		m.rl.start = 1;
		CHECK(RT(&m, "14:a,b:c-d,9:x\0\x1f,,4:-,1:,,,," TNOW "," TNOW ",1:\0,1:,,,1,"));
		/* a 1000-byte mid: a length of several digits */
		{
			char big[1000];

			memset(big, ',', sizeof(big));
			m = mship(big, sizeof(big), NULL);
			CHECK(roundtrip(&m, NULL, 0));
		}
	}
	TEST("compact value: malformed values are refused") {
		CHECK(REFUSED(""));
		CHECK(REFUSED("1:M,-,,,," TNOW "," TNOW "!"));           /* trailing byte */
		CHECK(REFUSED("1:M,-,,,," TNOW "," TNOW ","));           /* trailing comma */
		CHECK(REFUSED("1:M,-,,,," TNOW "," TNOW ",1:N,-,,1,,")); /* relink too long */
		CHECK(REFUSED("99:M,-,,,,1,1"));                        /* length past the end */
		CHECK(REFUSED("99999999999999999999999:M,-,,,,1,1"));  /* huge length */
		CHECK(REFUSED("2:M"));
		CHECK(REFUSED("1:M"));
		CHECK(REFUSED("1:M,-,,,,1"));                           /* no UP */
		CHECK(REFUSED("1:M,-,,,1"));                            /* a field short */
		CHECK(REFUSED("1:M-,,,,1,1"));                          /* missing separator */
		CHECK(REFUSED("1M,-,,,,1,1"));                          /* LEN without ':' */
		CHECK(REFUSED("x:M,-,,,,1,1"));                         /* non-digit LEN */
		CHECK(REFUSED(":M,-,,,,1,1"));                          /* empty LEN */
		CHECK(REFUSED("-1:M,-,,,,1,1"));
		CHECK(REFUSED("01:M,-,,,,1,1"));                        /* leading zero */
		CHECK(REFUSED("0:,-,,,,1,1"));                          /* empty MID */
		CHECK(REFUSED("1:M,-,,,,1,1,0:,-,,1,"));                /* empty relink MID */
		CHECK(REFUSED("1:M,x,,,,1,1"));                         /* TIER neither - nor LEN */
		CHECK(REFUSED("1:M,--,,,,1,1"));
		CHECK(REFUSED("1:M,1:T,,,,,1"));                        /* START omitted, LK null */
		CHECK(REFUSED("1:M,-,,,,1,1,1:N,-,,,"));                /* relink without START */
		CHECK(REFUSED("1:M,-,1y2p0ij32e8e8,,,1,1"));           /* 2^63: overflow */
		CHECK(REFUSED("1:M,-,-1y2p0ij32e8e8,,,1,1"));          /* -2^63 */
		CHECK(REFUSED("1:M,-,zzzzzzzzzzzzzzzzzz,,,1,1"));
		CHECK(REFUSED("1:M,-,A,,,1,1"));                        /* uppercase */
		CHECK(REFUSED("1:M,-,01,,,1,1"));                       /* leading zero */
		CHECK(REFUSED("1:M,-,-0,,,1,1"));
		CHECK(REFUSED("1:M,-,-,,,1,1"));                        /* a sign alone */
		CHECK(REFUSED("1:M,-,+1,,,1,1"));
		CHECK(REFUSED("1:M,-, 1,,,1,1"));
		CHECK(REFUSED("1:M,-,1 ,,,1,1"));
		CHECK(REFUSED("1:M,-,,,,1,1,"));
		CHECK(REFUSED("1:M,-,,,,1,1,,"));
		CHECK(REFUSED("1:M,-,,,,1,1\0"));
		/* the smallest accepted values, for contrast */
		CHECK(rules_membership_parse("1:M,-,,,,1,", 11, &back) == 0 && back.v.start == 1);
		rules_membership_free(&back);
		CHECK(rules_membership_parse("1:M,-,,0,,,", 11, &back) == 0 && back.v.start == 0 &&
		      back.linked_on == RULES_NONE);
		rules_membership_free(&back);
	}
	TEST("legacy JSON values are still read") {
		static const char json[] = "{\"mid\":\"App-1\",\"tier\":\"Bronze\",\"exp\":1767225599000,"
		                           "\"start\":1700000000000,\"end\":null,\"lk\":1700000000000,"
		                           "\"up\":1700000000001,\"rl\":{\"mid\":\"a\\\"b\\u0000\","
		                           "\"tier\":null,\"exp\":null,\"start\":1800000000000,\"end\":null}}";
		size_t len;
		char *enc;

		CHECK(rules_membership_parse(json, sizeof(json) - 1, &back) == 0);
		CHECK(back.v.mid_len == 5 && memcmp(back.v.mid, "App-1", 5) == 0);
		CHECK(back.v.tier_len == 6 && memcmp(back.v.tier, "Bronze", 6) == 0);
		CHECK(back.v.exp == 1767225599000LL && back.v.start == 1700000000000LL);
		CHECK(back.v.end == RULES_NONE && back.linked_on == 1700000000000LL);
		CHECK(back.updated_on == 1700000000001LL && back.has_relink);
		CHECK(back.rl.mid_len == 4 && memcmp(back.rl.mid, "a\"b\0", 4) == 0);
		CHECK(back.rl.tier == NULL && back.rl.start == NOW);
		/* ...and written back compact */
		enc = rules_membership_encode(&back, &len);
		CHECK(len == sizeof("5:App-1,6:Bronze," T1767 ",,," T1700 ",loyw3v29,4:a\"b\0,-,," TNOW ",") - 1 &&
		      memcmp(enc, "5:App-1,6:Bronze," T1767 ",,," T1700 ",loyw3v29,4:a\"b\0,-,," TNOW ",", len) == 0);
		free(enc);
		rules_membership_free(&back);
		CHECK(REFUSED("{\"mid\":\"\",\"tier\":null,\"start\":1}"));  /* empty mid */
		CHECK(REFUSED("{\"mid\":\"M\",\"tier\":null}"));             /* no start */
		CHECK(REFUSED("{\"mid\":\"M\",\"start\":1,\"rl\":5}"));
		CHECK(REFUSED("{\"mid\":\"M\",\"start\":1"));
		CHECK(REFUSED("{"));
	}
}

/* ---- the strict reading of membership values (partnerctl check) ---- */

/* Reads s strictly; returns its code, with why (when -2) in why_out. m is freed. */
static int strict_mship(const char *s, size_t len, char *why_out, size_t whysz)
{
	struct rules_membership m;
	int rc;

	why_out[0] = '\0';
	rc = rules_membership_parse_strict(s, len, &m, why_out, whysz);
	if (rc == 0)
		rules_membership_free(&m);
	else if (m.v.mid != NULL || m.v.tier != NULL || m.rl.mid != NULL || m.rl.tier != NULL)
		rc = 99;                        /* a refusal must leave m empty */
	return rc;
}

#define STRICT_MSHIP(lit, why) strict_mship(lit, sizeof(lit) - 1, why, sizeof(why))

/* A legacy JSON value with every key of the old format. */
#define LEGACY(rest) "{\"mid\":\"M\",\"tier\":null,\"exp\":null,\"start\":1,\"end\":null," rest "}"

static void strict_membership_tests(void)
{
	char why[200];

	TEST("strict membership: compact values read as leniently, malformed ones are -1") {
		CHECK_EQ_INT(STRICT_MSHIP("1:M,-,,,," TNOW "," TNOW, why), 0);
		CHECK_EQ_INT(STRICT_MSHIP("1:M,-,,,," TNOW "," TNOW "!", why), -1);
		CHECK_EQ_INT(STRICT_MSHIP("", why), -1);
	}
	TEST("strict membership: legacy JSON with exactly the old keys is read") {
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"up\":2,\"rl\":null"), why), 0);
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"up\":2,\"rl\":{\"mid\":\"N\",\"tier\":\"T\","
		                                 "\"exp\":5,\"start\":9,\"end\":null}"), why), 0);
	}
	TEST("strict membership: legacy JSON of the wrong shape is -2 with the reason") {
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"up\":2,\"rl\":null,\"extra\":1"), why), -2);
		CHECK_EQ_STR(why, "does not have exactly the keys mid, tier, exp, start, end, lk, up, rl");
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"rl\":null"), why), -2);
		CHECK_EQ_STR(why, "does not have exactly the keys mid, tier, exp, start, end, lk, up, rl");
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":\"1\",\"up\":2,\"rl\":null"), why), -2);
		CHECK_EQ_STR(why, "has a time that is not an integer (exp, start, end, lk, up)");
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"up\":2,\"rl\":{\"mid\":\"N\",\"tier\":null,"
		                                 "\"start\":9,\"end\":null}"), why), -2);
		CHECK_EQ_STR(why, "has a pending relink without exactly the keys mid, tier, exp, start, end");
		CHECK_EQ_INT(STRICT_MSHIP(LEGACY("\"lk\":1,\"up\":2,\"rl\":{\"mid\":\"N\",\"tier\":null,"
		                                 "\"exp\":\"5\",\"start\":9,\"end\":null}"), why), -2);
		CHECK_EQ_STR(why, "has a pending relink time that is not an integer");
	}
	TEST("strict membership: what even the lenient reader refuses is -1, before the shape") {
		/* no start (lenient refuses) and an extra key (shape): -1 wins */
		CHECK_EQ_INT(STRICT_MSHIP("{\"mid\":\"M\",\"extra\":1}", why), -1);
		CHECK_EQ_INT(STRICT_MSHIP("{\"mid\":\"\",\"tier\":null,\"exp\":null,\"start\":1,"
		                          "\"end\":null,\"lk\":1,\"up\":2,\"rl\":null}", why), -1);
	}
	TEST("strict membership: legacy JSON the lenient reader takes but strict JSON refuses is -1") {
		struct rules_membership m;
		static const char trailing[] = LEGACY("\"lk\":1,\"up\":2,\"rl\":null") " x";
		static const char latin1[] = "{\"mid\":\"\xe9\",\"tier\":null,\"exp\":null,\"start\":1,"
		                             "\"end\":null,\"lk\":1,\"up\":2,\"rl\":null}";

		CHECK_EQ_INT(rules_membership_parse(trailing, sizeof(trailing) - 1, &m), 0);
		rules_membership_free(&m);
		CHECK_EQ_INT(STRICT_MSHIP(trailing, why), -1);
		CHECK_EQ_INT(rules_membership_parse(latin1, sizeof(latin1) - 1, &m), 0);
		rules_membership_free(&m);
		CHECK_EQ_INT(STRICT_MSHIP(latin1, why), -1);
	}
}

/* ---- program definitions ---- */

/* Reads def strictly: 0, or -1 with the reason in why (and p left empty). */
static int strict_prog(const char *def, char *why, size_t whysz)
{
	struct rules_program p;
	int rc;

	why[0] = '\0';
	rc = rules_program_parse_strict(def, strlen(def), &p, why, whysz);
	if (rc != 0 && (p.ntiers != 0 || p.found))
		rc = 99;
	rules_program_free(&p);
	return rc;
}

/* A definition with every key; the arguments are the values of pid, type, tiers, cycle, expiresAt. */
#define DEF(pid, type, tiers, cycle, exp) \
	"{\"pid\":" pid ",\"type\":" type ",\"tiers\":" tiers ",\"cycle\":" cycle ",\"expiresAt\":" exp "}"
#define SUPP_DEF(cycle) DEF("3", "\"SUPPLEMENTARY\"", "[]", cycle, "null")

/* Definitions the strict reader refuses, with its reason (partnerctl prints it). */
static const struct { const char *def, *why; } bad_defs[] = {
	{ "{\"pid\":1", "is not valid JSON" },
	{ DEF("1", "\"EXTERNAL\"", "[]", "null", "null") " x", "is not valid JSON" },
	{ DEF("1", "\"EXTERNAL\"", "[\"\xff\"]", "null", "null"), "is not valid JSON" },
	{ "[1]", "does not have exactly the keys pid, type, tiers, cycle, expiresAt" },
	{ "{\"pid\":1,\"type\":\"EXTERNAL\",\"tiers\":[],\"cycle\":null}",
	  "does not have exactly the keys pid, type, tiers, cycle, expiresAt" },
	{ "{\"pid\":1,\"type\":\"EXTERNAL\",\"tiers\":[],\"cycle\":null,\"expiresAt\":null,\"name\":\"x\"}",
	  "does not have exactly the keys pid, type, tiers, cycle, expiresAt" },
	{ DEF("0", "\"EXTERNAL\"", "[]", "null", "null"), "has a bad pid" },
	{ DEF("\"1\"", "\"EXTERNAL\"", "[]", "null", "null"), "has a bad pid" },
	{ DEF("2147483648", "\"EXTERNAL\"", "[]", "null", "null"), "has a bad pid" },
	{ DEF("1", "\"external\"", "[]", "null", "null"), "has a bad type" },
	{ DEF("1", "null", "[]", "null", "null"), "has a bad type" },
	{ DEF("1", "\"EXTERNAL\"", "null", "null", "null"), "has tiers that are not an array" },
	{ DEF("1", "\"EXTERNAL\"", "[\"A\",\"\"]", "null", "null"), "has a tier that is not a non-empty string" },
	{ DEF("1", "\"EXTERNAL\"", "[\"A\",1]", "null", "null"), "has a tier that is not a non-empty string" },
	{ SUPP_DEF("5"), "has a cycle without exactly the keys unit, value" },
	{ SUPP_DEF("{\"unit\":\"DAYS\"}"), "has a cycle without exactly the keys unit, value" },
	{ SUPP_DEF("{\"unit\":\"YEARS\",\"value\":1}"), "has a bad cycle" },
	{ SUPP_DEF("{\"unit\":null,\"value\":1}"), "has a bad cycle" },
	{ SUPP_DEF("{\"unit\":\"DAYS\",\"value\":0}"), "has a bad cycle" },
	{ SUPP_DEF("{\"unit\":\"DAYS\",\"value\":\"30\"}"), "has a bad cycle" },
	{ DEF("1", "\"EXTERNAL\"", "[]", "{\"unit\":\"DAYS\",\"value\":30}", "null"),
	  "has a cycle but is not SUPPLEMENTARY" },
	{ DEF("1", "\"EXTERNAL\"", "[]", "null", "\"2027-01-01\""),
	  "has an expiresAt that is neither null nor an integer" },
};

/* Definitions with several problems: the first in the reader's documented order wins. */
static const struct { const char *def, *why; } first_problem[] = {
	{ DEF("0", "\"X\"", "5", "5", "\"x\""), "has a bad pid" },
	{ DEF("1", "\"X\"", "5", "5", "\"x\""), "has a bad type" },
	{ DEF("1", "\"EXTERNAL\"", "5", "5", "\"x\""), "has tiers that are not an array" },
	{ DEF("1", "\"EXTERNAL\"", "[]", "5", "\"x\""), "has a cycle without exactly the keys unit, value" },
	{ DEF("1", "\"EXTERNAL\"", "[]", "{\"unit\":\"X\",\"value\":1}", "\"x\""), "has a bad cycle" },
};

/* 1 when def is refused strictly with reason want. */
static int prog_refused(const char *def, const char *want)
{
	char why[200];
	int rc = strict_prog(def, why, sizeof(why));

	if (rc != -1 || strcmp(why, want) != 0) {
		printf("  %s: rc %d, why \"%s\", want \"%s\"\n", def, rc, why, want);
		return 0;
	}
	return 1;
}

static void program_tests(void)
{
	struct rules_program p;
	char why[200];
	size_t i;

	TEST("a stored program definition parses") {
		const char *def = "{\"pid\":3,\"type\":\"SUPPLEMENTARY\",\"tiers\":[\"A\",\"B\"],\"cycle\":{\"unit\":\"DAYS\",\"value\":30},\"expiresAt\":null}";

		CHECK_EQ_INT(rules_program_parse(def, strlen(def), &p), 0);
		CHECK(p.found && p.pid == 3 && p.supplementary && p.ntiers == 2 && p.has_cycle);
		CHECK(p.cycle_unit == DATES_DAYS && p.cycle_n == 30 && p.expires_at == RULES_NONE);
		rules_program_free(&p);
	}
	TEST("strict program: the documented definitions read as leniently") {
		static const char *const defs[] = {
			"{\"pid\":1,\"type\":\"EXTERNAL\",\"tiers\":[\"Bronze\",\"Silver\",\"Gold\"],\"cycle\":null,\"expiresAt\":null}",
			"{\"pid\":3,\"type\":\"SUPPLEMENTARY\",\"tiers\":[],\"cycle\":{\"unit\":\"MONTHS\",\"value\":12},\"expiresAt\":1767225599000}",
		};
		struct rules_program q;
		size_t t;

		for (i = 0; i < 2; i++) {
			CHECK_EQ_INT(rules_program_parse_strict(defs[i], strlen(defs[i]), &p, why, sizeof(why)), 0);
			CHECK_EQ_INT(rules_program_parse(defs[i], strlen(defs[i]), &q), 0);
			CHECK(p.found == q.found && p.pid == q.pid && p.supplementary == q.supplementary &&
			      p.ntiers == q.ntiers && p.has_cycle == q.has_cycle &&
			      p.cycle_unit == q.cycle_unit && p.cycle_n == q.cycle_n &&
			      p.expires_at == q.expires_at);
			for (t = 0; t < p.ntiers; t++)
				CHECK(p.tier_len[t] == q.tier_len[t] &&
				      memcmp(p.tiers[t], q.tiers[t], p.tier_len[t]) == 0);
			rules_program_free(&p);
			rules_program_free(&q);
		}
		CHECK_EQ_INT(rules_program_parse_strict(defs[1], strlen(defs[1]), &p, why, sizeof(why)), 0);
		CHECK(p.pid == 3 && p.supplementary && p.ntiers == 0 && p.has_cycle &&
		      p.cycle_unit == DATES_MONTHS && p.cycle_n == 12 && p.expires_at == 1767225599000LL);
		rules_program_free(&p);
	}
	TEST("strict program: each kind of bad definition is refused with its reason") {
		for (i = 0; i < sizeof(bad_defs) / sizeof(bad_defs[0]); i++)
			CHECK(prog_refused(bad_defs[i].def, bad_defs[i].why));
	}
	TEST("strict program: the first problem in the documented order is the one reported") {
		for (i = 0; i < sizeof(first_problem) / sizeof(first_problem[0]); i++)
			CHECK(prog_refused(first_problem[i].def, first_problem[i].why));
	}
	TEST("lenient program: partnerd reads what the strict reader refuses for its shape") {
		static const char extra[] = "{\"pid\":7,\"tiers\":[\"A\"],\"name\":\"x\"} trailing";

		CHECK_EQ_INT(rules_program_parse(extra, sizeof(extra) - 1, &p), 0);
		CHECK(p.found && p.pid == 7 && !p.supplementary && p.ntiers == 1 && !p.has_cycle &&
		      p.expires_at == RULES_NONE);
		rules_program_free(&p);
		CHECK_EQ_INT(rules_program_parse("{\"type\":\"EXTERNAL\"}", 19, &p), -1);
		CHECK(!p.found && p.ntiers == 0 && p.expires_at == RULES_NONE);
		CHECK_EQ_INT(rules_program_parse("[]", 2, &p), -1);
		CHECK_EQ_INT(strict_prog(extra, why, sizeof(why)), -1);
	}
	TEST("lenient program: a cycle unit that is null or no string reads as MONTHS, no crash") {
		static const char *const defs[] = {
			SUPP_DEF("{\"unit\":null,\"value\":2}"),
			SUPP_DEF("{\"unit\":5,\"value\":2}"),
			SUPP_DEF("{\"value\":2}"),
		};

		for (i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
			CHECK_EQ_INT(rules_program_parse(defs[i], strlen(defs[i]), &p), 0);
			CHECK(p.has_cycle && p.cycle_unit == DATES_MONTHS && p.cycle_n == 2);
			rules_program_free(&p);
		}
	}
	TEST("rules_program_tier: the index of a tier, -1 for none") {
		static const char def[] = "{\"pid\":1,\"type\":\"EXTERNAL\",\"tiers\":[\"Bronze\",\"Silver\"],"
		                          "\"cycle\":null,\"expiresAt\":null}";

		CHECK_EQ_INT(rules_program_parse_strict(def, sizeof(def) - 1, &p, why, sizeof(why)), 0);
		CHECK_EQ_INT(rules_program_tier(&p, "Bronze", 6), 0);
		CHECK_EQ_INT(rules_program_tier(&p, "Silver", 6), 1);
		CHECK_EQ_INT(rules_program_tier(&p, "Silve", 5), -1);
		CHECK_EQ_INT(rules_program_tier(&p, "Gold", 4), -1);
		CHECK_EQ_INT(rules_program_tier(&p, NULL, 0), -1);
		rules_program_free(&p);
	}
}

int main(void)
{
	membership_value_tests();
	strict_membership_tests();
	program_tests();
	TEST_MAIN_END();
}
