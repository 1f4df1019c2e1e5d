/*
 * request: JSON request bodies -> validated request structs (see request.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "dates.h"
#include "hex.h"
#include "ident.h"
#include "request.h"

const struct req_names req_names[3] = {
	[REQ_LINK] = { .top = "linkCustomers", .items = "linkToPartnerPrograms",
	               .item_status = "partnerLinkStatus" },
	[REQ_UPDATE] = { .top = "customersPartnerUpdates", .items = "partnerProgramUpdates",
	                 .item_status = "updateStatus" },
	[REQ_DELINK] = { .top = "deLinkCustomers", .items = "deLinkFromPartnerPrograms",
	                 .item_status = "partnerDeLinkStatus" },
};

static int fail(struct req_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(struct req_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	err->http = 400;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the text scan: what json-c lets through --------------------------------------- */

/*
 * Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF.
 * json-c's own check accepts some of those byte patterns. Returns the offset of the first
 * bad byte, or len when all is well.
 */
size_t
req_utf8_check(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else {
			return i;
		}
		if (len - i <= n)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xbf)
				return i;
		i += n + 1;
	}
	return len;
}

/* A growable list of counts; its first 32 live inside it (no allocation for most bodies). */
struct counts {
	size_t *v;                      /* first, or allocated when more are needed */
	size_t n, cap;
	size_t first[32];
};

static void
counts_init(struct counts *c)
{
	c->v = c->first;
	c->n = 0;
	c->cap = sizeof(c->first) / sizeof(c->first[0]);
}

static void
counts_push(struct counts *c, size_t x)
{
	if (c->n == c->cap) {
		size_t *v = malloc(c->cap * 2 * sizeof(*v));

		if (v == NULL)
			abort();
		memcpy(v, c->v, c->n * sizeof(*v));
		if (c->v != c->first)
			free(c->v);
		c->v = v;
		c->cap *= 2;
	}
	c->v[c->n++] = x;
}

static void
counts_free(struct counts *c)
{
	if (c->v != c->first)
		free(c->v);
}

/* Member counts of every object of the tree, in document (pre-)order. */
static void
tree_counts(const struct json_object *o, struct counts *c)
{
	size_t i, n;

	switch (json_object_get_type(o)) {
	case json_type_object: {
		counts_push(c, (size_t)json_object_object_length(o));
		json_object_object_foreach((struct json_object *)o, k, v) {
			(void)k;
			tree_counts(v, c);
		}
		break;
	}
	case json_type_array:
		n = json_object_array_length(o);
		for (i = 0; i < n; i++)
			tree_counts(json_object_array_get_idx(o, i), c);
		break;
	default:
		break;
	}
}

