/*
 * ctl_load: `partnerctl load FILE` (SPEC §3). Validates the whole document, reads what is
 * stored, checks the document against it, and only then writes, pipelined. Nothing is
 * written when anything is wrong. Loading an unchanged file again writes nothing that
 * changes a byte: unchanged programs, credentials and customers are skipped, and a stored
 * password hash that still verifies is kept.
 *
 * Semantics (upsert):
 * - orgs, programs and customers not in the file are left as they are;
 * - an org's credentials are the file's list: a stored credential of an org in the file
 *   whose username the file no longer lists is removed (that is how a key is revoked);
 * - a username names one credential across all orgs; it may move to another org only
 *   when the file also lists its old org;
 * - an identifier (mobile, email, externalId) may move from one customer to another only
 *   when the file lists both (the old holder with another value or none); old index
 *   entries are removed before new ones are written;
 * - an existing customer whose identifiers change gets v bumped (fencing a concurrent
 *   partnerd commit); its memberships and v are otherwise untouched; new customers get
 *   v = 0.
 * - string values may not contain NUL (a password may); "" and null count as absent;
 *   unknown keys are errors; a duplicated JSON key keeps its last value (json-c).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "ctl.h"
#include "dates.h"
#include "ident.h"
#include "request.h"
#include "rules_codec.h"
#include "xmalloc.h"

/* Password hashing: argon2id through libsodium, with these costs (19 MiB, 2 passes). */
#define LD_PWHASH_OPSLIMIT 2ULL
#define LD_PWHASH_MEMLIMIT ((size_t)19 * 1024 * 1024)

#define LD_MAX_FILE ((size_t)1 << 30)   /* largest document we read */
#define LD_MAX_ERRORS 50                /* errors printed before we only count */
#define LD_BATCH 500                    /* fields per batched HMGET / HSET of an index */

enum ld_kind { LD_MOBILE, LD_EMAIL, LD_EXT, LD_NKINDS };
_Static_assert((int)LD_MOBILE == (int)CTL_IDENT_MOBILE && (int)LD_EMAIL == (int)CTL_IDENT_EMAIL &&
               (int)LD_EXT == (int)CTL_IDENT_EXTERNAL_ID && (int)LD_NKINDS == (int)CTL_NIDENTS,
               "ld_kind follows ctl_ident");

/* A string borrowed from the document (or from a struct member); p NULL means absent. */
struct ld_str {
	const char *p;
	size_t len;
};

struct ld_org;

struct ld_cust {
	int64_t id;                       /* customer id (> 0) */
	struct ld_org *org;               /* the org listing it */
	struct ld_str val[LD_NKINDS];     /* identifiers in the file (mobile: normalised) */
	char mob[IDENT_MOBILE_MAX + 16 + 1]; /* storage of the normalised mobile */
	/* What is stored: */
	int stored;                       /* the customer hash has an id or a v field */
	int has_v;                        /* it has a v field */
	char *old[LD_NKINDS];             /* stored identifiers (owned), NULL when absent */
	size_t oldlen[LD_NKINDS];
	int64_t holder[LD_NKINDS];        /* index holder of val[k]: 0 none, -1 not a number */
};

enum ld_prog_type { LD_PROG_EXTERNAL = 1, LD_PROG_SUPPLEMENTARY = 2 };

struct ld_prog {
	struct ld_str name;
	enum ld_prog_type type;           /* 0 until a valid type is read */
	json_object *tiers;               /* borrowed array of strings, or NULL for [] */
	const char *cycle_unit;           /* "DAYS"/"MONTHS", or NULL: no cycle */
	int cycle_value;
	int has_exp;
	int64_t exp;                      /* expiresAt in ms */
	int pid;                          /* stored pid, or 0 until one is handed out */
	char *stored;                     /* stored value (owned), or NULL: a new program */
	size_t stored_len;
	char *value;                      /* value to write (owned), NULL: unchanged */
	size_t value_len;
};

struct ld_cred {
	struct ld_str user, pw;
	struct ld_org *org;
	char *value;                      /* value to write (owned), or NULL: keep stored */
};

struct ld_org {
	const char *id;
	const char *cc;                   /* defaultCountryCode */
	int nlen;                         /* nationalNumberLength */
	struct ld_cred *creds;
	size_t ncreds;
	struct ld_prog *progs;
	size_t nprogs;
	struct ld_cust *custs;
	size_t ncusts;
	int64_t *ids;                     /* sorted customer ids of the file */
};

/* A credential as stored in pp:creds. */
struct ld_scred {
	char *user;                       /* owned */
	size_t user_len;
	char *org;                        /* owned, or NULL when the value is corrupt */
	char *hash;                       /* owned, or NULL */
	int listed;                       /* the file lists this username */
};

struct ld {
	json_object *root;
	struct ld_org *orgs;
	size_t norgs;
	struct ld_scred *screds;          /* sorted by user */
	size_t nscreds;
	int errors;
	struct store_admin *st;           /* the store session, once connected */
};

/* ---- messages ------------------------------------------------------------------------ */

static void ld_err(struct ld *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ld_err(struct ld *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->errors++ >= LD_MAX_ERRORS)
		return;
	fputs("partnerctl: load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *ld_q(struct ld_str s)
{
	return ctl_quote(s.p, s.len);
}

static int ld_str_eq(struct ld_str a, const char *p, size_t len)
{
	return a.len == len && memcmp(a.p, p, len) == 0;
}

/* ---- reading and checking the document ----------------------------------------------- */

/* Reads FILE ("-": stdin) into b. Returns 0, or -1 with a message. */
static int ld_read_file(const char *path, struct buf *b)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char chunk[65536];
	size_t n;

	if (f == NULL) {
		ctl_errf("load: cannot open %s: %m", path);
		return -1;
	}
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (buf_append(b, chunk, n) < 0) {
			ctl_errf("load: %s is larger than %zu bytes", path, LD_MAX_FILE);
			if (f != stdin)
				fclose(f);
			return -1;
		}
	}
	if (ferror(f)) {
		ctl_errf("load: cannot read %s", path);
		if (f != stdin)
			fclose(f);
		return -1;
	}
	if (f != stdin)
		fclose(f);
	return 0;
}

