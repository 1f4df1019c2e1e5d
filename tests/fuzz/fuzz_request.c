/*
 * fuzz_request: a libFuzzer target over partnerd's pure core (STYLE.md "a fuzz target
 * covers the request parser").
 *
 * Every input is fed, whole, to:
 *   - req_utf8_check, and req_json_scan on what json-c (strict) accepts;
 *   - req_parse for each of the three kinds (link, update, delink); every request that
 *     parses is then run through rules_apply, entry by entry, against one fixed customer
 *     snapshot and a fixed set of programs, and the changed memberships are serialised,
 *     parsed back and serialised again (the bytes must agree);
 *   - ident_normalize_mobile on the input and on each entry's mobile;
 *   - dates_parse (and, when it accepts, dates_format + dates_parse round trip and
 *     dates_add_cycle);
 *   - rules_program_parse and rules_membership_parse (the stored-data parsers: the
 *     compact membership format and the legacy JSON); a membership that parses must
 *     re-encode, parse back and re-encode to the same bytes.
 * Besides the sanitizers, the target abort()s when a documented promise is broken (a
 * request that parses has 1..50 entries of 1..50 items, every item code is one of SPEC §4,
 * a success carries an event, a stored membership round-trips), so such a finding shows
 * up as a crash with its input.
 *
 * Built by scripts/fuzz (clang -fsanitize=fuzzer,address,undefined) and, without
 * libFuzzer, by tests/fuzz/replay.c in `make check`, which replays tests/fuzz/corpus/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "dates.h"
#include "ident.h"
#include "request.h"
#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW INT64_C(1800000000000)      /* 2027-01-15: fixed, the core takes the time */
#define DAY INT64_C(86400000)

#define FUZZ_ASSERT(cond)                                                              \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "fuzz_request: promise broken: %s (%s:%d)\n",  \
			        #cond, __FILE__, __LINE__);                            \
			abort();                                                       \
		}                                                                      \
	} while (0)

/*
 * -DFUZZ_AVOID_KNOWN (scripts/fuzz with PARTNERD_FUZZ_AVOID_KNOWN=1) steps around findings
 * already reported, so that a long run can look for new ones:
 *   - dates_add_cycle (MONTHS) reads before its month table for starts before 1900
 *     (corpus: crash-dates-add-cycle-before-1900, crash-link-supp-start-before-1900.json).
 * The replay in `make check` is built without it: the corpus keeps failing under the
 * sanitizers until src/ is fixed.
 */
#define FUZZ_YEAR_1900_MS INT64_C(-2208988800000)

/* ---- fixed programs ------------------------------------------------------------------- */

enum { P_TIERED, P_PLAIN, P_SUPP, P_EXPIRED, P_DAYS, P_MONTHS, P_UNKNOWN, P_COUNT };

static const char *const program_defs[P_COUNT] = {
	[P_TIERED] = "{\"pid\":1,\"type\":\"EXTERNAL\",\"tiers\":[\"Bronze\",\"Silver\",\"Gold\"],\"cycle\":null,\"expiresAt\":null}",
	[P_PLAIN] = "{\"pid\":2,\"type\":\"EXTERNAL\",\"tiers\":[],\"cycle\":null,\"expiresAt\":null}",
	[P_SUPP] = "{\"pid\":3,\"type\":\"SUPPLEMENTARY\",\"tiers\":[\"Basic\",\"Premium\"],\"cycle\":{\"unit\":\"MONTHS\",\"value\":12},\"expiresAt\":null}",
	[P_EXPIRED] = "{\"pid\":4,\"type\":\"EXTERNAL\",\"tiers\":[\"Bronze\"],\"cycle\":null,\"expiresAt\":1700000000000}",
	[P_DAYS] = "{\"pid\":5,\"type\":\"SUPPLEMENTARY\",\"tiers\":[],\"cycle\":{\"unit\":\"DAYS\",\"value\":30},\"expiresAt\":null}",
	[P_MONTHS] = "{\"pid\":6,\"type\":\"SUPPLEMENTARY\",\"tiers\":[],\"cycle\":{\"unit\":\"MONTHS\",\"value\":12},\"expiresAt\":null}",
	[P_UNKNOWN] = NULL,
};

static struct rules_program programs[P_COUNT];
static int programs_ready;