/* The value of 4 hex digits at p (n bytes available), or -1. */
static int
hex4(const char *p, size_t n)
{
	int v = 0;
	size_t k;

	if (n < 4)
		return -1;
	for (k = 0; k < 4; k++) {
		int d = hex_digit(p[k]);

		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* 1 when the digits d[0..n) (no sign) exceed the int64 range for the given sign. */
static int
int_overflows(const char *d, size_t n, int negative)
{
	const char *lim = negative ? "9223372036854775808" : "9223372036854775807";

	while (n > 1 && *d == '0') {
		d++;
		n--;
	}
	if (n != 19)
		return n > 19;
	return memcmp(d, lim, 19) > 0;
}

/* A scan_* function's answer when the text is refused (msg then says why). */
#define SCAN_BAD ((size_t)-1)

/*
 * The string whose opening quote is at t[i]: no raw control character, \u escapes of
 * UTF-16 surrogates in complete pairs. Returns the index after its closing quote.
 */
static size_t
scan_string(const char *t, size_t len, size_t i, char *msg, size_t msgsz)
{
	for (i++; i < len && t[i] != '"'; i++) {
		if ((unsigned char)t[i] < 0x20) {
			snprintf(msg, msgsz, "raw control character inside a string at byte %zu", i);
			return SCAN_BAD;
		}
		if (t[i] == '\\' && i + 1 < len && t[i + 1] == 'u') {
			/* A \u escape of a UTF-16 surrogate must be a complete pair. */
			int cu = hex4(t + i + 2, len - i - 2);

			if (cu >= 0xdc00 && cu <= 0xdfff) {
				snprintf(msg, msgsz, "lone UTF-16 surrogate escape at byte %zu", i);
				return SCAN_BAD;
			}
			if (cu >= 0xd800 && cu <= 0xdbff) {
				int lo = len - i >= 12 && t[i + 6] == '\\' && t[i + 7] == 'u' ?
				         hex4(t + i + 8, len - i - 8) : -1;

				if (lo < 0xdc00 || lo > 0xdfff) {
					snprintf(msg, msgsz, "lone UTF-16 surrogate escape at byte %zu", i);
					return SCAN_BAD;
				}
				i += 6;
			}
			i++;
		} else if (t[i] == '\\') {
			i++;
		}
	}
	return i + 1;
}

/* The number starting at t[i]: an integer must fit in 64 bits. Returns the index after it. */
static size_t
scan_number(const char *t, size_t len, size_t i, char *msg, size_t msgsz)
{
	size_t start = i, digits;
	int negative = t[i] == '-', integer = 1;

	if (negative)
		i++;
	digits = i;
	while (i < len && ((t[i] >= '0' && t[i] <= '9') || t[i] == '.' || t[i] == 'e' ||
	                   t[i] == 'E' || t[i] == '+' || t[i] == '-')) {
		if (t[i] == '.' || t[i] == 'e' || t[i] == 'E')
			integer = 0;
		i++;
	}
	if (integer && int_overflows(t + digits, i - digits, negative)) {
		snprintf(msg, msgsz, "integer at byte %zu does not fit in 64 bits", start);
		return SCAN_BAD;
	}
	return i;
}

/* The literal starting at t[i]: true, false or null only. Returns the index after it. */
static size_t
scan_literal(const char *t, size_t len, size_t i, char *msg, size_t msgsz)
{
	if (len - i >= 4 && (memcmp(t + i, "true", 4) == 0 || memcmp(t + i, "null", 4) == 0))
		return i + 4;
	if (len - i >= 5 && memcmp(t + i, "false", 5) == 0)
		return i + 5;
	snprintf(msg, msgsz, "invalid literal at byte %zu (NaN and Infinity are not JSON)", i);
	return SCAN_BAD;
}

/*
 * 1 when an object of the tree has fewer members than the text gave it (text: the member
 * counts of the text's objects, in document order): json-c keeps the last of duplicated
 * keys.
 */
static int
keys_duplicated(const struct json_object *tree, const struct counts *text)
{
	struct counts parsed;
	size_t k;
	int dup = 0;

	counts_init(&parsed);
	tree_counts(tree, &parsed);
	for (k = 0; k < text->n && k < parsed.n; k++)
		if (text->v[k] != parsed.v[k])
			dup = 1;
	if (text->n != parsed.n)
		dup = 1;
	counts_free(&parsed);
	return dup;
}

int
req_json_scan(const char *t, size_t len, const void *tree, char *msg, size_t msgsz)
{
	struct counts text;             /* members of each object, in document order */
	struct counts nest;             /* the objects open at i: their indexes in text */
	size_t i = 0;
	int rc = -1;

	counts_init(&text);
	counts_init(&nest);

	while (i < len) {
		unsigned char ch = (unsigned char)t[i];

		if (ch == '"') {
			i = scan_string(t, len, i, msg, msgsz);
		} else if (ch == '{') {
			counts_push(&nest, text.n);
			counts_push(&text, 0);
			i++;
		} else if (ch == '}') {
			if (nest.n > 0)
				nest.n--;
			i++;
		} else if (ch == ':') {
			if (nest.n > 0)
				text.v[nest.v[nest.n - 1]]++;
			i++;
		} else if (ch == '-' || (ch >= '0' && ch <= '9')) {
			i = scan_number(t, len, i, msg, msgsz);
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
			i = scan_literal(t, len, i, msg, msgsz);
		} else {
			i++;
		}
		if (i == SCAN_BAD)
			goto out;
	}
	if (keys_duplicated(tree, &text)) {
		snprintf(msg, msgsz, "an object has a duplicated key");
		goto out;
	}
	rc = 0;
out:
	counts_free(&text);
	counts_free(&nest);
	return rc;
}

/* ---- fields -------------------------------------------------------------------------- */

static struct json_object *
member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* A string field: absent/null/"" -> F_ABSENT, string -> F_OK, other -> F_BADTYPE. */
static void
string_field(struct json_object *o, const char *key, struct req_field *f)
{
	struct json_object *v = o ? member(o, key) : NULL;

	memset(f, 0, sizeof(*f));
	if (v == NULL)
		return;
	if (!json_object_is_type(v, json_type_string)) {
		f->st = F_BADTYPE;
		return;
	}
	f->s.p = json_object_get_string(v);
	f->s.len = (size_t)json_object_get_string_len(v);
	f->st = f->s.len == 0 ? F_ABSENT : F_OK;
	if (f->st == F_ABSENT)
		f->s.p = NULL;
}

/* A date-time field: like a string, then parsed; unparsable or mistyped -> F_BADVALUE. */
static void
date_field(struct json_object *o, const char *key, struct req_field *f)
{
	string_field(o, key, f);
	if (f->st == F_BADTYPE)
		f->st = F_BADVALUE;
	else if (f->st == F_OK && dates_parse(f->s.p, f->s.len, &f->ms) != 0)
		f->st = F_BADVALUE;
}

/*
 * A name field (a string of at most REQ_NAME_MAX bytes): like string_field; a longer one is
 * F_TOOLONG and, when it is the item's first such field, *too_long gets msg.
 */
static void
name_field(struct json_object *o, const char *key, struct req_field *f, const char **too_long,
           const char *msg)
{
	string_field(o, key, f);
	if (f->st == F_OK && f->s.len > REQ_NAME_MAX) {
		f->st = F_TOOLONG;
		if (*too_long == NULL)
			*too_long = msg;
	}
}

#define REQ_STR(x) #x
#define REQ_XSTR(x) REQ_STR(x)
/* "FIELD is too long: at most 128 bytes (UTF-8)", the limit spelled from REQ_NAME_MAX. */
#define TOO_LONG(field) field " is too long: at most " REQ_XSTR(REQ_NAME_MAX) " bytes (UTF-8)"

static enum fstate
object_field(struct json_object *o, const char *key, struct json_object **out)
{
	struct json_object *v = member(o, key);

	*out = NULL;
	if (v == NULL)
		return F_ABSENT;
	if (!json_object_is_type(v, json_type_object))
		return F_BADTYPE;
	*out = v;
	return F_OK;
}

static enum update_type
parse_update_type(const struct str *s)
{
	static const struct { const char *name; enum update_type t; } types[] = {
		{ "UPGRADE", UPD_UPGRADE },
		{ "DOWNGRADE", UPD_DOWNGRADE },
		{ "RENEWAL", UPD_RENEWAL },
		{ "RENEW", UPD_RENEWAL },
		{ "MEMBERSHIP_RELINKING_CANCELLED", UPD_RELINK_CANCEL },
	};
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strlen(types[i].name) == s->len && memcmp(types[i].name, s->p, s->len) == 0)
			return types[i].t;
	return UPD_NONE;
}

static void
parse_item(struct json_object *o, enum req_kind kind, struct req_item *it)
{
	struct json_object *sub;

	memset(it, 0, sizeof(*it));
	name_field(o, "partnerProgramName", &it->program, &it->too_long,
	           TOO_LONG("partnerProgramName"));
	switch (kind) {
	case REQ_LINK:
		it->reference = object_field(o, "customerPartnerReference", &sub);
		name_field(sub, "partnerMembershipId", &it->mid, &it->too_long,
		           TOO_LONG("partnerMembershipId"));
		name_field(sub, "partnerTierName", &it->tier, &it->too_long,
		           TOO_LONG("partnerTierName"));
		date_field(sub, "partnerTierExpiryDate", &it->expiry);
		date_field(sub, "membershipStartDate", &it->start);
		break;
	case REQ_UPDATE:
		string_field(o, "updateType", &it->update_type);
		if (it->update_type.st == F_OK)
			it->utype = parse_update_type(&it->update_type.s);
		it->details = object_field(o, "updateDetails", &sub);
		name_field(sub, "updatedTierName", &it->new_tier, &it->too_long,
		           TOO_LONG("updateDetails.updatedTierName"));
		date_field(sub, "updatedTierExpiryDate", &it->new_expiry);
		break;
	case REQ_DELINK:
		break;
	}
}

/* Why a customer is refused (the customer's 400); request.h: req_customer.bad_msg. */
static const char cust_badtype[] =
	"a customer identifier has the wrong type: id is a positive integer; mobile, email and externalId are strings (mobile may be a number)";
static const char cust_email_long[] =
	"email is too long: at most " REQ_XSTR(IDENT_EMAIL_MAX) " bytes (UTF-8)";
static const char cust_external_long[] =
	"externalId is too long: at most " REQ_XSTR(IDENT_EXTERNAL_ID_MAX) " bytes (UTF-8)";

static void
customer_bad(struct req_customer *c, const char *msg)
{
	if (!c->bad)
		c->bad_msg = msg;
	c->bad = 1;
}

/*
 * A string identifier: absent/null/"" are "not given"; another type is bad, and so is a
 * string over max bytes (too_long names it and the limit).
 */
static void
customer_string(struct json_object *o, const char *key, size_t max, const char *too_long,
                struct req_customer *c, struct str *out)
{
	struct json_object *v = member(o, key);

	if (v == NULL)
		return;
	if (!json_object_is_type(v, json_type_string)) {
		customer_bad(c, cust_badtype);
		return;
	}
	out->p = json_object_get_string(v);
	out->len = (size_t)json_object_get_string_len(v);
	if (out->len == 0)
		out->p = NULL;
	else if (out->len > max)
		customer_bad(c, too_long);
}

/* Identifier fields: absent/null/"" are "not given"; anything else of the wrong form is bad. */
static void
parse_customer(struct json_object *o, struct req_customer *c)
{
	struct json_object *v;

	memset(c, 0, sizeof(*c));
	c->echo = o;

	v = member(o, "id");
	if (v != NULL) {
		if (json_object_is_type(v, json_type_int)) {
			c->id = json_object_get_int64(v);
			if (c->id <= 0)
				customer_bad(c, cust_badtype);
			else
				c->has_id = 1;
		} else if (!(json_object_is_type(v, json_type_string) &&
		             json_object_get_string_len(v) == 0)) {
			customer_bad(c, cust_badtype);
		}
	}

	/* A mobile of any length is normalised (ident.h), which bounds what is looked up. */
	v = member(o, "mobile");
	if (v != NULL) {
		if (json_object_is_type(v, json_type_string)) {
			c->mobile.p = json_object_get_string(v);
			c->mobile.len = (size_t)json_object_get_string_len(v);
			if (c->mobile.len == 0)
				c->mobile.p = NULL;
		} else if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) > 0) {
			int n = snprintf(c->mobile_num, sizeof(c->mobile_num), "%lld",
			                 (long long)json_object_get_int64(v));
			c->mobile.p = c->mobile_num;
			c->mobile.len = (size_t)n;
		} else {
			customer_bad(c, cust_badtype);
		}
	}

	customer_string(o, "email", IDENT_EMAIL_MAX, cust_email_long, c, &c->email);
	customer_string(o, "externalId", IDENT_EXTERNAL_ID_MAX, cust_external_long, c,
	                &c->external_id);
}