/* Parses the document: strict JSON, UTF-8, trailing whitespace only. NULL on error. */
static json_object *ld_parse(const char *path, const struct buf *b)
{
	json_tokener *tok = json_tokener_new_ex(32);
	json_object *o;
	size_t end;

	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, b->p ? b->p : "", (int)b->len);
	end = json_tokener_get_parse_end(tok);
	if (o == NULL) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		ctl_errf("load: %s: not valid JSON at byte %zu: %s", path, end,
		         e == json_tokener_continue ? "unexpected end of file"
		                                    : json_tokener_error_desc(e));
		json_tokener_free(tok);
		return NULL;
	}
	json_tokener_free(tok);
	for (; end < b->len; end++) {
		char ch = b->p[end];

		if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
			ctl_errf("load: %s: unexpected data after the document at byte %zu", path, end);
			json_object_put(o);
			return NULL;
		}
	}
	return o;
}

/* Reports keys of obj that are not in allowed (NULL-terminated). */
static void ld_known_keys(struct ld *ld, json_object *obj, const char *const *allowed,
                          const char *ctx)
{
	json_object_object_foreach(obj, key, val) {
		int ok = 0;

		(void)val;
		for (const char *const *a = allowed; *a != NULL; a++)
			if (strcmp(*a, key) == 0)
				ok = 1;
		if (!ok)
			ld_err(ld, "%s: unknown key %s", ctx, ctl_quote(key, strlen(key)));
	}
}

/*
 * Gets member key of obj as a string into *out. A missing, null or "" member leaves *out
 * absent (and is an error when required). Other types, and NUL bytes unless allow_nul,
 * are errors. Returns 0 when fine.
 */
static int ld_get_str(struct ld *ld, json_object *obj, const char *key, int required,
                      int allow_nul, const char *ctx, struct ld_str *out)
{
	json_object *v;

	out->p = NULL;
	out->len = 0;
	if (!ctl_json_member(obj, key, &v) || v == NULL ||
	    (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) == 0)) {
		if (required) {
			ld_err(ld, "%s: %s is missing or empty", ctx, key);
			return -1;
		}
		return 0;
	}
	if (!json_object_is_type(v, json_type_string)) {
		ld_err(ld, "%s: %s is not a string", ctx, key);
		return -1;
	}
	out->p = json_object_get_string(v);
	out->len = (size_t)json_object_get_string_len(v);
	if (!allow_nul && memchr(out->p, '\0', out->len) != NULL) {
		ld_err(ld, "%s: %s contains a NUL character", ctx, key);
		out->p = NULL;
		return -1;
	}
	return 0;
}

/* Gets an optional array member; NULL when absent or null. Reports other types. */
static json_object *ld_get_array(struct ld *ld, json_object *obj, const char *key,
                                 const char *ctx)
{
	json_object *v;

	if (!ctl_json_member(obj, key, &v) || v == NULL)
		return NULL;
	if (!json_object_is_type(v, json_type_array)) {
		ld_err(ld, "%s: %s is not an array", ctx, key);
		return NULL;
	}
	return v;
}

static void ld_check_credential(struct ld *ld, struct ld_org *org, json_object *o,
                                struct ld_cred *cr, size_t i)
{
	static const char *const keys[] = { "username", "password", NULL };
	char ctx[256];

	cr->org = org;
	snprintf(ctx, sizeof ctx, "org %s: credential #%zu", org->id, i + 1);
	if (!json_object_is_type(o, json_type_object)) {
		ld_err(ld, "%s: not an object", ctx);
		return;
	}
	ld_known_keys(ld, o, keys, ctx);
	ld_get_str(ld, o, "username", 1, 0, ctx, &cr->user);
	ld_get_str(ld, o, "password", 1, 1, ctx, &cr->pw);
}

/*
 * A program's tiers: at most RULES_MAX_TIERS (partnerd reads no more: a membership on a
 * later tier could be neither made nor read), non-empty strings within REQ_NAME_MAX, none
 * twice.
 */
static void ld_check_tiers(struct ld *ld, json_object *o, struct ld_prog *p, const char *ctx)
{
	p->tiers = ld_get_array(ld, o, "tiers", ctx);
	if (p->tiers != NULL && json_object_array_length(p->tiers) > RULES_MAX_TIERS) {
		ld_err(ld, "%s: has %zu tiers: at most %d (partnerd reads only the first %d)",
		       ctx, json_object_array_length(p->tiers), RULES_MAX_TIERS, RULES_MAX_TIERS);
		return;
	}
	for (size_t t = 0; p->tiers != NULL && t < json_object_array_length(p->tiers); t++) {
		json_object *v = json_object_array_get_idx(p->tiers, t);
		const char *s = json_object_get_string(v);
		size_t len = (size_t)json_object_get_string_len(v);

		if (!json_object_is_type(v, json_type_string) || len == 0 ||
		    memchr(s, '\0', len) != NULL) {
			ld_err(ld, "%s: tier #%zu is not a non-empty string", ctx, t + 1);
			continue;
		}
		if (len > REQ_NAME_MAX) {
			ld_err(ld, "%s: tier #%zu is %zu bytes long: at most %d", ctx, t + 1, len,
			       REQ_NAME_MAX);
			continue;
		}
		for (size_t u = 0; u < t; u++) {
			json_object *w = json_object_array_get_idx(p->tiers, u);

			if (json_object_is_type(w, json_type_string) &&
			    (size_t)json_object_get_string_len(w) == len &&
			    memcmp(json_object_get_string(w), s, len) == 0)
				ld_err(ld, "%s: tier %s appears twice", ctx, ctl_quote(s, len));
		}
	}
}

