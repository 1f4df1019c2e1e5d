/*
 * ctl_check: `partnerctl check [--org ORG]`: verifies the invariants of docs/DATA-MODEL.md
 * (SPEC §7) on the stored data. Every key under pp: is classified by its name (SCAN with
 * MATCH pp:*); keys that fit no pattern are violations. Then, per org, the indexes and the
 * membership-id hashes are read into sorted tables, every customer hash is checked against
 * them, and entries no customer confirmed are reported. One "VIOLATION: ..." line per
 * fault on stdout, then "checked N customers, M memberships: K violations".
 *
 * Pending relinks: an entry of pp:{ORG}:mid:PID is accepted when it names a customer whose
 * membership or pending relink in PID has that membership id (DATA-MODEL.md does not say
 * whether a queued relink reserves its id; both readings pass). A relink whose start has
 * passed (Redis's clock when the org's customers are read) is the current membership, as
 * partnerd reads it: its id must be indexed to the customer, and the old id may still be
 * (until partnerd next reads or writes the customer) or may have been taken over by
 * another customer (partnerd's claims check whether the holder still holds an id).
 *
 * History (docs/CHANGE-FEED.md): every pp:{ORG:CID}:h must belong to an existing customer
 * and be a LIST of activity JSON objects of that customer naming a program of the org. It
 * is read in the same pipelined pass as the customer hash (HGETALL then LRANGE 0 -1, for
 * customers that have a history key), and the newest activity of each program must agree
 * with the membership the customer holds (ck_hist_match). A list of --history-max entries
 * or more (default $PARTNERD_HISTORY_MAX, then 100, as partnerd) may have been trimmed.
 * The change feed pp:{ORG}:feed, when present, must be a STREAM; its newest
 * CK_FEED_COUNT entries are checked.
 *
 * Memory: the index tables of one org are held at once (about 100 bytes an entry).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "ident.h"
#include "keys.h"
#include "rules_codec.h"
#include "xmalloc.h"

#define CK_SCAN_COUNT "1000"
#define CK_NIX 3
static const char *const ck_ix_name[CK_NIX] = { "mobile", "email", "externalId" };
#define CK_FEED_COUNT "1000"      /* newest change-feed entries checked per org */
#define CK_HISTORY_MAX_DEFAULT 100 /* partnerd's --history-max default */

/* Activity types (docs/CHANGE-FEED.md). */
enum ck_act { CK_LINK, CK_UPDATE, CK_DELINK, CK_RELINK_SCHEDULED, CK_RELINK_CANCELLED, CK_NACT };
static const char *const ck_act_name[CK_NACT] = {
	"LINK", "UPDATE", "DELINK", "RELINK_SCHEDULED", "RELINK_CANCELLED",
};

/* An index entry: field -> customer id; seen once a customer confirmed it. */
struct ck_entry {
	char *key;        /* owned */
	size_t len;
	int64_t cid;      /* -1 when the value is not a customer id */
	int seen;
};

struct ck_map {
	struct ck_entry *v;
	size_t n, cap;
};

struct ck_mid {
	int pid;
	struct ck_map map;
};

struct ck_org {
	char id[65];
	int listed;              /* in pp:orgs */
	int keys;                /* keys of this org were found */
	int has_ix[CK_NIX];      /* pp:{ORG}:ix:* exists */
	int *mid_pids;           /* PIDs of pp:{ORG}:mid:PID keys */
	size_t nmid_pids;
	int64_t *custs;          /* CIDs of pp:{ORG:CID}:c keys */
	size_t ncusts, ccap;
	int64_t *locks;          /* CIDs of pp:{ORG:CID}:lock keys */
	size_t nlocks, lcap;
	int64_t *hists;          /* CIDs of pp:{ORG:CID}:h keys */
	size_t nhists, hcap;
	int has_feed;            /* pp:{ORG}:feed exists */
};

/* A program of the org being checked: its field name and its stored definition. */
struct ck_prog {
	char *name;              /* owned, NUL-terminated */
	size_t name_len;
	struct rules_program def;
};

struct ck {
	redisContext *c;
	const char *only;        /* --org, or NULL */
	struct ck_org *orgs;
	size_t norgs;
	unsigned long violations, customers, memberships, activities;
	long history_max;        /* a history this long may have been trimmed */
	json_tokener *tok;       /* reused for every history and feed entry */
	struct ctl_argv a;
	/* While checking one org: */
	struct ck_org *cur;
	struct ck_prog *progs;
	size_t nprogs;
	struct ck_map ix[CK_NIX];
	struct ck_mid *mids;
	size_t nmids;
	int *newest;             /* per program (index into progs): newest activity, or -1 */
	int64_t now_ms;          /* Redis's clock before the org's customers were read */
};

static void ck_violation(struct ck *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void ck_violation(struct ck *ck, const char *fmt, ...)
{
	va_list ap;

	ck->violations++;
	fputs("VIOLATION: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
}

static int ck_i64_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* ---- key classification -------------------------------------------------------------- */

static struct ck_org *ck_org_get(struct ck *ck, const char *id, size_t len)
{
	for (size_t i = 0; i < ck->norgs; i++)
		if (strlen(ck->orgs[i].id) == len && memcmp(ck->orgs[i].id, id, len) == 0)
			return &ck->orgs[i];
	ck->orgs = xrealloc(ck->orgs, sizeof *ck->orgs * (ck->norgs + 1));
	memset(&ck->orgs[ck->norgs], 0, sizeof *ck->orgs);
	memcpy(ck->orgs[ck->norgs].id, id, len);
	return &ck->orgs[ck->norgs++];
}

static void ck_push(int64_t **v, size_t *n, size_t *cap, int64_t x)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*v = xrealloc(*v, sizeof **v * *cap);
	}
	(*v)[(*n)++] = x;
}

/* 1 when s[0..len) is a decimal PID (1..2^31-1, no leading zero). */
static int ck_parse_pid(const char *s, size_t len, int *pid)
{
	int64_t v;

	if (ctl_parse_cid(s, len, &v) < 0 || v > 0x7fffffff)
		return 0;
	*pid = (int)v;
	return 1;
}

/* Files one key name under its org, or reports it as stray. */
static int ck_is_hex(const char *s, size_t n)
{
	return n > 0 && strspn(s, "0123456789abcdef") >= n;
}

static int ck_is_digits(const char *s, size_t n)
{
	return n > 0 && strspn(s, "0123456789") >= n;
}

