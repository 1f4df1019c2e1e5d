/*
 * ctl_check: `partnerctl check [--org ORG]`: verifies the invariants of docs/DATA-MODEL.md
 * (SPEC §7) on the stored data. Every key under pp: is classified by its name (SCAN with
 * MATCH pp:*; on a Redis Cluster of every master in turn); keys that fit no pattern are
 * violations. Then, per org, the indexes and the membership-id hashes are read into
 * sorted tables, every customer hash is checked against them, and entries no customer
 * confirmed are reported. One "VIOLATION: ..." line per
 * fault on stdout, then "checked N customers, M memberships: K violations".
 *
 * Placement (key layout 2, docs/DATA-MODEL.md "Partitions"): a customer's c, lock or h key
 * whose TAG is not its cid's partition, an idem or rate key whose TAG is not its digest's
 * (store_key_placed), an index or membership-id entry in another bucket than its value's
 * (layout_bucket_of), a change-feed entry in another partition than its customerId's
 * (layout_part_of_cid) is a violation naming where it belongs. All of it is computed from
 * the names and values the checks read anyway: no extra round trip. A misplaced key or
 * entry is left out of the other checks, as partnerd never finds it where it is.
 *
 * Pending relinks: an entry of pp:{TAG}:mid:ORG:PID is accepted when it names a customer whose
 * membership or pending relink in PID has that membership id (DATA-MODEL.md does not say
 * whether a queued relink reserves its id; both readings pass). A relink whose start has
 * passed (Redis's clock when the org's customers are read) is the current membership, as
 * partnerd reads it: its id must be indexed to the customer, and the old id may still be
 * (until partnerd next reads or writes the customer) or may have been taken over by
 * another customer (partnerd's claims check whether the holder still holds an id).
 * On a Redis Cluster an entry naming an existing customer that holds no such id is a
 * "STALE CLAIM:" line, counted apart and not a violation: the claim of a commit that did not
 * complete (docs/CONSISTENCY.md "On a Redis Cluster"), taken over by the id's next claimant.
 *
 * History (docs/CHANGE-FEED.md): every pp:{TAG}:h:ORG:CID must belong to an existing customer
 * and be a LIST of activities of that customer naming a program of the org (compact
 * records, activity.h, or the JSON objects an older partnerd wrote: both are read). It
 * is read in the same pipelined pass as the customer hash (HGETALL then LRANGE 0 -1, for
 * customers that have a history key), and the newest activity of each program must agree
 * with the membership the customer holds (ck_hist_match). A list of --history-max entries
 * or more (default $PARTNERD_HISTORY_MAX, then 100, as partnerd) may have been trimmed.
 * Each partition of the change feed pp:{TAG}:feed:ORG, when present, must be a STREAM;
 * its newest CK_FEED_COUNT entries are checked (format 1, 2 or 3: ck_feed_why; also for
 * being in their customer's partition), and the entries of format 2 or 3 of one customer
 * must be in
 * (customerVersion, seq) order.
 *
 * Memory: the index tables of one org are held at once (about 100 bytes an entry).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "activity.h"
#include "buf.h"
#include "ctl.h"
#include "ident.h"
#include "layout.h"
#include "rules.h"
#include "store_keys.h"
#include "xmalloc.h"

#define CK_NIX STORE_NIDENTS
#define ck_ix_name store_ident_name
#define CK_FEED_COUNT 1000        /* newest entries checked per change-feed partition */
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
	unsigned part;    /* the bucket it was read from (layout_bucket_of of key) */
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
	int has_ix[CK_NIX];      /* a bucket pp:{TAG}:ix:ORG:KIND exists */
	int *mid_pids;           /* PIDs of pp:{TAG}:mid:ORG:PID buckets */
	size_t nmid_pids;
	int64_t *custs;          /* CIDs of pp:{TAG}:c:ORG:CID keys (placed) */
	size_t ncusts, ccap;
	int64_t *locks;          /* CIDs of pp:{TAG}:lock:ORG:CID keys (placed) */
	size_t nlocks, lcap;
	int64_t *hists;          /* CIDs of pp:{TAG}:h:ORG:CID keys (placed) */
	size_t nhists, hcap;
	int has_feed;            /* a partition pp:{TAG}:feed:ORG exists */
};

/* A program of the org being checked: its field name and its stored definition. */
struct ck_prog {
	char *name;              /* owned, NUL-terminated */
	size_t name_len;
	struct rules_program def;
};

struct ck {
	struct store_admin *st;
	const char *only;        /* --org, or NULL */
	struct ck_org *orgs;
	size_t norgs;
	unsigned long violations, customers, memberships, activities;
	unsigned long stale_claims; /* on a cluster: claims of commits that did not complete */
	long history_max;        /* a history this long may have been trimmed */
	json_tokener *tok;       /* reused for every stored JSON value */
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

	if (ident_parse_cid(s, len, &v) < 0 || v > 0x7fffffff)
		return 0;
	*pid = (int)v;
	return 1;
}

/*
 * A key of a customer (c, lock, h) whose TAG is not its CID's partition, or a rate or idem
 * key whose TAG is not its HEX's: partnerd never reads it there. Reported with where it
 * belongs; it is not filed (its customer's keys are read where they belong).
 */
static void ck_misplaced(struct ck *ck, const char *org, const char *k, size_t len, int kind,
                         const struct store_key_parts *kp)
{
	int home = store_key_home(k, len, kind, kp);
	char want[256], who[64];

	store_key_retag(want, sizeof want, k, len, (unsigned)home);
	if (kind == STORE_KEY_CUST || kind == STORE_KEY_LOCK || kind == STORE_KEY_HIST)
		snprintf(who, sizeof who, "customer %" PRId64 ": ", kp->cid);
	else
		who[0] = '\0';
	ck_violation(ck, "org %s: %skey %.*s is in partition %u, not in its %s's partition %d: "
	             "expected %s", org, who, (int)len, k, kp->part,
	             who[0] != '\0' ? "customer id" : "digest", home, want);
}

/* Files one key name under its org (see store_keys.h), or reports it as stray. */
static void ck_classify(struct ck *ck, const char *k, size_t len)
{
	struct store_key_parts kp;
	int kind = store_key_classify(k, len, &kp);
	char org[65];
	struct ck_org *o;

	if (kind == STORE_KEY_LAYOUT || kind == STORE_KEY_ORGS || kind == STORE_KEY_CREDS ||
	    kind == STORE_KEY_LOGIN_USER || kind == STORE_KEY_LOGIN_ADDR)
		return;
	if (store_key_tag_org(k, len, org) < 0)
		goto stray;
	if (ck->only != NULL && strcmp(ck->only, org) != 0)
		return;
	o = ck_org_get(ck, org, strlen(org));
	if (kind >= 0 && kp.tagged && !store_key_placed(k, len, kind, &kp)) {
		ck_misplaced(ck, org, k, len, kind, &kp);
		o->keys = 1;
		return;
	}
	switch (kind) {
	case STORE_KEY_CUST:
		ck_push(&o->custs, &o->ncusts, &o->ccap, kp.cid);
		break;
	case STORE_KEY_LOCK:
		ck_push(&o->locks, &o->nlocks, &o->lcap, kp.cid);
		break;
	case STORE_KEY_HIST:
		ck_push(&o->hists, &o->nhists, &o->hcap, kp.cid);  /* docs/CHANGE-FEED.md */
		break;
	case STORE_KEY_FEED:
		o->has_feed = 1;
		break;
	case STORE_KEY_IX:
		o->has_ix[kp.ident] = 1;
		break;
	case STORE_KEY_MID:
		o->mid_pids = xrealloc(o->mid_pids, sizeof *o->mid_pids * (o->nmid_pids + 1));
		o->mid_pids[o->nmid_pids++] = kp.pid;
		break;
	case STORE_KEY_ORG:
	case STORE_KEY_PROGS:
	case STORE_KEY_PSEQ:
	/* Operational keys (docs/DATA-MODEL.md): Idempotency-Key records, rate windows,
	 * import checkpoints. Their names carry hex digests, never client text. */
	case STORE_KEY_IDEM:
	case STORE_KEY_RATE:
	case STORE_KEY_IMPORT:
		break;
	default:
		goto stray;
	}
	o->keys = 1;
	return;
stray:
	ck_violation(ck, "stray key %s outside the documented key space", ctl_quote(k, len));
}

