/* Unit tests for src/rules.c: the business rules on one customer's snapshot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dates.h"
#include "request.h"
#include "rules.h"
#include "test.h"

#define NOW 1800000000000LL             /* 2027-01-15 */
#define DAY 86400000LL

static struct rules_program tiered, tierless, supp, expired, unknown;
static struct rules_result res[8];
static struct rules_item_ctx ctx[8];

static void setup_programs(void)
{
	static const char *const tiers[] = { "Bronze", "Silver", "Gold" };
	size_t i;

	memset(&tiered, 0, sizeof(tiered));
	tiered.found = 1;
	tiered.pid = 1;
	tiered.ntiers = 3;
	for (i = 0; i < 3; i++) {
		tiered.tiers[i] = strdup(tiers[i]);
		tiered.tier_len[i] = strlen(tiers[i]);
	}
	tiered.expires_at = RULES_NONE;
	tierless = (struct rules_program){ .found = 1, .pid = 2, .expires_at = RULES_NONE };
	supp = (struct rules_program){ .found = 1, .pid = 3, .supplementary = 1, .has_cycle = 1,
	                               .cycle_unit = DATES_MONTHS, .cycle_n = 12,
	                               .expires_at = RULES_NONE };
	expired = (struct rules_program){ .found = 1, .pid = 4, .expires_at = NOW - DAY };
	unknown = (struct rules_program){ .found = 0 };
}

/* Parses body as a one-entry request and applies it with the given programs. */
static int apply(enum req_kind kind, struct rules_customer *c, const char *body,
                 const struct rules_program *const *progs, const int64_t *holders)
{
	struct req r;
	struct req_error err;
	size_t k;

	if (req_parse(body, strlen(body), kind, &r, &err) != 0) {
		printf("  parse failed: %s\n", err.message);
		return -1;
	}
	for (k = 0; k < r.entries[0].nitems; k++) {
		ctx[k].prog = progs[k];
		ctx[k].mid_holder = holders ? holders[k] : 0;
	}
	rules_apply(kind, c, &r.entries[0], ctx, NOW, res);
	req_free(&r);
	return 0;
}

#define LINK(items) "{\"linkCustomers\":[{\"customer\":{\"id\":7},\"linkToPartnerPrograms\":[" items "]}]}"
#define UPD(items) "{\"customersPartnerUpdates\":[{\"customer\":{\"id\":7},\"partnerProgramUpdates\":[" items "]}]}"
#define DEL(items) "{\"deLinkCustomers\":[{\"customer\":{\"id\":7},\"deLinkFromPartnerPrograms\":[" items "]}]}"
#define REF(x) ",\"customerPartnerReference\":{" x "}"

static const struct rules_program *P1[8], *P2[8];

static void progs(const struct rules_program *a, const struct rules_program *b)
{
	P1[0] = a;
	P2[0] = a;
	P2[1] = b;
}

static struct rules_customer fresh(void)
{
	struct rules_customer c = { .cid = 7 };

	return c;
}

/* A slot of program 5 as read (orig ids) and as decided (current id, relink id), dirty. */
static struct rules_slot slot(int was, const char *omid, const char *orl, int present,
                              const char *mid, const char *rl)
{
	struct rules_slot s;

	memset(&s, 0, sizeof(s));
	s.pid = 5;
	s.dirty = 1;
	s.was_present = was;
	s.orig_mid = (char *)omid;
	s.orig_mid_len = omid ? strlen(omid) : 0;
	s.orig_rl_mid = (char *)orl;
	s.orig_rl_mid_len = orl ? strlen(orl) : 0;
	s.present = present;
	s.m.v.mid = (char *)mid;
	s.m.v.mid_len = mid ? strlen(mid) : 0;
	s.m.has_relink = rl != NULL;
	s.m.rl.mid = (char *)rl;
	s.m.rl.mid_len = rl ? strlen(rl) : 0;
	return s;
}

static int ref_is(const struct rules_mid_ref *r, const char *mid)
{
	return r->pid == 5 && r->len == strlen(mid) && memcmp(r->mid, mid, r->len) == 0;
}

