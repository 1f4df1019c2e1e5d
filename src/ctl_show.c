/*
 * ctl_show: `partnerctl show --org ORG (--id N|--mobile M|--email E|--external-id X)`.
 * Prints one customer and its memberships as pretty JSON, with the field names of the
 * read API (SPEC §5) and dates formatted by dates_format. The mobile is normalised with
 * the org's settings, as the API does.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "buf.h"
#include "ctl.h"
#include "dates.h"
#include "ident.h"
#include "rules.h"
#include "xmalloc.h"

enum sh_by { SH_NONE, SH_ID, SH_MOBILE, SH_EMAIL, SH_EXT };
static const char *const sh_by_name[] = { [SH_ID] = "id", [SH_MOBILE] = "mobile",
                                          [SH_EMAIL] = "email", [SH_EXT] = "externalId" };

/* A program of the org: its field name and its stored definition. */
struct sh_prog {
	char *name;              /* owned, NUL-terminated */
	size_t name_len;
	struct rules_program def;
};

/* An ms value or null (RULES_NONE), as a date-time string. New reference. */
static json_object *sh_date(int64_t ms)
{
	char out[DATES_FMT_LEN + 1];

	if (ms == RULES_NONE)
		return NULL;
	return json_object_new_string(dates_format(ms, out));
}

/* The membership part shared by a membership and its pending relink. */
static void sh_add_terms(json_object *out, const struct rules_values *v)
{
	json_object_object_add(out, "partnerMembershipId",
	                       json_object_new_string_len(v->mid, (int)v->mid_len));
	json_object_object_add(out, "partnerTierName", v->tier == NULL ? NULL :
	                       json_object_new_string_len(v->tier, (int)v->tier_len));
	json_object_object_add(out, "partnerTierExpiryDate", sh_date(v->exp));
	json_object_object_add(out, "membershipStartDate", sh_date(v->start));
	json_object_object_add(out, "membershipEndDate", sh_date(v->end));
}

/* One membership as the read API shows it. New reference. */
static json_object *sh_membership(int pid, const struct sh_prog *prog, const char *val,
                                  size_t len, int64_t now)
{
	json_object *out = json_object_new_object();
	struct rules_membership m;

	json_object_object_add(out, "pid", json_object_new_int(pid));
	json_object_object_add(out, "partnerProgramName",
	                       prog ? json_object_new_string_len(prog->name, (int)prog->name_len)
	                            : NULL);
	json_object_object_add(out, "partnerProgramType",
	                       prog == NULL ? NULL : json_object_new_string(
	                               prog->def.supplementary ? "SUPPLEMENTARY" : "EXTERNAL"));
	if (rules_membership_parse(val, len, &m) != 0) {
		json_object_object_add(out, "error", json_object_new_string(
		                               "the stored value is not a valid membership value"));
		return out;
	}
	sh_add_terms(out, &m.v);
	json_object_object_add(out, "state", json_object_new_string(rules_state(&m, now)));
	if (m.has_relink) {
		json_object *r = json_object_new_object();

		sh_add_terms(r, &m.rl);
		json_object_object_add(out, "pendingRelink", r);
	} else {
		json_object_object_add(out, "pendingRelink", NULL);
	}
	json_object_object_add(out, "linkedOn", sh_date(m.linked_on));
	json_object_object_add(out, "lastUpdatedOn", sh_date(m.updated_on));
	rules_membership_free(&m);
	return out;
}