/* Program names of the tests' fixtures map to the program of the same shape. */
static const struct { const char *name; int prog; } program_names[] = {
	{ "AcmeAir", P_TIERED }, { "Tiered", P_TIERED }, { "1stProgram", P_TIERED },
	{ "2ndProgram", P_TIERED }, { "Apparel-Partner", P_TIERED },
	{ "AcmeShop", P_PLAIN }, { "Plain", P_PLAIN }, { "NoTierPartnerProgram", P_PLAIN },
	{ "GlobexOnly", P_PLAIN }, { "AcmeLater", P_PLAIN },
	{ "AcmeDays", P_SUPP }, { "Supp", P_SUPP },
	{ "AcmeOld", P_EXPIRED },
	{ "Days", P_DAYS },
	{ "AcmePlus", P_MONTHS }, { "SPP_1", P_MONTHS },
};

static void
programs_init(void)
{
	int i;

	if (programs_ready)
		return;
	for (i = 0; i < P_COUNT; i++) {
		if (program_defs[i] == NULL) {
			memset(&programs[i], 0, sizeof(programs[i]));   /* found = 0 */
			continue;
		}
		if (rules_program_parse(program_defs[i], strlen(program_defs[i]), &programs[i]) != 0)
			abort();
	}
	programs_ready = 1;
}

static const struct rules_program *
program_for(const struct req_field *f)
{
	uint32_t h = 2166136261u;
	size_t i;

	if (f->st != F_OK)
		return &programs[P_UNKNOWN];
	for (i = 0; i < sizeof(program_names) / sizeof(program_names[0]); i++)
		if (strlen(program_names[i].name) == f->s.len &&
		    memcmp(program_names[i].name, f->s.p, f->s.len) == 0)
			return &programs[program_names[i].prog];
	for (i = 0; i < f->s.len; i++)
		h = (h ^ (unsigned char)f->s.p[i]) * 16777619u;
	return &programs[h % P_COUNT];
}

/* Who holds a membership id: "H..." another customer, "S..." this one, else nobody. */
static int64_t
holder_for(const struct req_field *mid)
{
	if (mid->st != F_OK || mid->s.len == 0)
		return 0;
	if (mid->s.p[0] == 'H')
		return 99;
	if (mid->s.p[0] == 'S')
		return 7;
	return 0;
}

/* ---- the fixed customer snapshot --------------------------------------------------------- */

static void
snapshot_load(struct rules_customer *c)
{
	char json[512];

	memset(c, 0, sizeof(*c));
	c->cid = 7;
	/* tiered: Silver, expiring tomorrow */
	snprintf(json, sizeof(json),
	         "{\"mid\":\"M-1\",\"tier\":\"Silver\",\"exp\":%lld,\"start\":%lld,\"end\":null,"
	         "\"lk\":%lld,\"up\":%lld,\"rl\":null}",
	         (long long)(NOW + DAY), (long long)(NOW - 10 * DAY), (long long)(NOW - 10 * DAY),
	         (long long)(NOW - DAY));
	if (rules_customer_load_slot(c, 1, json, strlen(json)) != 0)
		abort();
	/* supplementary: a pending relink in ten days */
	snprintf(json, sizeof(json),
	         "{\"mid\":\"S-1\",\"tier\":\"Basic\",\"exp\":null,\"start\":%lld,\"end\":%lld,"
	         "\"lk\":%lld,\"up\":%lld,\"rl\":{\"mid\":\"S-2\",\"tier\":\"Premium\",\"exp\":null,"
	         "\"start\":%lld,\"end\":%lld}}",
	         (long long)(NOW - 30 * DAY), (long long)(NOW + 300 * DAY), (long long)(NOW - 30 * DAY),
	         (long long)(NOW - 30 * DAY), (long long)(NOW + 10 * DAY), (long long)(NOW + 375 * DAY));
	if (rules_customer_load_slot(c, 3, json, strlen(json)) != 0)
		abort();
	/* day-cycle supplementary: a relink that became due yesterday (rules_settle) */
	snprintf(json, sizeof(json),
	         "{\"mid\":\"D-1\",\"tier\":null,\"exp\":null,\"start\":%lld,\"end\":%lld,"
	         "\"lk\":%lld,\"up\":%lld,\"rl\":{\"mid\":\"D-2\",\"tier\":null,\"exp\":null,"
	         "\"start\":%lld,\"end\":%lld}}",
	         (long long)(NOW - 40 * DAY), (long long)(NOW - 10 * DAY), (long long)(NOW - 40 * DAY),
	         (long long)(NOW - 40 * DAY), (long long)(NOW - DAY), (long long)(NOW + 29 * DAY));
	if (rules_customer_load_slot(c, 5, json, strlen(json)) != 0)
		abort();
}