/* A program's membershipCycle: SUPPLEMENTARY only, DAYS or MONTHS, a value >= 1. */
static void ld_check_cycle(struct ld *ld, json_object *o, struct ld_prog *p, const char *ctx)
{
	static const char *const ckeys[] = { "type", "value", NULL };
	json_object *cycle, *value;
	struct ld_str unit;

	if (!ctl_json_member(o, "membershipCycle", &cycle) || cycle == NULL)
		return;
	if (p->type == LD_PROG_EXTERNAL)
		ld_err(ld, "%s: membershipCycle applies only to SUPPLEMENTARY programs", ctx);
	if (!json_object_is_type(cycle, json_type_object)) {
		ld_err(ld, "%s: membershipCycle is not an object", ctx);
	} else {
		ld_known_keys(ld, cycle, ckeys, ctx);
		if (ld_get_str(ld, cycle, "type", 1, 0, ctx, &unit) == 0) {
			if (ld_str_eq(unit, "DAYS", 4))
				p->cycle_unit = "DAYS";
			else if (ld_str_eq(unit, "MONTHS", 6))
				p->cycle_unit = "MONTHS";
			else
				ld_err(ld, "%s: membershipCycle type must be DAYS or MONTHS", ctx);
		}
		if (!ctl_json_member(cycle, "value", &value) || !ctl_json_is_int(value) ||
		    json_object_get_int64(value) < 1 ||
		    json_object_get_int64(value) > 0x7fffffff) {
			ld_err(ld, "%s: membershipCycle value must be an integer >= 1", ctx);
			p->cycle_unit = NULL;
		} else {
			p->cycle_value = (int)json_object_get_int64(value);
		}
	}
}

static void ld_check_program(struct ld *ld, struct ld_org *org, json_object *o,
                             struct ld_prog *p, size_t i)
{
	static const char *const keys[] = { "name", "type", "tiers", "membershipCycle",
	                                    "expiresAt", NULL };
	struct ld_str type, exp;
	char ctx[256];

	snprintf(ctx, sizeof ctx, "org %s: program #%zu", org->id, i + 1);
	if (!json_object_is_type(o, json_type_object)) {
		ld_err(ld, "%s: not an object", ctx);
		return;
	}
	if (ld_get_str(ld, o, "name", 1, 0, ctx, &p->name) == 0)
		snprintf(ctx, sizeof ctx, "org %s: program %s", org->id, ld_q(p->name));
	/* partnerd refuses longer names in requests (SPEC §4): such a program could not be used. */
	if (p->name.p != NULL && p->name.len > REQ_NAME_MAX)
		ld_err(ld, "%s: name is %zu bytes long: at most %d", ctx, p->name.len, REQ_NAME_MAX);
	ld_known_keys(ld, o, keys, ctx);

	if (ld_get_str(ld, o, "type", 1, 0, ctx, &type) == 0) {
		if (ld_str_eq(type, "EXTERNAL", 8))
			p->type = LD_PROG_EXTERNAL;
		else if (ld_str_eq(type, "SUPPLEMENTARY", 13))
			p->type = LD_PROG_SUPPLEMENTARY;
		else
			ld_err(ld, "%s: type must be EXTERNAL or SUPPLEMENTARY", ctx);
	}

	ld_check_tiers(ld, o, p, ctx);
	ld_check_cycle(ld, o, p, ctx);

	if (ld_get_str(ld, o, "expiresAt", 0, 0, ctx, &exp) == 0 && exp.p != NULL) {
		if (dates_parse(exp.p, exp.len, &p->exp) < 0)
			ld_err(ld, "%s: expiresAt %s is not a date-time (YYYY-MM-DDThh:mm:ss[.f]"
			       "(Z|+hh:mm))", ctx, ld_q(exp));
		else
			p->has_exp = 1;
	}
}

/* Where ld_check_customer's problems go: ld_err with the customer's context. */
struct ld_cust_ctx {
	struct ld *ld;
	const struct ld_org *org;
	size_t i;                         /* position in the org's customers */
};

static void ld_cust_problem(void *arg, const struct ctl_cust_in *in, const char *msg)
{
	struct ld_cust_ctx *x = arg;

	if (in->id > 0)
		ld_err(x->ld, "org %s: customer %" PRId64 ": %s", x->org->id, in->id, msg);
	else
		ld_err(x->ld, "org %s: customer #%zu: %s", x->org->id, x->i + 1, msg);
}

/* Validates one customer (ctl_cust_parse, shared with import-customers) into cu. */
static void ld_check_customer(struct ld *ld, struct ld_org *org, json_object *o,
                              struct ld_cust *cu, size_t i)
{
	struct ld_cust_ctx x = { .ld = ld, .org = org, .i = i };
	struct ctl_cust_in in;

	cu->org = org;
	ctl_cust_parse(o, org->cc, org->nlen, &in, ld_cust_problem, &x);
	cu->id = in.id;
	memcpy(cu->mob, in.mob, sizeof cu->mob);
	for (int k = 0; k < LD_NKINDS; k++) {
		cu->val[k].p = in.val[k] == in.mob ? cu->mob : in.val[k];
		cu->val[k].len = in.len[k];
	}
}

/* A string with the index of its owner, for finding duplicates by sorting. */
struct ld_sref {
	struct ld_str s;
	size_t i;
};