/* ---- the request ---------------------------------------------------------------------- */

/* One tokener per thread, reset after each use (making one per request cost ~3 k instructions). */
static __thread struct json_tokener *req_tok;

static struct json_tokener *
thread_tokener(void)
{
	if (req_tok == NULL) {
		req_tok = json_tokener_new_ex(REQ_MAX_DEPTH);
		if (req_tok == NULL)
			abort();
		/* No JSON_TOKENER_VALIDATE_UTF8: req_parse runs req_utf8_check (stricter than
		 * json-c's check) on the whole body before the tokener sees it, and json-c's
		 * check is a function call per byte (~7 % of the parse). */
		json_tokener_set_flags(req_tok, JSON_TOKENER_STRICT);
	}
	return req_tok;
}

void
req_thread_exit(void)
{
	if (req_tok != NULL)
		json_tokener_free(req_tok);
	req_tok = NULL;
}

/*
 * The body as a json-c tree (*root, the caller's to put): strict UTF-8, JSON within
 * REQ_MAX_DEPTH, nothing after the value but white space, and what json-c lets through
 * refused (req_json_scan). Returns 0, or -1 with err set.
 */
static int
parse_json(const char *body, size_t len, struct json_object **root, struct req_error *err)
{
	struct json_tokener *tok;
	enum json_tokener_error jerr;
	size_t end;
	char msg[120];

	end = req_utf8_check(body, len);
	if (end != len)
		return fail(err, 400, "the request body is not valid UTF-8 (byte %zu)", end);
	tok = thread_tokener();
	*root = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_reset(tok);
	if (*root == NULL || jerr != json_tokener_success) {
		json_object_put(*root);
		if (jerr == json_tokener_error_depth)
			return fail(err, 400, "the request body nests deeper than %d levels", REQ_MAX_DEPTH);
		if (jerr == json_tokener_continue)
			return fail(err, 400, "the request body is not valid JSON: it ends too early");
		return fail(err, 400, "the request body is not valid JSON: %s at byte %zu",
		            json_tokener_error_desc(jerr), end);
	}
	while (end < len && (body[end] == ' ' || body[end] == '\t' || body[end] == '\r' ||
	                     body[end] == '\n'))
		end++;
	if (end != len) {
		json_object_put(*root);
		return fail(err, 400, "the request body has unexpected bytes after the JSON value (byte %zu)", end);
	}
	if (req_json_scan(body, len, *root, msg, sizeof(msg)) != 0) {
		json_object_put(*root);
		return fail(err, 400, "the request body is not acceptable JSON: %s", msg);
	}
	return 0;
}

