/* activity: the compact record of an activity and its JSON (activity.h). */
#include "activity.h"

#include <string.h>

#include "dates.h"
#include "jout.h"

static const char letters[] = "LUDSC";
static const char *const names[] = { "LINK", "UPDATE", "DELINK", "RELINK_SCHEDULED",
                                     "RELINK_CANCELLED" };

/* The fields of one encoding, as (pointer, length) with a decimal scratch for the dates. */
struct enc {
	const char *p[ACTIVITY_NFIELDS];
	size_t len[ACTIVITY_NFIELDS];
	char num[ACTIVITY_NFIELDS][24];
};

static void
enc_str(struct enc *e, int k, const char *s, size_t n)
{
	e->p[k] = s != NULL ? s : "";
	e->len[k] = s != NULL ? n : 0;
}

static void
enc_date(struct enc *e, int k, int64_t ms)
{
	char *d = e->num[k] + sizeof(e->num[k]);
	uint64_t u;

	if (ms == RULES_NONE) {
		enc_str(e, k, NULL, 0);
		return;
	}
	/* as dates_format shows it: a date out of range (only in data written by other means)
	 * is clamped, so that the record still reads back */
	if (ms < DATES_MIN_MS)
		ms = DATES_MIN_MS;
	else if (ms > DATES_MAX_MS)
		ms = DATES_MAX_MS;
	u = ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms;
	do {
		*--d = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (ms < 0)
		*--d = '-';
	enc_str(e, k, d, (size_t)(e->num[k] + sizeof(e->num[k]) - d));
}

static void
enc_values(struct enc *e, int k, const struct rules_values *v)
{
	if (v == NULL) {
		for (int j = 0; j < 5; j++)
			enc_str(e, k + j, NULL, 0);
		return;
	}
	enc_str(e, k, v->mid, v->mid_len);
	enc_str(e, k + 1, v->tier, v->tier_len);
	enc_date(e, k + 2, v->exp);
	enc_date(e, k + 3, v->start);
	enc_date(e, k + 4, v->end);
}

int
activity_encode(struct buf *out, const char *type, int64_t date_ms, const char *program,
                size_t program_len, const char *update_type, size_t update_type_len,
                const char *rid, size_t rid_len, const struct rules_values *before,
                const struct rules_values *after)
{
	struct enc e;
	char letter = '?';
	int k, lng = 0;

	for (k = 0; k < 5; k++)
		if (strcmp(type, names[k]) == 0)
			letter = letters[k];
	enc_str(&e, AF_TYPE, &letter, 1);
	enc_date(&e, AF_DATE, date_ms);
	enc_str(&e, AF_PROGRAM, program, program_len);
	enc_str(&e, AF_UPDATE_TYPE, update_type, update_type_len);
	enc_str(&e, AF_REQUEST_ID, rid, rid_len);
	enc_values(&e, AF_BEFORE, before);
	enc_values(&e, AF_AFTER, after);
	for (k = 0; k < ACTIVITY_NFIELDS; k++)
		if (e.len[k] > 255)
			lng = 1;
	{
		unsigned char v = lng ? ACTIVITY_REC_LONG : ACTIVITY_REC_SHORT;

		if (buf_append(out, &v, 1) != 0)
			return -1;
	}
	for (k = 0; k < ACTIVITY_NFIELDS; k++) {
		unsigned char l[4];
		size_t n = e.len[k];

		l[0] = (unsigned char)(n >> 24);
		l[1] = (unsigned char)(n >> 16);
		l[2] = (unsigned char)(n >> 8);
		l[3] = (unsigned char)n;
		if ((lng ? buf_append(out, l, 4) : buf_append(out, l + 3, 1)) != 0 ||
		    buf_append(out, e.p[k], n) != 0)
			return -1;
	}
	return 0;
}

int
activity_is_record(const char *s, size_t len)
{
	return len > 0 && (s[0] == ACTIVITY_REC_SHORT || s[0] == ACTIVITY_REC_LONG);
}

/* A date field: RULES_NONE when empty; -1 when it is not a decimal date in range. */
static int
date_of(const char *p, size_t n, int64_t *ms)
{
	size_t i = 0;
	uint64_t u = 0;
	int neg = 0;

	*ms = RULES_NONE;
	if (n == 0)
		return 0;
	if (p[0] == '-')
		neg = 1, i = 1;
	if (i == n || n - i > 16)
		return -1;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		u = u * 10 + (uint64_t)(p[i] - '0');
	}
	*ms = neg ? -(int64_t)u : (int64_t)u;
	return *ms < DATES_MIN_MS || *ms > DATES_MAX_MS ? -1 : 0;
}