static int ld_sref_cmp(const void *a, const void *b)
{
	const struct ld_sref *x = a, *y = b;
	size_t n = x->s.len < y->s.len ? x->s.len : y->s.len;
	int c = memcmp(x->s.p, y->s.p, n);

	if (c != 0)
		return c;
	if (x->s.len != y->s.len)
		return x->s.len < y->s.len ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static int ld_i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static int ld_has_id(const struct ld_org *org, int64_t id)
{
	return bsearch(&id, org->ids, org->ncusts, sizeof *org->ids, ld_i64_cmp) != NULL;
}

/* Uniqueness within an org: customer ids, identifiers, program names. */
static void ld_check_unique_org(struct ld *ld, struct ld_org *org)
{
	struct ld_sref *v = xcalloc(org->ncusts + org->nprogs, sizeof *v);
	size_t n;

	org->ids = xcalloc(org->ncusts, sizeof *org->ids);
	for (size_t i = 0; i < org->ncusts; i++)
		org->ids[i] = org->custs[i].id;
	qsort(org->ids, org->ncusts, sizeof *org->ids, ld_i64_cmp);
	for (size_t i = 1; i < org->ncusts; i++)
		if (org->ids[i] == org->ids[i - 1] && org->ids[i] != 0)
			ld_err(ld, "org %s: customer %" PRId64 " appears twice", org->id, org->ids[i]);

	for (int k = 0; k < LD_NKINDS; k++) {
		n = 0;
		for (size_t i = 0; i < org->ncusts; i++)
			if (org->custs[i].val[k].p != NULL)
				v[n++] = (struct ld_sref){ org->custs[i].val[k], i };
		qsort(v, n, sizeof *v, ld_sref_cmp);
		for (size_t i = 1; i < n; i++)
			if (ld_sref_cmp(&(struct ld_sref){ v[i].s, 0 }, &(struct ld_sref){ v[i - 1].s, 0 }) == 0)
				ld_err(ld, "org %s: %s %s is given to customers %" PRId64 " and %" PRId64,
				       org->id, store_ident_name[k], ld_q(v[i].s), org->custs[v[i - 1].i].id,
				       org->custs[v[i].i].id);
	}

	n = 0;
	for (size_t i = 0; i < org->nprogs; i++)
		if (org->progs[i].name.p != NULL)
			v[n++] = (struct ld_sref){ org->progs[i].name, i };
	qsort(v, n, sizeof *v, ld_sref_cmp);
	for (size_t i = 1; i < n; i++)
		if (ld_str_eq(v[i].s, v[i - 1].s.p, v[i - 1].s.len))
			ld_err(ld, "org %s: program %s appears twice", org->id, ld_q(v[i].s));
	free(v);
}

static void ld_check_org(struct ld *ld, json_object *o, struct ld_org *org, size_t i)
{
	static const char *const keys[] = { "id", "defaultCountryCode", "nationalNumberLength",
	                                    "credentials", "programs", "customers", NULL };
	struct ld_str id, cc;
	json_object *nlen, *arr;
	char ctx[256];
	int ccok = 0;

	snprintf(ctx, sizeof ctx, "org #%zu", i + 1);
	if (!json_object_is_type(o, json_type_object)) {
		ld_err(ld, "%s: not an object", ctx);
		return;
	}
	if (ld_get_str(ld, o, "id", 1, 0, ctx, &id) == 0) {
		if (!ident_valid_org(id.p))
			ld_err(ld, "%s: id %s is not [A-Za-z0-9_.-]{1,64}", ctx, ld_q(id));
		else
			snprintf(ctx, sizeof ctx, "org %s", id.p);
	}
	org->id = id.p != NULL && ident_valid_org(id.p) ? id.p : "(invalid id)";
	ld_known_keys(ld, o, keys, ctx);

	if (ld_get_str(ld, o, "defaultCountryCode", 1, 0, ctx, &cc) == 0) {
		ccok = cc.len >= 1 && cc.len <= 4 && strspn(cc.p, "0123456789") == cc.len;
		if (!ccok)
			ld_err(ld, "%s: defaultCountryCode must be 1 to 4 digits", ctx);
	}
	org->cc = ccok ? cc.p : "";
	if (!ctl_json_member(o, "nationalNumberLength", &nlen) || !ctl_json_is_int(nlen) ||
	    json_object_get_int64(nlen) < 4 || json_object_get_int64(nlen) > 15)
		ld_err(ld, "%s: nationalNumberLength must be an integer from 4 to 15", ctx);
	else
		org->nlen = (int)json_object_get_int64(nlen);

	if ((arr = ld_get_array(ld, o, "credentials", ctx)) != NULL) {
		org->ncreds = json_object_array_length(arr);
		org->creds = xcalloc(org->ncreds, sizeof *org->creds);
		for (size_t j = 0; j < org->ncreds; j++)
			ld_check_credential(ld, org, json_object_array_get_idx(arr, j),
			                    &org->creds[j], j);
	}
	if ((arr = ld_get_array(ld, o, "programs", ctx)) != NULL) {
		org->nprogs = json_object_array_length(arr);
		org->progs = xcalloc(org->nprogs, sizeof *org->progs);
		for (size_t j = 0; j < org->nprogs; j++)
			ld_check_program(ld, org, json_object_array_get_idx(arr, j),
			                 &org->progs[j], j);
	}
	if ((arr = ld_get_array(ld, o, "customers", ctx)) != NULL) {
		org->ncusts = json_object_array_length(arr);
		org->custs = xcalloc(org->ncusts, sizeof *org->custs);
		for (size_t j = 0; j < org->ncusts; j++)
			ld_check_customer(ld, org, json_object_array_get_idx(arr, j),
			                  &org->custs[j], j);
	}
	ld_check_unique_org(ld, org);
}

/* Checks the whole document without touching Redis. */
static void ld_check_document(struct ld *ld)
{
	static const char *const keys[] = { "orgs", NULL };
	struct ld_sref *v;
	json_object *orgs;
	size_t n = 0, nc = 0;

	if (!json_object_is_type(ld->root, json_type_object) ||
	    !ctl_json_member(ld->root, "orgs", &orgs) ||
	    !json_object_is_type(orgs, json_type_array)) {
		ld_err(ld, "the document must be an object with an array \"orgs\"");
		return;
	}
	ld_known_keys(ld, ld->root, keys, "document");
	ld->norgs = json_object_array_length(orgs);
	ld->orgs = xcalloc(ld->norgs, sizeof *ld->orgs);
	for (size_t i = 0; i < ld->norgs; i++) {
		ld_check_org(ld, json_object_array_get_idx(orgs, i), &ld->orgs[i], i);
		nc += ld->orgs[i].ncreds;
	}

	/* Org ids and usernames are unique across the document. */
	v = xcalloc(ld->norgs + nc, sizeof *v);
	for (size_t i = 0; i < ld->norgs; i++)
		v[n++] = (struct ld_sref){ { ld->orgs[i].id, strlen(ld->orgs[i].id) }, i };
	qsort(v, n, sizeof *v, ld_sref_cmp);
	for (size_t i = 1; i < n; i++)
		if (ld_str_eq(v[i].s, v[i - 1].s.p, v[i - 1].s.len))
			ld_err(ld, "org %s appears twice", v[i].s.p);
	n = 0;
	for (size_t i = 0; i < ld->norgs; i++)
		for (size_t j = 0; j < ld->orgs[i].ncreds; j++)
			if (ld->orgs[i].creds[j].user.p != NULL)
				v[n++] = (struct ld_sref){ ld->orgs[i].creds[j].user, i };
	qsort(v, n, sizeof *v, ld_sref_cmp);
	for (size_t i = 1; i < n; i++)
		if (ld_str_eq(v[i].s, v[i - 1].s.p, v[i - 1].s.len))
			ld_err(ld, "username %s is listed twice (orgs %s and %s); usernames are global",
			       ld_q(v[i].s), ld->orgs[v[i - 1].i].id, ld->orgs[v[i].i].id);
	free(v);
}

/* ---- reading what is stored ---------------------------------------------------------- */

static struct ld_org *ld_find_org(struct ld *ld, const char *id)
{
	for (size_t i = 0; i < ld->norgs; i++)
		if (strcmp(ld->orgs[i].id, id) == 0)
			return &ld->orgs[i];
	return NULL;
}

static int ld_scred_cmp(const void *a, const void *b)
{
	const struct ld_scred *x = a, *y = b;
	size_t n = x->user_len < y->user_len ? x->user_len : y->user_len;
	int c = memcmp(x->user, y->user, n);

	return c != 0 ? c : (x->user_len > y->user_len) - (x->user_len < y->user_len);
}

static struct ld_scred *ld_find_scred(struct ld *ld, struct ld_str user)
{
	struct ld_scred key = { .user = (char *)(uintptr_t)user.p, .user_len = user.len };

	if (ld->nscreds == 0)   /* no array yet: bsearch of NULL is undefined */
		return NULL;
	return bsearch(&key, ld->screds, ld->nscreds, sizeof key, ld_scred_cmp);
}

/* One stored credential (username -> {"org", "hash"}) into ld->screds. */
static int ld_on_scred(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ld *ld = arg;
	struct ld_scred *s;
	json_object *o = ctl_json_parse(v, vlen), *org, *hash;

	ld->screds = xrealloc(ld->screds, (ld->nscreds + 1) * sizeof *ld->screds);
	s = &ld->screds[ld->nscreds++];
	memset(s, 0, sizeof *s);
	s->user = xmemdup(f, flen);
	s->user_len = flen;
	if (ctl_json_member(o, "org", &org) && json_object_is_type(org, json_type_string) &&
	    ctl_json_member(o, "hash", &hash) && json_object_is_type(hash, json_type_string)) {
		s->org = xmemdup(json_object_get_string(org), (size_t)json_object_get_string_len(org));
		s->hash = xmemdup(json_object_get_string(hash),
		                  (size_t)json_object_get_string_len(hash));
	}
	json_object_put(o);
	return 0;
}

/* Every stored credential into ld->screds, sorted by username. */
static int ld_read_creds(struct ld *ld)
{
	if (store_admin_hash(ld->st, STORE_KEY_CREDS, NULL, 0, ld_on_scred, ld) < 0) {
		ctl_errf("%s", store_admin_error(ld->st));
		return -1;
	}
	if (ld->nscreds > 1)   /* qsort of a NULL array is undefined, even of 0 elements */
		qsort(ld->screds, ld->nscreds, sizeof *ld->screds, ld_scred_cmp);
	return 0;
}

/* A stored program: its value and pid for the program of the file with that name. */
struct ld_progs_read {
	struct ld *ld;
	struct ld_org *org;
};

static int ld_on_stored_prog(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ld_progs_read *pr = arg;
	struct ld_org *org = pr->org;

	for (size_t j = 0; j < org->nprogs; j++) {
		struct ld_prog *p = &org->progs[j];
		struct rules_program sp = { 0 };
		char why[200];

		if (!ld_str_eq(p->name, f, flen))
			continue;
		if (rules_program_parse_strict(v, vlen, &sp, why, sizeof why) < 0) {
			ld_err(pr->ld, "org %s: program %s: the stored definition %s; fix or delete "
			       "it first", org->id, ld_q(p->name), why);
			continue;
		}
		p->pid = sp.pid;
		p->stored = xmemdup(v, vlen);
		p->stored_len = vlen;
		rules_program_free(&sp);
	}
	return 0;
}

/* The stored value and pid of each program of the file. */
static int ld_read_progs(struct ld *ld, struct ld_org *org)
{
	struct ld_progs_read pr = { ld, org };

	if (store_admin_hash(ld->st, STORE_KEY_PROGS, org->id, 0, ld_on_stored_prog, &pr) < 0) {
		ctl_errf("%s", store_admin_error(ld->st));
		return -1;
	}
	return 0;
}

/* What is stored of a customer of the file: its identifiers and whether it has v. */
static int ld_on_customer(void *arg, const struct store_cust_ids *ids)
{
	struct ld_cust *cu = arg;

	cu->has_v = ids->has_v;
	cu->stored = ids->stored;
	for (int k = 0; k < LD_NKINDS; k++) {
		if (ids->val[k] != NULL) {
			cu->old[k] = xmemdup(ids->val[k], ids->len[k]);
			cu->oldlen[k] = ids->len[k];
		}
	}
	return 0;
}

/* A batch of index lookups of one kind. */
struct ld_ixbatch {
	int kind;
	size_t n;
	struct ld_cust *cust[LD_BATCH];
	const char *val[LD_BATCH];
	size_t len[LD_BATCH];
};

static void ld_on_holder(void *arg, size_t i, int64_t holder)
{
	struct ld_ixbatch *b = arg;

	b->cust[i]->holder[b->kind] = holder;
}

/*
 * Queues the index lookups of the identifiers of kind k of org's customers, LD_BATCH a
 * command. The batches live until the queue is flushed (added to *batches).
 */
static int ld_read_holders(struct ld *ld, struct ld_org *org, int k, struct ld_ixbatch ***batches,
                           size_t *nbatches)
{
	struct ld_ixbatch *b = NULL;

	for (size_t i = 0; i <= org->ncusts; i++) {
		if (b != NULL && (i == org->ncusts || b->n == LD_BATCH)) {
			if (store_admin_q_ix_holders(ld->st, org->id, (enum store_ident)k, b->n, b->val,
			                             b->len, ld_on_holder, b) < 0)
				return -1;
			b = NULL;
		}
		if (i == org->ncusts || org->custs[i].val[k].p == NULL)
			continue;
		if (b == NULL) {
			b = xcalloc(1, sizeof *b);
			b->kind = k;
			*batches = xrealloc(*batches, (*nbatches + 1) * sizeof **batches);
			(*batches)[(*nbatches)++] = b;
		}
		b->cust[b->n] = &org->custs[i];
		b->val[b->n] = org->custs[i].val[k].p;
		b->len[b->n++] = org->custs[i].val[k].len;
	}
	return 0;
}

/* Reads every customer's stored hash fields and the index holders of its identifiers. */
static int ld_read_customers(struct ld *ld)
{
	struct ld_ixbatch **batches = NULL;
	size_t nbatches = 0;
	int rc = 0;

	for (size_t o = 0; o < ld->norgs && rc == 0; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncusts && rc == 0; i++)
			rc = store_admin_q_customer_ids(ld->st, org->id, org->custs[i].id, ld_on_customer,
			                                &org->custs[i]);
		for (int k = 0; k < LD_NKINDS && rc == 0; k++)
			rc = ld_read_holders(ld, org, k, &batches, &nbatches);
	}
	if (store_admin_flush(ld->st) < 0)
		rc = -1;
	for (size_t i = 0; i < nbatches; i++)
		free(batches[i]);
	free(batches);
	return rc;
}