static void ck_classify(struct ck *ck, const char *k, size_t len)
{
	const char *tag, *close, *colon, *rest;
	size_t orglen, restlen;
	char org[65];
	struct ck_org *o;
	int64_t cid = 0;
	int pid;

	if ((len == 7 && memcmp(k, KEYS_ORGS, 7) == 0) || (len == 8 && memcmp(k, KEYS_CREDS, 8) == 0))
		return;
	/* Failed-login counters (KEYS_LOGIN_FAIL_*_FMT): pp:login:u:HEX and pp:login:a:HEX. */
	if (len == 11 + 32 && (memcmp(k, "pp:login:u:", 11) == 0 || memcmp(k, "pp:login:a:", 11) == 0) &&
	    ck_is_hex(k + 11, 32))
		return;
	if (len < 5 || memcmp(k, "pp:{", 4) != 0 ||
	    (close = memchr(k, '}', len)) == NULL || close + 1 == k + len || close[1] != ':')
		goto stray;
	tag = k + 4;
	colon = memchr(tag, ':', (size_t)(close - tag));
	orglen = (size_t)((colon ? colon : close) - tag);
	if (orglen == 0 || orglen >= sizeof org)
		goto stray;
	memcpy(org, tag, orglen);
	org[orglen] = '\0';
	if (!ident_valid_org(org))
		goto stray;
	if (colon != NULL && ctl_parse_cid(colon + 1, (size_t)(close - colon - 1), &cid) < 0)
		goto stray;
	if (ck->only != NULL && strcmp(ck->only, org) != 0)
		return;
	rest = close + 2;
	restlen = (size_t)(k + len - rest);
	o = ck_org_get(ck, org, orglen);
	if (colon != NULL) {
		if (restlen == 1 && rest[0] == 'c')
			ck_push(&o->custs, &o->ncusts, &o->ccap, cid);
		else if (restlen == 4 && memcmp(rest, "lock", 4) == 0)
			ck_push(&o->locks, &o->nlocks, &o->lcap, cid);
		else if (restlen == 1 && rest[0] == 'h')
			ck_push(&o->hists, &o->nhists, &o->hcap, cid);  /* docs/CHANGE-FEED.md */
		else
			goto stray;
		o->keys = 1;
		return;
	}
	if (restlen == 4 && memcmp(rest, "feed", 4) == 0) {
		o->has_feed = 1;
		o->keys = 1;
		return;
	}
	if ((restlen == 3 && memcmp(rest, "org", 3) == 0) ||
	    (restlen == 5 && memcmp(rest, "progs", 5) == 0) ||
	    (restlen == 4 && memcmp(rest, "pseq", 4) == 0)) {
		o->keys = 1;
		return;
	}
	/* Operational keys (docs/DATA-MODEL.md): Idempotency-Key records, rate windows,
	 * import checkpoints. Their names carry hex digests, never client text. */
	if ((restlen == 5 + 32 && memcmp(rest, "idem:", 5) == 0 && ck_is_hex(rest + 5, 32)) ||
	    (restlen > 5 + 32 + 1 && memcmp(rest, "rate:", 5) == 0 && ck_is_hex(rest + 5, 32) &&
	     rest[5 + 32] == ':' && ck_is_digits(rest + 5 + 33, restlen - 5 - 33)) ||
	    (restlen > 7 && memcmp(rest, "import:", 7) == 0 && ck_is_hex(rest + 7, restlen - 7))) {
		o->keys = 1;
		return;
	}
	for (int i = 0; i < CK_NIX; i++) {
		size_t n = strlen(ck_ix_name[i]);

		if (restlen == 3 + n && memcmp(rest, "ix:", 3) == 0 &&
		    memcmp(rest + 3, ck_ix_name[i], n) == 0) {
			o->has_ix[i] = 1;
			o->keys = 1;
			return;
		}
	}
	if (restlen > 4 && memcmp(rest, "mid:", 4) == 0 && ck_parse_pid(rest + 4, restlen - 4, &pid)) {
		o->mid_pids = xrealloc(o->mid_pids, sizeof *o->mid_pids * (o->nmid_pids + 1));
		o->mid_pids[o->nmid_pids++] = pid;
		o->keys = 1;
		return;
	}
stray:
	ck_violation(ck, "stray key %s outside the documented key space", ctl_quote(k, len));
}

/* SCAN every pp:* key. */
static int ck_scan(struct ck *ck)
{
	char cursor[32] = "0";

	do {
		redisReply *r, *keys;

		ctl_argv_reset(&ck->a);
		ctl_argv_addstr(&ck->a, "SCAN");
		ctl_argv_addstr(&ck->a, cursor);
		ctl_argv_addstr(&ck->a, "MATCH");
		ctl_argv_addstr(&ck->a, "pp:*");
		ctl_argv_addstr(&ck->a, "COUNT");
		ctl_argv_addstr(&ck->a, CK_SCAN_COUNT);
		if ((r = ctl_command(ck->c, &ck->a)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len >= sizeof cursor) {
			ctl_errf("check: unexpected reply to SCAN");
			freeReplyObject(r);
			return -1;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		keys = r->element[1];
		for (size_t i = 0; keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++)
			ck_classify(ck, keys->element[i]->str, keys->element[i]->len);
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* ---- global keys --------------------------------------------------------------------- */

static int ck_globals(struct ck *ck)
{
	redisReply *r;

	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "SMEMBERS");
	ctl_argv_addstr(&ck->a, KEYS_ORGS);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL) {
		ctl_errf("check: redis: %s", ck->c->errstr);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "%s is not a set", KEYS_ORGS);
	} else {
		for (size_t i = 0; i < r->elements; i++) {
			redisReply *e = r->element[i];
			char org[65];

			if (e->len == 0 || e->len >= sizeof org) {
				ck_violation(ck, "%s holds an invalid org id %s", KEYS_ORGS,
				             ctl_quote(e->str, e->len));
				continue;
			}
			memcpy(org, e->str, e->len);
			org[e->len] = '\0';
			if (!ident_valid_org(org) || strlen(org) != e->len) {
				ck_violation(ck, "%s holds an invalid org id %s", KEYS_ORGS,
				             ctl_quote(e->str, e->len));
				continue;
			}
			if (ck->only == NULL || strcmp(ck->only, org) == 0)
				ck_org_get(ck, org, e->len)->listed = 1;
		}
	}
	freeReplyObject(r);

	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "HGETALL");
	ctl_argv_addstr(&ck->a, KEYS_CREDS);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL) {
		ctl_errf("check: redis: %s", ck->c->errstr);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "%s is not a hash", KEYS_CREDS);
		freeReplyObject(r);
		return 0;
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		json_object *o = ctl_json_parse(v->str, v->len), *org, *hash;
		const char *os;

		if (!ctl_json_member(o, "org", &org) || !json_object_is_type(org, json_type_string) ||
		    !ctl_json_member(o, "hash", &hash) || !json_object_is_type(hash, json_type_string) ||
		    json_object_object_length(o) != 2 ||
		    strncmp(json_object_get_string(hash), "$argon2id$", 10) != 0) {
			if (ck->only == NULL)
				ck_violation(ck, "credential %s: the value is not {\"org\",\"hash\"} with "
				             "an argon2id hash", ctl_quote(f->str, f->len));
			json_object_put(o);
			continue;
		}
		os = json_object_get_string(org);
		if (ck->only != NULL && strcmp(os, ck->only) != 0) {
			json_object_put(o);
			continue;
		}
		{
			int found = 0;

			for (size_t j = 0; j < ck->norgs; j++)
				if (strcmp(ck->orgs[j].id, os) == 0 && ck->orgs[j].listed)
					found = 1;
			if (!found)
				ck_violation(ck, "credential %s belongs to org %s, which is not in %s",
				             ctl_quote(f->str, f->len),
				             ctl_quote(os, (size_t)json_object_get_string_len(org)), KEYS_ORGS);
		}
		json_object_put(o);
	}
	freeReplyObject(r);
	return 0;
}