static int
is_date_field(int k)
{
	return k == AF_DATE || (k >= AF_BEFORE && (k - AF_BEFORE) % 5 >= 2);
}

int
activity_decode(const char *s, size_t len, struct activity_rec *r, const char **why)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t pos = 1, w;
	const char *l;
	int k;

	if (!activity_is_record(s, len)) {
		*why = "is not an activity record";
		return -1;
	}
	w = u[0] == ACTIVITY_REC_LONG ? 4 : 1;
	for (k = 0; k < ACTIVITY_NFIELDS; k++) {
		size_t n = 0;

		if (len - pos < w) {
			*why = "is a truncated activity record";
			return -1;
		}
		for (size_t j = 0; j < w; j++)
			n = n << 8 | u[pos + j];
		pos += w;
		if (len - pos < n) {
			*why = "is a truncated activity record";
			return -1;
		}
		r->f[k].p = s + pos;
		r->f[k].len = n;
		pos += n;
	}
	if (pos != len) {
		*why = "is an activity record with bytes after its fields";
		return -1;
	}
	l = r->f[AF_TYPE].len == 1 ? memchr(letters, r->f[AF_TYPE].p[0], 5) : NULL;
	if (l == NULL || *l == '\0') {
		*why = "is an activity record of no known type";
		return -1;
	}
	r->type = names[l - letters];
	for (k = 0; k < ACTIVITY_NFIELDS; k++) {
		int64_t ms;

		if (is_date_field(k) && date_of(r->f[k].p, r->f[k].len, &ms) != 0) {
			*why = "is an activity record with a date that is not epoch milliseconds in range";
			return -1;
		}
	}
	if (r->f[AF_DATE].len == 0 || r->f[AF_PROGRAM].len == 0) {
		*why = "is an activity record without its date or program";
		return -1;
	}
	return 0;
}

static int
put_str_or_null(struct buf *b, const struct activity_rec *r, int k)
{
	return r->f[k].len == 0 ? JOUT_LIT(b, "null") : jout_str(b, r->f[k].p, r->f[k].len);
}

static int
put_date(struct buf *b, const struct activity_rec *r, int k)
{
	int64_t ms;

	(void)date_of(r->f[k].p, r->f[k].len, &ms);   /* checked by activity_decode */
	return jout_date_or_null(b, ms, RULES_NONE);
}

static int
put_values(struct buf *b, const struct activity_rec *r, int k)
{
	if (r->f[k].len == 0)
		return JOUT_LIT(b, "null");
	if (JOUT_LIT(b, "{\"partnerMembershipId\":") != 0 || jout_str(b, r->f[k].p, r->f[k].len) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierName\":") != 0 || put_str_or_null(b, r, k + 1) != 0 ||
	    JOUT_LIT(b, ",\"partnerTierExpiryDate\":") != 0 || put_date(b, r, k + 2) != 0 ||
	    JOUT_LIT(b, ",\"membershipStartDate\":") != 0 || put_date(b, r, k + 3) != 0 ||
	    JOUT_LIT(b, ",\"membershipEndDate\":") != 0 || put_date(b, r, k + 4) != 0)
		return -1;
	return JOUT_LIT(b, "}");
}

int
activity_render(struct buf *b, const struct activity_rec *r, int64_t cid)
{
	if (JOUT_LIT(b, "{\"activityType\":") != 0 || jout_cstr(b, r->type) != 0 ||
	    JOUT_LIT(b, ",\"activityDate\":") != 0 || put_date(b, r, AF_DATE) != 0 ||
	    JOUT_LIT(b, ",\"partnerProgramName\":") != 0 || put_str_or_null(b, r, AF_PROGRAM) != 0 ||
	    JOUT_LIT(b, ",\"updateType\":") != 0 || put_str_or_null(b, r, AF_UPDATE_TYPE) != 0 ||
	    JOUT_LIT(b, ",\"before\":") != 0 || put_values(b, r, AF_BEFORE) != 0 ||
	    JOUT_LIT(b, ",\"after\":") != 0 || put_values(b, r, AF_AFTER) != 0 ||
	    JOUT_LIT(b, ",\"requestId\":") != 0 || jout_str(b, r->f[AF_REQUEST_ID].p, r->f[AF_REQUEST_ID].len) != 0 ||
	    JOUT_LIT(b, ",\"customerId\":") != 0 || jout_i64(b, cid) != 0)
		return -1;
	return JOUT_LIT(b, "}");
}