/* Checks the document against what is stored (credential owners, identifier holders). */
static void ld_check_against_store(struct ld *ld)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncreds; i++) {
			struct ld_cred *cr = &org->creds[i];
			struct ld_scred *s = ld_find_scred(ld, cr->user);

			if (s == NULL)
				continue;
			s->listed = 1;
			if (s->org != NULL && strcmp(s->org, org->id) != 0 && ld_find_org(ld, s->org) == NULL)
				ld_err(ld, "org %s: username %s already belongs to org %s (list that org "
				       "in the file without it to move the username)", org->id,
				       ld_q(cr->user), s->org);
		}
		for (size_t i = 0; i < org->ncusts; i++) {
			struct ld_cust *cu = &org->custs[i];

			for (int k = 0; k < LD_NKINDS; k++) {
				int64_t h = cu->holder[k];

				if (cu->val[k].p == NULL || h == 0 || h == cu->id)
					continue;
				if (h < 0)
					ld_err(ld, "org %s: customer %" PRId64 ": the stored %s index entry "
					       "for %s is not a customer id (run partnerctl check)", org->id,
					       cu->id, store_ident_name[k], ld_q(cu->val[k]));
				else if (!ld_has_id(org, h))
					ld_err(ld, "org %s: customer %" PRId64 ": %s %s is already held by "
					       "customer %" PRId64, org->id, cu->id, store_ident_name[k],
					       ld_q(cu->val[k]), h);
			}
		}
	}
}