/* ---- one org ------------------------------------------------------------------------- */

static int ck_entry_cmp(const void *a, const void *b)
{
	const struct ck_entry *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->key, y->key, n);

	return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static struct ck_entry *ck_map_find(struct ck_map *m, const char *key, size_t len)
{
	struct ck_entry k = { .key = (char *)(uintptr_t)key, .len = len };

	return bsearch(&k, m->v, m->n, sizeof k, ck_entry_cmp);
}

static void ck_map_free(struct ck_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].key);
	free(m->v);
	memset(m, 0, sizeof *m);
}

/* Reads a whole hash (field -> customer id) with HSCAN into m, sorted. */
static int ck_map_load(struct ck *ck, const char *key, struct ck_map *m)
{
	char cursor[32] = "0";

	do {
		redisReply *r, *e;

		ctl_argv_reset(&ck->a);
		ctl_argv_addstr(&ck->a, "HSCAN");
		ctl_argv_addstr(&ck->a, key);
		ctl_argv_addstr(&ck->a, cursor);
		ctl_argv_addstr(&ck->a, "COUNT");
		ctl_argv_addstr(&ck->a, CK_SCAN_COUNT);
		r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens);
		if (r == NULL) {
			ctl_errf("check: redis: %s", ck->c->errstr);
			return -1;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->len >= sizeof cursor) {
			ck_violation(ck, "%s is not a hash", key);
			freeReplyObject(r);
			return 0;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		e = r->element[1];
		for (size_t i = 0; i + 1 < e->elements; i += 2) {
			struct ck_entry *x;

			if (m->n == m->cap) {
				m->cap = m->cap ? m->cap * 2 : 256;
				m->v = xrealloc(m->v, sizeof *m->v * m->cap);
			}
			x = &m->v[m->n++];
			x->key = xrealloc(NULL, e->element[i]->len + 1);
			memcpy(x->key, e->element[i]->str, e->element[i]->len + 1);
			x->len = e->element[i]->len;
			x->seen = 0;
			if (ctl_parse_cid(e->element[i + 1]->str, e->element[i + 1]->len, &x->cid) < 0) {
				ck_violation(ck, "%s: entry %s holds %s, not a customer id", key,
				             ctl_quote(x->key, x->len),
				             ctl_quote(e->element[i + 1]->str, e->element[i + 1]->len));
				x->cid = -1;
			}
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	/* HSCAN may return an entry twice: keep one. */
	qsort(m->v, m->n, sizeof *m->v, ck_entry_cmp);
	if (m->n > 1) {
		size_t w = 1;

		for (size_t i = 1; i < m->n; i++) {
			if (ck_entry_cmp(&m->v[i], &m->v[w - 1]) == 0)
				free(m->v[i].key);
			else
				m->v[w++] = m->v[i];
		}
		m->n = w;
	}
	return 0;
}

/* The org hash, the programs and the program sequence. */
static int ck_org_meta(struct ck *ck, struct ck_org *o)
{
	char key[CTL_ARG_SCRATCH];
	redisReply *r;
	int maxpid = 0;

	if (!o->listed)
		ck_violation(ck, "org %s has keys but is not in %s", o->id, KEYS_ORGS);

	snprintf(key, sizeof key, KEYS_ORG_FMT, o->id);
	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "HGETALL");
	ctl_argv_addstr(&ck->a, key);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL)
		goto ioerr;
	if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
		ck_violation(ck, "org %s: %s is missing or not a hash", o->id, key);
	} else {
		int cc = 0, nl = 0;

		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			redisReply *f = r->element[i], *v = r->element[i + 1];

			if (strcmp(f->str, "defaultCountryCode") == 0 && v->len >= 1 && v->len <= 4 &&
			    strspn(v->str, "0123456789") == v->len)
				cc = 1;
			else if (strcmp(f->str, "nationalNumberLength") == 0 &&
			         atoi(v->str) >= 4 && atoi(v->str) <= 15 &&
			         strspn(v->str, "0123456789") == v->len)
				nl = 1;
			else
				ck_violation(ck, "org %s: %s has a bad or unknown field %s", o->id, key,
				             ctl_quote(f->str, f->len));
		}
		if (!cc || !nl)
			ck_violation(ck, "org %s: %s lacks a valid defaultCountryCode or "
			             "nationalNumberLength", o->id, key);
	}
	freeReplyObject(r);

	snprintf(key, sizeof key, KEYS_PROGS_FMT, o->id);
	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "HGETALL");
	ctl_argv_addstr(&ck->a, key);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL)
		goto ioerr;
	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "org %s: %s is not a hash", o->id, key);
	} else {
		ck->progs = xrealloc(NULL, sizeof *ck->progs * (r->elements / 2 + 1));
		for (size_t i = 0; i + 1 < r->elements; i += 2) {
			redisReply *f = r->element[i], *v = r->element[i + 1];
			struct ck_prog *p = &ck->progs[ck->nprogs];
			char why[200];

			memset(p, 0, sizeof *p);
			if (rules_program_parse_strict(v->str, v->len, &p->def, why, sizeof why) < 0) {
				ck_violation(ck, "org %s: program %s: the definition %s", o->id,
				             ctl_quote(f->str, f->len), why);
				continue;
			}
			for (size_t j = 0; j < ck->nprogs; j++)
				if (ck->progs[j].def.pid == p->def.pid)
					ck_violation(ck, "org %s: programs %s and %s share pid %d", o->id,
					             ctl_quote(ck->progs[j].name, ck->progs[j].name_len),
					             ctl_quote(f->str, f->len), p->def.pid);
			p->name = xrealloc(NULL, f->len + 1);
			memcpy(p->name, f->str, f->len + 1);
			p->name_len = f->len;
			if (p->def.pid > maxpid)
				maxpid = p->def.pid;
			ck->nprogs++;
		}
	}
	freeReplyObject(r);

	snprintf(key, sizeof key, KEYS_PSEQ_FMT, o->id);
	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "GET");
	ctl_argv_addstr(&ck->a, key);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL)
		goto ioerr;
	if (maxpid > 0 && (r->type != REDIS_REPLY_STRING || atoll(r->str) < maxpid))
		ck_violation(ck, "org %s: %s is missing or below the highest pid %d", o->id, key,
		             maxpid);
	freeReplyObject(r);
	return 0;