/* The route's array of customer entries in root (*top, *n: 1 to REQ_MAX_ENTRIES), or -1 with err set. */
static int
parse_top(struct json_object *root, const struct req_names *names, struct json_object **top,
          size_t *n, struct req_error *err)
{
	if (!json_object_is_type(root, json_type_object))
		return fail(err, 400, "the request body must be a JSON object with a \"%s\" array", names->top);
	*top = member(root, names->top);
	if (*top == NULL || !json_object_is_type(*top, json_type_array))
		return fail(err, 400, "\"%s\" is missing or not an array", names->top);
	*n = json_object_array_length(*top);
	if (*n == 0)
		return fail(err, 400, "\"%s\" is empty: send 1 to %d customer entries", names->top, REQ_MAX_ENTRIES);
	if (*n > REQ_MAX_ENTRIES)
		return fail(err, 2008, "\"%s\" has %zu entries: at most %d customers per request",
		            names->top, *n, REQ_MAX_ENTRIES);
	return 0;
}

/*
 * Customer entry e of the request (entry) into re: its customer and 1 to REQ_MAX_ITEMS
 * items. Returns 0, or -1 with err set (re may then hold items: req_free frees them).
 */
static int
parse_entry(struct json_object *entry, size_t e, enum req_kind kind, struct req_entry *re,
            struct req_error *err)
{
	const struct req_names *names = &req_names[kind];
	struct json_object *cust, *items;
	size_t k;

