/* Unit tests for src/dates.c: the 2103 date-time grammar and cycle arithmetic. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dates.h"
#include "test.h"

/* 1 when s parses; the value goes to *ms. */
static int parses(const char *s, int64_t *ms)
{
	return dates_parse(s, strlen(s), ms) == 0;
}

/* 1 when s is refused. */
static int refused(const char *s)
{
	int64_t ms = 12345;

	return dates_parse(s, strlen(s), &ms) == -1 && ms == 12345;
}

#define D2024_01_01 INT64_C(1704067200000)   /* 2024-01-01T00:00:00Z */
#define DAY INT64_C(86400000)

int main(void)
{
	int64_t ms = 0;
	char out[DATES_FMT_LEN + 1];

	TEST("a UTC date-time with Z parses to epoch milliseconds") {
		CHECK(parses("2024-01-01T00:00:00Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("1970-01-01T00:00:00Z", &ms));
		CHECK_EQ_INT(ms, 0);
		CHECK(parses("2025-12-31T23:59:59Z", &ms));
		CHECK_EQ_INT(ms, INT64_C(1767225599000));
	}
	TEST("positive and negative offsets are subtracted from local time") {
		CHECK(parses("2024-01-01T05:30:00+05:30", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("2023-12-31T19:00:00-05:00", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("2024-01-01T00:00:00+00:00", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("2024-01-01T00:00:00-00:00", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("2024-01-01T23:59:00+23:59", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
	}
	TEST("one space before an offset is tolerated (an unencoded '+')") {
		CHECK(parses("2024-01-01T05:30:00 +05:30", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
		CHECK(parses("2024-01-01T00:00:00.5 -00:00", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 500);
	}
	TEST("two spaces, a space before Z, or a space without offset are refused") {
		CHECK(refused("2024-01-01T05:30:00  +05:30"));
		CHECK(refused("2024-01-01T00:00:00 Z"));
		CHECK(refused("2024-01-01T00:00:00 "));
		CHECK(refused(" 2024-01-01T00:00:00Z"));
		CHECK(refused("2024-01-01T00:00:00Z "));
	}
	TEST("fractions of 1 to 9 digits are truncated to milliseconds") {
		CHECK(parses("2024-01-01T00:00:00.1Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 100);
		CHECK(parses("2024-01-01T00:00:00.12Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 120);
		CHECK(parses("2024-01-01T00:00:00.123Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 123);
		CHECK(parses("2024-01-01T00:00:00.1239Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 123);
		CHECK(parses("2024-01-01T00:00:00.999999999Z", &ms));
		CHECK_EQ_INT(ms, D2024_01_01 + 999);
		CHECK(parses("2024-01-01T00:00:00.000000001+00:00", &ms));
		CHECK_EQ_INT(ms, D2024_01_01);
	}
	TEST("a fraction of 10 digits or an empty fraction is refused") {
		CHECK(refused("2024-01-01T00:00:00.1234567890Z"));
		CHECK(refused("2024-01-01T00:00:00.Z"));
		CHECK(refused("2024-01-01T00:00:00.+00:00"));
		CHECK(refused("2024-01-01T00:00:00,5Z"));
	}
	TEST("a missing offset is refused") {
		CHECK(refused("2024-01-01T00:00:00"));
		CHECK(refused("2024-01-01T00:00:00.123"));
		CHECK(refused("2024-01-01"));
		CHECK(refused("2024-01-01T00:00"));
		CHECK(refused(""));
	}
	TEST("lowercase t and z are refused") {
		CHECK(refused("2024-01-01t00:00:00Z"));
		CHECK(refused("2024-01-01T00:00:00z"));
		CHECK(refused("2024-01-01 00:00:00Z"));
	}
	TEST("malformed offsets are refused") {
		CHECK(refused("2024-01-01T00:00:00+0530"));
		CHECK(refused("2024-01-01T00:00:00+05"));
		CHECK(refused("2024-01-01T00:00:00+5:30"));
		CHECK(refused("2024-01-01T00:00:00+24:00"));
		CHECK(refused("2024-01-01T00:00:00+05:60"));
		CHECK(refused("2024-01-01T00:00:00*05:30"));
		CHECK(refused("2024-01-01T00:00:00+05:30Z"));
		CHECK(refused("2024-01-01T00:00:00Z+05:30"));
		CHECK(refused("2024-01-01T00:00:00+05:3a"));
	}
	TEST("bad months, days and times are refused") {
		CHECK(refused("2024-00-01T00:00:00Z"));
		CHECK(refused("2024-13-01T00:00:00Z"));
		CHECK(refused("2024-01-00T00:00:00Z"));
		CHECK(refused("2024-01-32T00:00:00Z"));
		CHECK(refused("2024-04-31T00:00:00Z"));
		CHECK(refused("2024-01-01T24:00:00Z"));
		CHECK(refused("2024-01-01T00:60:00Z"));
		CHECK(refused("2024-01-01T00:00:60Z"));
		CHECK(refused("2024-1-01T00:00:00Z"));
		CHECK(refused("2024-01-1T00:00:00Z"));
		CHECK(refused("24-01-01T00:00:00Z"));
		CHECK(refused("+2024-01-01T00:00:00Z"));
		CHECK(refused("2024/01/01T00:00:00Z"));
		CHECK(refused("2024-01-01T00-00-00Z"));
		CHECK(refused("２０２４-01-01T00:00:00Z"));
	}
	TEST("Feb 29 exists only in leap years") {
		CHECK(parses("2024-02-29T00:00:00Z", &ms));
		CHECK_EQ_INT(ms, INT64_C(1709164800000));
		CHECK(parses("2000-02-29T00:00:00Z", &ms));
		CHECK(refused("2023-02-29T00:00:00Z"));
		CHECK(refused("1900-02-29T00:00:00Z"));
		CHECK(refused("2024-02-30T00:00:00Z"));
	}
	TEST("years 0001 to 9999 parse; year 0000 is refused") {
		CHECK(parses("0001-01-01T00:00:00Z", &ms));
		CHECK_EQ_INT(ms, INT64_C(-62135596800000));
		CHECK(parses("9999-12-31T23:59:59.999Z", &ms));
		CHECK_EQ_INT(ms, INT64_C(253402300799999));
		CHECK(refused("0000-01-01T00:00:00Z"));
		CHECK(refused("10000-01-01T00:00:00Z"));
	}
	TEST("a date before the epoch is negative") {
		CHECK(parses("1969-12-31T23:59:59.999Z", &ms));
		CHECK_EQ_INT(ms, -1);
	}
	TEST("the whole length must be consumed; an embedded NUL is refused") {
		static const char s[] = "2024-01-01T00:00:00Z\0junk";

		CHECK(dates_parse(s, sizeof s - 1, &ms) == -1);
		CHECK(dates_parse(s, 20, &ms) == 0);
		CHECK(dates_parse("2024-01-01T00:00:00ZZ", 20, &ms) == 0);
		CHECK(dates_parse("2024-01-01T00:00:00ZZ", 21, &ms) == -1);
		CHECK(dates_parse("2024-01-01T00:00:00Z", 19, &ms) == -1);
	}
	TEST("an instant outside 0001-01-01..9999-12-31 (UTC) is refused, not clamped") {
		CHECK(refused("9999-12-31T23:59:59-23:59"));
		CHECK(refused("9999-12-31T23:59:59.999-00:01"));
		CHECK(refused("9999-12-31T23:00:00 -01:00"));
		CHECK(refused("0001-01-01T00:00:00+23:59"));
		CHECK(refused("0001-01-01T00:00:00.999+00:01"));
		CHECK(refused("0001-01-01T23:58:59+23:59"));
	}
	TEST("the first and last instants of years 0001 and 9999 parse, with or without offset") {
		CHECK(parses("0001-01-01T00:00:00Z", &ms));
		CHECK_EQ_INT(ms, DATES_MIN_MS);
		CHECK(parses("0001-01-01T23:59:00+23:59", &ms));
		CHECK_EQ_INT(ms, DATES_MIN_MS);
		CHECK(parses("9999-12-31T23:59:59.999Z", &ms));
		CHECK_EQ_INT(ms, DATES_MAX_MS);
		CHECK(parses("9999-12-31T00:00:59.999-23:59", &ms));
		CHECK_EQ_INT(ms, DATES_MAX_MS);
		CHECK(parses("0001-01-01T00:00:00-23:59", &ms));
		CHECK_EQ_INT(ms, DATES_MIN_MS + (23 * 60 + 59) * INT64_C(60000));
	}
	TEST("a cycle ending after 9999-12-31 is not clamped into range") {
		int64_t s;

		CHECK(parses("9999-06-01T00:00:00Z", &s));
		CHECK(dates_add_cycle(s, DATES_MONTHS, 12) > DATES_MAX_MS);
		CHECK(dates_add_cycle(s, DATES_DAYS, 214) > DATES_MAX_MS);
		CHECK(dates_add_cycle(s, DATES_DAYS, 213) <= DATES_MAX_MS);
		CHECK(dates_add_cycle(s, DATES_MONTHS, 6) <= DATES_MAX_MS);
	}
	TEST("dates_format prints 24 chars of UTC with milliseconds") {
		CHECK_EQ_STR(dates_format(D2024_01_01, out), "2024-01-01T00:00:00.000Z");
		CHECK_EQ_STR(dates_format(D2024_01_01 + 123, out), "2024-01-01T00:00:00.123Z");
		CHECK_EQ_STR(dates_format(-1, out), "1969-12-31T23:59:59.999Z");
		CHECK_EQ_STR(dates_format(0, out), "1970-01-01T00:00:00.000Z");
		CHECK_EQ_INT(strlen(dates_format(INT64_C(253402300799999), out)), DATES_FMT_LEN);
	}
	TEST("dates_format clamps times beyond 0000..9999 to stay 24 chars") {
		CHECK_EQ_STR(dates_format(INT64_MAX, out), "9999-12-31T23:59:59.999Z");
		CHECK_EQ_STR(dates_format(INT64_MIN, out), "0000-01-01T00:00:00.000Z");
	}
	TEST("format then parse gives the same milliseconds") {
		static const int64_t v[] = { 0, 1, -1, D2024_01_01 + 7, INT64_C(-62135596800000),
		                             INT64_C(253402300799999), INT64_C(951782400123) };

		for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
			dates_format(v[i], out);
			CHECK(parses(out, &ms));
			CHECK_EQ_INT(ms, v[i]);
		}
	}
	TEST("dates_format agrees with gmtime_r over 0000..9999 (every day boundary kind)") {
		/* A deterministic walk over the whole range, plus both sides of each midnight. */
		uint64_t x = 88172645463325252u;
		int bad = 0;

		for (int i = 0; i < 200000 && bad < 3; i++) {
			int64_t v, rem;
			time_t secs;
			struct tm tm;
			char want[64];

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			v = INT64_C(-62167219200000) + (int64_t)(x % UINT64_C(315569520000000));
			if (i % 3 == 1)
				v -= v % DAY;           /* midnight */
			else if (i % 3 == 2)
				v -= v % DAY + 1;       /* the millisecond before */
			if (v < INT64_C(-62167219200000))
				v = INT64_C(-62167219200000);
			rem = ((v % 1000) + 1000) % 1000;
			secs = (time_t)((v - rem) / 1000);
			gmtime_r(&secs, &tm);
			snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
			         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)rem);
			if (strcmp(dates_format(v, out), want) != 0) {
				fprintf(stderr, "  %lld: got %s, gmtime_r says %s\n", (long long)v, out, want);
				bad++;
			}
		}
		CHECK_EQ_INT(bad, 0);
	}
	TEST("a DAYS cycle adds whole days") {
		CHECK_EQ_INT(dates_add_cycle(D2024_01_01, DATES_DAYS, 1), D2024_01_01 + DAY);
		CHECK_EQ_INT(dates_add_cycle(D2024_01_01 + 5, DATES_DAYS, 366),
		             D2024_01_01 + 366 * DAY + 5);
	}
	TEST("a MONTHS cycle keeps the day and time of day") {
		int64_t s, e;

		CHECK(parses("2024-01-15T10:20:30.456Z", &s));
		CHECK(parses("2024-02-15T10:20:30.456Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 1), e);
		CHECK(parses("2025-01-15T10:20:30.456Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 12), e);
		CHECK(parses("2026-03-15T10:20:30.456Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 26), e);
	}
	TEST("a MONTHS cycle clamps to the last day of the target month") {
		int64_t s, e;

		CHECK(parses("2024-01-31T12:00:00Z", &s));
		CHECK(parses("2024-02-29T12:00:00Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 1), e);
		CHECK(parses("2023-01-31T12:00:00Z", &s));
		CHECK(parses("2023-02-28T12:00:00Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 1), e);
		CHECK(parses("2024-03-31T00:00:00Z", &s));
		CHECK(parses("2024-04-30T00:00:00Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 1), e);
		CHECK(parses("2024-02-29T00:00:00Z", &s));
		CHECK(parses("2025-02-28T00:00:00Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 12), e);
		CHECK(parses("2028-02-29T00:00:00Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 48), e);
	}
	TEST("a MONTHS cycle from before the epoch works") {
		int64_t s, e;

		CHECK(parses("1969-12-31T23:59:59.999Z", &s));
		CHECK(parses("1970-01-31T23:59:59.999Z", &e));
		CHECK_EQ_INT(dates_add_cycle(s, DATES_MONTHS, 1), e);
	}
	TEST("huge cycles saturate instead of overflowing") {
		CHECK_EQ_INT(dates_add_cycle(INT64_MAX - 5, DATES_DAYS, 1), INT64_MAX);
		CHECK_EQ_INT(dates_add_cycle(D2024_01_01, DATES_MONTHS, 2147483647), INT64_MAX);
		CHECK(dates_add_cycle(D2024_01_01, DATES_DAYS, 2147483647) > D2024_01_01);
	}
	TEST("dates_now_ms is after 2024 and moves forward") {
		int64_t a = dates_now_ms(), b = dates_now_ms();

		CHECK(a > D2024_01_01);
		CHECK(b >= a);
	}
	TEST("a month cycle before 1900 keeps the calendar (floor division of months)") {
		int64_t start, end;

		CHECK(dates_parse("1016-12-31T23:59:59Z", 20, &start) == 0);
		end = dates_add_cycle(start, DATES_MONTHS, 12);
		CHECK(dates_parse("1017-12-31T23:59:59Z", 20, &start) == 0);
		CHECK_EQ_INT(end, start);
		CHECK(dates_parse("1899-01-31T00:00:00Z", 20, &start) == 0);
		end = dates_add_cycle(start, DATES_MONTHS, 1);
		CHECK(dates_parse("1899-02-28T00:00:00Z", 20, &start) == 0);
		CHECK_EQ_INT(end, start);
	}
	TEST_MAIN_END();
}