ioerr:
	ctl_errf("check: redis: %s", ck->c->errstr);
	return -1;
}

static const struct ck_prog *ck_prog(struct ck *ck, int pid)
{
	for (size_t i = 0; i < ck->nprogs; i++)
		if (ck->progs[i].def.pid == pid)
			return &ck->progs[i];
	return NULL;
}

static struct ck_mid *ck_mid(struct ck *ck, int pid)
{
	for (size_t i = 0; i < ck->nmids; i++)
		if (ck->mids[i].pid == pid)
			return &ck->mids[i];
	return NULL;
}

/* A membership of the customer being checked, kept for the history pass. */
struct ck_ms {
	int pid;
	struct rules_membership *m; /* owned; NULL when the value is invalid (already reported) */
};

struct ck_cust {
	struct ck *ck;
	int64_t cid;
	int has_hist;            /* an LRANGE of its history follows the HGETALL */
	int bad;                 /* the customer key is not a hash */
	struct ck_ms *ms;
	size_t nms;
};

static void ck_ms_free(struct rules_membership *m)
{
	if (m != NULL) {
		rules_membership_free(m);
		free(m);
	}
}

static void ck_cust_free(struct ck_cust *cc)
{
	for (size_t i = 0; i < cc->nms; i++)
		ck_ms_free(cc->ms[i].m);
	free(cc->ms);
	free(cc);
}

/*
 * Checks one membership field m:PID of customer cid. Returns the decoded value when it is
 * valid (caller frees with ck_ms_free), else NULL.
 */
static struct rules_membership *ck_membership(struct ck *ck, int64_t cid, int pid,
                                              const char *val, size_t len)
{
	const struct ck_prog *p = ck_prog(ck, pid);
	struct ck_mid *mi = ck_mid(ck, pid);
	const char *org = ck->cur->id;
	struct rules_membership *m;
	const struct rules_values *cur, *other;
	struct ck_entry *e;
	char why[300];
	int rc, due;

	ck->memberships++;
	if (p == NULL) {
		ck_violation(ck, "org %s: customer %" PRId64 ": membership m:%d names no program",
		             org, cid, pid);
		return NULL;
	}
	m = xrealloc(NULL, sizeof *m);
	if ((rc = rules_membership_parse_strict(val, len, m, why, sizeof why)) == -1) {
		ck_violation(ck, "org %s: customer %" PRId64 ": membership m:%d is not a valid "
		             "membership value (neither the compact format nor JSON)", org, cid, pid);
		free(m);
		return NULL;
	}
	/* ctl_mship_validate also enforces: a pending relink only on a SUPPLEMENTARY program. */
	if (rc < 0 || ctl_mship_validate(m, &p->def, why, sizeof why) < 0) {
		ck_violation(ck, "org %s: customer %" PRId64 ": membership m:%d (program %s) %s",
		             org, cid, pid, ctl_quote(p->name, p->name_len), why);
		ck_ms_free(m);
		return NULL;
	}
	/* The current id (a due relink's, see the top of this file) must be indexed to cid. */
	due = m->has_relink && m->rl.start <= ck->now_ms;
	cur = due ? &m->rl : &m->v;
	other = due ? &m->v : m->has_relink ? &m->rl : NULL;
	e = mi ? ck_map_find(&mi->map, cur->mid, cur->mid_len) : NULL;
	if (e == NULL || e->cid != cid)
		ck_violation(ck, "org %s: customer %" PRId64 ": membership id %s of program %s is "
		             "not indexed to it in " KEYS_MID_FMT, org, cid,
		             ctl_quote(cur->mid, cur->mid_len),
		             ctl_quote(p->name, p->name_len), org, pid);
	else
		e->seen = 1;
	if (other != NULL && mi != NULL &&
	    (e = ck_map_find(&mi->map, other->mid, other->mid_len)) != NULL && e->cid == cid)
		e->seen = 1;
	return m;
}

/* Reply to HGETALL pp:{ORG:CID}:c. */
static int ck_on_customer(redisReply *r, void *arg)
{
	struct ck_cust *cc = arg;
	struct ck *ck = cc->ck;
	const char *org = ck->cur->id;
	int64_t cid = cc->cid;
	int has_id = 0, has_v = 0, pid;

	ck->customers++;
	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "org %s: customer %" PRId64 ": " KEYS_CUST_FMT " is not a hash",
		             org, cid, org, (long long)cid);
		cc->bad = 1;
		if (!cc->has_hist)
			ck_cust_free(cc);
		return 0;
	}
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		redisReply *f = r->element[i], *v = r->element[i + 1];
		int kind = -1;
		int64_t x;

		for (int k = 0; k < CK_NIX; k++)
			if (strcmp(f->str, ck_ix_name[k]) == 0)
				kind = k;
		if (strcmp(f->str, "id") == 0) {
			has_id = 1;
			if (ctl_parse_cid(v->str, v->len, &x) < 0 || x != cid)
				ck_violation(ck, "org %s: customer %" PRId64 ": the id field holds %s",
				             org, cid, ctl_quote(v->str, v->len));
		} else if (strcmp(f->str, "v") == 0) {
			has_v = 1;
			if (v->len == 0 || strspn(v->str, "0123456789") != v->len)
				ck_violation(ck, "org %s: customer %" PRId64 ": version v is %s, not an "
				             "integer >= 0", org, cid, ctl_quote(v->str, v->len));
		} else if (strcmp(f->str, "w") == 0) {
			/* the lock token of the commit that last wrote it (docs/DATA-MODEL.md) */
			if (v->len != 32 || strspn(v->str, "0123456789abcdef") != v->len)
				ck_violation(ck, "org %s: customer %" PRId64 ": writer token w is %s, not "
				             "32 hex digits", org, cid, ctl_quote(v->str, v->len));
		} else if (kind >= 0) {
			struct ck_entry *e = ck_map_find(&ck->ix[kind], v->str, v->len);

			if (kind == 0 && (v->len < 6 || v->len > IDENT_MOBILE_MAX + 16 ||
			                  strspn(v->str, "0123456789") != v->len))
				ck_violation(ck, "org %s: customer %" PRId64 ": mobile %s is not normalised",
				             org, cid, ctl_quote(v->str, v->len));
			if (e == NULL || e->cid != cid)
				ck_violation(ck, "org %s: customer %" PRId64 ": %s %s is not indexed to it "
				             "(index says %s)", org, cid, f->str, ctl_quote(v->str, v->len),
				             e == NULL ? "nothing" : "another customer");
			else
				e->seen = 1;
		} else if (f->len > 2 && memcmp(f->str, "m:", 2) == 0 &&
		           ck_parse_pid(f->str + 2, f->len - 2, &pid)) {
			struct rules_membership *m = ck_membership(ck, cid, pid, v->str, v->len);

			if (cc->has_hist && ck_prog(ck, pid) != NULL) {
				/* Kept for the history pass (invalid ones as NULL: not compared). */
				cc->ms = xrealloc(cc->ms, sizeof *cc->ms * (cc->nms + 1));
				cc->ms[cc->nms].pid = pid;
				cc->ms[cc->nms++].m = m;
			} else {
				ck_ms_free(m);
			}
		} else {
			ck_violation(ck, "org %s: customer %" PRId64 ": unknown field %s", org, cid,
			             ctl_quote(f->str, f->len));
		}
	}
	if (!has_id)
		ck_violation(ck, "org %s: customer %" PRId64 ": the hash has no id field", org, cid);
	if (!has_v)
		ck_violation(ck, "org %s: customer %" PRId64 ": the hash has no version v", org, cid);
	/*
	 * Without a history key, memberships need no activity (data loaded, or a history
	 * never written): nothing more to check. Otherwise ck_on_history finishes cc.
	 */
	if (!cc->has_hist)
		ck_cust_free(cc);
	return 0;
}