static void ck_on_key(void *arg, const char *k, size_t len)
{
	ck_classify(arg, k, len);
}

/* SCAN every key of the layout. */
static int ck_scan(struct ck *ck)
{
	if (store_admin_scan(ck->st, ck_on_key, ck) < 0) {
		ctl_errf("check: %s", store_admin_error(ck->st));
		return -1;
	}
	return 0;
}

/* ---- global keys --------------------------------------------------------------------- */

/* A member of the set of orgs. */
static int ck_on_org_id(void *arg, const char *s, size_t len)
{
	struct ck *ck = arg;
	char org[65], name[64];

	if (len > 0 && len < sizeof org) {
		memcpy(org, s, len);
		org[len] = '\0';
	}
	if (len == 0 || len >= sizeof org || !ident_valid_org(org) || strlen(org) != len) {
		ck_violation(ck, "%s holds an invalid org id %s",
		             store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0), ctl_quote(s, len));
		return 0;
	}
	if (ck->only == NULL || strcmp(ck->only, org) == 0)
		ck_org_get(ck, org, len)->listed = 1;
	return 0;
}

/* 1 when org (NUL-terminated) is in the set of orgs (ck_on_org_id). */
static int ck_org_listed(const struct ck *ck, const char *org)
{
	for (size_t j = 0; j < ck->norgs; j++)
		if (strcmp(ck->orgs[j].id, org) == 0 && ck->orgs[j].listed)
			return 1;
	return 0;
}

/* A credential: {"org", "hash"} with an argon2id hash, of a listed org. */
static int ck_on_cred(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ck *ck = arg;
	json_object *o = ctl_json_parse(v, vlen), *org, *hash;
	const char *os;
	char name[64];

	if (!ctl_json_member(o, "org", &org) || !json_object_is_type(org, json_type_string) ||
	    !ctl_json_member(o, "hash", &hash) || !json_object_is_type(hash, json_type_string) ||
	    json_object_object_length(o) != 2 ||
	    strncmp(json_object_get_string(hash), "$argon2id$", 10) != 0) {
		if (ck->only == NULL)
			ck_violation(ck, "credential %s: the value is not {\"org\",\"hash\"} with "
			             "an argon2id hash", ctl_quote(f, flen));
		json_object_put(o);
		return 0;
	}
	os = json_object_get_string(org);
	if ((ck->only == NULL || strcmp(os, ck->only) == 0) && !ck_org_listed(ck, os))
		ck_violation(ck, "credential %s belongs to org %s, which is not in %s",
		             ctl_quote(f, flen), ctl_quote(os, (size_t)json_object_get_string_len(org)),
		             store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0));
	json_object_put(o);
	return 0;
}

/* The set of orgs, then the credentials. */
static int ck_globals(struct ck *ck)
{
	char name[64];
	int rc;

	if ((rc = store_admin_org_ids(ck->st, ck_on_org_id, ck)) == -1)
		goto ioerr;
	if (rc == STORE_ADMIN_WRONGTYPE)
		ck_violation(ck, "%s is not a set",
		             store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0));
	if ((rc = store_admin_hash(ck->st, STORE_KEY_CREDS, NULL, 0, ck_on_cred, ck)) == -1)
		goto ioerr;
	if (rc == STORE_ADMIN_WRONGTYPE)
		ck_violation(ck, "%s is not a hash",
		             store_key_name(name, sizeof name, STORE_KEY_CREDS, NULL, 0));
	return 0;
ioerr:
	ctl_errf("check: %s", store_admin_error(ck->st));
	return -1;
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

	if (m->n == 0)   /* no array yet: bsearch of NULL is undefined */
		return NULL;
	return bsearch(&k, m->v, m->n, sizeof k, ck_entry_cmp);
}

static void ck_map_free(struct ck_map *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].key);
	free(m->v);
	memset(m, 0, sizeof *m);
}

/* A bucket of an index or membership-id hash being read into a map. */
struct ck_map_read {
	struct ck *ck;
	struct ck_map *m;
	unsigned part;           /* the bucket */
	const char *key;         /* its name, for messages */
	enum store_key kind;
	int64_t id;              /* the index's kind or pid (store_key_name_at) */
	struct ck_map bad;       /* the bucket's entries that belong in another bucket */
};

/* Appends an entry (f copied) to m. */
static struct ck_entry *ck_map_add(struct ck_map *m, const char *f, size_t flen, unsigned part)
{
	struct ck_entry *x;

	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		m->v = xrealloc(m->v, sizeof *m->v * m->cap);
	}
	x = &m->v[m->n++];
	x->key = xmemdup(f, flen);
	x->len = flen;
	x->seen = 0;
	x->cid = 0;
	x->part = part;
	return x;
}

static int ck_on_map_entry(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ck_map_read *mr = arg;
	struct ck_entry *x;

	/* An entry in another bucket than its value's: reported when the bucket is read. */
	if (layout_bucket_of(f, flen) != mr->part) {
		ck_map_add(&mr->bad, f, flen, mr->part);
		return 0;
	}
	x = ck_map_add(mr->m, f, flen, mr->part);
	if (ident_parse_cid(v, vlen, &x->cid) < 0) {
		ck_violation(mr->ck, "%s: entry %s holds %s, not a customer id", mr->key,
		             ctl_quote(x->key, x->len), ctl_quote(v, vlen));
		x->cid = -1;
	}
	return 0;
}

/*
 * The entries of the bucket just read that belong in another bucket (partnerd never finds
 * them where they are), once each (HSCAN may return an entry twice).
 */
static void ck_misplaced_entries(struct ck *ck, struct ck_map_read *mr)
{
	char want[256];

	if (mr->bad.n > 1)
		qsort(mr->bad.v, mr->bad.n, sizeof *mr->bad.v, ck_entry_cmp);
	for (size_t i = 0; i < mr->bad.n; i++) {
		const struct ck_entry *e = &mr->bad.v[i];
		unsigned home = layout_bucket_of(e->key, e->len);

		if (i > 0 && ck_entry_cmp(e, e - 1) == 0)
			continue;
		ck_violation(ck, "org %s: %s: entry %s is in bucket %u, not in its value's bucket "
		             "%u: expected %s", ck->cur->id, mr->key, ctl_quote(e->key, e->len),
		             e->part, home, store_key_name_at(want, sizeof want, mr->kind, home,
		                                              ck->cur->id, mr->id));
	}
	ck_map_free(&mr->bad);
}