/* Finds the customer id: from --id directly, else through an index. 0: not found. */
static int sh_lookup(struct store_admin *st, const char *org, enum sh_by by, const char *value,
                     int64_t *cid)
{
	static const enum store_ident ix[] = { [SH_MOBILE] = STORE_IDENT_MOBILE,
	                                       [SH_EMAIL] = STORE_IDENT_EMAIL,
	                                       [SH_EXT] = STORE_IDENT_EXTERNAL_ID };
	char mob[IDENT_MOBILE_MAX + 16 + 1];
	const char *key = value;
	size_t keylen = strlen(value);
	int found;

	if ((found = store_admin_org_exists(st, org)) < 0) {
		ctl_errf("%s", store_admin_error(st));
		return -1;
	}
	if (!found) {
		char name[64];

		ctl_errf("show: no org %s (not in %s)", org,
		         store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0));
		return -1;
	}
	if (by == SH_ID) {
		if (ident_parse_cid(value, strlen(value), cid) < 0) {
			ctl_errf("show: --id must be a positive integer");
			return -1;
		}
		return 1;
	}
	if (by == SH_MOBILE) {
		struct store_org_settings set;
		char cc[8] = "", nl[16] = "";
		int n;

		if (store_admin_org_settings(st, org, &set) < 0) {
			ctl_errf("%s", store_admin_error(st));
			return -1;
		}
		if (set.cc != NULL && set.cc_len < sizeof cc && set.nlen != NULL) {
			memcpy(cc, set.cc, set.cc_len);
			snprintf(nl, sizeof nl, "%.*s", (int)set.nlen_len, set.nlen);
		}
		n = ident_normalize_mobile(value, strlen(value), cc, atoi(nl), mob, sizeof mob);
		if (n < 0) {
			ctl_errf("show: %s is not a valid mobile number", ctl_quote(value, strlen(value)));
			return -1;
		}
		key = mob;
		keylen = (size_t)n;
	}
	found = store_admin_ix_get(st, org, ix[by], key, keylen, cid);
	if (found < 0)
		ctl_errf("%s", store_admin_error(st));
	return found;
}

/* The org's programs that parse, being read. */
struct sh_progs {
	struct sh_prog *v;
	size_t n, cap;
};

static int sh_on_prog(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct sh_progs *ps = arg;
	struct sh_prog p = { 0 };
	char why[200];

	if (rules_program_parse_strict(v, vlen, &p.def, why, sizeof why) < 0)
		return 0;
	if (ps->n == ps->cap) {
		ps->cap = ps->cap ? 2 * ps->cap : 8;
		ps->v = xrealloc(ps->v, ps->cap * sizeof *ps->v);
	}
	p.name = xstrndup(f, flen);
	p.name_len = flen;
	ps->v[ps->n++] = p;
	return 0;
}

static void sh_free_progs(struct sh_progs *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		free(ps->v[i].name);
		rules_program_free(&ps->v[i].def);
	}
	free(ps->v);
}

static int sh_pid_cmp(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b, *px, *py;

	ctl_json_member(x, "pid", &px);
	ctl_json_member(y, "pid", &py);
	return (json_object_get_int(px) > json_object_get_int(py)) -
	       (json_object_get_int(px) < json_object_get_int(py));
}

/* The newest SH_HISTORY activities of the customer (docs/CHANGE-FEED.md), newest first. */
#define SH_HISTORY 10

struct sh_hist {
	json_object *list;
	int64_t cid;
};

/* An entry as its activity JSON: a compact record rendered, a JSON entry parsed; as a
 * string when it reads as neither. */
static int sh_on_activity(void *arg, const char *s, size_t len)
{
	struct sh_hist *h = arg;
	struct activity_rec rec;
	const char *why;
	json_object *e = NULL;

	if (activity_is_record(s, len)) {
		struct buf b;

		buf_init(&b, (size_t)-1);
		if (activity_decode(s, len, &rec, &why) == 0 && activity_render(&b, &rec, h->cid) == 0)
			e = json_tokener_parse(b.p);
		buf_free(&b);
	} else {
		e = json_tokener_parse(s);
	}
	json_object_array_add(h->list, e != NULL ? e : json_object_new_string_len(s, (int)len));
	return 0;
}

static json_object *sh_history(struct store_admin *st, const char *org, int64_t cid)
{
	struct sh_hist h = { json_object_new_array(), cid };

	store_admin_list(st, STORE_KEY_HIST, org, cid, 0, SH_HISTORY - 1, sh_on_activity, &h);
	return h.list;
}

/* The customer being shown: its fields go into out, its memberships into ms. */
struct sh_cust {
	json_object *out, *ms;
	const struct sh_progs *progs;
	int64_t now;
};

static int sh_on_field(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct sh_cust *c = arg;
	int pid;

	(void)flen;
	if (strcmp(f, "mobile") == 0 || strcmp(f, "email") == 0 || strcmp(f, "externalId") == 0) {
		json_object_object_add(c->out, f, json_object_new_string_len(v, (int)vlen));
	} else if (strcmp(f, "v") == 0) {
		json_object_object_add(c->out, "version", json_object_new_int64(atoll(v)));
	} else if (flen > 2 && memcmp(f, "m:", 2) == 0 && (pid = atoi(f + 2)) > 0) {
		const struct sh_prog *prog = NULL;

		for (size_t j = 0; j < c->progs->n; j++)
			if (c->progs->v[j].def.pid == pid)
				prog = &c->progs->v[j];
		json_object_array_add(c->ms, sh_membership(pid, prog, v, vlen, c->now));
	}
	return 0;
}