/* ---- preparing values ---------------------------------------------------------------- */

/* The program value of docs/DATA-MODEL.md, keys in its order. Caller frees. */
static char *ld_prog_value(const struct ld_prog *p, int pid, size_t *len)
{
	json_object *o = json_object_new_object(), *tiers = json_object_new_array();
	json_object *cycle = NULL;
	const char *txt;
	char *s;

	json_object_object_add(o, "pid", json_object_new_int64(pid));
	json_object_object_add(o, "type", json_object_new_string(
		p->type == LD_PROG_SUPPLEMENTARY ? "SUPPLEMENTARY" : "EXTERNAL"));
	for (size_t t = 0; p->tiers != NULL && t < json_object_array_length(p->tiers); t++) {
		json_object *v = json_object_array_get_idx(p->tiers, t);

		json_object_array_add(tiers, json_object_new_string_len(
			json_object_get_string(v), json_object_get_string_len(v)));
	}
	json_object_object_add(o, "tiers", tiers);
	if (p->cycle_unit != NULL) {
		cycle = json_object_new_object();
		json_object_object_add(cycle, "unit", json_object_new_string(p->cycle_unit));
		json_object_object_add(cycle, "value", json_object_new_int64(p->cycle_value));
	}
	json_object_object_add(o, "cycle", cycle);
	json_object_object_add(o, "expiresAt", p->has_exp ? json_object_new_int64(p->exp) : NULL);
	txt = ctl_json_plain(o, len);
	s = xmemdup(txt, *len);
	json_object_put(o);
	return s;
}

/* Hashes passwords that need it: a stored hash of the same org that verifies is kept. */
static int ld_prepare_creds(struct ld *ld)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncreds; i++) {
			struct ld_cred *cr = &org->creds[i];
			struct ld_scred *s = ld_find_scred(ld, cr->user);
			char hash[crypto_pwhash_STRBYTES];
			const char *txt;
			json_object *v;
			size_t len;

			if (s != NULL && s->org != NULL && s->hash != NULL &&
			    strcmp(s->org, org->id) == 0 &&
			    crypto_pwhash_str_verify(s->hash, cr->pw.p, cr->pw.len) == 0 &&
			    crypto_pwhash_str_needs_rehash(s->hash, LD_PWHASH_OPSLIMIT,
			                                   LD_PWHASH_MEMLIMIT) == 0)
				continue;
			if (crypto_pwhash_str_alg(hash, cr->pw.p, cr->pw.len, LD_PWHASH_OPSLIMIT,
			                          LD_PWHASH_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13) != 0) {
				ctl_errf("load: out of memory hashing a password");
				return -1;
			}
			v = json_object_new_object();
			json_object_object_add(v, "org", json_object_new_string(org->id));
			json_object_object_add(v, "hash", json_object_new_string(hash));
			txt = ctl_json_plain(v, &len);
			cr->value = xmemdup(txt, len);
			json_object_put(v);
			sodium_memzero(hash, sizeof hash);
		}
	}
	return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

