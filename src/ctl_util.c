/*
 * ctl_util: what partnerctl's verbs share (see ctl.h): messages, opening the store
 * session, and the parsers of stored values.
 */
#include "ctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_codec.h"
#include "xmalloc.h"

/* ---- messages and connecting --------------------------------------------------------- */

void ctl_errf(const char *fmt, ...)
{
	va_list ap;

	fputs("partnerctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void ctl_report(void *arg, const char *msg)
{
	(void)arg;
	ctl_errf("%s", msg);
}

struct store_admin *ctl_store_open(const struct ctl *ctl)
{
	return store_admin_open(ctl->redis_url, CTL_REDIS_TIMEOUT_MS, ctl_report, NULL);
}

const char *ctl_quote(const char *s, size_t len)
{
	static char bufs[4][80 * 4 + 8];
	static int next;
	char *out = bufs[next], *o = out;

	next = (next + 1) % 4;
	*o++ = '"';
	for (size_t i = 0; i < len && i < 80; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			o += sprintf(o, "\\x%02x", c);
		else
			*o++ = (char)c;
	}
	if (len > 80) {
		memcpy(o, "...", 3);
		o += 3;
	}
	*o++ = '"';
	*o = '\0';
	return out;
}

/* ---- stored values ------------------------------------------------------------------- */

json_object *ctl_json_parse(const char *s, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(32);
	json_object *o;

	if (tok == NULL)
		return NULL;
	o = ctl_json_parse_tok(tok, s, len);
	json_tokener_free(tok);
	return o;
}

json_object *ctl_json_parse_tok(json_tokener *tok, const char *s, size_t len)
{
	json_object *o;

	if (len > (size_t)0x7fffffff)
		return NULL;
	json_tokener_reset(tok);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, s, (int)len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	                  json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

int ctl_json_member(json_object *obj, const char *key, json_object **val)
{
	*val = NULL;
	if (!json_object_is_type(obj, json_type_object))
		return 0;
	return json_object_object_get_ex(obj, key, val) ? 1 : 0;
}

int ctl_json_is_int(json_object *o)
{
	return o != NULL && json_object_is_type(o, json_type_int);
}

const char *ctl_json_plain(json_object *o, size_t *len)
{
	return json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN |
	                                         JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

/* Checks the tier of a membership or pending relink against the program. */
static int ctl_mship_tier(const struct rules_values *v, const struct rules_program *p,
                          const char *what, char *why, size_t whysz)
{
	int tiered = p->ntiers > 0;

	if (tiered && v->tier == NULL) {
		snprintf(why, whysz, "%s: no tier, but the program is tier based", what);
		return -1;
	}
	if (!tiered && v->tier != NULL) {
		snprintf(why, whysz, "%s: a tier, but the program has no tiers", what);
		return -1;
	}
	if (tiered && rules_program_tier(p, v->tier, v->tier_len) < 0) {
		snprintf(why, whysz, "%s: tier %s is not a tier of the program", what,
		         ctl_quote(v->tier, v->tier_len));
		return -1;
	}
	return 0;
}

int ctl_mship_validate(const struct rules_membership *m, const struct rules_program *p,
                       char *why, size_t whysz)
{
	if (ctl_mship_tier(&m->v, p, "membership", why, whysz) < 0)
		return -1;
	if (m->linked_on == RULES_NONE || m->updated_on == RULES_NONE) {
		snprintf(why, whysz, "has no link time or no last-update time (lk, up)");
		return -1;
	}
	if (!m->has_relink)
		return 0;
	if (!p->supplementary) {
		snprintf(why, whysz, "has a pending relink, but the program is not SUPPLEMENTARY");
		return -1;
	}
	return ctl_mship_tier(&m->rl, p, "pending relink", why, whysz);
}

/* ---- customers as load and import-customers take them -------------------------------- */

/* Reports a problem of a customer object: formats it and hands it to fn. */
static void ctl_cust_problem(ctl_cust_problem_fn fn, void *arg, const struct ctl_cust_in *cu,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void ctl_cust_problem(ctl_cust_problem_fn fn, void *arg, const struct ctl_cust_in *cu,
                             const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fn(arg, cu, msg);
}

/*
 * Identifier k of a customer object as a string: missing, null and "" leave it absent;
 * another type, a NUL byte or more bytes than partnerd accepts (ident.h) is a problem. Returns the number of problems (0 or 1).
 */
static int ctl_cust_str(json_object *o, int k, struct ctl_cust_in *cu,
                        ctl_cust_problem_fn fn, void *arg)
{
	const char *key = ctl_ident_name[k];
	json_object *v;
	size_t len;

	if (!ctl_json_member(o, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string)) {
		ctl_cust_problem(fn, arg, cu, "%s is not a string", key);
		return 1;
	}
	len = (size_t)json_object_get_string_len(v);
	if (len == 0)
		return 0;
	if (memchr(json_object_get_string(v), '\0', len) != NULL) {
		ctl_cust_problem(fn, arg, cu, "%s contains a NUL character", key);
		return 1;
	}
	/* partnerd refuses longer identifiers (SPEC §4): such a customer could not be named. */
	if (k == CTL_IDENT_EMAIL && len > IDENT_EMAIL_MAX) {
		ctl_cust_problem(fn, arg, cu, "email is %zu bytes long: at most %d", len, IDENT_EMAIL_MAX);
		return 1;
	}
	if (k == CTL_IDENT_EXTERNAL_ID && len > IDENT_EXTERNAL_ID_MAX) {
		ctl_cust_problem(fn, arg, cu, "externalId is %zu bytes long: at most %d", len,
		                 IDENT_EXTERNAL_ID_MAX);
		return 1;
	}
	cu->val[k] = json_object_get_string(v);
	cu->len[k] = len;
	return 0;
}

int ctl_cust_parse(json_object *o, const char *cc, int nlen, struct ctl_cust_in *cu,
                   ctl_cust_problem_fn fn, void *arg)
{
	static const char *const keys[] = { "id", "mobile", "email", "externalId" };
	json_object *id, *mob;
	int problems = 0;

	memset(cu, 0, sizeof *cu);
	if (!json_object_is_type(o, json_type_object)) {
		ctl_cust_problem(fn, arg, cu, "not an object");
		return 1;
	}
	/*
	 * json-c saturates an integer beyond int64 to INT64_MAX (or keeps it as a uint64):
	 * json_object_get_uint64 tells such a value from a real 9223372036854775807.
	 */
	if (!ctl_json_member(o, "id", &id) || !ctl_json_is_int(id) ||
	    json_object_get_int64(id) < 1 || (json_object_get_int64(id) == INT64_MAX &&
	    json_object_get_uint64(id) != (uint64_t)INT64_MAX)) {
		ctl_cust_problem(fn, arg, cu, "id must be an integer from 1 to 9223372036854775807");
		problems++;
	} else {
		cu->id = json_object_get_int64(id);
	}
	json_object_object_foreach(o, key, val) {
		size_t i = 0;

		(void)val;
		while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i], key) != 0)
			i++;
		if (i == sizeof keys / sizeof keys[0]) {
			ctl_cust_problem(fn, arg, cu, "unknown key %s", ctl_quote(key, strlen(key)));
			problems++;
		}
	}

	/* A mobile may come as a JSON number (SPEC §3); its digits are normalised alike. */
	if (ctl_json_member(o, "mobile", &mob) && ctl_json_is_int(mob)) {
		char digits[32];
		int64_t v = json_object_get_int64(mob);
		int n;

		snprintf(digits, sizeof digits, "%lld", (long long)v);
		n = v < 0 ? -1 : ident_normalize_mobile(digits, strlen(digits), cc, nlen, cu->mob,
		                                         sizeof cu->mob);
		if (n < 0) {
			ctl_cust_problem(fn, arg, cu, "mobile %s is not a valid mobile number", digits);
			problems++;
		} else {
			cu->val[CTL_IDENT_MOBILE] = cu->mob;
			cu->len[CTL_IDENT_MOBILE] = (size_t)n;
		}
	} else if (ctl_cust_str(o, CTL_IDENT_MOBILE, cu, fn, arg) != 0) {
		problems++;
	} else if (cu->val[CTL_IDENT_MOBILE] != NULL) {
		const char *raw = cu->val[CTL_IDENT_MOBILE];
		size_t rawlen = cu->len[CTL_IDENT_MOBILE];
		int n = ident_normalize_mobile(raw, rawlen, cc, nlen, cu->mob, sizeof cu->mob);

		cu->val[CTL_IDENT_MOBILE] = NULL;
		cu->len[CTL_IDENT_MOBILE] = 0;
		if (n < 0) {
			ctl_cust_problem(fn, arg, cu, "mobile %s is not a valid mobile number",
			                 ctl_quote(raw, rawlen));
			problems++;
		} else {
			cu->val[CTL_IDENT_MOBILE] = cu->mob;
			cu->len[CTL_IDENT_MOBILE] = (size_t)n;
		}
	}
	problems += ctl_cust_str(o, CTL_IDENT_EMAIL, cu, fn, arg);
	problems += ctl_cust_str(o, CTL_IDENT_EXTERNAL_ID, cu, fn, arg);
	return problems;
}