/* ---- history ------------------------------------------------------------------------- */

static const struct ck_prog *ck_prog_named(struct ck *ck, const char *name, size_t len,
                                            size_t *idx)
{
	for (size_t i = 0; i < ck->nprogs; i++)
		if (ck->progs[i].name_len == len && memcmp(ck->progs[i].name, name, len) == 0) {
			*idx = i;
			return &ck->progs[i];
		}
	return NULL;
}

static int ck_act_parse(json_object *t)
{
	if (!json_object_is_type(t, json_type_string))
		return -1;
	for (int i = 0; i < CK_NACT; i++)
		if (strcmp(json_object_get_string(t), ck_act_name[i]) == 0)
			return i;
	return -1;
}

/* The (mid, tier) an activity's after (or a membership, or a relink) names. */
struct ck_mt {
	const char *mid, *tier;  /* borrowed; tier NULL for none */
	size_t mid_len, tier_len;
};

/* From an activity's "after": 0, or -1 when it lacks a partnerMembershipId string. */
static int ck_mt_after(json_object *ev, struct ck_mt *mt)
{
	json_object *after, *mid, *tier;

	if (!ctl_json_member(ev, "after", &after) ||
	    !ctl_json_member(after, "partnerMembershipId", &mid) ||
	    !json_object_is_type(mid, json_type_string))
		return -1;
	ctl_json_member(after, "partnerTierName", &tier);
	if (tier != NULL && !json_object_is_type(tier, json_type_string))
		return -1;
	mt->mid = json_object_get_string(mid);
	mt->mid_len = (size_t)json_object_get_string_len(mid);
	mt->tier = tier ? json_object_get_string(tier) : NULL;
	mt->tier_len = tier ? (size_t)json_object_get_string_len(tier) : 0;
	return 0;
}

/* From a decoded membership or pending relink. */
static void ck_mt_stored(const struct rules_values *v, struct ck_mt *mt)
{
	mt->mid = v->mid;
	mt->mid_len = v->mid_len;
	mt->tier = v->tier;
	mt->tier_len = v->tier_len;
}

static int ck_mt_eq(const struct ck_mt *a, const struct ck_mt *b)
{
	if (a->mid_len != b->mid_len || memcmp(a->mid, b->mid, a->mid_len) != 0)
		return 0;
	if ((a->tier == NULL) != (b->tier == NULL))
		return 0;
	return a->tier == NULL ||
	       (a->tier_len == b->tier_len && memcmp(a->tier, b->tier, a->tier_len) == 0);
}

/* "mid \"X\" tier \"Y\"" for a message (uses two ctl_quote buffers). */
static const char *ck_mt_str(const struct ck_mt *mt, char *buf, size_t sz)
{
	snprintf(buf, sz, "mid %s tier %s", ctl_quote(mt->mid, mt->mid_len),
	         mt->tier ? ctl_quote(mt->tier, mt->tier_len) : "null");
	return buf;
}

/* One parsed history entry. */
struct ck_act_ev {
	json_object *o;          /* owned; NULL when the entry is invalid (reported) */
	int type;                /* enum ck_act */
	size_t prog;             /* index into ck->progs */
};

/*
 * The newest activity of program j (entry i of evs, newest first) against the membership
 * the customer holds in it (m: NULL for none). trimmed: the list may have lost older
 * entries.
 */
static void ck_hist_match(struct ck *ck, int64_t cid, size_t j, const struct ck_act_ev *evs,
                          size_t nev, size_t i, const struct rules_membership *m,
                          int trimmed)
{
	const struct ck_prog *p = &ck->progs[j];
	const char *org = ck->cur->id, *tn = ck_act_name[evs[i].type];
	struct ck_mt act, cur, rlv;
	const struct rules_values *rl = NULL;
	char b1[800], b2[800], pn[400];

	/* Copied: ck_mt_str uses ctl_quote's rotating buffers too. */
	snprintf(pn, sizeof pn, "%s", ctl_quote(p->name, p->name_len));

	if (m != NULL) {
		ck_mt_stored(&m->v, &cur);
		if (m->has_relink) {
			rl = &m->rl;
			ck_mt_stored(rl, &rlv);
		}
	}
	switch (evs[i].type) {
	case CK_DELINK:
		if (m != NULL)
			ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
			             "(history entry %zu) is DELINK, but the customer holds a membership "
			             "(%s)", org, cid, pn, i,
			             ck_mt_str(&cur, b1, sizeof b1));
		return;
	case CK_RELINK_CANCELLED:
		if (m == NULL)
			ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
			             "(history entry %zu) is RELINK_CANCELLED, but the customer holds no "
			             "membership", org, cid, pn, i);
		else if (rl != NULL)
			ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
			             "(history entry %zu) is RELINK_CANCELLED, but a relink is pending "
			             "(%s)", org, cid, pn, i,
			             ck_mt_str(&rlv, b1, sizeof b1));
		return;
	default:
		break;
	}
	if (ck_mt_after(evs[i].o, &act) < 0) {
		ck_violation(ck, "org %s: customer %" PRId64 ": program %s: history entry %zu (%s) "
		             "has no after.partnerMembershipId", org, cid,
		             pn, i, tn);
		return;
	}
	if (m == NULL) {
		ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
		             "(history entry %zu) is %s to %s, but the customer holds no membership",
		             org, cid, pn, i, tn,
		             ck_mt_str(&act, b1, sizeof b1));
		return;
	}
	if (evs[i].type == CK_RELINK_SCHEDULED) {
		/* Still pending, or made current (lazily, by a later write: DATA-MODEL.md). */
		if ((rl != NULL && ck_mt_eq(&rlv, &act)) || ck_mt_eq(&cur, &act))
			return;
		ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
		             "(history entry %zu) is RELINK_SCHEDULED to %s, but the membership "
		             "holds %s with %s pending", org, cid, pn,
		             i, ck_mt_str(&act, b1, sizeof b1), ck_mt_str(&cur, b2, sizeof b2),
		             rl != NULL ? "a different relink" : "no relink");
		return;
	}
	/* LINK or UPDATE. */
	if (ck_mt_eq(&cur, &act))
		return;
	if (evs[i].type == CK_UPDATE) {
		/*
		 * A relink scheduled before the update(s) may have taken effect since: a write of
		 * the customer makes a due relink current without an activity of its own. Then
		 * the first older activity of the program that is not an UPDATE is that
		 * RELINK_SCHEDULED, naming what is current now, and no relink is pending.
		 */
		size_t k;

		for (k = i + 1; k < nev; k++)
			if (evs[k].o != NULL && evs[k].prog == j && evs[k].type != CK_UPDATE)
				break;
		if (k == nev && trimmed)
			return;         /* the schedule may have been trimmed away */
		if (k < nev && evs[k].type == CK_RELINK_SCHEDULED && rl == NULL &&
		    ck_mt_after(evs[k].o, &act) == 0 && ck_mt_eq(&cur, &act))
			return;
		ck_mt_after(evs[i].o, &act);
	}
	ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity (history "
	             "entry %zu) is %s to %s, but the membership holds %s", org, cid,
	             pn, i, tn, ck_mt_str(&act, b1, sizeof b1),
	             ck_mt_str(&cur, b2, sizeof b2));
}

