/*
 * ctl_util: the plumbing partnerctl's verbs share (see ctl.h): messages, connecting, the
 * argv builder, the reply pipeline and the parsers of stored values.
 */
#include "ctl.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rconn.h"
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

redisContext *ctl_connect(const struct ctl *ctl)
{
	struct rconn_cfg cfg = { .timeout_ms = CTL_REDIS_TIMEOUT_MS };
	char err[512];
	redisContext *c;

	if (rconn_parse_url(ctl->redis_url, &cfg, err, sizeof err) < 0) {
		ctl_errf("%s", err);
		return NULL;
	}
	c = rconn_connect(&cfg, err, sizeof err);
	if (c == NULL)
		ctl_errf("%s", err);
	return c;
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

/* ---- argv builder -------------------------------------------------------------------- */

void ctl_argv_init(struct ctl_argv *a)
{
	memset(a, 0, sizeof *a);
}

void ctl_argv_reset(struct ctl_argv *a)
{
	a->argc = 0;
}

void ctl_argv_free(struct ctl_argv *a)
{
	free(a->argv);
	free(a->lens);
	free(a->scratch);
	memset(a, 0, sizeof *a);
}

/* Makes room for one more argument and returns its index. */
static int ctl_argv_slot(struct ctl_argv *a)
{
	if (a->argc == a->cap) {
		int ncap = a->cap ? a->cap * 2 : 16;
		const char **old = a->argv;
		char (*olds)[CTL_ARG_SCRATCH] = a->scratch;

		a->argv = xrealloc(NULL, sizeof *a->argv * (size_t)ncap);
		a->lens = xrealloc(a->lens, sizeof *a->lens * (size_t)ncap);
		a->scratch = xrealloc(NULL, sizeof *a->scratch * (size_t)ncap);
		/* Formatted arguments point into the scratch area: move them along. */
		for (int i = 0; i < a->argc; i++) {
			if (old[i] == olds[i]) {
				memcpy(a->scratch[i], olds[i], CTL_ARG_SCRATCH);
				a->argv[i] = a->scratch[i];
			} else {
				a->argv[i] = old[i];
			}
		}
		free(old);
		free(olds);
		a->cap = ncap;
	}
	return a->argc++;
}

void ctl_argv_add(struct ctl_argv *a, const char *p, size_t len)
{
	int i = ctl_argv_slot(a);

	a->argv[i] = p;
	a->lens[i] = len;
}

void ctl_argv_addstr(struct ctl_argv *a, const char *s)
{
	ctl_argv_add(a, s, strlen(s));
}

void ctl_argv_addf(struct ctl_argv *a, const char *fmt, ...)
{
	int i = ctl_argv_slot(a), n;
	va_list ap;

	va_start(ap, fmt);
	n = vsnprintf(a->scratch[i], CTL_ARG_SCRATCH, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= CTL_ARG_SCRATCH) {
		/* Only validated org ids and numbers are formatted: this cannot happen. */
		fprintf(stderr, "partnerctl: internal error: argument too long\n");
		abort();
	}
	a->argv[i] = a->scratch[i];
	a->lens[i] = (size_t)n;
}

void ctl_argv_addll(struct ctl_argv *a, long long v)
{
	ctl_argv_addf(a, "%lld", v);
}

/* ---- pipeline ------------------------------------------------------------------------ */

void ctl_pipe_init(struct ctl_pipe *p, redisContext *c)
{
	p->c = c;
	p->n = 0;
	p->failed = 0;
	p->broken = 0;
	p->sent = 0;
}

/* Reads the replies of everything in flight, in order. */
static int ctl_pipe_drain(struct ctl_pipe *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct ctl_pipe_slot *s = &p->slot[i];
		void *rv = NULL;
		redisReply *r;

		if (p->broken)
			break;
		if (redisGetReply(p->c, &rv) != REDIS_OK || rv == NULL) {
			ctl_errf("redis: %s", p->c->errstr[0] ? p->c->errstr : "connection lost");
			p->broken = 1;
			p->failed = 1;
			break;
		}
		r = rv;
		if (s->fn != NULL) {
			if (s->fn(r, s->arg) < 0)
				p->failed = 1;
		} else if (r->type == REDIS_REPLY_ERROR) {
			ctl_errf("redis refused a command: %s", r->str);
			p->failed = 1;
		}
		freeReplyObject(r);
	}
	p->n = 0;
	return p->broken ? -1 : 0;
}

int ctl_pipe_cmd(struct ctl_pipe *p, const struct ctl_argv *a, ctl_reply_fn fn, void *arg)
{
	if (p->broken)
		return -1;
	if (p->n == CTL_PIPE_MAX && ctl_pipe_drain(p) < 0)
		return -1;
	if (redisAppendCommandArgv(p->c, a->argc, a->argv, a->lens) != REDIS_OK) {
		ctl_errf("redis: %s", p->c->errstr);
		p->broken = 1;
		p->failed = 1;
		return -1;
	}
	p->slot[p->n].fn = fn;
	p->slot[p->n].arg = arg;
	p->n++;
	p->sent++;
	return 0;
}

int ctl_pipe_flush(struct ctl_pipe *p)
{
	if (ctl_pipe_drain(p) < 0)
		return -1;
	return p->failed ? -1 : 0;
}

redisReply *ctl_command(redisContext *c, const struct ctl_argv *a)
{
	redisReply *r = redisCommandArgv(c, a->argc, a->argv, a->lens);

	if (r == NULL) {
		ctl_errf("redis: %s", c->errstr[0] ? c->errstr : "connection lost");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		ctl_errf("redis refused %.*s: %s", (int)a->lens[0], a->argv[0], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
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

int ctl_parse_cid(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* ---- customers as load and import-customers take them -------------------------------- */

const char *const ctl_ident_name[CTL_NIDENTS] = { "mobile", "email", "externalId" };

const char ctl_lua_hdel_if[] =
	"if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
	"return redis.call('HDEL', KEYS[1], ARGV[1]) end return 0";

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
