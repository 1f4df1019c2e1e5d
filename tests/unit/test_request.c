/* Unit tests for src/request.c: structure checks, field states, the JSON scan. */
#include <string.h>

#include "buf.h"
#include "request.h"
#include "test.h"

static struct req r;
static struct req_error err;

static int parse(enum req_kind kind, const char *body)
{
	return req_parse(body, strlen(body), kind, &r, &err);
}

#define LINK1(item) "{\"linkCustomers\":[{\"customer\":{\"mobile\":\"6215000000\"}," \
                    "\"linkToPartnerPrograms\":[" item "]}]}"

int main(void)
{
	char big[64 * 1024];
	size_t i, n;

	TEST("a well-formed link request parses with its fields") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"P\",\"customerPartnerReference\":"
		                   "{\"partnerMembershipId\":\"M1\",\"partnerTierName\":\"Gold\","
		                   "\"partnerTierExpiryDate\":\"2030-01-01T00:00:00Z\"}}")), 0);
		CHECK_EQ_INT(r.nentries, 1);
		CHECK_EQ_INT(r.entries[0].nitems, 1);
		CHECK_EQ_INT(r.entries[0].items[0].program.st, F_OK);
		CHECK_EQ_INT(r.entries[0].items[0].mid.st, F_OK);
		CHECK_EQ_INT(r.entries[0].items[0].expiry.st, F_OK);
		CHECK_EQ_INT(r.entries[0].items[0].expiry.ms, 1893456000000LL);
		CHECK_EQ_INT(r.entries[0].items[0].start.st, F_ABSENT);
		CHECK(r.entries[0].customer.mobile.len == 10);
		req_free(&r);
	}
	TEST("invalid JSON is refused with 400") {
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":["), -1);
		CHECK_EQ_INT(err.http, 400);
		CHECK_EQ_INT(err.code, 400);
	}
	TEST("trailing bytes after the JSON value are refused") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{}") " x"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{}") "{}"), -1);
	}
	TEST("trailing whitespace is fine") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{}") " \n"), 0);
		req_free(&r);
	}
	TEST("an embedded NUL ends nothing early: the body is refused") {
		const char body[] = LINK1("{}") "\0garbage";

		CHECK_EQ_INT(req_parse(body, sizeof(body) - 1, REQ_LINK, &r, &err), -1);
	}
	TEST("a duplicated key is refused, also nested, also when spelled with an escape") {
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[],\"linkCustomers\":[]}"), -1);
		CHECK(strstr(err.message, "duplicated") != NULL);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"A\",\"partnerProgramName\":\"B\"}")), -1);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"A\",\"partnerProgram\\u004eame\":\"B\"}")), -1);
	}
	TEST("a duplicated key in the last of many objects is refused; without it the body parses") {
		/* 50 entries: over a hundred objects, more than the scan's counters hold inline */
		struct buf many;
		size_t e;

		buf_init(&many, (size_t)-1);
		buf_appendf(&many, "{\"linkCustomers\":[");
		for (e = 0; e < 50; e++)
			buf_appendf(&many, "%s{\"customer\":{\"id\":%zu},\"linkToPartnerPrograms\":[{\"partnerProgramName\":\"A\"}]}",
			            e ? "," : "", e + 1);
		buf_appendf(&many, "]}");
		CHECK_EQ_INT(req_parse(many.p, many.len, REQ_LINK, &r, &err), 0);
		CHECK_EQ_INT(r.nentries, 50);
		req_free(&r);
		many.len -= 5;          /* before "}]}]}": the last item object gets a second name */
		buf_appendf(&many, ",\"partnerProgramName\":\"B\"}]}]}");
		CHECK_EQ_INT(req_parse(many.p, many.len, REQ_LINK, &r, &err), -1);
		CHECK(strstr(err.message, "duplicated") != NULL);
		buf_free(&many);
	}
	TEST("NaN and Infinity are refused") {
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"id\":NaN},\"linkToPartnerPrograms\":[{}]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"id\":-Infinity},\"linkToPartnerPrograms\":[{}]}]}"), -1);
	}
	TEST("raw control characters inside strings are refused") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"a\tb\"}")), -1);
	}
	TEST("integers beyond 64 bits are refused; the int64 limits are accepted") {
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"id\":9223372036854775808},\"linkToPartnerPrograms\":[{}]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"id\":9223372036854775807},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"x\":-9223372036854775808},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"x\":-9223372036854775809},\"linkToPartnerPrograms\":[{}]}]}"), -1);
	}
	TEST("invalid UTF-8 is refused") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"\xff\xfe\"}")), -1);
	}
	TEST("strict UTF-8: overlong forms, surrogates and code points past U+10FFFF are refused") {
		CHECK_EQ_INT(req_utf8_check("a\xc3\xa9" "b", 4), 4);
		CHECK_EQ_INT(req_utf8_check("\xf0\x9f\x98\x80", 4), 4);
		CHECK_EQ_INT(req_utf8_check("\xc0\xaf", 2), 0);
		CHECK_EQ_INT(req_utf8_check("\xe0\x80\xaf", 3), 0);
		CHECK_EQ_INT(req_utf8_check("\xed\xa0\x80", 3), 0);
		CHECK_EQ_INT(req_utf8_check("\xf4\x90\x80\x80", 4), 0);
		CHECK_EQ_INT(req_utf8_check("\xf5\x80\x80\x80", 4), 0);
		CHECK_EQ_INT(req_utf8_check("ab\xc3", 3), 2);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"Acme\xc0\xafShop\"}")), -1);
		CHECK(strstr(err.message, "UTF-8") != NULL);
	}
	TEST("lone UTF-16 surrogate escapes are refused; a complete pair is fine") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"a\\ud800b\"}")), -1);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"a\\udc00\"}")), -1);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"\\ud83d\\ude00\"}")), 0);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"\\\\ud800\"}")), 0);
		req_free(&r);
	}
	TEST("nesting deeper than 32 levels is refused, 32 is fine") {
		n = 0;
		n += (size_t)sprintf(big + n, "{\"linkCustomers\":[{\"customer\":{\"id\":1},\"linkToPartnerPrograms\":[{\"x\":");
		for (i = 0; i < 40; i++)
			big[n++] = '[';
		for (i = 0; i < 40; i++)
			big[n++] = ']';
		n += (size_t)sprintf(big + n, "}]}]}");
		CHECK_EQ_INT(req_parse(big, n, REQ_LINK, &r, &err), -1);
		CHECK(strstr(err.message, "deeper") != NULL);
		n = 0;
		n += (size_t)sprintf(big + n, "{\"linkCustomers\":[{\"customer\":{\"id\":1},\"linkToPartnerPrograms\":[{\"x\":");
		for (i = 0; i < 26; i++)
			big[n++] = '[';
		for (i = 0; i < 26; i++)
			big[n++] = ']';
		n += (size_t)sprintf(big + n, "}]}]}");
		CHECK_EQ_INT(req_parse(big, n, REQ_LINK, &r, &err), 0);
		req_free(&r);
	}
	TEST("structural faults refuse the whole request with 400") {
		CHECK_EQ_INT(parse(REQ_LINK, "[]"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":{}}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[1]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"linkToPartnerPrograms\":[{}]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":null,\"linkToPartnerPrograms\":[{}]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":\"x\",\"linkToPartnerPrograms\":[{}]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{}}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{},\"linkToPartnerPrograms\":[]}]}"), -1);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{},\"linkToPartnerPrograms\":[3]}]}"), -1);
		CHECK_EQ_INT(err.code, 400);
	}
	TEST("51 customers or 51 items are refused with code 2008, 50 are fine") {
		for (int items = 0; items < 2; items++) {
			for (int count = 50; count <= 51; count++) {
				n = (size_t)sprintf(big, "{\"linkCustomers\":[");
				for (i = 0; i < (size_t)(items ? 1 : count); i++) {
					n += (size_t)sprintf(big + n, "%s{\"customer\":{\"id\":1},\"linkToPartnerPrograms\":[", i ? "," : "");
					for (size_t k = 0; k < (size_t)(items ? count : 1); k++)
						n += (size_t)sprintf(big + n, "%s{}", k ? "," : "");
					n += (size_t)sprintf(big + n, "]}");
				}
				n += (size_t)sprintf(big + n, "]}");
				if (count == 50) {
					CHECK_EQ_INT(req_parse(big, n, REQ_LINK, &r, &err), 0);
					req_free(&r);
				} else {
					CHECK_EQ_INT(req_parse(big, n, REQ_LINK, &r, &err), -1);
					CHECK_EQ_INT(err.code, 2008);
					CHECK_EQ_INT(err.http, 400);
				}
			}
		}
	}
	TEST("null and empty identifiers count as not given; wrong types are bad") {
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"mobile\":null,\"email\":\"\",\"id\":null},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		CHECK(!r.entries[0].customer.bad);
		CHECK(r.entries[0].customer.mobile.p == NULL);
		CHECK(r.entries[0].customer.email.p == NULL);
		CHECK(!r.entries[0].customer.has_id);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"id\":\"12\"},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		CHECK(r.entries[0].customer.bad);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"email\":5},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		CHECK(r.entries[0].customer.bad);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, "{\"linkCustomers\":[{\"customer\":{\"mobile\":9.5},\"linkToPartnerPrograms\":[{}]}]}"), 0);
		CHECK(r.entries[0].customer.bad);
		req_free(&r);
	}
	TEST("a mobile sent as a JSON number becomes its digits") {
		CHECK_EQ_INT(parse(REQ_DELINK, "{\"deLinkCustomers\":[{\"customer\":{\"mobile\":919800000000},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}"), 0);
		CHECK_EQ_INT(r.entries[0].customer.mobile.len, 12);
		CHECK(memcmp(r.entries[0].customer.mobile.p, "919800000000", 12) == 0);
		req_free(&r);
	}
	TEST("item fields record absent, bad type and bad date states") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":7,\"customerPartnerReference\":"
		                   "{\"partnerMembershipId\":12,\"partnerTierExpiryDate\":\"2030-02-30T00:00:00Z\","
		                   "\"membershipStartDate\":5}}")), 0);
		CHECK_EQ_INT(r.entries[0].items[0].program.st, F_BADTYPE);
		CHECK_EQ_INT(r.entries[0].items[0].mid.st, F_BADTYPE);
		CHECK_EQ_INT(r.entries[0].items[0].expiry.st, F_BADVALUE);
		CHECK_EQ_INT(r.entries[0].items[0].start.st, F_BADVALUE);
		CHECK_EQ_INT(r.entries[0].items[0].tier.st, F_ABSENT);
		req_free(&r);
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"customerPartnerReference\":[]}")), 0);
		CHECK_EQ_INT(r.entries[0].items[0].reference, F_BADTYPE);
		CHECK_EQ_INT(r.entries[0].items[0].program.st, F_ABSENT);
		req_free(&r);
	}
	TEST("updateType values map, RENEW is RENEWAL, unknown ones are UPD_NONE") {
		CHECK_EQ_INT(parse(REQ_UPDATE, "{\"customersPartnerUpdates\":[{\"customer\":{\"id\":1},\"partnerProgramUpdates\":["
		                   "{\"updateType\":\"UPGRADE\"},{\"updateType\":\"RENEW\"},{\"updateType\":\"upgrade\"},"
		                   "{\"updateType\":\"MEMBERSHIP_RELINKING_CANCELLED\"},{\"updateType\":1}]}]}"), 0);
		CHECK_EQ_INT(r.entries[0].items[0].utype, UPD_UPGRADE);
		CHECK_EQ_INT(r.entries[0].items[1].utype, UPD_RENEWAL);
		CHECK_EQ_INT(r.entries[0].items[2].utype, UPD_NONE);
		CHECK_EQ_INT(r.entries[0].items[2].update_type.st, F_OK);
		CHECK_EQ_INT(r.entries[0].items[3].utype, UPD_RELINK_CANCEL);
		CHECK_EQ_INT(r.entries[0].items[4].update_type.st, F_BADTYPE);
		req_free(&r);
	}
	TEST("strings carry their length, so \\u0000 inside a value is kept") {
		CHECK_EQ_INT(parse(REQ_LINK, LINK1("{\"partnerProgramName\":\"a\\u0000b\"}")), 0);
		CHECK_EQ_INT(r.entries[0].items[0].program.s.len, 3);
		req_free(&r);
	}
	TEST("name fields of 128 bytes are fine; 129 bytes are F_TOOLONG with a 2002 message naming field and limit") {
		static const struct {
			enum req_kind kind;
			const char *fmt;      /* %s: the value */
			const char *message;  /* item.too_long */
		} cases[] = {
			{ REQ_LINK, LINK1("{\"partnerProgramName\":\"%s\"}"),
			  "partnerProgramName is too long: at most 128 bytes (UTF-8)" },
			{ REQ_LINK, LINK1("{\"partnerProgramName\":\"P\",\"customerPartnerReference\":{\"partnerMembershipId\":\"%s\"}}"),
			  "partnerMembershipId is too long: at most 128 bytes (UTF-8)" },
			{ REQ_LINK, LINK1("{\"partnerProgramName\":\"P\",\"customerPartnerReference\":{\"partnerMembershipId\":\"M\",\"partnerTierName\":\"%s\"}}"),
			  "partnerTierName is too long: at most 128 bytes (UTF-8)" },
			{ REQ_UPDATE, "{\"customersPartnerUpdates\":[{\"customer\":{\"id\":1},\"partnerProgramUpdates\":["
			  "{\"partnerProgramName\":\"P\",\"updateType\":\"UPGRADE\",\"updateDetails\":{\"updatedTierName\":\"%s\"}}]}]}",
			  "updateDetails.updatedTierName is too long: at most 128 bytes (UTF-8)" },
			{ REQ_DELINK, "{\"deLinkCustomers\":[{\"customer\":{\"id\":1},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"%s\"}]}]}",
			  "partnerProgramName is too long: at most 128 bytes (UTF-8)" },
		};
		char value[200], body[1024];
		size_t c;

		for (c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			memset(value, 'x', 128);
			value[128] = '\0';
			snprintf(body, sizeof(body), cases[c].fmt, value);
			CHECK_EQ_INT(parse(cases[c].kind, body), 0);
			CHECK(r.entries[0].items[0].too_long == NULL);
			req_free(&r);
			/* 127 ASCII bytes and a 2-byte character: 129 bytes, 128 characters */
			memcpy(value + 127, "\xc3\xa9", 3);
			snprintf(body, sizeof(body), cases[c].fmt, value);
			CHECK_EQ_INT(parse(cases[c].kind, body), 0);
			CHECK(r.entries[0].items[0].too_long != NULL &&
			      strcmp(r.entries[0].items[0].too_long, cases[c].message) == 0);
			req_free(&r);
		}
		/* The first field over its limit is the one named; the state of each is F_TOOLONG. */
		memset(value, 'x', 129);
		value[129] = '\0';
		snprintf(body, sizeof(body), LINK1("{\"partnerProgramName\":\"P\",\"customerPartnerReference\":"
		         "{\"partnerMembershipId\":\"%s\",\"partnerTierName\":\"%s\"}}"), value, value);
		CHECK_EQ_INT(parse(REQ_LINK, body), 0);
		CHECK(strcmp(r.entries[0].items[0].too_long, "partnerMembershipId is too long: at most 128 bytes (UTF-8)") == 0);
		CHECK_EQ_INT(r.entries[0].items[0].mid.st, F_TOOLONG);
		CHECK_EQ_INT(r.entries[0].items[0].tier.st, F_TOOLONG);
		CHECK_EQ_INT(r.entries[0].items[0].program.st, F_OK);
		req_free(&r);
	}
	TEST("email over 254 bytes and externalId over 128 bytes make the customer bad, naming the limit") {
		char value[300], body[1024];

		memset(value, 'e', 254);
		value[254] = '\0';
		snprintf(body, sizeof(body), "{\"deLinkCustomers\":[{\"customer\":{\"email\":\"%s\"},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}", value);
		CHECK_EQ_INT(parse(REQ_DELINK, body), 0);
		CHECK_EQ_INT(r.entries[0].customer.bad, 0);
		CHECK_EQ_INT(r.entries[0].customer.email.len, 254);
		req_free(&r);
		strcpy(value + 254, "e");
		snprintf(body, sizeof(body), "{\"deLinkCustomers\":[{\"customer\":{\"email\":\"%s\"},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}", value);
		CHECK_EQ_INT(parse(REQ_DELINK, body), 0);
		CHECK_EQ_INT(r.entries[0].customer.bad, 1);
		CHECK(strcmp(r.entries[0].customer.bad_msg, "email is too long: at most 254 bytes (UTF-8)") == 0);
		req_free(&r);
		value[128] = '\0';
		snprintf(body, sizeof(body), "{\"deLinkCustomers\":[{\"customer\":{\"externalId\":\"%s\"},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}", value);
		CHECK_EQ_INT(parse(REQ_DELINK, body), 0);
		CHECK_EQ_INT(r.entries[0].customer.bad, 0);
		req_free(&r);
		strcpy(value + 128, "e");
		snprintf(body, sizeof(body), "{\"deLinkCustomers\":[{\"customer\":{\"externalId\":\"%s\"},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}", value);
		CHECK_EQ_INT(parse(REQ_DELINK, body), 0);
		CHECK_EQ_INT(r.entries[0].customer.bad, 1);
		CHECK(strcmp(r.entries[0].customer.bad_msg, "externalId is too long: at most 128 bytes (UTF-8)") == 0);
		req_free(&r);
		/* a wrong type keeps its own message, also next to a long value */
		snprintf(body, sizeof(body), "{\"deLinkCustomers\":[{\"customer\":{\"id\":\"7\",\"externalId\":\"%s\"},\"deLinkFromPartnerPrograms\":[{\"partnerProgramName\":\"p\"}]}]}", value);
		CHECK_EQ_INT(parse(REQ_DELINK, body), 0);
		CHECK_EQ_INT(r.entries[0].customer.bad, 1);
		CHECK(strstr(r.entries[0].customer.bad_msg, "wrong type") != NULL);
		req_free(&r);
	}
	TEST_MAIN_END();
}
