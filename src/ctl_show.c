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

#include "ctl.h"
#include "dates.h"
#include "ident.h"
#include "keys.h"
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
static int sh_lookup(redisContext *c, struct ctl_argv *a, const char *org, enum sh_by by,
                     const char *value, int64_t *cid)
{
	static const char *const ix[] = { [SH_MOBILE] = "mobile", [SH_EMAIL] = "email",
	                                  [SH_EXT] = "externalId" };
	char mob[IDENT_MOBILE_MAX + 16 + 1];
	const char *key = value;
	size_t keylen = strlen(value);
	redisReply *r;
	int found;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "SISMEMBER");
	ctl_argv_addstr(a, KEYS_ORGS);
	ctl_argv_addstr(a, org);
	if ((r = ctl_command(c, a)) == NULL)
		return -1;
	found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	freeReplyObject(r);
	if (!found) {
		ctl_errf("show: no org %s (not in %s)", org, KEYS_ORGS);
		return -1;
	}
	if (by == SH_ID) {
		if (ctl_parse_cid(value, strlen(value), cid) < 0) {
			ctl_errf("show: --id must be a positive integer");
			return -1;
		}
		return 1;
	}
	if (by == SH_MOBILE) {
		char cc[8] = "";
		int nlen = 0, n;

		ctl_argv_reset(a);
		ctl_argv_addstr(a, "HMGET");
		ctl_argv_addf(a, KEYS_ORG_FMT, org);
		ctl_argv_addstr(a, "defaultCountryCode");
		ctl_argv_addstr(a, "nationalNumberLength");
		if ((r = ctl_command(c, a)) == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
		    r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len < sizeof cc &&
		    r->element[1]->type == REDIS_REPLY_STRING) {
			memcpy(cc, r->element[0]->str, r->element[0]->len);
			cc[r->element[0]->len] = '\0';
			nlen = atoi(r->element[1]->str);
		}
		freeReplyObject(r);
		n = ident_normalize_mobile(value, strlen(value), cc, nlen, mob, sizeof mob);
		if (n < 0) {
			ctl_errf("show: %s is not a valid mobile number", ctl_quote(value, strlen(value)));
			return -1;
		}
		key = mob;
		keylen = (size_t)n;
	}
	ctl_argv_reset(a);
	ctl_argv_addstr(a, "HGET");
	ctl_argv_addf(a, KEYS_IX_FMT, org, ix[by]);
	ctl_argv_add(a, key, keylen);
	if ((r = ctl_command(c, a)) == NULL)
		return -1;
	found = r->type == REDIS_REPLY_STRING && ctl_parse_cid(r->str, r->len, cid) == 0;
	freeReplyObject(r);
	return found;
}

/* Reads the org's programs (those that parse). *n set; caller frees with sh_free_progs. */
static struct sh_prog *sh_read_progs(redisContext *c, struct ctl_argv *a, const char *org,
                                     size_t *n)
{
	struct sh_prog *progs;
	redisReply *r;

	*n = 0;
	ctl_argv_reset(a);
	ctl_argv_addstr(a, "HGETALL");
	ctl_argv_addf(a, KEYS_PROGS_FMT, org);
	if ((r = ctl_command(c, a)) == NULL)
		return NULL;
	progs = xcalloc(r->elements / 2 + 1, sizeof *progs);
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		struct sh_prog *p = &progs[*n];
		char why[200];

		if (rules_program_parse_strict(r->element[i + 1]->str, r->element[i + 1]->len,
		                               &p->def, why, sizeof why) < 0)
			continue;
		p->name = xstrndup(r->element[i]->str, r->element[i]->len);
		p->name_len = r->element[i]->len;
		(*n)++;
	}
	freeReplyObject(r);
	return progs;
}

static void sh_free_progs(struct sh_prog *progs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(progs[i].name);
		rules_program_free(&progs[i].def);
	}
	free(progs);
}

static int sh_pid_cmp(const void *a, const void *b)
{
	json_object *x = *(json_object *const *)a, *y = *(json_object *const *)b, *px, *py;

	ctl_json_member(x, "pid", &px);
	ctl_json_member(y, "pid", &py);
	return (json_object_get_int(px) > json_object_get_int(py)) -
	       (json_object_get_int(px) < json_object_get_int(py));
}

