/*
 * Unit tests for src/render.c: the shared JSON pieces are byte for byte what a json-c tree
 * of the same values printed (the read routes built such trees before, and their answers
 * must not change).
 */
#include <json-c/json.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "dates.h"
#include "jout.h"
#include "render.h"
#include "rules.h"
#include "test.h"

static struct json_object *
date_or_null(int64_t ms)
{
	char d[DATES_FMT_LEN + 1];

	return ms == RULES_NONE ? NULL : json_object_new_string(dates_format(ms, d));
}

/* The tree the read routes built for membership values. */
static const char *
values_tree(struct json_object **o, const struct rules_values *v)
{
	*o = json_object_new_object();
	json_object_object_add(*o, "partnerMembershipId", json_object_new_string_len(v->mid, (int)v->mid_len));
	json_object_object_add(*o, "partnerTierName", v->tier ? json_object_new_string_len(v->tier, (int)v->tier_len) : NULL);
	json_object_object_add(*o, "partnerTierExpiryDate", date_or_null(v->exp));
	json_object_object_add(*o, "membershipStartDate", date_or_null(v->start));
	json_object_object_add(*o, "membershipEndDate", date_or_null(v->end));
	return json_object_to_json_string_ext(*o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

/* The tree the read routes built for a status object. */
static const char *
status_tree(struct json_object **o, int code)
{
	*o = json_object_new_object();
	json_object_object_add(*o, "status", json_object_new_boolean(code == 1000));
	json_object_object_add(*o, "message", json_object_new_string(rules_message(code)));
	json_object_object_add(*o, "code", json_object_new_int(code));
	return json_object_to_json_string_ext(*o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

int main(void)
{
	static char mid[] = "A\xc3\xa9\"\\\t\x01/\x7f\0z";
	static char tier[] = "Gold\n\xe2\x80\xa8";
	struct json_object *o;
	struct buf b;

	buf_init(&b, 1 << 16);
	TEST("membership values with every field print as the json-c tree did") {
		struct rules_values v = { mid, sizeof mid - 1, tier, sizeof tier - 1, 1893456000000LL,
		                          1764806400123LL, 1796342400000LL };

		buf_reset(&b);
		CHECK(render_values(&b, &v) == 0);
		CHECK_EQ_STR(b.p, values_tree(&o, &v));
		json_object_put(o);
	}
	TEST("membership values without a tier or dates print nulls as the json-c tree did") {
		struct rules_values v = { mid, 1, NULL, 0, RULES_NONE, 0, RULES_NONE };

		buf_reset(&b);
		CHECK(render_values(&b, &v) == 0);
		CHECK_EQ_STR(b.p, values_tree(&o, &v));
		json_object_put(o);
	}
	TEST("render_values_fields is render_values without its braces") {
		struct rules_values v = { mid, sizeof mid - 1, tier, 4, RULES_NONE, 0, RULES_NONE };
		struct buf f;

		buf_init(&f, 1 << 16);
		buf_reset(&b);
		CHECK(render_values(&b, &v) == 0);
		CHECK(JOUT_LIT(&f, "{") == 0 && render_values_fields(&f, &v) == 0 && JOUT_LIT(&f, "}") == 0);
		CHECK_EQ_STR(f.p, b.p);
		buf_free(&f);
	}
	TEST("status objects of the read routes (1000, 8015) print as the json-c tree did") {
		buf_reset(&b);
		CHECK(render_status(&b, 1000, NULL) == 0);
		CHECK_EQ_STR(b.p, status_tree(&o, 1000));
		json_object_put(o);
		buf_reset(&b);
		CHECK(render_status(&b, 8015, NULL) == 0);
		CHECK_EQ_STR(b.p, status_tree(&o, 8015));
		json_object_put(o);
	}
	TEST("a status with its own message, and 200 counts as success") {
		buf_reset(&b);
		CHECK(render_status(&b, 200, "done \"now\"") == 0);
		CHECK_EQ_STR(b.p, "{\"status\":true,\"message\":\"done \\\"now\\\"\",\"code\":200}");
	}
	TEST("over the buffer's cap: -1") {
		struct rules_values v = { mid, sizeof mid - 1, NULL, 0, RULES_NONE, 0, RULES_NONE };
		struct buf small;

		buf_init(&small, 20);
		CHECK(render_values(&small, &v) == -1);
		CHECK(render_status(&small, 1000, NULL) == -1);
		buf_free(&small);
	}
	buf_free(&b);
	TEST_MAIN_END();
}