/*
 * Reads every bucket of an index or membership-id hash (field -> customer id) of the org
 * with HSCAN into m, sorted; an entry in another bucket than its value's is reported and
 * left out (partnerd looks for it in its value's bucket only).
 */
static int ck_map_load(struct ck *ck, enum store_key kind, int64_t id, struct ck_map *m)
{
	char key[256];
	struct ck_map_read mr = { ck, m, 0, key, kind, id, { NULL, 0, 0 } };

	for (mr.part = 0; mr.part < LAYOUT_PARTS; mr.part++) {
		int rc;

		store_key_name_at(key, sizeof key, kind, mr.part, ck->cur->id, id);
		rc = store_admin_hash_scan_at(ck->st, kind, ck->cur->id, id, mr.part,
		                              ck_on_map_entry, &mr);
		if (rc == -1) {
			ctl_errf("check: %s", store_admin_error(ck->st));
			ck_map_free(&mr.bad);
			return -1;
		}
		if (rc == STORE_ADMIN_WRONGTYPE)
			ck_violation(ck, "%s is not a hash", key);
		ck_misplaced_entries(ck, &mr);
	}
	/* HSCAN may return an entry twice: keep one. */
	if (m->n > 1)
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

/* The org's settings being checked. */
struct ck_settings {
	struct ck *ck;
	const char *key;
	int cc, nl;              /* a valid defaultCountryCode, nationalNumberLength seen */
};

static int ck_on_setting(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ck_settings *cs = arg;

	if (strcmp(f, "defaultCountryCode") == 0 && vlen >= 1 && vlen <= 4 &&
	    strspn(v, "0123456789") == vlen)
		cs->cc = 1;
	else if (strcmp(f, "nationalNumberLength") == 0 && atoi(v) >= 4 && atoi(v) <= 15 &&
	         strspn(v, "0123456789") == vlen)
		cs->nl = 1;
	else
		ck_violation(cs->ck, "org %s: %s has a bad or unknown field %s", cs->ck->cur->id,
		             cs->key, ctl_quote(f, flen));
	return 0;
}

/* The org hash: exactly a valid defaultCountryCode and nationalNumberLength. */
static int ck_org_settings(struct ck *ck, struct ck_org *o)
{
	char key[256];
	struct ck_settings cs = { ck, store_key_name(key, sizeof key, STORE_KEY_ORG, o->id, 0), 0, 0 };
	int rc = store_admin_hash(ck->st, STORE_KEY_ORG, o->id, 0, ck_on_setting, &cs);

	if (rc == -1)
		return -1;
	if (rc == 0 || rc == STORE_ADMIN_WRONGTYPE)
		ck_violation(ck, "org %s: %s is missing or not a hash", o->id, key);
	else if (!cs.cc || !cs.nl)
		ck_violation(ck, "org %s: %s lacks a valid defaultCountryCode or "
		             "nationalNumberLength", o->id, key);
	return 0;
}

/* A stored program definition into ck->progs (when it parses). */
static int ck_on_prog(void *arg, const char *f, size_t flen, const char *v, size_t vlen)
{
	struct ck *ck = arg;
	struct ck_prog *p;
	char why[200];

	ck->progs = xrealloc(ck->progs, sizeof *ck->progs * (ck->nprogs + 1));
	p = &ck->progs[ck->nprogs];
	memset(p, 0, sizeof *p);
	if (rules_program_parse_strict(v, vlen, &p->def, why, sizeof why) < 0) {
		ck_violation(ck, "org %s: program %s: the definition %s", ck->cur->id,
		             ctl_quote(f, flen), why);
		return 0;
	}
	for (size_t j = 0; j < ck->nprogs; j++)
		if (ck->progs[j].def.pid == p->def.pid)
			ck_violation(ck, "org %s: programs %s and %s share pid %d", ck->cur->id,
			             ctl_quote(ck->progs[j].name, ck->progs[j].name_len),
			             ctl_quote(f, flen), p->def.pid);
	p->name = xmemdup(f, flen);
	p->name_len = flen;
	ck->nprogs++;
	return 0;
}

/* The programs, then the program sequence: at least the highest pid. */
static int ck_org_progs(struct ck *ck, struct ck_org *o)
{
	char key[256];
	const char *seq;
	size_t len;
	int rc, maxpid = 0;

	rc = store_admin_hash(ck->st, STORE_KEY_PROGS, o->id, 0, ck_on_prog, ck);
	if (rc == -1)
		return -1;
	if (rc == STORE_ADMIN_WRONGTYPE)
		ck_violation(ck, "org %s: %s is not a hash", o->id,
		             store_key_name(key, sizeof key, STORE_KEY_PROGS, o->id, 0));
	for (size_t i = 0; i < ck->nprogs; i++)
		if (ck->progs[i].def.pid > maxpid)
			maxpid = ck->progs[i].def.pid;
	if ((rc = store_admin_string(ck->st, STORE_KEY_PSEQ, o->id, 0, &seq, &len)) < 0)
		return -1;
	if (maxpid > 0 && (rc == 0 || atoll(seq) < maxpid))
		ck_violation(ck, "org %s: %s is missing or below the highest pid %d", o->id,
		             store_key_name(key, sizeof key, STORE_KEY_PSEQ, o->id, 0), maxpid);
	return 0;
}

/* The org hash, the programs and the program sequence. */
static int ck_org_meta(struct ck *ck, struct ck_org *o)
{
	char name[64];

	if (!o->listed)
		ck_violation(ck, "org %s has keys but is not in %s", o->id,
		             store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0));
	if (ck_org_settings(ck, o) < 0 || ck_org_progs(ck, o) < 0) {
		ctl_errf("check: %s", store_admin_error(ck->st));
		return -1;
	}
	return 0;
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
	char why[300], key[256];
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
		             "not indexed to it in %s", org, cid, ctl_quote(cur->mid, cur->mid_len),
		             ctl_quote(p->name, p->name_len),
		             store_key_name_at(key, sizeof key, STORE_KEY_MID,
		                               layout_bucket_of(cur->mid, cur->mid_len), org, pid));
	else
		e->seen = 1;
	if (other != NULL && mi != NULL &&
	    (e = ck_map_find(&mi->map, other->mid, other->mid_len)) != NULL && e->cid == cid)
		e->seen = 1;
	return m;
}

/* An identifier field of the customer: normalised (mobile) and indexed to it. */
static void ck_cust_ident(struct ck *ck, int64_t cid, int kind, const struct store_pair *fv)
{
	const char *org = ck->cur->id, *v = fv->v;
	size_t vlen = fv->vlen;
	struct ck_entry *e = ck_map_find(&ck->ix[kind], v, vlen);
	char key[256];

	if (kind == STORE_IDENT_MOBILE && (vlen < 6 || vlen > IDENT_MOBILE_MAX + 16 ||
	                                   strspn(v, "0123456789") != vlen))
		ck_violation(ck, "org %s: customer %" PRId64 ": mobile %s is not normalised", org, cid,
		             ctl_quote(v, vlen));
	if (e == NULL || e->cid != cid)
		ck_violation(ck, "org %s: customer %" PRId64 ": %s %s is not indexed to it in %s "
		             "(index says %s)", org, cid, fv->k, ctl_quote(v, vlen),
		             store_key_name_at(key, sizeof key, STORE_KEY_IX,
		                               layout_bucket_of(v, vlen), org, kind),
		             e == NULL ? "nothing" : "another customer");
	else
		e->seen = 1;
}