/* Prints the customer; 0 shown, 1 not found, -1 error. */
/* The newest SH_HISTORY activities of the customer (docs/CHANGE-FEED.md), newest first. */
#define SH_HISTORY 10
static json_object *sh_history(redisContext *c, struct ctl_argv *a, const char *org, int64_t cid)
{
	json_object *list = json_object_new_array();
	redisReply *r;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "LRANGE");
	ctl_argv_addf(a, KEYS_HIST_FMT, org, (long long)cid);
	ctl_argv_addstr(a, "0");
	ctl_argv_addf(a, "%d", SH_HISTORY - 1);
	r = redisCommandArgv(c, a->argc, a->argv, a->lens);
	if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < r->elements; i++) {
			json_object *e = json_tokener_parse(r->element[i]->str);

			json_object_array_add(list, e != NULL ? e :
			                      json_object_new_string_len(r->element[i]->str, (int)r->element[i]->len));
		}
	}
	if (r != NULL)
		freeReplyObject(r);
	return list;
}

static int sh_show(redisContext *c, const char *org, int64_t cid)
{
	struct ctl_argv a;
	struct sh_prog *progs = NULL;
	size_t nprogs = 0;
	json_object *out = NULL, *ms;
	redisReply *r = NULL;
	int64_t now = dates_now_ms();
	int rc = -1, found_id = 0;

	ctl_argv_init(&a);
	ctl_argv_addstr(&a, "HGETALL");
	ctl_argv_addf(&a, KEYS_CUST_FMT, org, (long long)cid);
	if ((r = ctl_command(c, &a)) == NULL)
		goto out;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
		if (strcmp(r->element[i]->str, "id") == 0)
			found_id = 1;
	if (!found_id) {
		rc = 1;
		goto out;
	}
	if ((progs = sh_read_progs(c, &a, org, &nprogs)) == NULL)
		goto out;

	out = json_object_new_object();
	ms = json_object_new_array();
	json_object_object_add(out, "org", json_object_new_string(org));
	json_object_object_add(out, "id", json_object_new_int64(cid));
	json_object_object_add(out, "mobile", NULL);
	json_object_object_add(out, "email", NULL);
	json_object_object_add(out, "externalId", NULL);
	json_object_object_add(out, "version", NULL);
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		int pid;

		if (strcmp(f->str, "mobile") == 0 || strcmp(f->str, "email") == 0 ||
		    strcmp(f->str, "externalId") == 0) {
			json_object_object_add(out, f->str, json_object_new_string_len(v->str,
			                                                                (int)v->len));
		} else if (strcmp(f->str, "v") == 0) {
			json_object_object_add(out, "version", json_object_new_int64(atoll(v->str)));
		} else if (f->len > 2 && memcmp(f->str, "m:", 2) == 0 &&
		           (pid = atoi(f->str + 2)) > 0) {
			const struct sh_prog *prog = NULL;

			for (size_t j = 0; j < nprogs; j++)
				if (progs[j].def.pid == pid)
					prog = &progs[j];
			json_object_array_add(ms, sh_membership(pid, prog, v->str, v->len, now));
		}
	}
	json_object_array_sort(ms, sh_pid_cmp);
	json_object_object_add(out, "memberships", ms);
	json_object_object_add(out, "recentHistory", sh_history(c, &a, org, cid));
	printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
	                                              JSON_C_TO_STRING_SPACED |
	                                              JSON_C_TO_STRING_NOSLASHESCAPE));
	rc = 0;
out:
	json_object_put(out);
	if (r != NULL)
		freeReplyObject(r);
	sh_free_progs(progs, nprogs);
	ctl_argv_free(&a);
	return rc;
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
	struct ctl_argv a;
	redisContext *c;
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
	if ((c = ctl_connect(ctl)) == NULL)
		return CTL_EXIT_USAGE;
	ctl_argv_init(&a);
	rc = sh_lookup(c, &a, org, by, value, &cid);
	ctl_argv_free(&a);
	if (rc == 1)
		rc = sh_show(c, org, cid);
	else if (rc == 0)
		rc = 1;
	if (rc == 1)
		ctl_errf("show: org %s has no customer with %s %s", org, sh_by_name[by],
		         ctl_quote(value, strlen(value)));
	redisFree(c);
	return rc == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
