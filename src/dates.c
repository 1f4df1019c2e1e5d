/*
 * dates: the one date-time grammar of the API (SPEC §4, code 2103) and the arithmetic on
 * stored times. Everything is UTC milliseconds since the epoch; the offset is parsed here
 * and the calendar conversion is left to timegm/gmtime_r.
 */
#include "dates.h"

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define DATES_MS_PER_DAY INT64_C(86400000)

/*
 * 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: what dates_format can show in 24
 * characters. dates_parse accepts only DATES_MIN_MS.. (from year 0001), so a stored date
 * is never outside; the bound keeps a corrupt stored value from overrunning the buffer.
 */
#define DATES_FMT_MIN_MS INT64_C(-62167219200000)
#define DATES_FMT_MAX_MS DATES_MAX_MS

static int dates_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int dates_mdays(int y, int m)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && dates_leap(y) ? 29 : days[m - 1];
}

/* Reads exactly n ASCII digits at s as a number; -1 when one of them is not a digit. */
static int dates_num(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Seconds since the epoch of a valid UTC calendar time. */
static int64_t dates_epoch(int y, int mo, int d, int h, int mi, int sec)
{
	struct tm tm = { 0 };

	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm);
}

int dates_parse(const char *s, size_t len, int64_t *ms_out)
{
	int y, mo, d, h, mi, sec, frac_ms = 0, off = 0;
	int64_t ms;
	size_t i;

	/* The fixed part: YYYY-MM-DDThh:mm:ss (19 bytes). */
	if (s == NULL || len < 20)
		return -1;
	if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	y = dates_num(s, 4);
	mo = dates_num(s + 5, 2);
	d = dates_num(s + 8, 2);
	h = dates_num(s + 11, 2);
	mi = dates_num(s + 14, 2);
	sec = dates_num(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 ||
	    sec < 0 || sec > 59 || d > dates_mdays(y, mo))
		return -1;

	/* Optional fraction: 1 to 9 digits, truncated to milliseconds. */
	i = 19;
	if (s[i] == '.') {
		size_t n = 0;

		i++;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			if (n < 3)
				frac_ms = frac_ms * 10 + (s[i] - '0');
			n++;
			i++;
		}
		if (n < 1 || n > 9)
			return -1;
		for (; n < 3; n++)
			frac_ms *= 10;
	}

	/* Zone: Z, or [one space]+hh:mm / -hh:mm. */
	if (i < len && s[i] == 'Z') {
		i++;
	} else {
		int oh, om;

		if (i < len && s[i] == ' ')
			i++;
		if (len - i != 6 || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':')
			return -1;
		oh = dates_num(s + i + 1, 2);
		om = dates_num(s + i + 4, 2);
		if (oh < 0 || oh > 23 || om < 0 || om > 59)
			return -1;
		off = (oh * 60 + om) * 60;
		if (s[i] == '-')
			off = -off;
		i += 6;
	}
	if (i != len)
		return -1;

	ms = (dates_epoch(y, mo, d, h, mi, sec) - off) * 1000 + frac_ms;
	/* The offset can move a date of year 0001 or 9999 out of the range: refused, not clamped. */
	if (ms < DATES_MIN_MS || ms > DATES_MAX_MS)
		return -1;
	*ms_out = ms;
	return 0;
}

/* Writes v (0 <= v < 10^n) as exactly n digits. */
static char *dates_digits(char *d, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--) {
		d[i] = (char)('0' + v % 10);
		v /= 10;
	}
	return d + n;
}

/*
 * Civil date of a day count since 1970-01-01 (proleptic Gregorian), after Howard
 * Hinnant's days_from_civil inverse: no libc call, no locale, no lock (this runs for
 * every date of every response and history entry).
 */
static void dates_civil(int64_t days, int *y, unsigned *m, unsigned *d)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)(yoe + era * 400) + (*m <= 2);
}

char *dates_format(int64_t ms, char *out)
{
	int64_t days, rem;
	unsigned mon, day, sod;
	int year;
	char *d = out;

	if (ms < DATES_FMT_MIN_MS)
		ms = DATES_FMT_MIN_MS;
	if (ms > DATES_FMT_MAX_MS)
		ms = DATES_FMT_MAX_MS;
	/* Floor division: -1 ms is 1969-12-31T23:59:59.999Z. */
	days = ms / DATES_MS_PER_DAY;
	rem = ms % DATES_MS_PER_DAY;
	if (rem < 0) {
		rem += DATES_MS_PER_DAY;
		days--;
	}
	dates_civil(days, &year, &mon, &day);
	sod = (unsigned)(rem / 1000);
	/* The clamp keeps every field in range, so this writes exactly 24 bytes. */
	d = dates_digits(d, (unsigned)year, 4);
	*d++ = '-';
	d = dates_digits(d, mon, 2);
	*d++ = '-';
	d = dates_digits(d, day, 2);
	*d++ = 'T';
	d = dates_digits(d, sod / 3600, 2);
	*d++ = ':';
	d = dates_digits(d, sod / 60 % 60, 2);
	*d++ = ':';
	d = dates_digits(d, sod % 60, 2);
	*d++ = '.';
	d = dates_digits(d, (unsigned)(rem % 1000), 3);
	*d++ = 'Z';
	*d = '\0';
	return out;
}

int64_t dates_add_cycle(int64_t start_ms, enum dates_unit unit, int n)
{
	struct tm tm;
	time_t secs;
	int64_t rem, r, months;
	int y, m, mdays;

	if (n < 1)
		return start_ms;
	if (unit == DATES_DAYS) {
		if (__builtin_mul_overflow((int64_t)n, DATES_MS_PER_DAY, &r) ||
		    __builtin_add_overflow(start_ms, r, &r))
			return INT64_MAX;
		return r;
	}

	rem = start_ms % 1000;
	if (rem < 0)
		rem += 1000;
	secs = (time_t)((start_ms - rem) / 1000);
	if (gmtime_r(&secs, &tm) == NULL)
		return INT64_MAX;
	months = (int64_t)tm.tm_year * 12 + tm.tm_mon + n;
	if (months / 12 > 100000 - 1900)   /* far beyond any date the API can express */
		return INT64_MAX;
	/* Floor division: before 1900 tm_year is negative, and C's / and % round to zero. */
	y = (int)((months >= 0 ? months : months - 11) / 12) + 1900;
	m = (int)(((months % 12) + 12) % 12) + 1;
	mdays = dates_mdays(y, m);
	if (tm.tm_mday > mdays)
		tm.tm_mday = mdays;
	return dates_epoch(y, m, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec) * 1000 + rem;
}

int64_t dates_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