/* Reply to LRANGE pp:{ORG:CID}:h 0 -1, after the customer's HGETALL. */
static int ck_on_history(redisReply *r, void *arg)
{
	struct ck_cust *cc = arg;
	struct ck *ck = cc->ck;
	const char *org = ck->cur->id;
	int64_t cid = cc->cid;
	struct ck_act_ev *evs;
	size_t n;
	int trimmed;

	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "org %s: customer %" PRId64 ": history " KEYS_HIST_FMT " is not a "
		             "list", org, cid, org, (long long)cid);
		ck_cust_free(cc);
		return 0;
	}
	n = r->elements;
	trimmed = (long)n >= ck->history_max;
	evs = xrealloc(NULL, sizeof *evs * n);
	for (size_t i = 0; i < ck->nprogs; i++)
		ck->newest[i] = -1;
	for (size_t i = 0; i < n; i++) {
		redisReply *e = r->element[i];
		json_object *o = NULL, *t, *c, *pn;
		const struct ck_prog *p = NULL;
		const char *why = NULL;

		evs[i].o = NULL;
		ck->activities++;
		if (e->type != REDIS_REPLY_STRING || (o = ctl_json_parse_tok(ck->tok, e->str, e->len)) == NULL ||
		    !json_object_is_type(o, json_type_object))
			why = "is not an activity JSON object";
		else if ((evs[i].type = ck_act_parse(ctl_json_member(o, "activityType", &t) ? t
		                                     : NULL)) < 0)
			why = "has no valid activityType (LINK, UPDATE, DELINK, RELINK_SCHEDULED, "
			      "RELINK_CANCELLED)";
		else if (!ctl_json_member(o, "customerId", &c) || !ctl_json_is_int(c) ||
		         json_object_get_int64(c) != cid)
			why = "has a customerId that is not the customer's";
		else if (!ctl_json_member(o, "partnerProgramName", &pn) ||
		         !json_object_is_type(pn, json_type_string) ||
		         (p = ck_prog_named(ck, json_object_get_string(pn),
		                            (size_t)json_object_get_string_len(pn),
		                            &evs[i].prog)) == NULL)
			why = "names no program of the org";
		if (why != NULL) {
			ck_violation(ck, "org %s: customer %" PRId64 ": program %s: history entry %zu %s",
			             org, cid, o != NULL && ctl_json_member(o, "partnerProgramName", &pn) &&
			             json_object_is_type(pn, json_type_string) ?
			             ctl_quote(json_object_get_string(pn),
			                       (size_t)json_object_get_string_len(pn)) : "(none)",
			             i, why);
			json_object_put(o);
			continue;
		}
		evs[i].o = o;
		if (ck->newest[evs[i].prog] < 0)
			ck->newest[evs[i].prog] = (int)i;
	}
	if (!cc->bad) {
		for (size_t j = 0; j < ck->nprogs; j++) {
			const struct ck_prog *p = &ck->progs[j];
			struct ck_ms *ms = NULL;

			for (size_t k = 0; k < cc->nms; k++)
				if (cc->ms[k].pid == p->def.pid)
					ms = &cc->ms[k];
			if (ms != NULL && ms->m == NULL)
				continue;       /* invalid membership: already reported */
			if (ck->newest[j] < 0) {
				/*
				 * A membership with no activity for its program is allowed only when the
				 * history may have lost it: the list is at its trim limit (--history-max)
				 * or absent (data loaded; see ck_on_customer).
				 */
				if (ms != NULL && !trimmed)
					ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the "
					             "customer holds a membership but its history (%zu "
					             "entries, not trimmed) has no activity for the program",
					             org, cid, ctl_quote(p->name, p->name_len), n);
				continue;
			}
			ck_hist_match(ck, cid, j, evs, n, (size_t)ck->newest[j], ms ? ms->m : NULL,
			              trimmed);
		}
	}
	for (size_t i = 0; i < n; i++)
		json_object_put(evs[i].o);
	free(evs);
	ck_cust_free(cc);
	return 0;
}

/* ---- change feed --------------------------------------------------------------------- */