static int
code_allowed(enum req_kind kind, int code)
{
	switch (code) {
	case 200: case 2002: case 2006: case 2102:
		return 1;
	case 2003: case 2005: case 2007: case 2101: case 2103:
		return kind == REQ_LINK || (kind == REQ_UPDATE && code != 2005 && code != 2101);
	case 2004:
		return kind != REQ_LINK;
	case 2009: case 2104: case 2105:
		return kind == REQ_UPDATE;
	default:
		return 0;
	}
}

/* A changed membership must serialise, parse back, and serialise to the same bytes. */
static void
check_roundtrip(const struct rules_membership *m)
{
	struct rules_membership back;
	size_t len1, len2;
	char *j1 = rules_membership_encode(m, &len1), *j2;

	FUZZ_ASSERT(rules_membership_parse(j1, len1, &back) == 0);
	FUZZ_ASSERT(back.v.mid_len == m->v.mid_len && memcmp(back.v.mid, m->v.mid, m->v.mid_len) == 0);
	j2 = rules_membership_encode(&back, &len2);
	FUZZ_ASSERT(len1 == len2 && memcmp(j1, j2, len1) == 0);
	free(j1);
	free(j2);
	/* back's strings: parse owns them; free by loading into a throwaway customer */
	{
		struct rules_customer tmp = { .cid = 1 };
		struct rules_slot *s = rules_customer_slot(&tmp, 1, 1);

		s->m = back;
		rules_customer_free(&tmp);
	}
}

static void
run_rules(const struct req *r)
{
	struct rules_customer c;
	struct rules_item_ctx ctx[REQ_MAX_ITEMS];
	struct rules_result res[REQ_MAX_ITEMS];
	size_t e, k, i;

	snapshot_load(&c);
	for (e = 0; e < r->nentries; e++) {
		const struct req_entry *en = &r->entries[e];
		char mob[IDENT_MOBILE_MAX + 16 + 1];

		FUZZ_ASSERT(en->nitems >= 1 && en->nitems <= REQ_MAX_ITEMS);
		if (en->customer.mobile.p != NULL) {
			int n = ident_normalize_mobile(en->customer.mobile.p, en->customer.mobile.len,
			                               "91", 10, mob, sizeof(mob));

			FUZZ_ASSERT(n < 0 || (size_t)n == strlen(mob));
		}
		FUZZ_ASSERT(!en->customer.has_id || en->customer.id > 0);
		memset(res, 0, sizeof(res));
#ifdef FUZZ_AVOID_KNOWN
		for (k = 0; k < en->nitems; k++)
			if (en->items[k].start.st == F_OK && en->items[k].start.ms < FUZZ_YEAR_1900_MS)
				break;
		if (k < en->nitems)
			continue;
#endif
		for (k = 0; k < en->nitems; k++) {
			ctx[k].prog = program_for(&en->items[k].program);
			ctx[k].mid_holder = r->kind == REQ_LINK ? holder_for(&en->items[k].mid) : 0;
		}
		rules_apply(r->kind, &c, en, ctx, NOW, res);
		for (k = 0; k < en->nitems; k++) {
			FUZZ_ASSERT(code_allowed(r->kind, res[k].code));
			FUZZ_ASSERT(res[k].message != NULL && res[k].message[0] != '\0');
			FUZZ_ASSERT((res[k].code == 200) == (res[k].event != EV_NONE));
			rules_result_free(&res[k]);
		}
		for (i = 0; i < c.nslots; i++)
			if (c.slots[i].dirty && c.slots[i].present)
				check_roundtrip(&c.slots[i].m);
	}
	rules_customer_free(&c);
}

/* ---- the stand-alone parsers ----------------------------------------------------------- */

static void
fuzz_dates(const char *s, size_t len)
{
	int64_t ms, back;
	char out[DATES_FMT_LEN + 1];

	if (dates_parse(s, len, &ms) != 0)
		return;
	/* Year 0001..9999 in UTC: the formatted text parses back to the same millisecond. */
	if (ms >= INT64_C(-62135596800000) && ms <= INT64_C(253402300799999)) {
		dates_format(ms, out);
		FUZZ_ASSERT(strlen(out) == DATES_FMT_LEN);
		FUZZ_ASSERT(dates_parse(out, DATES_FMT_LEN, &back) == 0 && back == ms);
	}
#ifdef FUZZ_AVOID_KNOWN
	if (ms < FUZZ_YEAR_1900_MS)
		return;
#endif
	(void)dates_add_cycle(ms, DATES_MONTHS, 1 + (int)(len % 1200));
	(void)dates_add_cycle(ms, DATES_DAYS, 1 + (int)(len % 4000));
}