/* Notes whether the customer hash has its id field. */
static int sh_on_id(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	(void)flen;
	(void)v;
	(void)vlen;
	if (strcmp(f, "id") == 0)
		*(int *)arg = 1;
	return 0;
}

/* Prints the customer; 0 shown, 1 not found, -1 error. */
static int sh_show(struct store_admin *st, const char *org, int64_t cid)
{
	struct sh_progs progs = { 0 };
	struct sh_cust c = { .progs = &progs, .now = dates_now_ms() };
	int found_id = 0;

	if (store_admin_hash(st, STORE_KEY_CUST, org, cid, sh_on_id, &found_id) < 0) {
		ctl_errf("%s", store_admin_error(st));
		return -1;
	}
	if (!found_id)
		return 1;
	if (store_admin_hash(st, STORE_KEY_PROGS, org, 0, sh_on_prog, &progs) < 0) {
		ctl_errf("%s", store_admin_error(st));
		sh_free_progs(&progs);
		return -1;
	}
	c.out = json_object_new_object();
	c.ms = json_object_new_array();
	json_object_object_add(c.out, "org", json_object_new_string(org));
	json_object_object_add(c.out, "id", json_object_new_int64(cid));
	json_object_object_add(c.out, "mobile", NULL);
	json_object_object_add(c.out, "email", NULL);
	json_object_object_add(c.out, "externalId", NULL);
	json_object_object_add(c.out, "version", NULL);
	if (store_admin_hash(st, STORE_KEY_CUST, org, cid, sh_on_field, &c) < 0) {
		ctl_errf("%s", store_admin_error(st));
		json_object_put(c.ms);
		json_object_put(c.out);
		sh_free_progs(&progs);
		return -1;
	}
	json_object_array_sort(c.ms, sh_pid_cmp);
	json_object_object_add(c.out, "memberships", c.ms);
	json_object_object_add(c.out, "recentHistory", sh_history(st, org, cid));
	printf("%s\n", json_object_to_json_string_ext(c.out, JSON_C_TO_STRING_PRETTY |
	                                              JSON_C_TO_STRING_SPACED |
	                                              JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(c.out);
	sh_free_progs(&progs);
	return 0;
}

int ctl_show_main(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "org", required_argument, NULL, 'o' },
		{ "id", required_argument, NULL, SH_ID },
		{ "mobile", required_argument, NULL, SH_MOBILE },
		{ "email", required_argument, NULL, SH_EMAIL },
		{ "external-id", required_argument, NULL, SH_EXT },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *org = NULL, *value = NULL;
	enum sh_by by = SH_NONE;
	struct store_admin *st;
	int64_t cid = 0;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'o':
			org = optarg;
			break;
		case SH_ID:
		case SH_MOBILE:
		case SH_EMAIL:
		case SH_EXT:
			if (by != SH_NONE) {
				ctl_errf("show: give exactly one of --id, --mobile, --email, --external-id");
				return CTL_EXIT_USAGE;
			}
			by = ch;
			value = optarg;
			break;
		case 'h':
			ctl_verb_usage(stdout, "show");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "show");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc || org == NULL || by == SH_NONE) {
		ctl_verb_usage(stderr, "show");
		return CTL_EXIT_USAGE;
	}
	if (!ident_valid_org(org)) {
		ctl_errf("show: %s is not a valid org id", ctl_quote(org, strlen(org)));
		return CTL_EXIT_USAGE;
	}
	if ((st = ctl_store_open(ctl)) == NULL)
		return CTL_EXIT_USAGE;
	if (store_admin_layout(st) < 0) {
		store_admin_close(st);
		return CTL_EXIT_FAIL;
	}
	rc = sh_lookup(st, org, by, value, &cid);
	if (rc == 1)
		rc = sh_show(st, org, cid);
	else if (rc == 0)
		rc = 1;
	if (rc == 1)
		ctl_errf("show: org %s has no customer with %s %s", org, sh_by_name[by],
		         ctl_quote(value, strlen(value)));
	store_admin_close(st);
	return rc == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