static void change_set_tests(void)
{
	struct rules_slot s;
	struct rules_slot_change ch;
	struct rules_claims cl = { 0 };
	struct rules_result r;
	int64_t h;

	TEST("change set: a new membership is set and its id claimed, nothing released") {
		s = slot(0, NULL, NULL, 1, "M1", NULL);
		rules_slot_change(&s, &ch);
		CHECK(ch.set && !ch.del);
		CHECK_EQ_INT(ch.nclaim, 1);
		CHECK_EQ_INT(ch.nrelease, 0);
		CHECK(ref_is(&ch.claim[0], "M1"));
	}
	TEST("change set: an unchanged slot writes nothing, a changed one keeping its id claims none") {
		s = slot(1, "M1", NULL, 1, "M1", NULL);
		s.dirty = 0;
		rules_slot_change(&s, &ch);
		CHECK(!ch.set && !ch.del && ch.nclaim == 0 && ch.nrelease == 0);
		s.dirty = 1;
		rules_slot_change(&s, &ch);
		CHECK(ch.set && !ch.del && ch.nclaim == 0 && ch.nrelease == 0);
	}
	TEST("change set: a delink deletes the membership and releases its ids, relink's too") {
		s = slot(1, "M1", "M2", 0, NULL, NULL);
		rules_slot_change(&s, &ch);
		CHECK(!ch.set && ch.del);
		CHECK_EQ_INT(ch.nclaim, 0);
		CHECK_EQ_INT(ch.nrelease, 2);
		CHECK(ref_is(&ch.release[0], "M1") && ref_is(&ch.release[1], "M2"));
	}
	TEST("change set: a scheduled relink claims the new id and keeps the current one") {
		s = slot(1, "M1", NULL, 1, "M1", "M2");
		rules_slot_change(&s, &ch);
		CHECK(ch.set);
		CHECK_EQ_INT(ch.nclaim, 1);
		CHECK(ref_is(&ch.claim[0], "M2"));
		CHECK_EQ_INT(ch.nrelease, 0);
	}
	TEST("change set: a settled relink claims its id again and releases the old one") {
		s = slot(1, "M1", "M2", 1, "M2", NULL);
		rules_slot_change(&s, &ch);
		CHECK_EQ_INT(ch.nclaim, 1);
		CHECK(ref_is(&ch.claim[0], "M2"));
		CHECK_EQ_INT(ch.nrelease, 1);
		CHECK(ref_is(&ch.release[0], "M1"));
	}
	TEST("change set: a cancelled relink releases the relink id only") {
		s = slot(1, "M1", "M2", 1, "M1", NULL);
		rules_slot_change(&s, &ch);
		CHECK_EQ_INT(ch.nclaim, 1);     /* current id again: a relink was pending when read */
		CHECK(ref_is(&ch.claim[0], "M1"));
		CHECK_EQ_INT(ch.nrelease, 1);
		CHECK(ref_is(&ch.release[0], "M2"));
	}
	TEST("change set: an absent slot that was absent deletes nothing") {
		s = slot(0, NULL, NULL, 0, NULL, NULL);
		rules_slot_change(&s, &ch);
		CHECK(!ch.set && !ch.del && ch.nclaim == 0 && ch.nrelease == 0);
	}
	TEST("in-request claims: the newest claim wins, a delink frees, failures count for nothing") {
		memset(&r, 0, sizeof(r));
		h = 42;
		rules_claims_lookup(&cl, 5, "M1", 2, &h);
		CHECK(h == 42);
		r.code = 200;
		r.event = EV_LINK;
		r.after.mid = (char *)"M1";
		r.after.mid_len = 2;
		rules_claims_note(&cl, 5, &r, 7);
		rules_claims_lookup(&cl, 5, "M1", 2, &h);
		CHECK(h == 7);
		h = 42;
		rules_claims_lookup(&cl, 6, "M1", 2, &h);
		CHECK(h == 42);
		r.event = EV_DELINK;
		r.before = r.after;
		rules_claims_note(&cl, 5, &r, 7);
		rules_claims_lookup(&cl, 5, "M1", 2, &h);
		CHECK(h == 0);
		r.code = 2101;
		r.event = EV_NONE;
		rules_claims_note(&cl, 5, &r, 9);
		rules_claims_lookup(&cl, 5, "M1", 2, &h);
		CHECK(h == 0);
		r.code = 200;
		r.event = EV_RELINK_SCHEDULED;
		rules_claims_note(&cl, 5, &r, 9);
		rules_claims_lookup(&cl, 5, "M1", 2, &h);
		CHECK(h == 9);
		rules_claims_free(&cl);
		CHECK(cl.n == 0 && cl.v == NULL);
	}
}