/* A membership field m:PID: checked, and kept for the history pass when there is one. */
static void ck_cust_membership(struct ck_cust *cc, int pid, const struct store_pair *fv)
{
	struct ck *ck = cc->ck;
	struct rules_membership *m = ck_membership(ck, cc->cid, pid, fv->v, fv->vlen);

	if (cc->has_hist && ck_prog(ck, pid) != NULL) {
		/* Kept for the history pass (invalid ones as NULL: not compared). */
		cc->ms = xrealloc(cc->ms, sizeof *cc->ms * (cc->nms + 1));
		cc->ms[cc->nms].pid = pid;
		cc->ms[cc->nms++].m = m;
	} else {
		ck_ms_free(m);
	}
}

/* One field of the customer hash; *has_id, *has_v note the id and v fields. */
static void ck_cust_field(struct ck_cust *cc, const struct store_pair *fv, int *has_id, int *has_v)
{
	struct ck *ck = cc->ck;
	const char *org = ck->cur->id, *f = fv->k, *v = fv->v;
	size_t flen = fv->klen, vlen = fv->vlen;
	int64_t cid = cc->cid, x;
	int kind = -1, pid;

	for (int k = 0; k < CK_NIX; k++)
		if (strcmp(f, ck_ix_name[k]) == 0)
			kind = k;
	if (strcmp(f, "id") == 0) {
		*has_id = 1;
		if (ident_parse_cid(v, vlen, &x) < 0 || x != cid)
			ck_violation(ck, "org %s: customer %" PRId64 ": the id field holds %s", org, cid,
			             ctl_quote(v, vlen));
	} else if (strcmp(f, "v") == 0) {
		*has_v = 1;
		if (vlen == 0 || strspn(v, "0123456789") != vlen)
			ck_violation(ck, "org %s: customer %" PRId64 ": version v is %s, not an "
			             "integer >= 0", org, cid, ctl_quote(v, vlen));
	} else if (strcmp(f, "w") == 0) {
		/* the lock token of the commit that last wrote it (docs/DATA-MODEL.md) */
		if (vlen != 32 || strspn(v, "0123456789abcdef") != vlen)
			ck_violation(ck, "org %s: customer %" PRId64 ": writer token w is %s, not "
			             "32 hex digits", org, cid, ctl_quote(v, vlen));
	} else if (strcmp(f, "lock") == 0) {
		/* the customer's lock, TOKEN:EXPIRY (src/lua/lock.lua; one past its expiry is
		 * left by a request that died, and free) */
		if (vlen < 34 || v[32] != ':' || strspn(v, "0123456789abcdef") != 32 ||
		    strspn(v + 33, "0123456789") != vlen - 33)
			ck_violation(ck, "org %s: customer %" PRId64 ": lock is %s, not 32 hex digits, "
			             "':' and an expiry in ms", org, cid, ctl_quote(v, vlen));
	} else if (kind >= 0) {
		ck_cust_ident(ck, cid, kind, fv);
	} else if (flen > 2 && memcmp(f, "m:", 2) == 0 && ck_parse_pid(f + 2, flen - 2, &pid)) {
		ck_cust_membership(cc, pid, fv);
	} else {
		ck_violation(ck, "org %s: customer %" PRId64 ": unknown field %s", org, cid,
		             ctl_quote(f, flen));
	}
}

/* The customer hash (fv NULL: the key is not a hash). */
static int ck_on_customer(void *arg, const struct store_pair *fv, size_t n)
{
	struct ck_cust *cc = arg;
	struct ck *ck = cc->ck;
	const char *org = ck->cur->id;
	int64_t cid = cc->cid;
	int has_id = 0, has_v = 0;
	char key[256];

	ck->customers++;
	if (fv == NULL) {
		ck_violation(ck, "org %s: customer %" PRId64 ": %s is not a hash", org, cid,
		             store_key_name(key, sizeof key, STORE_KEY_CUST, org, cid));
		cc->bad = 1;
		if (!cc->has_hist)
			ck_cust_free(cc);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		ck_cust_field(cc, &fv[i], &has_id, &has_v);
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

/* The newest activity of a program is DELINK or RELINK_CANCELLED: no after to compare. */
static void ck_hist_no_after(struct ck *ck, int64_t cid, const char *pn, size_t i, int type,
                             const struct rules_membership *m)
{
	const char *org = ck->cur->id;
	struct ck_mt mt;
	char b1[800];

	if (type == CK_DELINK) {
		if (m != NULL) {
			ck_mt_stored(&m->v, &mt);
			ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
			             "(history entry %zu) is DELINK, but the customer holds a membership "
			             "(%s)", org, cid, pn, i, ck_mt_str(&mt, b1, sizeof b1));
		}
		return;
	}
	if (m == NULL) {
		ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
		             "(history entry %zu) is RELINK_CANCELLED, but the customer holds no "
		             "membership", org, cid, pn, i);
	} else if (m->has_relink) {
		ck_mt_stored(&m->rl, &mt);
		ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity "
		             "(history entry %zu) is RELINK_CANCELLED, but a relink is pending "
		             "(%s)", org, cid, pn, i, ck_mt_str(&mt, b1, sizeof b1));
	}
}

/*
 * The newest activity of program j (entry i) is an UPDATE the membership does not match:
 * 1 when a relink scheduled before the update(s) may have taken effect since (a write of
 * the customer makes a due relink current without an activity of its own). Then the
 * first older activity of the program that is not an UPDATE is that RELINK_SCHEDULED,
 * naming what is current now, and no relink is pending; or the list was trimmed and the
 * schedule may have been trimmed away.
 */
static int ck_update_after_relink(size_t j, const struct ck_act_ev *evs, size_t nev, size_t i,
                                  const struct ck_mt *cur, const struct rules_values *rl,
                                  int trimmed)
{
	struct ck_mt act;
	size_t k;

	for (k = i + 1; k < nev; k++)
		if (evs[k].o != NULL && evs[k].prog == j && evs[k].type != CK_UPDATE)
			break;
	if (k == nev && trimmed)
		return 1;
	return k < nev && evs[k].type == CK_RELINK_SCHEDULED && rl == NULL &&
	       ck_mt_after(evs[k].o, &act) == 0 && ck_mt_eq(cur, &act);
}

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
	if (evs[i].type == CK_DELINK || evs[i].type == CK_RELINK_CANCELLED) {
		ck_hist_no_after(ck, cid, pn, i, evs[i].type, m);
		return;
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
	if (ck_mt_eq(&cur, &act) ||
	    (evs[i].type == CK_UPDATE && ck_update_after_relink(j, evs, nev, i, &cur, rl, trimmed)))
		return;
	ck_violation(ck, "org %s: customer %" PRId64 ": program %s: the newest activity (history "
	             "entry %zu) is %s to %s, but the membership holds %s", org, cid,
	             pn, i, tn, ck_mt_str(&act, b1, sizeof b1),
	             ck_mt_str(&cur, b2, sizeof b2));
}