static void
fuzz_json_scan(const char *s, size_t len)
{
	struct json_tokener *tok;
	struct json_object *root;
	char msg[160];

	if (len > INT32_MAX)
		return;
	tok = json_tokener_new_ex(REQ_MAX_DEPTH);
	if (tok == NULL)
		abort();
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, s, (int)len);
	if (root != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	    json_tokener_get_parse_end(tok) == len && req_utf8_check(s, len) == len)
		(void)req_json_scan(s, len, root, msg, sizeof(msg));
	json_tokener_free(tok);
	json_object_put(root);
}

/*
 * partnerctl's strict readers accept a subset of what partnerd's lenient ones do, and read
 * it alike. lenient: s as rules_program_parse read it.
 */
static void
check_strict_readers(const char *s, size_t size, const struct rules_program *lenient)
{
	struct rules_program p;
	struct rules_membership m, l;
	char why[200];
	size_t i;
	int rc;

	if (rules_program_parse_strict(s, size, &p, why, sizeof(why)) == 0) {
		FUZZ_ASSERT(lenient->found && p.pid == lenient->pid && p.pid > 0 &&
		            p.supplementary == lenient->supplementary && p.ntiers == lenient->ntiers &&
		            p.has_cycle == lenient->has_cycle && p.expires_at == lenient->expires_at);
		for (i = 0; i < p.ntiers; i++)
			FUZZ_ASSERT(p.tier_len[i] > 0 && p.tier_len[i] == lenient->tier_len[i] &&
			            memcmp(p.tiers[i], lenient->tiers[i], p.tier_len[i]) == 0);
	} else {
		FUZZ_ASSERT(why[0] != '\0' && !p.found && p.ntiers == 0);
	}
	rules_program_free(&p);
	rc = rules_membership_parse_strict(s, size, &m, why, sizeof(why));
	FUZZ_ASSERT(rc == 0 || rc == -1 || (rc == -2 && why[0] != '\0'));
	if (rc == 0) {
		FUZZ_ASSERT(rules_membership_parse(s, size, &l) == 0);
		FUZZ_ASSERT(l.v.mid_len == m.v.mid_len && l.v.start == m.v.start &&
		            l.linked_on == m.linked_on && l.has_relink == m.has_relink);
		rules_membership_free(&l);
		rules_membership_free(&m);
	} else {
		FUZZ_ASSERT(m.v.mid == NULL && m.rl.mid == NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char mob[IDENT_MOBILE_MAX + 16 + 1];
	struct rules_program p;
	struct rules_membership m;
	int kind, n;

	programs_init();
	if (size > 4 * 1024 * 1024)
		return 0;

	FUZZ_ASSERT(req_utf8_check(s, size) <= size);
	fuzz_json_scan(s, size);

	for (kind = REQ_LINK; kind <= REQ_DELINK; kind++) {
		struct req r;
		struct req_error err;

		memset(&err, 0, sizeof(err));
		if (req_parse(s, size, (enum req_kind)kind, &r, &err) != 0) {
			FUZZ_ASSERT(err.http == 400 && (err.code == 400 || err.code == 2008));
			FUZZ_ASSERT(err.message[0] != '\0');
			FUZZ_ASSERT(r.tree == NULL && r.entries == NULL);
			continue;
		}
		FUZZ_ASSERT(req_utf8_check(s, size) == size);
		FUZZ_ASSERT(r.nentries >= 1 && r.nentries <= REQ_MAX_ENTRIES);
		run_rules(&r);
		req_free(&r);
	}

	n = ident_normalize_mobile(s, size, "91", 10, mob, sizeof(mob));
	FUZZ_ASSERT(n < 0 || (n >= 6 && (size_t)n == strlen(mob)));
	fuzz_dates(s, size);

	if (size <= INT32_MAX) {
		if (rules_program_parse(s, size, &p) == 0)
			FUZZ_ASSERT(p.ntiers <= RULES_MAX_TIERS);
		check_strict_readers(s, size, &p);
		rules_program_free(&p);
		if (rules_membership_parse(s, size, &m) == 0) {
			struct rules_customer tmp = { .cid = 1 };

			/* Whatever decodes (compact or legacy JSON) re-encodes, and that is stable. */
			FUZZ_ASSERT(m.v.mid_len > 0 && m.v.start != RULES_NONE);
			FUZZ_ASSERT(!m.has_relink || (m.rl.mid_len > 0 && m.rl.start != RULES_NONE));
			check_roundtrip(&m);
			rules_customer_slot(&tmp, 1, 1)->m = m;
			rules_customer_free(&tmp);
		}
	}
	return 0;
}