static int ld_on_pid(void *arg, int pid)
{
	((struct ld_prog *)arg)->pid = pid;
	return 0;
}

/* The identifiers of the file as store_admin takes them. */
static void ld_vals(const struct ld_cust *cu, const char *val[LD_NKINDS], size_t len[LD_NKINDS])
{
	for (int k = 0; k < LD_NKINDS; k++) {
		val[k] = cu->val[k].p;
		len[k] = cu->val[k].len;
	}
}

/* What is stored of the customer, as store_admin takes it (borrowed from cu). */
static void ld_stored(const struct ld_cust *cu, struct store_cust_ids *ids)
{
	ids->stored = cu->stored;
	ids->has_v = cu->has_v;
	for (int k = 0; k < LD_NKINDS; k++) {
		ids->val[k] = cu->old[k];
		ids->len[k] = cu->oldlen[k];
	}
}

/* 1 when the stored identifier k of cu differs from the file's. */
static int ld_changed(const struct ld_cust *cu, int k)
{
	struct store_cust_ids ids;

	ld_stored(cu, &ids);
	return store_ident_changed(&ids, k, cu->val[k].p, cu->val[k].len);
}

struct ld_stats {
	size_t progs_new, progs_changed, creds_changed, creds_removed;
	size_t custs_new, custs_changed;
};

/* Org sets and settings, and a pid for each new program (read back at the flush). */
static int ld_write_org_ids(struct ld *ld)
{
	store_admin_q_layout(ld->st);   /* an empty Redis gets layout 2 (keys.h KEYS_LAYOUT) */
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		store_admin_q_org(ld->st, org->id, org->cc, org->nlen);
		for (size_t i = 0; i < org->nprogs; i++)
			if (org->progs[i].stored == NULL)
				store_admin_q_next_pid(ld->st, org->id, ld_on_pid, &org->progs[i]);
	}
	return store_admin_flush(ld->st);
}

/* Org hash, program ids and definitions. */
static int ld_write_orgs(struct ld *ld, struct ld_stats *st)
{
	if (ld_write_org_ids(ld) < 0)
		return -1;
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->nprogs; i++) {
			struct ld_prog *pr = &org->progs[i];

			pr->value = ld_prog_value(pr, pr->pid, &pr->value_len);
			if (pr->stored != NULL && pr->stored_len == pr->value_len &&
			    memcmp(pr->stored, pr->value, pr->value_len) == 0)
				continue;
			if (pr->stored == NULL)
				st->progs_new++;
			else
				st->progs_changed++;
			store_admin_q_program(ld->st, org->id, pr->name.p, pr->name.len, pr->value,
			                      pr->value_len);
		}
	}
	return store_admin_flush(ld->st);
}

static void ld_write_creds(struct ld *ld, struct ld_stats *st)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		for (size_t i = 0; i < ld->orgs[o].ncreds; i++) {
			struct ld_cred *cr = &ld->orgs[o].creds[i];

			if (cr->value == NULL)
				continue;
			st->creds_changed++;
			store_admin_q_credential_set(ld->st, cr->user.p, cr->user.len, cr->value,
			                             strlen(cr->value));
		}
	}
	/* Revoked: stored for an org of the file, not listed any more. */
	for (size_t i = 0; i < ld->nscreds; i++) {
		struct ld_scred *s = &ld->screds[i];

		if (s->listed || s->org == NULL || ld_find_org(ld, s->org) == NULL)
			continue;
		st->creds_removed++;
		store_admin_q_credential_del(ld->st, s->user, s->user_len);
	}
}

/* Phase 1 of the customers: conditional removal of index entries of changed identifiers. */
static void ld_release_old_idents(struct ld *ld)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncusts; i++) {
			struct ld_cust *cu = &org->custs[i];

			for (int k = 0; k < LD_NKINDS; k++)
				if (cu->old[k] != NULL && ld_changed(cu, k))
					store_admin_q_ix_release(ld->st, org->id, (enum store_ident)k,
					                         cu->old[k], cu->oldlen[k], cu->id);
		}
	}
}

/* Phase 2: the customer hashes. */
static void ld_write_hashes(struct ld *ld, struct ld_stats *st)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncusts; i++) {
			struct ld_cust *cu = &org->custs[i];
			struct store_cust_ids ids;
			const char *val[LD_NKINDS];
			size_t len[LD_NKINDS];
			int changed = 0;

			ld_stored(cu, &ids);
			ld_vals(cu, val, len);
			for (int k = 0; k < LD_NKINDS; k++)
				changed |= store_ident_changed(&ids, k, val[k], len[k]);
			store_admin_q_customer_write(ld->st, org->id, cu->id, &ids, val, len);
			if (!cu->stored)
				st->custs_new++;
			else if (changed)
				st->custs_changed++;
		}
	}
}

/* Phase 3: index entries of kind k that are new or point elsewhere, LD_BATCH a command. */
static void ld_write_index(struct ld *ld, struct ld_org *org, int k)
{
	const char **vals = xcalloc(LD_BATCH, sizeof *vals);
	size_t *lens = xcalloc(LD_BATCH, sizeof *lens), n = 0;
	int64_t *cids = xcalloc(LD_BATCH, sizeof *cids);

	for (size_t i = 0; i <= org->ncusts; i++) {
		struct ld_cust *cu = i < org->ncusts ? &org->custs[i] : NULL;

		if (n > 0 && (cu == NULL || n == LD_BATCH)) {
			store_admin_q_ix_set(ld->st, org->id, (enum store_ident)k, n, vals, lens, cids);
			n = 0;
		}
		if (cu == NULL || cu->val[k].p == NULL ||
		    (cu->holder[k] == cu->id && !ld_changed(cu, k)))
			continue;
		vals[n] = cu->val[k].p;
		lens[n] = cu->val[k].len;
		cids[n++] = cu->id;
	}
	free(vals);
	free(lens);
	free(cids);
}

