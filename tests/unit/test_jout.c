/* Unit tests for src/jout.c: JSON text written into a buf parses back to the same values. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dates.h"
#include "jout.h"
#include "test.h"

/* Parses b as JSON with json-c; 1 when it is a string with exactly the bytes s[0..n). */
static int parses_to(const struct buf *b, const char *s, size_t n)
{
	struct json_object *o = json_tokener_parse(b->p);
	int ok = o != NULL && json_object_is_type(o, json_type_string) &&
	         (size_t)json_object_get_string_len(o) == n && memcmp(json_object_get_string(o), s, n) == 0;

	json_object_put(o);
	return ok;
}

int main(void)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	TEST("plain text is quoted verbatim, UTF-8 untouched") {
		buf_reset(&b);
		CHECK_EQ_INT(jout_cstr(&b, "App-1 caf\xc3\xa9 \xe2\x80\xa8/"), 0);
		CHECK_EQ_STR(b.p, "\"App-1 caf\xc3\xa9 \xe2\x80\xa8/\"");
	}
	TEST("buf_dec writes a number in decimal at the end of its buffer") {
		static const long long v[] = { 0, 7, -7, 10, 1234567890123LL, -2147483648LL,
		                               9223372036854775807LL, -9223372036854775807LL - 1 };
		static const char *want[] = { "0", "7", "-7", "10", "1234567890123", "-2147483648",
		                              "9223372036854775807", "-9223372036854775808" };
		size_t k;

		for (k = 0; k < sizeof v / sizeof v[0]; k++) {
			char d[BUF_DEC_LEN + 1];

			d[BUF_DEC_LEN] = '\0';
			CHECK_EQ_STR(buf_dec(d, v[k]), want[k]);
		}
	}
	TEST("quotes, backslashes and control bytes are escaped and parse back") {
		static const char s[] = "a\"b\\c\nd\re\tf\bg\fh\x01i\x1fj\x7f";
		static const char nul[] = { 'x', 0, 'y' };

		buf_reset(&b);
		CHECK_EQ_INT(jout_str(&b, s, sizeof s - 1), 0);
		CHECK_EQ_STR(b.p, "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001fj\x7f\"");
		CHECK(parses_to(&b, s, sizeof s - 1));
		buf_reset(&b);
		CHECK_EQ_INT(jout_str(&b, nul, 3), 0);
		CHECK_EQ_STR(b.p, "\"x\\u0000y\"");
		CHECK(parses_to(&b, nul, 3));
	}
	TEST("every ASCII byte 0x01..0x7f round-trips through json-c (as a 1-byte string)") {
		int bad = 0;

		for (int c = 1; c < 0x80; c++) {
			char s[1] = { (char)c };

			buf_reset(&b);
			jout_str(&b, s, 1);
			bad += !parses_to(&b, s, 1);
		}
		CHECK_EQ_INT(bad, 0);
	}
	TEST("null, integers and dates") {
		char d[DATES_FMT_LEN + 1];

		buf_reset(&b);
		jout_str_or_null(&b, NULL, 0);
		jout_lit(&b, ",");
		jout_i64(&b, 0);
		jout_lit(&b, ",");
		jout_i64(&b, -42);
		jout_lit(&b, ",");
		jout_i64(&b, INT64_MAX);
		jout_lit(&b, ",");
		jout_i64(&b, INT64_MIN);
		jout_lit(&b, ",");
		jout_date_or_null(&b, -1, -1);
		jout_lit(&b, ",");
		jout_date_or_null(&b, 0, -1);
		CHECK_EQ_STR(b.p, "null,0,-42,9223372036854775807,-9223372036854775808,null,\"1970-01-01T00:00:00.000Z\"");
		buf_reset(&b);
		jout_date_or_null(&b, INT64_C(1704067200123), INT64_MIN);
		CHECK_EQ_STR(b.p, "\"2024-01-01T00:00:00.123Z\"");
		CHECK(parses_to(&b, dates_format(INT64_C(1704067200123), d), DATES_FMT_LEN));
	}
	TEST("a full buffer refuses the append") {
		struct buf s;

		buf_init(&s, 4);
		CHECK_EQ_INT(jout_cstr(&s, "abc"), -1);
		buf_reset(&s);
		CHECK_EQ_INT(jout_cstr(&s, "ab"), 0);
		CHECK_EQ_INT(jout_i64(&s, 1), -1);
		buf_free(&s);
	}
	TEST("buf_presize: appends within the presized room keep the allocation; the cap still holds") {
		struct buf s;
		char *p0;

		buf_init(&s, 100);
		buf_presize(&s, 64);
		CHECK(s.p != NULL && s.len == 0 && s.p[0] == '\0' && s.cap >= 65);
		p0 = s.p;
		for (int i = 0; i < 8; i++)
			CHECK_EQ_INT(jout_cstr(&s, "abcdef"), 0);
		CHECK(s.p == p0);
		CHECK_EQ_INT(s.len, 64);
		buf_presize(&s, 1000);          /* capped at max */
		CHECK(s.cap <= 101 + 64);
		CHECK_EQ_STR(s.p + 56, "\"abcdef\"");
		buf_free(&s);
	}
	buf_free(&b);
	TEST_MAIN_END();
}
