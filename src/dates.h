/* dates: ISO 8601 date-times <-> milliseconds since the epoch (UTC). Pure. */
#ifndef PARTNERD_DATES_H
#define PARTNERD_DATES_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses a date-time of the form YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|[+-]hh:mm), with one
 * optional space tolerated before a +-hh:mm offset (clients that forget to URL-encode '+'
 * send a space). The calendar date must exist (2023-02-29 is refused), hours 00-23,
 * minutes/seconds 00-59, offset hours 00-23 and minutes 00-59. The fraction is truncated
 * to milliseconds. The whole of s[0..len) must be consumed, and the instant, in UTC, must
 * fall within DATES_MIN_MS..DATES_MAX_MS (SPEC §4: years 0001-9999 UTC; an offset can push
 * a date written inside them out, e.g. 9999-12-31T23:59:59-23:59). Nothing is clamped.
 * Returns 0 and sets *ms_out, or -1 when the text is not such a date-time.
 */
int dates_parse(const char *s, size_t len, int64_t *ms_out);

/* The instants the API accepts and shows: 0001-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z. */
#define DATES_MIN_MS INT64_C(-62135596800000)
#define DATES_MAX_MS INT64_C(253402300799999)

/*
 * Formats ms as "YYYY-MM-DDThh:mm:ss.sssZ" (UTC, always 24 chars) into out, which must
 * hold DATES_FMT_LEN + 1 bytes. Returns out.
 */
#define DATES_FMT_LEN 24
char *dates_format(int64_t ms, char *out);

/*
 * Adds a membership cycle to a start time: unit is DATES_DAYS or DATES_MONTHS, n >= 1.
 * MONTHS keeps the day of month, clamped to the last day of the target month (Jan 31 + 1
 * month = Feb 28/29), time of day unchanged (UTC). The result may lie beyond DATES_MAX_MS
 * (INT64_MAX when it does not fit in 64 bits): callers refuse such an end (rules: 2103),
 * it is never clamped into range.
 */
enum dates_unit { DATES_DAYS = 1, DATES_MONTHS = 2 };
int64_t dates_add_cycle(int64_t start_ms, enum dates_unit unit, int n);

/* Current wall-clock time in ms (the only impure function here). */
int64_t dates_now_ms(void);

#endif