	if (!json_object_is_type(entry, json_type_object))
		return fail(err, 400, "\"%s\"[%zu] is not an object", names->top, e);
	cust = member(entry, "customer");
	if (cust == NULL || !json_object_is_type(cust, json_type_object))
		return fail(err, 400, "\"%s\"[%zu].customer is missing or not an object", names->top, e);
	items = member(entry, names->items);
	if (items == NULL || !json_object_is_type(items, json_type_array))
		return fail(err, 400, "\"%s\"[%zu].%s is missing or not an array", names->top, e, names->items);
	re->nitems = json_object_array_length(items);
	if (re->nitems == 0)
		return fail(err, 400, "\"%s\"[%zu].%s is empty: send 1 to %d items",
		            names->top, e, names->items, REQ_MAX_ITEMS);
	if (re->nitems > REQ_MAX_ITEMS)
		return fail(err, 2008, "\"%s\"[%zu].%s has %zu items: at most %d per customer",
		            names->top, e, names->items, re->nitems, REQ_MAX_ITEMS);
	re->items = calloc(re->nitems, sizeof(*re->items));
	if (re->items == NULL)
		abort();
	for (k = 0; k < re->nitems; k++) {
		struct json_object *it = json_object_array_get_idx(items, k);

		if (!json_object_is_type(it, json_type_object))
			return fail(err, 400, "\"%s\"[%zu].%s[%zu] is not an object",
			            names->top, e, names->items, k);
		parse_item(it, kind, &re->items[k]);
	}
	parse_customer(cust, &re->customer);
	return 0;
}

int
req_parse(const char *body, size_t len, enum req_kind kind, struct req *out,
          struct req_error *err)
{
	struct json_object *root = NULL, *top = NULL;
	size_t n = 0, e;

	memset(out, 0, sizeof(*out));
	out->kind = kind;
	if (parse_json(body, len, &root, err) != 0)
		return -1;
	out->tree = root;
	if (parse_top(root, &req_names[kind], &top, &n, err) != 0) {
		req_free(out);
		return -1;
	}
	out->entries = calloc(n, sizeof(*out->entries));
	if (out->entries == NULL)
		abort();
	out->nentries = n;
	for (e = 0; e < n; e++) {
		if (parse_entry(json_object_array_get_idx(top, e), e, kind, &out->entries[e], err) != 0) {
			req_free(out);
			return -1;
		}
	}
	return 0;
}

void
req_free(struct req *r)
{
	size_t e;

	if (r->tree != NULL)
		json_object_put(r->tree);
	for (e = 0; r->entries != NULL && e < r->nentries; e++)
		free(r->entries[e].items);
	free(r->entries);
	memset(r, 0, sizeof(*r));
}
