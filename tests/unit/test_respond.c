/*
 * Unit tests for src/respond.c: the write routes' response body and the history /
 * change-feed event, byte for byte (SPEC's response shape, docs/CHANGE-FEED.md's key order).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "buf.h"
#include "request.h"
#include "respond.h"
#include "rules.h"
#include "test.h"

static const char update_body[] =
	"{\"customersPartnerUpdates\":["
	"{\"customer\":{\"mobile\":\"0412 345 678\",\"email\":\"\"},"
	"\"partnerProgramUpdates\":[{\"partnerProgramName\":\"Air\",\"updateType\":\"UPGRADE\"},"
	"{\"partnerProgramName\":\"Rail\",\"updateType\":\"RENEW\"}]},"
	"{\"customer\":{\"externalId\":\"x/1\",\"id\":\"\"},"
	"\"partnerProgramUpdates\":[{\"partnerProgramName\":\"Air\"}]}]}";

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

int main(void)
{
	struct req req;
	struct req_error err;
	struct write_entry es[2];
	struct rules_result res[3];
	char id[] = "42", mobile[] = "61412345678", email[] = "a@b.example";
	char *body;
	size_t len;
	struct buf b, j;
	struct activity_rec rec_;
	const char *why;

	memset(es, 0, sizeof(es));
	memset(res, 0, sizeof(res));
	if (req_parse(update_body, sizeof(update_body) - 1, REQ_UPDATE, &req, &err) != 0) {
		printf("the test's request does not parse: %s\n", err.message);
		return 1;
	}
	/* A customer found (stored identifiers, the stored id before the customer id; no
	 * externalId) and one not found (8015). */
	es[0] = (struct write_entry){ .e = &req.entries[0], .decided = 1, .cust_code = 1000, .found = 1,
	                              .cid = 99, .stored = { id, mobile, email, NULL }, .results = res };
	es[1] = (struct write_entry){ .e = &req.entries[1], .decided = 1, .cust_code = 8015,
	                              .results = res + 2 };
	res[0] = (struct rules_result){ .code = 200, .message = rules_message(200), .event = EV_UPDATE };
	res[1] = (struct rules_result){ .code = 2104, .message = "refused \"here\"" };
	res[2] = (struct rules_result){ .code = 8015, .message = rules_message(8015) };

	TEST("the update response: stored identifiers when found, as sent when not, every item's status") {
		char want[2048];

		snprintf(want, sizeof(want),
		         "{\"customersPartnerUpdates\":["
		         "{\"customer\":{\"id\":42,\"mobile\":\"61412345678\",\"email\":\"a@b.example\",\"externalId\":\"\","
		         "\"status\":{\"status\":true,\"message\":\"%s\",\"code\":1000}},"
		         "\"partnerProgramUpdates\":["
		         "{\"partnerProgramName\":\"Air\",\"updateType\":\"UPGRADE\",\"updateStatus\":{\"status\":true,\"message\":\"%s\",\"code\":200}},"
		         "{\"partnerProgramName\":\"Rail\",\"updateType\":\"RENEW\",\"updateStatus\":{\"status\":false,\"message\":\"refused \\\"here\\\"\",\"code\":2104}}]},"
		         "{\"customer\":{\"id\":\"\",\"externalId\":\"x/1\","
		         "\"status\":{\"status\":false,\"message\":\"%s\",\"code\":8015}},"
		         "\"partnerProgramUpdates\":["
		         "{\"partnerProgramName\":\"Air\",\"updateType\":null,\"updateStatus\":{\"status\":false,\"message\":\"%s\",\"code\":8015}}]}],"
		         "\"warnings\":[]}",
		         rules_message(1000), rules_message(200), rules_message(8015), rules_message(8015));
		body = respond_body(REQ_UPDATE, es, 2, &len);
		CHECK_EQ_STR(body, want);
		CHECK_EQ_INT(len, strlen(want));
		free(body);
	}
	TEST("a customer found without a stored id answers the customer id") {
		es[0].stored[0] = NULL;
		body = respond_body(REQ_UPDATE, es, 1, &len);
		CHECK(starts_with(body, "{\"customersPartnerUpdates\":[{\"customer\":{\"id\":99,\"mobile\":"));
		free(body);
		es[0].stored[0] = id;
	}
	TEST("the link response names its arrays and statuses, without updateType") {
		body = respond_body(REQ_LINK, es, 1, &len);
		CHECK(starts_with(body, "{\"linkCustomers\":[{\"customer\":"));
		CHECK(strstr(body, "\"linkToPartnerPrograms\":[{\"partnerProgramName\":\"Air\",\"partnerLinkStatus\":") != NULL);
		CHECK(strstr(body, "updateType") == NULL);
		free(body);
	}
	TEST("an UPDATE event: a compact record that renders the keys of docs/CHANGE-FEED.md in order, updateType as sent") {
		char mid[] = "M1", gold[] = "Gold", silver[] = "Silver";
		struct rules_result r = { .code = 200, .event = EV_UPDATE, .has_before = 1, .has_after = 1,
		                          .before = { mid, 2, gold, 4, RULES_NONE, 0, RULES_NONE },
		                          .after = { mid, 2, silver, 6, 1000, 0, RULES_NONE } };
		static const char rec[] = "\1\1U\10" "86400000\4Rail\5RENEW\5rid-1"
		                          "\2M1\4Gold\0\1" "0\0" "\2M1\6Silver\4" "1000\1" "0\0";

		buf_init(&b, (size_t)-1);
		respond_event(&b, &r, &req.entries[0].items[1], 42, "rid-1", 86400000);
		CHECK_EQ_INT(b.len, sizeof(rec) - 1);
		CHECK(memcmp(b.p, rec, sizeof(rec) - 1) == 0);
		CHECK_EQ_INT(activity_decode(b.p, b.len, &rec_, &why), 0);
		buf_init(&j, (size_t)-1);
		CHECK_EQ_INT(activity_render(&j, &rec_, 42), 0);
		CHECK_EQ_STR(j.p, "{\"activityType\":\"UPDATE\",\"activityDate\":\"1970-01-02T00:00:00.000Z\","
		                  "\"partnerProgramName\":\"Rail\",\"updateType\":\"RENEW\","
		                  "\"before\":{\"partnerMembershipId\":\"M1\",\"partnerTierName\":\"Gold\",\"partnerTierExpiryDate\":null,"
		                  "\"membershipStartDate\":\"1970-01-01T00:00:00.000Z\",\"membershipEndDate\":null},"
		                  "\"after\":{\"partnerMembershipId\":\"M1\",\"partnerTierName\":\"Silver\",\"partnerTierExpiryDate\":\"1970-01-01T00:00:01.000Z\","
		                  "\"membershipStartDate\":\"1970-01-01T00:00:00.000Z\",\"membershipEndDate\":null},"
		                  "\"requestId\":\"rid-1\",\"customerId\":42}");
		buf_free(&j);
		/* every truncation of it is refused, and so is a byte more */
		for (size_t n = 0; n < b.len; n++)
			CHECK(activity_decode(b.p, n, &rec_, &why) == -1);
		buf_append(&b, "x", 1);
		CHECK(activity_decode(b.p, b.len, &rec_, &why) == -1);
		buf_free(&b);
	}
	TEST("a DELINK event has a null updateType and a null after") {
		char mid[] = "M1";
		struct rules_result r = { .code = 200, .event = EV_DELINK, .has_before = 1,
		                          .before = { mid, 2, NULL, 0, RULES_NONE, 0, RULES_NONE } };

		buf_init(&b, (size_t)-1);
		respond_event(&b, &r, &req.entries[0].items[0], 7, "r", 0);
		CHECK(b.p[0] == ACTIVITY_REC_SHORT);
		CHECK_EQ_INT(activity_decode(b.p, b.len, &rec_, &why), 0);
		buf_init(&j, (size_t)-1);
		CHECK_EQ_INT(activity_render(&j, &rec_, 7), 0);
		CHECK(strstr(j.p, "\"activityType\":\"DELINK\"") == j.p + 1);
		CHECK(strstr(j.p, ",\"updateType\":null,\"before\":{") != NULL);
		CHECK(strstr(j.p, ",\"after\":null,\"requestId\":\"r\",\"customerId\":7}") != NULL);
		buf_free(&j);
		buf_free(&b);
	}
	TEST("a date out of range (data written by other means) is clamped, so the record still reads back") {
		char mid[] = "M1";
		struct rules_result r = { .code = 200, .event = EV_DELINK, .has_before = 1,
		                          .before = { mid, 2, NULL, 0, INT64_C(-99999999999999999), 0,
		                                      INT64_C(999999999999999999) } };

		buf_init(&b, (size_t)-1);
		respond_event(&b, &r, &req.entries[0].items[0], 7, "r", 0);
		CHECK_EQ_INT(activity_decode(b.p, b.len, &rec_, &why), 0);
		buf_init(&j, (size_t)-1);
		CHECK_EQ_INT(activity_render(&j, &rec_, 7), 0);
		CHECK(strstr(j.p, "\"partnerTierExpiryDate\":\"0001-01-01T00:00:00.000Z\"") != NULL);
		CHECK(strstr(j.p, "\"membershipEndDate\":\"9999-12-31T23:59:59.999Z\"") != NULL);
		buf_free(&j);
		buf_free(&b);
	}
	TEST("a value over 255 bytes (stored before the limits) makes a record of 4-byte lengths; control bytes and quotes survive") {
		char big[300], tier[] = "T\"\x01\\";
		struct rules_result r = { .code = 200, .event = EV_RELINK_SCHEDULED, .has_before = 1, .has_after = 1,
		                          .before = { big, sizeof big, tier, 4, -62135596800000, 5, 7 },
		                          .after = { big, 1, NULL, 0, RULES_NONE, 253402300799999, RULES_NONE } };

		memset(big, 'm', sizeof big);
		buf_init(&b, (size_t)-1);
		respond_event(&b, &r, &req.entries[0].items[0], 7, "r", 0);
		CHECK(b.p[0] == ACTIVITY_REC_LONG);
		CHECK_EQ_INT(activity_decode(b.p, b.len, &rec_, &why), 0);
		CHECK_EQ_INT(rec_.f[AF_BEFORE].len, sizeof big);
		buf_init(&j, (size_t)-1);
		CHECK_EQ_INT(activity_render(&j, &rec_, 7), 0);
		CHECK(strstr(j.p, "\"activityType\":\"RELINK_SCHEDULED\"") != NULL);
		CHECK(strstr(j.p, "\"partnerTierName\":\"T\\\"\\u0001\\\\\",\"partnerTierExpiryDate\":\"0001-01-01T00:00:00.000Z\"") != NULL);
		CHECK(strstr(j.p, "\"after\":{\"partnerMembershipId\":\"m\",\"partnerTierName\":null,\"partnerTierExpiryDate\":null,"
		                  "\"membershipStartDate\":\"9999-12-31T23:59:59.999Z\"") != NULL);
		buf_free(&j);
		buf_free(&b);
	}
	TEST("records that are not well formed are refused with a reason") {
		static const char *const bad[] = { "{\"activityType\":\"LINK\"}", "\3", "\1\1X", "" };

		for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
			why = NULL;
			CHECK(activity_decode(bad[k], strlen(bad[k]), &rec_, &why) == -1);
			CHECK(why != NULL);
		}
	}
	req_free(&req);
	TEST_MAIN_END();
}