/*
 * History entry s[0..len) as an activity JSON object: a compact record (activity.h) read
 * and rendered, a JSON entry (an older partnerd's) parsed. NULL with *why set when it is
 * neither.
 */
static json_object *ck_hist_json(struct ck *ck, int64_t cid, const char *s, size_t len,
                                 const char **why)
{
	struct activity_rec rec;
	struct buf b;
	json_object *o = NULL;

	if (!activity_is_record(s, len)) {
		o = ctl_json_parse_tok(ck->tok, s, len);
		if (o == NULL || !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			*why = "is not an activity JSON object nor an activity record";
			return NULL;
		}
		return o;
	}
	if (activity_decode(s, len, &rec, why) != 0)
		return NULL;
	buf_init(&b, (size_t)-1);
	if (activity_render(&b, &rec, cid) == 0)
		o = ctl_json_parse_tok(ck->tok, b.p, b.len);
	buf_free(&b);
	if (o == NULL)
		*why = "is an activity record that does not render";
	return o;
}

/*
 * History entry i (s[0..len)) parsed into ev: an activity of the customer naming a
 * program of the org. Returns 0, or -1 with the violation reported (ev->o NULL).
 */
static int ck_hist_entry(struct ck *ck, int64_t cid, size_t i, const char *s, size_t len,
                         struct ck_act_ev *ev)
{
	json_object *o, *t, *c, *pn;
	const char *why = NULL;

	ev->o = NULL;
	ck->activities++;
	if ((o = ck_hist_json(ck, cid, s, len, &why)) == NULL) {
		/* why says what it is not */
	}
	else if ((ev->type = ck_act_parse(ctl_json_member(o, "activityType", &t) ? t : NULL)) < 0)
		why = "has no valid activityType (LINK, UPDATE, DELINK, RELINK_SCHEDULED, "
		      "RELINK_CANCELLED)";
	else if (!ctl_json_member(o, "customerId", &c) || !ctl_json_is_int(c) ||
	         json_object_get_int64(c) != cid)
		why = "has a customerId that is not the customer's";
	else if (!ctl_json_member(o, "partnerProgramName", &pn) ||
	         !json_object_is_type(pn, json_type_string) ||
	         ck_prog_named(ck, json_object_get_string(pn), (size_t)json_object_get_string_len(pn),
	                       &ev->prog) == NULL)
		why = "names no program of the org";
	if (why == NULL) {
		ev->o = o;
		return 0;
	}
	ck_violation(ck, "org %s: customer %" PRId64 ": program %s: history entry %zu %s",
	             ck->cur->id, cid, o != NULL && ctl_json_member(o, "partnerProgramName", &pn) &&
	             json_object_is_type(pn, json_type_string) ?
	             ctl_quote(json_object_get_string(pn), (size_t)json_object_get_string_len(pn)) :
	             "(none)", i, why);
	json_object_put(o);
	return -1;
}

/* Each program's newest activity against the membership the customer holds in it. */
static void ck_hist_programs(struct ck_cust *cc, const struct ck_act_ev *evs, size_t n,
                             int trimmed)
{
	struct ck *ck = cc->ck;

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
				             ck->cur->id, cc->cid, ctl_quote(p->name, p->name_len), n);
			continue;
		}
		ck_hist_match(ck, cc->cid, j, evs, n, (size_t)ck->newest[j], ms ? ms->m : NULL,
		              trimmed);
	}
}

/* The customer's history (items NULL: not a list), after its hash. Finishes cc. */
static int ck_on_history(void *arg, const struct store_pair *items, size_t n)
{
	struct ck_cust *cc = arg;
	struct ck *ck = cc->ck;
	struct ck_act_ev *evs;
	char key[256];
	int trimmed;

	if (items == NULL) {
		ck_violation(ck, "org %s: customer %" PRId64 ": history %s is not a list", ck->cur->id,
		             cc->cid, store_key_name(key, sizeof key, STORE_KEY_HIST, ck->cur->id,
		                                     cc->cid));
		ck_cust_free(cc);
		return 0;
	}
	trimmed = (long)n >= ck->history_max;
	evs = xrealloc(NULL, sizeof *evs * n);
	for (size_t i = 0; i < ck->nprogs; i++)
		ck->newest[i] = -1;
	for (size_t i = 0; i < n; i++)
		if (ck_hist_entry(ck, cc->cid, i, items[i].v, items[i].vlen, &evs[i]) == 0 &&
		    ck->newest[evs[i].prog] < 0)
			ck->newest[evs[i].prog] = (int)i;
	if (!cc->bad)
		ck_hist_programs(cc, evs, n, trimmed);
	for (size_t i = 0; i < n; i++)
		json_object_put(evs[i].o);
	free(evs);
	ck_cust_free(cc);
	return 0;
}

/* ---- change feed --------------------------------------------------------------------- */

/*
 * The fields of a change-feed entry: format 1 has v, type, customerId, event; format 2
 * (partnerd writes it since the entries carry the customer's version) adds customerVersion
 * and seq. Entries of format 1 stay valid: partnerctl migrate carries them over.
 */
struct ck_feed_fields {
	const struct store_pair *v, *type, *cid, *event, *cver, *seq;
	int extra;               /* a field of another name, or one twice */
};

static void ck_feed_fields(const struct store_stream_entry *e, struct ck_feed_fields *ff)
{
	memset(ff, 0, sizeof *ff);
	for (size_t k = 0; k < e->nf; k++) {
		const struct store_pair *fp = &e->f[k], **slot = NULL;

		if (strcmp(fp->k, "v") == 0)
			slot = &ff->v;
		else if (strcmp(fp->k, "type") == 0)
			slot = &ff->type;
		else if (strcmp(fp->k, "customerId") == 0)
			slot = &ff->cid;
		else if (strcmp(fp->k, "event") == 0)
			slot = &ff->event;
		else if (strcmp(fp->k, "customerVersion") == 0)
			slot = &ff->cver;
		else if (strcmp(fp->k, "seq") == 0)
			slot = &ff->seq;
		if (slot == NULL || *slot != NULL)
			ff->extra = 1;
		else
			*slot = fp;
	}
}

/* The entry's format version: 1, 2 or 3, 0 when v is missing, -1 when it is another value. */
static int ck_feed_format(const struct ck_feed_fields *ff)
{
	if (ff->v == NULL)
		return 0;
	if (ff->v->vlen == 1 && ff->v->v[0] >= '1' && ff->v->v[0] <= '3')
		return ff->v->v[0] - '0';
	return -1;
}

/* Format 3's fields, in their order (docs/CHANGE-FEED.md, src/lua/commit.lua). */
static const char *const ck_f3[] = {
	"v", "type", "customerId", "customerVersion", "seq", "date", "program", "updateType",
	"requestId", "beforeMembershipId", "beforeTierName", "beforeTierExpiryDate",
	"beforeStartDate", "beforeEndDate", "afterMembershipId", "afterTierName",
	"afterTierExpiryDate", "afterStartDate", "afterEndDate",
};
#define CK_F3_N (sizeof ck_f3 / sizeof ck_f3[0])