/*
 * Customer hashes and identifier indexes: old entries out first, then the hashes, then
 * the new entries. On one Redis the pipeline runs in that order. On a Redis Cluster the
 * keys are on several masters, which run their commands side by side: each phase is sent
 * once the one before applied, so that a load stopped part way (killed, a master down)
 * never leaves an old index entry whose value its customer's hash no longer holds (a
 * re-run could not find it); running the load again finishes it. 0, or -1 (reported).
 */
static int ld_write_customers(struct ld *ld, struct ld_stats *st)
{
	int cluster = store_admin_is_cluster(ld->st);

	ld_release_old_idents(ld);
	if (cluster && store_admin_flush(ld->st) < 0)
		return -1;
	ld_write_hashes(ld, st);
	if (cluster && store_admin_flush(ld->st) < 0)
		return -1;
	for (size_t o = 0; o < ld->norgs; o++)
		for (int k = 0; k < LD_NKINDS; k++)
			ld_write_index(ld, &ld->orgs[o], k);
	return 0;
}

/* ---- the verb ------------------------------------------------------------------------ */

static void ld_free(struct ld *ld)
{
	for (size_t o = 0; o < ld->norgs; o++) {
		struct ld_org *org = &ld->orgs[o];

		for (size_t i = 0; i < org->ncreds; i++)
			free(org->creds[i].value);
		for (size_t i = 0; i < org->nprogs; i++) {
			free(org->progs[i].stored);
			free(org->progs[i].value);
		}
		for (size_t i = 0; i < org->ncusts; i++)
			for (int k = 0; k < LD_NKINDS; k++)
				free(org->custs[i].old[k]);
		free(org->creds);
		free(org->progs);
		free(org->custs);
		free(org->ids);
	}
	free(ld->orgs);
	for (size_t i = 0; i < ld->nscreds; i++) {
		free(ld->screds[i].user);
		free(ld->screds[i].org);
		if (ld->screds[i].hash != NULL)
			sodium_memzero(ld->screds[i].hash, strlen(ld->screds[i].hash));
		free(ld->screds[i].hash);
	}
	free(ld->screds);
	json_object_put(ld->root);
	store_admin_close(ld->st);
}

/* A failure the store session found in the pipeline, named as load's (as before it). */
static void ld_report(void *arg, const char *msg)
{
	(void)arg;
	ctl_errf("load: %s", msg);
}

/* Everything after the document checked out: read the store, check, write. */
static int ld_run(struct ld *ld, const struct ctl *ctl)
{
	struct ld_stats st = { 0 };
	size_t ncust = 0, nprog = 0, ncred = 0;
	int rc;

	if ((ld->st = ctl_store_open(ctl)) == NULL)
		return CTL_EXIT_USAGE;
	store_admin_set_report(ld->st, ld_report, NULL);
	if (store_admin_layout(ld->st) < 0)
		return CTL_EXIT_FAIL;
	if (ld_read_creds(ld) < 0)
		return CTL_EXIT_FAIL;
	for (size_t o = 0; o < ld->norgs; o++)
		if (ld_read_progs(ld, &ld->orgs[o]) < 0)
			return CTL_EXIT_FAIL;
	if (ld_read_customers(ld) < 0)
		return CTL_EXIT_FAIL;
	ld_check_against_store(ld);
	if (ld->errors > 0) {
		ctl_errf("load: %d error(s); nothing was written", ld->errors);
		return CTL_EXIT_FAIL;
	}
	if (ld_prepare_creds(ld) < 0)
		return CTL_EXIT_FAIL;

	rc = ld_write_orgs(ld, &st);
	if (rc == 0) {
		ld_write_creds(ld, &st);
		rc = ld_write_customers(ld, &st);
		if (store_admin_flush(ld->st) < 0)
			rc = -1;
	}
	if (rc < 0) {
		ctl_errf("load: writing failed part way; the load is idempotent: fix the cause "
		         "and run it again");
		return CTL_EXIT_FAIL;
	}
	for (size_t o = 0; o < ld->norgs; o++) {
		ncust += ld->orgs[o].ncusts;
		nprog += ld->orgs[o].nprogs;
		ncred += ld->orgs[o].ncreds;
	}
	printf("loaded %zu org(s): %zu program(s) (%zu new, %zu changed), %zu credential(s) "
	       "(%zu written, %zu revoked), %zu customer(s) (%zu new, %zu changed)\n",
	       ld->norgs, nprog, st.progs_new, st.progs_changed, ncred, st.creds_changed,
	       st.creds_removed, ncust, st.custs_new, st.custs_changed);
	return CTL_EXIT_OK;
}

int ctl_load_main(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ld ld = { 0 };
	struct buf b;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'h':
			ctl_verb_usage(stdout, "load");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "load");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		ctl_verb_usage(stderr, "load");
		return CTL_EXIT_USAGE;
	}
	buf_init(&b, LD_MAX_FILE);
	if (ld_read_file(argv[optind], &b) < 0) {
		buf_free(&b);
		return CTL_EXIT_FAIL;
	}
	ld.root = ld_parse(argv[optind], &b);
	buf_free(&b);
	if (ld.root == NULL)
		return CTL_EXIT_FAIL;

	ld_check_document(&ld);
	if (ld.errors > 0) {
		ctl_errf("load: %d error(s) in %s; nothing was written", ld.errors, argv[optind]);
		rc = CTL_EXIT_FAIL;
	} else {
		rc = ld_run(&ld, ctl);
	}
	ld_free(&ld);
	return rc;
}