/* XREVRANGE pp:{ORG}:feed + - COUNT CK_FEED_COUNT: the newest entries. */
static int ck_feed(struct ck *ck, struct ck_org *o)
{
	char key[CTL_ARG_SCRATCH];
	redisReply *r;

	snprintf(key, sizeof key, KEYS_FEED_FMT, o->id);
	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "XREVRANGE");
	ctl_argv_addstr(&ck->a, key);
	ctl_argv_addstr(&ck->a, "+");
	ctl_argv_addstr(&ck->a, "-");
	ctl_argv_addstr(&ck->a, "COUNT");
	ctl_argv_addstr(&ck->a, CK_FEED_COUNT);
	if ((r = redisCommandArgv(ck->c, ck->a.argc, ck->a.argv, ck->a.lens)) == NULL) {
		ctl_errf("check: redis: %s", ck->c->errstr);
		return -1;
	}
	if (r->type != REDIS_REPLY_ARRAY) {
		ck_violation(ck, "org %s: change feed %s is not a stream", o->id, key);
		freeReplyObject(r);
		return 0;
	}
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *e = r->element[i], *f;
		const char *id = "?", *why = NULL;
		size_t idlen = 1;
		redisReply *v = NULL, *type = NULL, *cidf = NULL, *event = NULL;
		json_object *ev = NULL, *t, *c, *pn;
		int64_t cid = 0;
		int extra = 0;

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
		    e->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[1]->type != REDIS_REPLY_ARRAY) {
			ck_violation(ck, "org %s: change feed %s: entry %zu is malformed", o->id, key, i);
			continue;
		}
		id = e->element[0]->str;
		idlen = e->element[0]->len;
		f = e->element[1];
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			redisReply *fn = f->element[k], **slot = NULL;

			if (strcmp(fn->str, "v") == 0)
				slot = &v;
			else if (strcmp(fn->str, "type") == 0)
				slot = &type;
			else if (strcmp(fn->str, "customerId") == 0)
				slot = &cidf;
			else if (strcmp(fn->str, "event") == 0)
				slot = &event;
			if (slot == NULL || *slot != NULL)
				extra = 1;
			else
				*slot = f->element[k + 1];
		}
		if (event != NULL)
			ev = ctl_json_parse_tok(ck->tok, event->str, event->len);   /* names the program */
		if (extra || v == NULL || type == NULL || cidf == NULL || event == NULL ||
		    f->elements % 2 != 0)
			why = "does not have exactly the fields v, type, customerId, event";
		else if (v->len != 1 || v->str[0] != '1')
			why = "has a version v that is not 1";
		else if (ctl_parse_cid(cidf->str, cidf->len, &cid) < 0)
			why = "has a customerId that is not a customer id";
		else if (ev == NULL || !json_object_is_type(ev, json_type_object))
			why = "has an event that is not a JSON object";
		else if (!ctl_json_member(ev, "activityType", &t) || ck_act_parse(t) < 0 ||
		         strlen(json_object_get_string(t)) != type->len ||
		         memcmp(json_object_get_string(t), type->str, type->len) != 0)
			why = "has a type that is not the event's (valid) activityType";
		else if (!ctl_json_member(ev, "customerId", &c) || !ctl_json_is_int(c) ||
		         json_object_get_int64(c) != cid)
			why = "has an event whose customerId is not the entry's";
		if (why != NULL)
			ck_violation(ck, "org %s: customer %s: program %s: change feed %s entry %s %s",
			             o->id, cidf == NULL ? "(none)" :
			             ctl_parse_cid(cidf->str, cidf->len, &cid) == 0 ? cidf->str :
			             ctl_quote(cidf->str, cidf->len),
			             ev != NULL && ctl_json_member(ev, "partnerProgramName", &pn) &&
			             json_object_is_type(pn, json_type_string) ?
			             ctl_quote(json_object_get_string(pn),
			                       (size_t)json_object_get_string_len(pn)) : "(unknown)",
			             key, ctl_quote(id, idlen), why);
		json_object_put(ev);
	}
	freeReplyObject(r);
	return 0;
}

static int ck_has_cust(const struct ck_org *o, int64_t cid)
{
	return bsearch(&cid, o->custs, o->ncusts, sizeof cid, ck_i64_cmp) != NULL;
}

static void ck_org_free(struct ck *ck)
{
	for (size_t i = 0; i < ck->nprogs; i++) {
		free(ck->progs[i].name);
		rules_program_free(&ck->progs[i].def);
	}
	free(ck->progs);
	ck->progs = NULL;
	ck->nprogs = 0;
	for (int k = 0; k < CK_NIX; k++)
		ck_map_free(&ck->ix[k]);
	for (size_t i = 0; i < ck->nmids; i++)
		ck_map_free(&ck->mids[i].map);
	free(ck->mids);
	ck->mids = NULL;
	ck->nmids = 0;
	free(ck->newest);
	ck->newest = NULL;
}

/* Sorts v[0..*n) and drops duplicates (SCAN may name a key twice). */
static void ck_sort_uniq(int64_t *v, size_t *n)
{
	size_t w = 1;

	if (*n <= 1)
		return;
	qsort(v, *n, sizeof *v, ck_i64_cmp);
	for (size_t i = 1; i < *n; i++)
		if (v[i] != v[w - 1])
			v[w++] = v[i];
	*n = w;
}

/* Sets ck->now_ms from Redis's clock (TIME), the clock partnerd's claims go by. */
static int ck_redis_now(struct ck *ck)
{
	redisReply *r;
	int rc = -1;

	ctl_argv_reset(&ck->a);
	ctl_argv_addstr(&ck->a, "TIME");
	if ((r = ctl_command(ck->c, &ck->a)) == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
		ck->now_ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
		             strtoll(r->element[1]->str, NULL, 10) / 1000;
		rc = 0;
	} else {
		ctl_errf("check: TIME: unexpected reply");
	}
	freeReplyObject(r);
	return rc;
}