/* A date field of format 3: epoch milliseconds in decimal, in range; empty when may_empty. */
static int ck_f3_date(const struct store_pair *p, int may_empty)
{
	size_t i = p->vlen > 0 && p->v[0] == '-';
	int64_t ms = 0;

	if (p->vlen == 0)
		return may_empty ? 0 : -1;
	if (i == p->vlen || p->vlen - i > 16)
		return -1;
	for (; i < p->vlen; i++) {
		if (p->v[i] < '0' || p->v[i] > '9')
			return -1;
		ms = ms * 10 + (p->v[i] - '0');
	}
	if (p->v[0] == '-')
		ms = -ms;
	return ms < DATES_MIN_MS || ms > DATES_MAX_MS ? -1 : 0;
}

/* What is wrong with an entry of format 3 beyond ck_feed_why's common checks (NULL: nothing). */
static const char *ck_feed3_why(const struct store_stream_entry *e)
{
	int t = -1;

	if (e->nf != CK_F3_N || e->odd)
		return "does not have exactly the fields of format 3, in their order";
	for (size_t k = 0; k < CK_F3_N; k++)
		if (strcmp(e->f[k].k, ck_f3[k]) != 0)
			return "does not have exactly the fields of format 3, in their order";
	for (int k = 0; k < CK_NACT; k++)
		if (strlen(ck_act_name[k]) == e->f[1].vlen && memcmp(ck_act_name[k], e->f[1].v, e->f[1].vlen) == 0)
			t = k;
	if (t < 0)
		return "has no valid type (LINK, UPDATE, DELINK, RELINK_SCHEDULED, RELINK_CANCELLED)";
	if (ck_f3_date(&e->f[5], 0) != 0)
		return "has a date that is not epoch milliseconds in range";
	if (e->f[6].vlen == 0)
		return "has an empty program";
	for (size_t k = 11; k < CK_F3_N; k++)   /* the expiry, start and end of before, after */
		if (((k >= 11 && k <= 13) || k >= 16) && ck_f3_date(&e->f[k], 1) != 0)
			return "has a before or after date that is not epoch milliseconds in range";
	return NULL;
}

/* What is wrong with a change-feed entry (NULL: nothing); *cid set from its customerId. */
static const char *ck_feed_why(const struct store_stream_entry *e, const struct ck_feed_fields *ff,
                               json_object *ev, int64_t *cid)
{
	json_object *t, *c;
	int fmt = ck_feed_format(ff);
	int64_t n;

	if (fmt == 3 && ck_feed3_why(e) != NULL)
		return ck_feed3_why(e);
	if (fmt == 3 && (ident_parse_cid(ff->cid->v, ff->cid->vlen, cid) < 0))
		return "has a customerId that is not a customer id";
	if (fmt == 3 && ident_parse_cid(ff->cver->v, ff->cver->vlen, &n) < 0)
		return "has a customerVersion that is not a positive integer";
	if (fmt == 3 && !(ff->seq->vlen == 1 && ff->seq->v[0] == '0') &&
	    ident_parse_cid(ff->seq->v, ff->seq->vlen, &n) < 0)
		return "has a seq that is not an integer 0 or more";
	if (fmt == 3)
		return NULL;
	if (fmt == 2 && (ff->extra || ff->type == NULL || ff->cid == NULL || ff->event == NULL ||
	                 ff->cver == NULL || ff->seq == NULL || e->odd))
		return "does not have exactly the fields v, type, customerId, customerVersion, seq, event (format 2)";
	if (ff->extra || ff->v == NULL || ff->type == NULL || ff->cid == NULL ||
	    ff->event == NULL || e->odd || (fmt == 1 && (ff->cver != NULL || ff->seq != NULL)))
		return "does not have exactly the fields v, type, customerId, event";
	if (fmt < 0)
		return "has a version v that is not 1, 2 or 3";
	if (ident_parse_cid(ff->cid->v, ff->cid->vlen, cid) < 0)
		return "has a customerId that is not a customer id";
	if (fmt == 2 && ident_parse_cid(ff->cver->v, ff->cver->vlen, &n) < 0)
		return "has a customerVersion that is not a positive integer";
	if (fmt == 2 && !(ff->seq->vlen == 1 && ff->seq->v[0] == '0') &&
	    ident_parse_cid(ff->seq->v, ff->seq->vlen, &n) < 0)
		return "has a seq that is not an integer 0 or more";
	if (ev == NULL || !json_object_is_type(ev, json_type_object))
		return "has an event that is not a JSON object";
	if (!ctl_json_member(ev, "activityType", &t) || ck_act_parse(t) < 0 ||
	    strlen(json_object_get_string(t)) != ff->type->vlen ||
	    memcmp(json_object_get_string(t), ff->type->v, ff->type->vlen) != 0)
		return "has a type that is not the event's (valid) activityType";
	if (!ctl_json_member(ev, "customerId", &c) || !ctl_json_is_int(c) ||
	    json_object_get_int64(c) != *cid)
		return "has an event whose customerId is not the entry's";
	return NULL;
}

/* A well-formed entry of format 2 or 3 of the partition being read, for ck_feed_order. */
struct ck_feed_pos {
	int64_t cid, cver, seq;
	size_t i;                /* its place in the partition, newest first */
	char id[48];             /* its entry id */
};

/* One change-feed entry (newest first). */
struct ck_feed_read {
	struct ck *ck;
	char key[256];           /* the name of the entry's feed partition, for messages */
	unsigned part;           /* the partition of pos */
	struct ck_feed_pos *pos;
	size_t npos, cap;
};