int main(void)
{
	struct rules_customer c;
	struct rules_slot *s;
	int64_t holders[2];

	setup_programs();

	TEST("linking a tier-based program stores membership id, tier and expiry") {
		c = fresh();
		progs(&tiered, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M1\",\"partnerTierName\":\"Silver\",\"partnerTierExpiryDate\":\"2030-01-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 1, 0);
		CHECK(s != NULL && s->present && s->dirty);
		CHECK(s != NULL && strcmp(s->m.v.mid, "M1") == 0 && strcmp(s->m.v.tier, "Silver") == 0);
		CHECK(s != NULL && s->m.v.exp == 1893456000000LL && s->m.v.start == NOW && s->m.linked_on == NOW);
		rules_customer_free(&c);
	}
	TEST("linking twice: the second link of the same program is 2005") {
		c = fresh();
		progs(&tierless, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M1\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M2\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2005);
		rules_customer_free(&c);
	}
	TEST("the same program twice in one entry: the later one is 2102") {
		c = fresh();
		progs(&tierless, &tierless);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M1\"") "},{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M1\"") "}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		CHECK_EQ_INT(res[1].code, 2102);
		rules_customer_free(&c);
	}
	TEST("an unknown program is 2006, an expired one 2006 with an 'expired' message") {
		c = fresh();
		progs(&unknown, &expired);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"X\"},{\"partnerProgramName\":\"E\"" REF("\"partnerMembershipId\":\"M\"") "}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2006);
		CHECK_EQ_INT(res[1].code, 2006);
		CHECK(strstr(res[1].message, "expired") != NULL);
		CHECK_EQ_INT(c.nslots, 0);
		rules_customer_free(&c);
	}
	TEST("rule order: missing name 2002 before anything; reference missing 2002 after existence") {
		c = fresh();
		progs(&tiered, &unknown);
		apply(REQ_LINK, &c, LINK("{" "\"x\":1" "},{\"partnerProgramName\":\"X\"}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK_EQ_INT(res[1].code, 2006);
		progs(&tiered, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		rules_customer_free(&c);
	}
	TEST("rule order: a bad date (2103) is reported before a missing membership id (2002)") {
		c = fresh();
		progs(&tiered, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerTierExpiryDate\":\"2030-01-01\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2103);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"membershipStartDate\":\"soon\",\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2103);
		rules_customer_free(&c);
	}
	TEST("a membership id held by another customer is 2101; held by this one is fine") {
		c = fresh();
		progs(&tierless, NULL);
		holders[0] = 99;
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, holders);
		CHECK_EQ_INT(res[0].code, 2101);
		holders[0] = 7;
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, holders);
		CHECK_EQ_INT(res[0].code, 200);
		rules_customer_free(&c);
	}
	TEST("tiers: missing for a tiered program 2002, unknown 2007, given for a tierless one 2007") {
		c = fresh();
		progs(&tiered, &tierless);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\"") "},{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Gold\"") "}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK_EQ_INT(res[1].code, 2007);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"gold\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2007);
		CHECK_EQ_INT(c.nslots, 0);
		rules_customer_free(&c);
	}
	TEST("a field over its byte limit fails its item with 2002 before any rule; siblings go on") {
		c = fresh();
		progs(&tierless, &unknown);
		/* 129-byte membership id on an existing program, then a 129-byte name of no program */
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM\"") "},"
		      "{\"partnerProgramName\":\"MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM\"}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK(strcmp(res[0].message, "partnerMembershipId is too long: at most 128 bytes (UTF-8)") == 0);
		CHECK_EQ_INT(res[1].code, 2002);
		CHECK(strcmp(res[1].message, "partnerProgramName is too long: at most 128 bytes (UTF-8)") == 0);
		CHECK_EQ_INT(c.nslots, 0);
		progs(&tierless, &tiered);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM\"") "},"
		      "{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Gold\"") "}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK_EQ_INT(res[1].code, 200);
		progs(&tiered, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK(strcmp(res[0].message, "updateDetails.updatedTierName is too long: at most 128 bytes (UTF-8)") == 0);
		rules_customer_free(&c);
	}
	TEST("a membership stored with a value over the limits accepts only a delink (2002 otherwise)") {
		char json[512];

		c = fresh();
		snprintf(json, sizeof(json), "{\"mid\":\"%0200d\",\"tier\":\"Bronze\",\"exp\":null,"
		         "\"start\":1700000000000,\"end\":null,\"lk\":1700000000000,\"up\":1700000000000}", 7);
		CHECK(rules_customer_load_slot(&c, tiered.pid, json, strlen(json)) == 0);
		progs(&tiered, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"Gold\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		CHECK(strstr(res[0].message, "over 128 bytes") != NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Gold\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		apply(REQ_DELINK, &c, DEL("{\"partnerProgramName\":\"A\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		CHECK(res[0].has_before && res[0].before.mid_len == 200);
		rules_result_free(&res[0]);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Gold\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		rules_result_free(&res[0]);
		rules_customer_free(&c);
	}
	TEST("an expiry not in the future is 2003") {
		c = fresh();
		progs(&tiered, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Gold\",\"partnerTierExpiryDate\":\"2020-01-01T00:00:00+05:30\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2003);
		rules_customer_free(&c);
	}
	TEST("a supplementary link ends one cycle after its start; a future start is stored") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\",\"membershipStartDate\":\"2027-03-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s != NULL && s->m.v.start > NOW);
		CHECK(s != NULL && s->m.v.end == dates_add_cycle(s->m.v.start, DATES_MONTHS, 12));
		rules_customer_free(&c);
	}
	TEST("a supplementary link whose end (start + cycle) has already passed is 2003, nothing stored") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\",\"membershipStartDate\":\"2020-01-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2003);
		CHECK(strstr(res[0].message, "ended") != NULL);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s == NULL || (!s->present && !s->dirty));
		/* a past start whose cycle still runs (2026-02-01 + 12 months > NOW) is linked */
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\",\"membershipStartDate\":\"2026-02-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s != NULL && s->present && strcmp(rules_state(&s->m, NOW), "ACTIVE") == 0);
		rules_customer_free(&c);
	}
	TEST("a supplementary link ending after 9999-12-31 is 2103 (the end is not clamped)") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\",\"membershipStartDate\":\"9999-06-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2103);
		CHECK(strstr(res[0].message, "9999-12-31") != NULL);
		CHECK(rules_customer_slot(&c, 3, 0) == NULL);
		/* the last start whose end is representable: 9998-12-31T23:59:59.999Z + 12 months */
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\",\"membershipStartDate\":\"9998-12-31T23:59:59.999Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s != NULL && s->m.v.end == DATES_MAX_MS);
		rules_customer_free(&c);
	}
	TEST("state: PENDING before the start, ENDED once the end passed, then TIER_EXPIRED, else ACTIVE") {
		struct rules_membership m = { 0 };

		m.v.start = NOW - DAY;
		m.v.end = RULES_NONE;
		m.v.exp = RULES_NONE;
		CHECK_EQ_STR(rules_state(&m, NOW), "ACTIVE");
		m.v.exp = NOW;
		CHECK_EQ_STR(rules_state(&m, NOW), "TIER_EXPIRED");
		m.v.end = NOW;
		CHECK_EQ_STR(rules_state(&m, NOW), "ENDED");
		m.v.end = NOW + 1;
		CHECK_EQ_STR(rules_state(&m, NOW), "TIER_EXPIRED");
		m.v.exp = RULES_NONE;
		CHECK_EQ_STR(rules_state(&m, NOW), "ACTIVE");
		m.v.start = NOW + 1;
		CHECK_EQ_STR(rules_state(&m, NOW), "PENDING");
	}
	TEST("a due relink whose own cycle has also run out settles as an ENDED membership") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"R\",\"membershipStartDate\":\"2027-02-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s != NULL && s->m.has_relink);
		/* two years later: the relink (2027-02-01 .. 2028-02-01) started and ended */
		CHECK_EQ_INT(rules_settle(&c, NOW + 730 * DAY), 1);
		CHECK(s->m.v.mid_len == 1 && s->m.v.mid[0] == 'R');
		CHECK_EQ_STR(rules_state(&s->m, NOW + 730 * DAY), "ENDED");
		rules_customer_free(&c);
	}
	TEST("a future-dated supplementary link of a linked customer queues one relink, a second is 2005") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"N\",\"membershipStartDate\":\"2030-01-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 3, 0);
		CHECK(s != NULL && s->m.has_relink && strcmp(s->m.rl.mid, "N") == 0 && strcmp(s->m.v.mid, "M") == 0);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"O\",\"membershipStartDate\":\"2031-01-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2005);
		rules_customer_free(&c);
	}
	TEST("an EXTERNAL program already linked is 2005 even with a future start") {
		c = fresh();
		progs(&tierless, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"N\",\"membershipStartDate\":\"2030-01-01T00:00:00Z\"") "}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2005);
		rules_customer_free(&c);
	}
	TEST("a due relink becomes the membership when the customer is next touched") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		s = rules_customer_slot(&c, 3, 0);
		s->m.has_relink = 1;
		s->m.rl.mid = strdup("N");
		s->m.rl.mid_len = 1;
		s->m.rl.start = NOW - 1;
		s->m.rl.exp = RULES_NONE;
		s->m.rl.end = RULES_NONE;
		s->dirty = 0;
		CHECK_EQ_INT(rules_settle(&c, NOW), 1);
		CHECK(strcmp(s->m.v.mid, "N") == 0 && !s->m.has_relink && s->dirty);
		rules_customer_free(&c);
	}
	TEST("updates: UPGRADE up, DOWNGRADE down, RENEWAL same tier; contradictions are 2104") {
		c = fresh();
		progs(&tiered, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Silver\"") "}"), P1, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"Bronze\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2104);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"DOWNGRADE\",\"updateDetails\":{\"updatedTierName\":\"Gold\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2104);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"RENEWAL\",\"updateDetails\":{\"updatedTierName\":\"Gold\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2104);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"Gold\",\"updatedTierExpiryDate\":\"2031-01-01T00:00:00Z\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		s = rules_customer_slot(&c, 1, 0);
		CHECK(s != NULL && strcmp(s->m.v.tier, "Gold") == 0 && s->m.v.exp == 1924992000000LL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"RENEW\",\"updateDetails\":{\"updatedTierName\":\"Gold\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"DOWNGRADE\",\"updateDetails\":{\"updatedTierName\":\"Bronze\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		rules_customer_free(&c);
	}
	TEST("updates: not linked 2004, bad type 2009, missing details 2002, tierless 2007, past expiry 2003") {
		c = fresh();
		progs(&tiered, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2004);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"A\"" REF("\"partnerMembershipId\":\"M\",\"partnerTierName\":\"Silver\"") "}"), P1, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"SIDEGRADE\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2009);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2002);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"A\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"Gold\",\"updatedTierExpiryDate\":\"2001-01-01T00:00:00Z\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2003);
		s = rules_customer_slot(&c, 1, 0);
		CHECK(s != NULL && strcmp(s->m.v.tier, "Silver") == 0);
		rules_customer_free(&c);
		c = fresh();
		progs(&tierless, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"B\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"Gold\"}}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2007);
		rules_customer_free(&c);
	}
	TEST("cancelling a relink removes it; without one it is 2105") {
		c = fresh();
		progs(&supp, NULL);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"S\",\"updateType\":\"MEMBERSHIP_RELINKING_CANCELLED\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 2105);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"S\"" REF("\"partnerMembershipId\":\"N\",\"membershipStartDate\":\"2030-01-01T00:00:00Z\"") "}"), P1, NULL);
		apply(REQ_UPDATE, &c, UPD("{\"partnerProgramName\":\"S\",\"updateType\":\"MEMBERSHIP_RELINKING_CANCELLED\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		CHECK(!rules_customer_slot(&c, 3, 0)->m.has_relink);
		rules_customer_free(&c);
	}
	TEST("delink removes the membership; unlinked is 2004, unknown program 2006") {
		c = fresh();
		progs(&tierless, &unknown);
		apply(REQ_DELINK, &c, DEL("{\"partnerProgramName\":\"B\"},{\"partnerProgramName\":\"X\"}"), P2, NULL);
		CHECK_EQ_INT(res[0].code, 2004);
		CHECK_EQ_INT(res[1].code, 2006);
		apply(REQ_LINK, &c, LINK("{\"partnerProgramName\":\"B\"" REF("\"partnerMembershipId\":\"M\"") "}"), P1, NULL);
		apply(REQ_DELINK, &c, DEL("{\"partnerProgramName\":\"B\"}"), P1, NULL);
		CHECK_EQ_INT(res[0].code, 200);
		CHECK(!rules_customer_slot(&c, 2, 0)->present);
		rules_customer_free(&c);
	}
	rules_program_free(&tiered);
	change_set_tests();
	TEST_MAIN_END();
}