static int ck_org(struct ck *ck, struct ck_org *o)
{
	char key[CTL_ARG_SCRATCH];
	struct ctl_pipe *p;
	int rc = -1;

	ck->cur = o;
	if (ck_org_meta(ck, o) < 0)
		goto out;
	for (int k = 0; k < CK_NIX; k++) {
		snprintf(key, sizeof key, KEYS_IX_FMT, o->id, ck_ix_name[k]);
		if (o->has_ix[k] && ck_map_load(ck, key, &ck->ix[k]) < 0)
			goto out;
	}
	ck->mids = xrealloc(NULL, sizeof *ck->mids * (o->nmid_pids + 1));
	for (size_t i = 0; i < o->nmid_pids; i++) {
		struct ck_mid *mi = &ck->mids[ck->nmids];

		if (ck_mid(ck, o->mid_pids[i]) != NULL)
			continue;   /* SCAN may name a key twice */
		memset(mi, 0, sizeof *mi);
		mi->pid = o->mid_pids[i];
		ck->nmids++;
		snprintf(key, sizeof key, KEYS_MID_FMT, o->id, mi->pid);
		if (ck_prog(ck, mi->pid) == NULL)
			ck_violation(ck, "org %s: %s names no program", o->id, key);
		if (ck_map_load(ck, key, &mi->map) < 0)
			goto out;
	}

	/*
	 * Customers, pipelined: HGETALL of the hash, then (when the customer has a history
	 * key) LRANGE of its history, checked against the memberships the HGETALL read.
	 */
	ck_sort_uniq(o->custs, &o->ncusts);
	ck_sort_uniq(o->hists, &o->nhists);
	if (ck_redis_now(ck) < 0)
		goto out;
	ck->newest = xrealloc(NULL, sizeof *ck->newest * (ck->nprogs + 1));
	p = xrealloc(NULL, sizeof *p);
	ctl_pipe_init(p, ck->c);
	for (size_t i = 0, h = 0; i < o->ncusts; i++) {
		struct ck_cust *cc = xrealloc(NULL, sizeof *cc);
		int has_hist;

		while (h < o->nhists && o->hists[h] < o->custs[i])
			h++;
		has_hist = h < o->nhists && o->hists[h] == o->custs[i];
		memset(cc, 0, sizeof *cc);
		cc->ck = ck;
		cc->cid = o->custs[i];
		cc->has_hist = has_hist;
		ctl_argv_reset(&ck->a);
		ctl_argv_addstr(&ck->a, "HGETALL");
		ctl_argv_addf(&ck->a, KEYS_CUST_FMT, o->id, (long long)o->custs[i]);
		if (ctl_pipe_cmd(p, &ck->a, ck_on_customer, cc) < 0) {
			free(cc);
			break;
		}
		if (!has_hist)
			continue;
		ctl_argv_reset(&ck->a);
		ctl_argv_addstr(&ck->a, "LRANGE");
		ctl_argv_addf(&ck->a, KEYS_HIST_FMT, o->id, (long long)o->custs[i]);
		ctl_argv_addstr(&ck->a, "0");
		ctl_argv_addstr(&ck->a, "-1");
		if (ctl_pipe_cmd(p, &ck->a, ck_on_history, cc) < 0) {
			/* The pipe is broken: the HGETALL reply will never come either. */
			break;
		}
	}
	rc = ctl_pipe_flush(p);
	free(p);
	if (rc < 0)
		goto out;
	rc = -1;
	for (size_t i = 0; i < o->nhists; i++)
		if (!ck_has_cust(o, o->hists[i]))
			ck_violation(ck, "org %s: customer %" PRId64 ": history " KEYS_HIST_FMT " of a "
			             "customer that does not exist", o->id, o->hists[i], o->id,
			             (long long)o->hists[i]);
	if (o->has_feed && ck_feed(ck, o) < 0)
		goto out;

	/* Entries no customer confirmed. */
	for (int k = 0; k < CK_NIX; k++)
		for (size_t i = 0; i < ck->ix[k].n; i++) {
			struct ck_entry *e = &ck->ix[k].v[i];

			if (!e->seen && e->cid > 0)
				ck_violation(ck, "org %s: " KEYS_IX_FMT " maps %s to customer %" PRId64
				             ", which %s", o->id, o->id, ck_ix_name[k],
				             ctl_quote(e->key, e->len), e->cid,
				             ck_has_cust(o, e->cid) ? "does not hold it" : "does not exist");
		}
	for (size_t j = 0; j < ck->nmids; j++)
		for (size_t i = 0; i < ck->mids[j].map.n; i++) {
			struct ck_entry *e = &ck->mids[j].map.v[i];

			if (!e->seen && e->cid > 0)
				ck_violation(ck, "org %s: " KEYS_MID_FMT " maps %s to customer %" PRId64
				             ", which %s", o->id, o->id, ck->mids[j].pid,
				             ctl_quote(e->key, e->len), e->cid,
				             ck_has_cust(o, e->cid) ? "has no such membership"
				                                    : "does not exist");
		}
	for (size_t i = 0; i < o->nlocks; i++)
		if (!ck_has_cust(o, o->locks[i]))
			ck_violation(ck, "org %s: lock " KEYS_LOCK_FMT " of a customer that does not "
			             "exist", o->id, o->id, (long long)o->locks[i]);
	rc = 0;
out:
	ck_org_free(ck);
	return rc;
}

int ctl_check_main(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "org", required_argument, NULL, 'o' },
		{ "history-max", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ck ck = { 0 };
	int c, rc = CTL_EXIT_USAGE;
	const char *hmax = getenv("PARTNERD_HISTORY_MAX");
	char *end;

	ck.history_max = CK_HISTORY_MAX_DEFAULT;
	if (hmax != NULL && *hmax != '\0') {
		ck.history_max = strtol(hmax, &end, 10);
		if (*end != '\0' || ck.history_max < 1 || ck.history_max > 100000) {
			ctl_errf("check: PARTNERD_HISTORY_MAX must be an integer 1..100000");
			return CTL_EXIT_USAGE;
		}
	}

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'o':
			ck.only = optarg;
			break;
		case 'H':
			ck.history_max = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || ck.history_max < 1 ||
			    ck.history_max > 100000) {
				ctl_errf("check: --history-max must be an integer 1..100000");
				return CTL_EXIT_USAGE;
			}
			break;
		case 'h':
			ctl_verb_usage(stdout, "check");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "check");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		ctl_verb_usage(stderr, "check");
		return CTL_EXIT_USAGE;
	}
	if (ck.only != NULL && !ident_valid_org(ck.only)) {
		ctl_errf("check: %s is not a valid org id", ctl_quote(ck.only, strlen(ck.only)));
		return CTL_EXIT_USAGE;
	}
	if ((ck.tok = json_tokener_new_ex(32)) == NULL) {
		ctl_errf("check: out of memory");
		return CTL_EXIT_USAGE;
	}
	if ((ck.c = ctl_connect(ctl)) == NULL) {
		json_tokener_free(ck.tok);
		return CTL_EXIT_USAGE;
	}
	ctl_argv_init(&ck.a);
	if (ck.only != NULL) {
		redisReply *r;

		ctl_argv_addstr(&ck.a, "SISMEMBER");
		ctl_argv_addstr(&ck.a, KEYS_ORGS);
		ctl_argv_addstr(&ck.a, ck.only);
		if ((r = ctl_command(ck.c, &ck.a)) == NULL)
			goto out;
		c = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
		freeReplyObject(r);
		if (!c) {
			/* Keys of an unlisted org are still checked (and reported). */
			ctl_errf("check: note: org %s is not in %s", ck.only, KEYS_ORGS);
		}
	}
	if (ck_scan(&ck) < 0 || ck_globals(&ck) < 0)
		goto out;
	if (ck.only != NULL && ck.norgs == 0) {
		ctl_errf("check: no org %s: nothing to check", ck.only);
		goto out;
	}
	for (size_t i = 0; i < ck.norgs; i++)
		if (ck_org(&ck, &ck.orgs[i]) < 0)
			goto out;
	printf("checked %lu customers, %lu memberships, %lu history entries: %lu violations\n",
	       ck.customers, ck.memberships, ck.activities, ck.violations);
	rc = ck.violations == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
out:
	for (size_t i = 0; i < ck.norgs; i++) {
		free(ck.orgs[i].mid_pids);
		free(ck.orgs[i].custs);
		free(ck.orgs[i].locks);
		free(ck.orgs[i].hists);
	}
	free(ck.orgs);
	ctl_argv_free(&ck.a);
	redisFree(ck.c);
	json_tokener_free(ck.tok);
	return rc;
}