static int ck_feed_pos_cmp(const void *a, const void *b)
{
	const struct ck_feed_pos *x = a, *y = b;

	if (x->cid != y->cid)
		return x->cid < y->cid ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * One customer's entries of format 2 or 3 in a partition, in entry-id order, must have strictly
 * increasing (customerVersion, seq) (docs/CHANGE-FEED.md): the partition read last (fr->pos,
 * newest first), sorted by customer then by place.
 */
static void ck_feed_order(struct ck_feed_read *fr)
{
	char key[256];

	if (fr->npos == 0)
		return;
	store_key_name(key, sizeof key, STORE_KEY_FEED, fr->ck->cur->id, fr->part);
	qsort(fr->pos, fr->npos, sizeof *fr->pos, ck_feed_pos_cmp);
	for (size_t k = 1; k < fr->npos; k++) {
		const struct ck_feed_pos *newer = &fr->pos[k - 1], *older = &fr->pos[k];

		if (newer->cid != older->cid || newer->cver > older->cver ||
		    (newer->cver == older->cver && newer->seq > older->seq))
			continue;
		ck_violation(fr->ck, "org %s: customer %" PRId64 ": change feed %s entry \"%s\" "
		             "(customerVersion %" PRId64 ", seq %" PRId64 ") follows entry \"%s\" "
		             "(customerVersion %" PRId64 ", seq %" PRId64 "): a customer's entries must "
		             "have increasing customerVersion, then seq", fr->ck->cur->id, newer->cid,
		             key, newer->id, newer->cver, newer->seq, older->id, older->cver,
		             older->seq);
	}
	fr->npos = 0;
}

/* Keeps a well-formed entry of format 2 or 3 for ck_feed_order. */
static void ck_feed_keep(struct ck_feed_read *fr, size_t i, const struct store_stream_entry *e,
                         const struct ck_feed_fields *ff, int64_t cid)
{
	struct ck_feed_pos *p;
	int64_t seq = 0;

	if (ck_feed_format(ff) < 2 || e->idlen >= sizeof p->id)
		return;
	if (fr->npos == fr->cap) {
		fr->cap = fr->cap ? 2 * fr->cap : 256;
		fr->pos = xrealloc(fr->pos, fr->cap * sizeof *fr->pos);
	}
	p = &fr->pos[fr->npos++];
	p->cid = cid;
	(void)ident_parse_cid(ff->cver->v, ff->cver->vlen, &p->cver);   /* checked: ck_feed_why */
	if (ff->seq->vlen != 1 || ff->seq->v[0] != '0')
		(void)ident_parse_cid(ff->seq->v, ff->seq->vlen, &seq);
	p->seq = seq;
	p->i = i;
	memcpy(p->id, e->id, e->idlen);
	p->id[e->idlen] = '\0';
}

static void ck_on_feed_entry(void *arg, size_t i, const struct store_stream_entry *e)
{
	struct ck_feed_read *fr = arg;
	struct ck *ck = fr->ck;
	struct ck_feed_fields ff;
	json_object *ev = NULL, *pn;
	const char *why;
	int64_t cid = 0;
	char want[256];

	if (e->part != fr->part)
		ck_feed_order(fr);      /* the partition read before */
	fr->part = e->part;
	/* the feed's partition the entry is in (docs/CHANGE-FEED.md) */
	store_key_name(fr->key, sizeof fr->key, STORE_KEY_FEED, ck->cur->id, e->part);
	if (e->wrongtype) {
		ck_violation(ck, "org %s: change feed %s is not a stream", ck->cur->id, fr->key);
		return;
	}
	if (e->id == NULL) {
		ck_violation(ck, "org %s: change feed %s: entry %zu is malformed", ck->cur->id, fr->key,
		             i);
		return;
	}
	ck_feed_fields(e, &ff);
	if (ff.event != NULL)
		ev = ctl_json_parse_tok(ck->tok, ff.event->v, ff.event->vlen); /* names the program */
	if ((why = ck_feed_why(e, &ff, ev, &cid)) != NULL)
		ck_violation(ck, "org %s: customer %s: program %s: change feed %s entry %s %s",
		             ck->cur->id, ff.cid == NULL ? "(none)" :
		             ident_parse_cid(ff.cid->v, ff.cid->vlen, &cid) == 0 ? ff.cid->v :
		             ctl_quote(ff.cid->v, ff.cid->vlen),
		             ev != NULL && ctl_json_member(ev, "partnerProgramName", &pn) &&
		             json_object_is_type(pn, json_type_string) ?
		             ctl_quote(json_object_get_string(pn),
		                       (size_t)json_object_get_string_len(pn)) :
		             ck_feed_format(&ff) == 3 && e->nf == CK_F3_N && strcmp(e->f[6].k, "program") == 0 ?
		             ctl_quote(e->f[6].v, e->f[6].vlen) : "(unknown)",
		             fr->key, ctl_quote(e->id, e->idlen), why);
	else if (layout_part_of_cid(cid) != e->part)
		/* a consumer reading the customer's partition never sees it */
		ck_violation(ck, "org %s: customer %" PRId64 ": change feed %s entry %s is in "
		             "partition %u, not in its customer's partition %u: expected %s",
		             ck->cur->id, cid, fr->key, ctl_quote(e->id, e->idlen), e->part,
		             layout_part_of_cid(cid),
		             store_key_name(want, sizeof want, STORE_KEY_FEED, ck->cur->id,
		                            layout_part_of_cid(cid)));
	else
		ck_feed_keep(fr, i, e, &ff, cid);
	json_object_put(ev);
}

/* The newest CK_FEED_COUNT entries of each partition of the org's change feed. */
static int ck_feed(struct ck *ck, struct ck_org *o)
{
	struct ck_feed_read fr = { .ck = ck };
	int rc = store_admin_stream_newest(ck->st, STORE_KEY_FEED, o->id, CK_FEED_COUNT,
	                                   ck_on_feed_entry, &fr);

	if (rc == 0)
		ck_feed_order(&fr);     /* the last partition */
	free(fr.pos);
	if (rc == -1) {
		ctl_errf("check: %s", store_admin_error(ck->st));
		return -1;
	}
	return 0;
}

static int ck_has_cust(const struct ck_org *o, int64_t cid)
{
	return o->ncusts > 0 &&
	       bsearch(&cid, o->custs, o->ncusts, sizeof cid, ck_i64_cmp) != NULL;
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
	if (store_admin_time(ck->st, &ck->now_ms) < 0) {
		ctl_errf("check: %s", store_admin_error(ck->st));
		return -1;
	}
	return 0;
}

/* The org's indexes and membership-id hashes, read into ck->ix and ck->mids. */
static int ck_org_maps(struct ck *ck, struct ck_org *o)
{
	char key[256];

	for (int k = 0; k < CK_NIX; k++)
		if (o->has_ix[k] && ck_map_load(ck, STORE_KEY_IX, k, &ck->ix[k]) < 0)
			return -1;
	ck->mids = xrealloc(NULL, sizeof *ck->mids * (o->nmid_pids + 1));
	for (size_t i = 0; i < o->nmid_pids; i++) {
		struct ck_mid *mi = &ck->mids[ck->nmids];

		if (ck_mid(ck, o->mid_pids[i]) != NULL)
			continue;   /* SCAN may name a key twice */
		memset(mi, 0, sizeof *mi);
		mi->pid = o->mid_pids[i];
		ck->nmids++;
		if (ck_prog(ck, mi->pid) == NULL)
			ck_violation(ck, "org %s: %s names no program", o->id,
			             store_key_name(key, sizeof key, STORE_KEY_MID, o->id, mi->pid));
		if (ck_map_load(ck, STORE_KEY_MID, mi->pid, &mi->map) < 0)
			return -1;
	}
	return 0;
}

/*
 * Customers, pipelined: HGETALL of the hash, then (when the customer has a history key)
 * LRANGE of its history, checked against the memberships the HGETALL read.
 */
static int ck_org_customers(struct ck *ck, struct ck_org *o)
{
	for (size_t i = 0, h = 0; i < o->ncusts; i++) {
		struct ck_cust *cc = xcalloc(1, sizeof *cc);

		while (h < o->nhists && o->hists[h] < o->custs[i])
			h++;
		cc->ck = ck;
		cc->cid = o->custs[i];
		cc->has_hist = h < o->nhists && o->hists[h] == o->custs[i];
		if (store_admin_q_hash(ck->st, STORE_KEY_CUST, o->id, cc->cid, ck_on_customer,
		                       cc) < 0) {
			free(cc);
			break;
		}
		/* When this fails, the connection broke: the HGETALL reply will never come either. */
		if (cc->has_hist &&
		    store_admin_q_list(ck->st, STORE_KEY_HIST, o->id, cc->cid, ck_on_history, cc) < 0)
			break;
	}
	return store_admin_flush(ck->st);
}

/* Histories, index and membership-id entries and locks that no customer accounts for. */
static void ck_org_unconfirmed(struct ck *ck, struct ck_org *o)
{
	char key[256];

	for (size_t i = 0; i < o->nhists; i++)
		if (!ck_has_cust(o, o->hists[i]))
			ck_violation(ck, "org %s: customer %" PRId64 ": history %s of a customer that "
			             "does not exist", o->id, o->hists[i],
			             store_key_name(key, sizeof key, STORE_KEY_HIST, o->id, o->hists[i]));
	for (int k = 0; k < CK_NIX; k++)
		for (size_t i = 0; i < ck->ix[k].n; i++) {
			struct ck_entry *e = &ck->ix[k].v[i];

			if (!e->seen && e->cid > 0)
				ck_violation(ck, "org %s: %s maps %s to customer %" PRId64 ", which %s",
				             o->id, store_key_name_at(key, sizeof key, STORE_KEY_IX, e->part,
				                                      o->id, k),
				             ctl_quote(e->key, e->len), e->cid,
				             ck_has_cust(o, e->cid) ? "does not hold it" : "does not exist");
		}
	for (size_t j = 0; j < ck->nmids; j++)
		for (size_t i = 0; i < ck->mids[j].map.n; i++) {
			struct ck_entry *e = &ck->mids[j].map.v[i];

			if (e->seen || e->cid <= 0)
				continue;
			store_key_name_at(key, sizeof key, STORE_KEY_MID, e->part, o->id, ck->mids[j].pid);
			if (ck_has_cust(o, e->cid) && store_admin_is_cluster(ck->st)) {
				/* docs/CONSISTENCY.md "On a Redis Cluster": the claim of a commit that
				 * did not complete; the id's next claimant takes it over */
				ck->stale_claims++;
				printf("STALE CLAIM: org %s: %s maps %s to customer %" PRId64 ", which has no "
				       "such membership (a commit that did not complete; partnerd takes it "
				       "over at the id's next claim)\n", o->id, key, ctl_quote(e->key, e->len),
				       e->cid);
				continue;
			}
			ck_violation(ck, "org %s: %s maps %s to customer %" PRId64 ", which %s", o->id, key,
			             ctl_quote(e->key, e->len), e->cid,
			             ck_has_cust(o, e->cid) ? "has no such membership" : "does not exist");
		}
	for (size_t i = 0; i < o->nlocks; i++)
		ck_violation(ck, "org %s: %s is a customer lock of key layout 2 (layout 3 keeps the lock "
		             "in the customer hash's field `lock`): a partnerd of an older release "
		             "writes to this data; stop it (the key expires by itself)", o->id,
		             store_key_name(key, sizeof key, STORE_KEY_LOCK, o->id, o->locks[i]));
}

static int ck_org(struct ck *ck, struct ck_org *o)
{
	int rc = -1;

	ck->cur = o;
	if (ck_org_meta(ck, o) < 0 || ck_org_maps(ck, o) < 0)
		goto out;
	ck_sort_uniq(o->custs, &o->ncusts);
	ck_sort_uniq(o->hists, &o->nhists);
	if (ck_redis_now(ck) < 0)
		goto out;
	ck->newest = xrealloc(NULL, sizeof *ck->newest * (ck->nprogs + 1));
	if (ck_org_customers(ck, o) < 0)
		goto out;
	if (o->has_feed && ck_feed(ck, o) < 0)
		goto out;
	ck_org_unconfirmed(ck, o);
	rc = 0;
out:
	ck_org_free(ck);
	return rc;
}

/*
 * The verb's command line into ck. Returns -1 to go on, else the CTL_EXIT_* code to exit
 * with (usage or help printed).
 */
static int ck_parse_args(struct ctl *ctl, int argc, char **argv, struct ck *ck)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "org", required_argument, NULL, 'o' },
		{ "history-max", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *hmax = getenv("PARTNERD_HISTORY_MAX");
	char *end;
	int c;

	ck->history_max = CK_HISTORY_MAX_DEFAULT;
	if (hmax != NULL && *hmax != '\0') {
		ck->history_max = strtol(hmax, &end, 10);
		if (*end != '\0' || ck->history_max < 1 || ck->history_max > 100000) {
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
			ck->only = optarg;
			break;
		case 'H':
			ck->history_max = strtol(optarg, &end, 10);
			if (*optarg == '\0' || *end != '\0' || ck->history_max < 1 ||
			    ck->history_max > 100000) {
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
	if (ck->only != NULL && !ident_valid_org(ck->only)) {
		ctl_errf("check: %s is not a valid org id", ctl_quote(ck->only, strlen(ck->only)));
		return CTL_EXIT_USAGE;
	}
	return -1;
}

/* Every key, the global keys, then org by org. Returns a CTL_EXIT_* code. */
static int ck_run(struct ck *ck)
{
	char name[64];
	int listed;

	if (ck->only != NULL) {
		if ((listed = store_admin_org_exists(ck->st, ck->only)) < 0) {
			ctl_errf("%s", store_admin_error(ck->st));
			return CTL_EXIT_USAGE;
		}
		/* Keys of an unlisted org are still checked (and reported). */
		if (!listed)
			ctl_errf("check: note: org %s is not in %s", ck->only,
			         store_key_name(name, sizeof name, STORE_KEY_ORGS, NULL, 0));
	}
	if (ck_scan(ck) < 0 || ck_globals(ck) < 0)
		return CTL_EXIT_USAGE;
	if (ck->only != NULL && ck->norgs == 0) {
		ctl_errf("check: no org %s: nothing to check", ck->only);
		return CTL_EXIT_USAGE;
	}
	for (size_t i = 0; i < ck->norgs; i++)
		if (ck_org(ck, &ck->orgs[i]) < 0)
			return CTL_EXIT_USAGE;
	printf("checked %lu customers, %lu memberships, %lu history entries: %lu violations",
	       ck->customers, ck->memberships, ck->activities, ck->violations);
	if (ck->stale_claims > 0)
		printf(" (%lu stale claims, not violations)", ck->stale_claims);
	putchar('\n');
	return ck->violations == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}

int ctl_check_main(struct ctl *ctl, int argc, char **argv)
{
	struct ck ck = { 0 };
	int rc;

	if ((rc = ck_parse_args(ctl, argc, argv, &ck)) >= 0)
		return rc;
	if ((ck.tok = json_tokener_new_ex(32)) == NULL) {
		ctl_errf("check: out of memory");
		return CTL_EXIT_USAGE;
	}
	if ((ck.st = ctl_store_open(ctl)) == NULL) {
		json_tokener_free(ck.tok);
		return CTL_EXIT_USAGE;
	}
	if (store_admin_layout(ck.st) < 0) {
		store_admin_close(ck.st);
		json_tokener_free(ck.tok);
		return CTL_EXIT_FAIL;
	}
	rc = ck_run(&ck);
	for (size_t i = 0; i < ck.norgs; i++) {
		free(ck.orgs[i].mid_pids);
		free(ck.orgs[i].custs);
		free(ck.orgs[i].locks);
		free(ck.orgs[i].hists);
	}
	free(ck.orgs);
	store_admin_close(ck.st);
	json_tokener_free(ck.tok);
	return rc;
}
