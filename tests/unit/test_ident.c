/* Unit tests for src/ident.c: mobile normalisation (SPEC §4) and org ids. */
#include <string.h>

#include "ident.h"
#include "test.h"

static char out[IDENT_MOBILE_MAX + 16 + 1];

/* Normalises s with the demo org's settings (country code 91, 10 national digits). */
static const char *demo(const char *s)
{
	if (ident_normalize_mobile(s, strlen(s), "91", 10, out, sizeof out) < 0)
		return NULL;
	return out;
}

int main(void)
{
	TEST("a full international number is kept as digits") {
		CHECK_EQ_STR(demo("916215000000"), "916215000000");
		CHECK_EQ_INT(ident_normalize_mobile("916215000000", 12, "91", 10, out, sizeof out),
		             12);
	}
	TEST("exactly nationalNumberLength digits get the country code prefixed") {
		CHECK_EQ_STR(demo("6215000000"), "916215000000");
		CHECK_EQ_INT(ident_normalize_mobile("6215000000", 10, "91", 10, out, sizeof out),
		             12);
	}
	TEST("other lengths are not prefixed") {
		CHECK_EQ_STR(demo("621500000"), "621500000");
		CHECK_EQ_STR(demo("62150000001"), "62150000001");
	}
	TEST("spaces, plus, minus, dots and parentheses are dropped") {
		CHECK_EQ_STR(demo("+91 (621) 500-00.00"), "916215000000");
		CHECK_EQ_STR(demo("(621) 500 0000"), "916215000000");
		CHECK_EQ_STR(demo(" +91-6215000000 "), "916215000000");
	}
	TEST("the prefix depends on the digit count after dropping separators") {
		CHECK_EQ_STR(demo("+6215000000"), "916215000000");
	}
	TEST("6 and 15 digits are the bounds") {
		CHECK_EQ_STR(demo("123456"), "123456");
		CHECK_EQ_STR(demo("123456789012345"), "123456789012345");
	}
	TEST("5 digits and 16 digits are refused") {
		CHECK(demo("12345") == NULL);
		CHECK(demo("1234567890123456") == NULL);
		CHECK(demo("+1 (234) 567-890-123-456") == NULL);
	}
	TEST("letters and other characters are refused") {
		CHECK(demo("62150000O0") == NULL);
		CHECK(demo("6215000000x") == NULL);
		CHECK(demo("tel:6215000000") == NULL);
		CHECK(demo("6215/000000") == NULL);
		CHECK(demo("6215_000000") == NULL);
		CHECK(demo("６２１５０００００００") == NULL);
	}
	TEST("empty and separator-only input is refused") {
		CHECK(demo("") == NULL);
		CHECK(demo("   ") == NULL);
		CHECK(demo("+-.()") == NULL);
		CHECK(ident_normalize_mobile(NULL, 0, "91", 10, out, sizeof out) == -1);
	}
	TEST("an embedded NUL is refused") {
		CHECK(ident_normalize_mobile("621500\0000000", 11, "91", 10, out, sizeof out) == -1);
	}
	TEST("the country code may make the result longer than 15 digits") {
		CHECK_EQ_INT(ident_normalize_mobile("123456789012345", 15, "1234", 15, out,
		                                    sizeof out), 19);
		CHECK_EQ_STR(out, "1234123456789012345");
	}
	TEST("no country code or no national length means no prefix") {
		CHECK_EQ_INT(ident_normalize_mobile("6215000000", 10, NULL, 10, out, sizeof out), 10);
		CHECK_EQ_STR(out, "6215000000");
		CHECK_EQ_INT(ident_normalize_mobile("6215000000", 10, "91", 0, out, sizeof out), 10);
		CHECK_EQ_STR(out, "6215000000");
	}
	TEST("an output buffer too small is an error, not an overflow") {
		char small[13];

		CHECK(ident_normalize_mobile("6215000000", 10, "91", 10, small, 12) == -1);
		CHECK(ident_normalize_mobile("6215000000", 10, "91", 10, small, sizeof small) == 12);
		CHECK(ident_normalize_mobile("62150", 5, "91", 10, small, 1) == -1);
	}
	TEST("org ids of [A-Za-z0-9_.-]{1,64} are valid") {
		CHECK(ident_valid_org("demo"));
		CHECK(ident_valid_org("Org_1.prod-EU"));
		CHECK(ident_valid_org("x"));
		CHECK(ident_valid_org("0123456789012345678901234567890123456789012345678901234567890123"));
	}
	TEST("empty, too long or brace/colon/space org ids are invalid") {
		CHECK(!ident_valid_org(""));
		CHECK(!ident_valid_org(NULL));
		CHECK(!ident_valid_org("01234567890123456789012345678901234567890123456789012345678901234"));
		CHECK(!ident_valid_org("a{b"));
		CHECK(!ident_valid_org("a}b"));
		CHECK(!ident_valid_org("a:b"));
		CHECK(!ident_valid_org("a b"));
		CHECK(!ident_valid_org("a*"));
		CHECK(!ident_valid_org("démo"));
		CHECK(!ident_valid_org("a\nb"));
	}
	TEST("customer ids are 1..INT64_MAX in decimal, without sign or leading zero") {
		int64_t v = 0;

		CHECK(ident_parse_cid("1", 1, &v) == 0 && v == 1);
		CHECK(ident_parse_cid("9223372036854775807", 19, &v) == 0 && v == INT64_MAX);
		CHECK(ident_parse_cid("1001x", 4, &v) == 0 && v == 1001);
		CHECK(ident_parse_cid("9223372036854775808", 19, &v) < 0);
		CHECK(ident_parse_cid("0", 1, &v) < 0);
		CHECK(ident_parse_cid("01", 2, &v) < 0);
		CHECK(ident_parse_cid("", 0, &v) < 0);
		CHECK(ident_parse_cid("+1", 2, &v) < 0);
		CHECK(ident_parse_cid("-1", 2, &v) < 0);
		CHECK(ident_parse_cid("1 ", 2, &v) < 0);
		CHECK(ident_parse_cid("12345678901234567890", 20, &v) < 0);
	}
	TEST_MAIN_END();
}
