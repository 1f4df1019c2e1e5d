/*
 * respond: the write routes' response body, as JSON text, and their events (respond.h).
 * The response is written as text (jout.h): a json-c tree cost more than the rules. The
 * events are compact records (activity.h).
 */
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "activity.h"
#include "jout.h"
#include "render.h"
#include "respond.h"

void
respond_event(struct buf *out, const struct rules_result *res, const struct req_item *it,
              int64_t cid, const char *rid, int64_t now_ms)
{
	int upd = res->event == EV_UPDATE && it->update_type.st == F_OK;

	(void)cid;   /* the history key and the feed entry name the customer */
	activity_encode(out, rules_event_name[res->event], now_ms, it->program.s.p, it->program.s.len,
	                upd ? it->update_type.s.p : NULL, upd ? it->update_type.s.len : 0,
	                rid, strlen(rid), res->has_before ? &res->before : NULL,
	                res->has_after ? &res->after : NULL);
}

/* The customer object of an entry: as stored when found, else as sent. */
static void
put_customer(struct buf *b, const struct write_entry *es)
{
	static const char *const keys[4] = { "id", "mobile", "email", "externalId" };
	static const char *const lead[4] = { "\"id\":", "\"mobile\":", "\"email\":", "\"externalId\":" };
	struct json_object *sent, *v;
	int k, first = 1;

	JOUT_LIT(b, "{");
	if (es->found) {
		long long id = es->stored[0] ? strtoll(es->stored[0], NULL, 10) : es->cid;

		jout_lit(b, lead[0]);
		jout_i64(b, id);
		for (k = 1; k < 4; k++) {
			JOUT_LIT(b, ",");
			jout_lit(b, lead[k]);
			jout_cstr(b, es->stored[k] ? es->stored[k] : "");
		}
		first = 0;
	} else {
		/* Not found: echo the identifiers as they were sent (any JSON type). */
		sent = (struct json_object *)es->e->customer.echo;
		for (k = 0; k < 4; k++) {
			if (!json_object_object_get_ex(sent, keys[k], &v))
				continue;
			if (!first)
				JOUT_LIT(b, ",");
			jout_lit(b, lead[k]);
			jout_lit(b, json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
			first = 0;
		}
	}
	jout_lit(b, first ? "\"status\":" : ",\"status\":");
	render_status(b, es->cust_code, es->cust_message);
	JOUT_LIT(b, "}");
}

/* The item objects of an entry. */
static void
put_items(struct buf *b, enum req_kind kind, const struct write_entry *es)
{
	const struct req_names *names = &req_names[kind];
	size_t k;

	for (k = 0; k < es->e->nitems; k++) {
		const struct req_item *it = &es->e->items[k];

		jout_lit(b, k ? ",{\"partnerProgramName\":" : "{\"partnerProgramName\":");
		jout_str_or_null(b, it->program.s.p, it->program.s.len);
		if (kind == REQ_UPDATE) {
			JOUT_LIT(b, ",\"updateType\":");
			jout_str_or_null(b, it->update_type.s.p, it->update_type.s.len);
		}
		JOUT_LIT(b, ",\"");
		jout_lit(b, names->item_status);
		JOUT_LIT(b, "\":");
		render_status(b, es->results[k].code, es->results[k].message);
		JOUT_LIT(b, "}");
	}
}

char *
respond_body(enum req_kind kind, const struct write_entry *es, size_t n, size_t *len)
{
	const struct req_names *names = &req_names[kind];
	struct buf b;
	size_t i, k;

	buf_init(&b, (size_t)-1);
	/* About 250 bytes per customer and 120 per item: one allocation, no regrowth. */
	for (i = 0, k = 64; i < n; i++)
		k += 256 + 128 * es[i].e->nitems;
	buf_presize(&b, k);
	JOUT_LIT(&b, "{\"");
	jout_lit(&b, names->top);
	JOUT_LIT(&b, "\":[");
	for (i = 0; i < n; i++) {
		jout_lit(&b, i ? ",{\"customer\":" : "{\"customer\":");
		put_customer(&b, &es[i]);
		JOUT_LIT(&b, ",\"");
		jout_lit(&b, names->items);
		JOUT_LIT(&b, "\":[");
		put_items(&b, kind, &es[i]);
		JOUT_LIT(&b, "]}");
	}
	JOUT_LIT(&b, "],\"warnings\":[]}");
	*len = b.len;
	return buf_take(&b);
}
