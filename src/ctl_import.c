/*
 * ctl_import: `partnerctl import-customers --org ORG [--resume] [--batch N] FILE` (SPEC §3):
 * bulk customer import, streamed and pipelined.
 *
 * FILE is JSON Lines (one customer object a line) or CSV with a header line naming the
 * columns id, mobile, email, externalId (any order, id required). The format comes from
 * the extension (.csv; .jsonl, .ndjson, .json), else from the first byte ('{': JSON
 * Lines); "-" reads JSON Lines from stdin. The file is read line by line through one
 * fixed buffer: memory does not grow with the file (a line longer than READER_LINE_MAX is
 * rejected). Blank lines are skipped; a UTF-8 byte order mark at the start is ignored.
 * CSV follows RFC 4180 (quoted fields, "" inside quotes) except that a record may not
 * span lines; an empty field is an absent value.
 *
 * Semantics: each line is a customer of `partnerctl load`, validated by the same code
 * (ctl_cust_parse), applied in file order as if the lines were loaded one at a time:
 * - a bad line is rejected (reported on stderr with its line number) and the import goes
 *   on; the exit status is 1 when any line was rejected, 0 otherwise;
 * - an identifier held by another customer (stored, or given by an earlier line) rejects
 *   the line; a customer may change its identifiers (old index entries removed, v bumped,
 *   as load does) and free them for a later line;
 * - a later line with the id of an earlier one updates that customer again (last wins);
 * - a customer whose identifiers are all unchanged is not written.
 *
 * Round trips: lines are taken in batches of N customers (--batch, default 1000; a batch
 * also ends early at a line whose id is already in it, so that the line sees the earlier
 * one applied). Per batch: one pipelined read (HMGET of each customer hash, and one HMGET
 * per identifier index for the batch's values), the decisions in memory, then one
 * pipelined MULTI/EXEC holding the batch's writes and its checkpoint.
 *
 * Checkpoint (docs/DATA-MODEL.md): pp:{ORG}:import:HEX, HEX = 32 hex chars of BLAKE2b-128
 * of the file's absolute path, size and mtime, a HASH: offset (byte offset after the last
 * line of the last committed batch), line (its line number) and the running counts read,
 * new, changed, unchanged, rejected. It commits atomically with the batch's writes (the
 * same MULTI/EXEC), expires IM_CHECKPOINT_TTL after the last batch, and is deleted when
 * the import reaches the end of the file. --resume continues after it (stdin cannot be
 * resumed); without --resume it is ignored and overwritten. A file that changed (size
 * or mtime) has another key, so it is imported from the start.
 *
 * Progress: on stderr, only when stderr is a terminal, redrawn at most every 100 ms. The
 * summary goes to stdout.
 *
 * This file is the batch engine; reading the file and turning its lines into customer
 * objects (formats, CSV, line numbers) is ctl_reader.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "buf.h"
#include "clock.h"
#include "ctl.h"
#include "ctl_reader.h"
#include "keys.h"
#include "xmalloc.h"

#define IM_BATCH_DEFAULT 1000
#define IM_BATCH_MAX 100000
#define IM_CHECKPOINT_TTL (7 * 24 * 3600)      /* seconds an abandoned checkpoint lives */
#define IM_PROGRESS_NS 100000000LL             /* at most 10 redraws a second */

/* ---- the import ---------------------------------------------------------------------- */

enum im_verdict { IM_NEW, IM_CHANGED, IM_UNCHANGED, IM_REJECTED };

/* One customer of the batch. */
struct im_cust {
	int64_t id;
	uint64_t line;                    /* its line number */
	size_t off[CTL_NIDENTS];          /* identifier k: arena bytes [off, off + len) */
	size_t len[CTL_NIDENTS];
	int has[CTL_NIDENTS];             /* identifier k was given */
	const char *val[CTL_NIDENTS];     /* resolved from off once the batch is complete */
	redisReply *st;                   /* HMGET id mobile email externalId v (owned) */
	int64_t holder[CTL_NIDENTS];      /* stored index holder of val[k]: 0 none, -1 bad */
	int changed[CTL_NIDENTS];         /* identifier k differs from the stored one */
	int stored;                       /* the customer hash exists (id or v field) */
	int has_v;                        /* it has a v field */
	enum im_verdict verdict;
	int bad;                          /* the line is not a valid customer: */
	size_t why_off, why_len;          /* why, in the arena (reported in line order) */
};

/*
 * The batch's view of the indexes as its earlier lines left them: (kind, value) -> cid,
 * 0 for a value an earlier line gave up. Open addressing; a slot is used when its gen is
 * the batch's, so nothing is cleared between batches. Keys are borrowed (arena, replies).
 */
struct im_slot {
	uint64_t gen;
	const char *p;
	size_t len;
	int kind;
	int64_t cid;
};

/* The ids of the batch, same scheme. */
struct im_idslot {
	uint64_t gen;
	int64_t id;
};

struct im_counts {
	uint64_t read, new, changed, unchanged, rejected;
};

struct im {
	const char *org;
	const char *path;                 /* as given */
	const char *name;                 /* for messages: path, or "stdin" */
	int batch;                        /* customers per batch */
	char cc[8];                       /* the org's defaultCountryCode */
	int nlen;                         /* its nationalNumberLength */

	struct reader rd;                 /* the input, its format and line numbers */
	uint64_t size;                    /* file size, 0 when unknown (stdin, pipe) */
	char ckey[128];                   /* checkpoint key, "" for stdin */
	int resumed;
	uint64_t resume_line, resume_off;

	redisContext *c;
	struct ctl_argv cmd;
	struct buf why;                   /* the reasons of the line being rejected */

	struct im_cust *cust;             /* batch: batch entries */
	int n;
	struct buf arena;                 /* batch: identifier bytes */
	redisReply *ix[CTL_NIDENTS];      /* batch: index HMGET replies (owned) */
	struct im_slot *ov;               /* batch: the index overlay */
	size_t ovmask;
	struct im_idslot *ids;            /* batch: its customer ids */
	size_t idmask;
	uint64_t gen;                     /* batch number: marks the used overlay and id slots */
	int wpending;                     /* a batch's writes were sent, replies not read */
	int wqueued;                      /* commands inside its MULTI */

	struct im_counts cnt;             /* running totals (restored on --resume) */
	uint64_t lines_start;             /* rd.line when this run started */
	struct timespec t0;               /* start of this run */
	int64_t last_draw;                /* ns of the last progress redraw */
	int tty;                          /* stderr is a terminal: draw progress */
	int bar;                          /* a progress line is on screen */
};

static double im_elapsed(const struct im *im)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)(ts.tv_sec - im->t0.tv_sec) + (double)(ts.tv_nsec - im->t0.tv_nsec) / 1e9;
}

/* Takes the progress line off the screen, so that a message can be printed. */
static void im_bar_clear(struct im *im)
{
	if (im->bar) {
		fputs("\r\033[K", stderr);
		im->bar = 0;
	}
}

/* Redraws the progress line (terminals only) when IM_PROGRESS_NS passed, or when force. */
static void im_progress(struct im *im, int force)
{
	int64_t now;
	double secs, rate;
	uint64_t done;

	if (!im->tty)
		return;
	now = mono_ns();
	if (!force && now - im->last_draw < IM_PROGRESS_NS)
		return;
	im->last_draw = now;
	secs = im_elapsed(im);
	done = im->rd.line - im->lines_start;
	rate = secs > 0 ? (double)done / secs : 0;
	fprintf(stderr, "\r\033[Kimport-customers: %" PRIu64 " lines  %.0f lines/s  %" PRIu64
	        " rejected", im->rd.line, rate, im->cnt.rejected);
	if (im->size > 0) {
		uint64_t at = reader_offset(&im->rd);
		double frac = (double)(at > im->size ? im->size : at) / (double)im->size;
		int fill = (int)(frac * 20);

		fprintf(stderr, "  [%.*s%.*s] %3.0f%%", fill, "####################", 20 - fill,
		        "                    ", frac * 100);
	}
	fflush(stderr);
	im->bar = 1;
}

static void im_errf(struct im *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "partnerctl: import-customers: " + message, with the progress line out of the way. */
static void im_errf(struct im *im, const char *fmt, ...)
{
	va_list ap;

	im_bar_clear(im);
	fputs("partnerctl: import-customers: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Reports line `line` as rejected with the reason in im->why or the format. */
static void im_reject(struct im *im, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void im_reject(struct im *im, uint64_t line, const char *fmt, ...)
{
	va_list ap;

	im_bar_clear(im);
	fprintf(stderr, "partnerctl: import-customers: %s:%" PRIu64 ": rejected: ", im->name, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	im->cnt.rejected++;
}

/* FNV-1a over the kind and the bytes. */
static uint64_t im_hash(int kind, const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	return h;
}

/* The overlay slot of (kind, value): the used one, or the free one to fill. */
static struct im_slot *im_ov_slot(struct im *im, int kind, const char *p, size_t len)
{
	size_t i = (size_t)im_hash(kind, p, len) & im->ovmask;

	for (;; i = (i + 1) & im->ovmask) {
		struct im_slot *s = &im->ov[i];

		if (s->gen != im->gen)
			return s;
		if (s->kind == kind && s->len == len && memcmp(s->p, p, len) == 0)
			return s;
	}
}

static void im_ov_set(struct im *im, int kind, const char *p, size_t len, int64_t cid)
{
	struct im_slot *s = im_ov_slot(im, kind, p, len);

	*s = (struct im_slot){ .gen = im->gen, .p = p, .len = len, .kind = kind, .cid = cid };
}

/* Adds id to the batch's ids: returns 0, or -1 when it is already there. */
static int im_id_add(struct im *im, int64_t id)
{
	size_t i = (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ULL >> 17) & im->idmask;

	for (;; i = (i + 1) & im->idmask) {
		struct im_idslot *s = &im->ids[i];

		if (s->gen != im->gen) {
			s->gen = im->gen;
			s->id = id;
			return 0;
		}
		if (s->id == id)
			return -1;
	}
}

static size_t im_pow2_at_least(size_t n)
{
	size_t p = 16;

	while (p < n)
		p <<= 1;
	return p;
}

/* ---- parsing lines ------------------------------------------------------------------- */

/* Collects ctl_cust_parse's problems into im->why: "customer ID: a; b". */
static void im_on_problem(void *arg, const struct ctl_cust_in *in, const char *msg)
{
	struct im *im = arg;

	if (im->why.len == 0 && in->id > 0)
		buf_appendf(&im->why, "customer %" PRId64 ": ", in->id);
	else if (im->why.len > 0)
		buf_append(&im->why, "; ", 2);
	buf_append(&im->why, msg, strlen(msg));
}

/* Copies identifier bytes into the batch arena; returns their offset. */
static size_t im_arena_put(struct im *im, const char *p, size_t len)
{
	size_t off = im->arena.len;

	if (buf_append(&im->arena, p, len) < 0) {
		fprintf(stderr, "partnerctl: import-customers: batch arena over its cap\n");
		abort();
	}
	return off;
}

enum im_line { IM_LINE_SKIP, IM_LINE_ADDED, IM_LINE_HELD };

/* The next entry of the batch, for the line just read. */
static struct im_cust *im_cust_new(struct im *im)
{
	struct im_cust *cu = &im->cust[im->n++];

	memset(cu, 0, sizeof *cu);
	cu->line = im->rd.line;
	return cu;
}

/*
 * Takes one data line: a blank line is skipped; any other is added to the batch (a bad
 * one with the reason it is rejected, reported when the batch is decided, so that
 * reports come in line order), except one whose id is already in the batch: that one is
 * held back for the next batch.
 */
static enum im_line im_take_line(struct im *im, const char *s, size_t len, int too_long)
{
	struct ctl_cust_in in;
	struct im_cust *cu;
	json_object *o;
	int rc;

	buf_reset(&im->why);
	if ((rc = reader_record(&im->rd, s, len, too_long, &o, &im->why)) == 0)
		return IM_LINE_SKIP;
	im->cnt.read++;
	if (rc > 0 && ctl_cust_parse(o, im->cc, im->nlen, &in, im_on_problem, im) == 0) {
		if (im_id_add(im, in.id) < 0) {
			/* The same customer again: the next batch applies it after this one. */
			json_object_put(o);
			im->cnt.read--;
			return IM_LINE_HELD;
		}
		cu = im_cust_new(im);
		cu->id = in.id;
		for (int k = 0; k < CTL_NIDENTS; k++) {
			if (in.val[k] == NULL)
				continue;
			cu->has[k] = 1;
			cu->len[k] = in.len[k];
			cu->off[k] = im_arena_put(im, in.val[k], in.len[k]);
		}
		json_object_put(o);
		return IM_LINE_ADDED;
	}
	json_object_put(o);
	cu = im_cust_new(im);
	cu->bad = 1;
	cu->verdict = IM_REJECTED;
	cu->why_len = im->why.len;
	cu->why_off = im_arena_put(im, im->why.p ? im->why.p : "", im->why.len);
	return IM_LINE_ADDED;
}

/* ---- a batch's round trips ----------------------------------------------------------- */

static int im_append(struct im *im)
{
	if (redisAppendCommandArgv(im->c, im->cmd.argc, im->cmd.argv, im->cmd.lens) != REDIS_OK) {
		im_errf(im, "redis: %s", im->c->errstr);
		return -1;
	}
	return 0;
}

/* Reads one reply of the pipeline. NULL (message printed) when the connection broke. */
static redisReply *im_reply(struct im *im)
{
	void *rv = NULL;

	if (redisGetReply(im->c, &rv) != REDIS_OK || rv == NULL) {
		im_errf(im, "redis: %s", im->c->errstr[0] ? im->c->errstr : "connection lost");
		return NULL;
	}
	return rv;
}

/* The read round trip: each customer's stored fields, the index holders of its values. */
static int im_read_batch(struct im *im)
{
	struct ctl_argv *a = &im->cmd;
	int sent[CTL_NIDENTS] = { 0 };
	redisReply *r;

	for (int i = 0; i < im->n; i++) {
		if (im->cust[i].bad)
			continue;
		ctl_argv_reset(a);
		ctl_argv_addstr(a, "HMGET");
		ctl_argv_addf(a, KEYS_CUST_FMT, im->org, (long long)im->cust[i].id);
		ctl_argv_addstr(a, "id");
		for (int k = 0; k < CTL_NIDENTS; k++)
			ctl_argv_addstr(a, ctl_ident_name[k]);
		ctl_argv_addstr(a, "v");
		if (im_append(im) < 0)
			return -1;
	}
	for (int k = 0; k < CTL_NIDENTS; k++) {
		ctl_argv_reset(a);
		ctl_argv_addstr(a, "HMGET");
		ctl_argv_addf(a, KEYS_IX_FMT, im->org, ctl_ident_name[k]);
		for (int i = 0; i < im->n; i++)
			if (im->cust[i].has[k])
				ctl_argv_add(a, im->cust[i].val[k], im->cust[i].len[k]);
		if (a->argc == 2)
			continue;   /* no customer of the batch has this identifier */
		if (im_append(im) < 0)
			return -1;
		sent[k] = 1;
	}

	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];

		if (cu->bad)
			continue;
		if ((cu->st = r = im_reply(im)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
			im_errf(im, "customer %" PRId64 ": unexpected reply to HMGET: %s", cu->id,
			        r->type == REDIS_REPLY_ERROR ? r->str : "?");
			return -1;
		}
		cu->has_v = r->element[4]->type == REDIS_REPLY_STRING;
		cu->stored = cu->has_v || r->element[0]->type == REDIS_REPLY_STRING;
	}
	for (int k = 0; k < CTL_NIDENTS; k++) {
		size_t j = 0;

		if (!sent[k])
			continue;
		if ((im->ix[k] = r = im_reply(im)) == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY) {
			im_errf(im, "unexpected reply to HMGET of the %s index: %s", ctl_ident_name[k],
			        r->type == REDIS_REPLY_ERROR ? r->str : "?");
			return -1;
		}
		for (int i = 0; i < im->n; i++) {
			struct im_cust *cu = &im->cust[i];
			redisReply *e;
			int64_t h = 0;

			if (!cu->has[k])
				continue;
			if (j == r->elements) {
				im_errf(im, "short reply to HMGET of the %s index", ctl_ident_name[k]);
				return -1;
			}
			e = r->element[j++];
			if (e->type == REDIS_REPLY_STRING && ident_parse_cid(e->str, e->len, &h) < 0)
				h = -1;
			cu->holder[k] = h;
		}
	}
	return 0;
}

/* The stored identifier k of cu, or NULL. */
static const redisReply *im_old(const struct im_cust *cu, int k)
{
	const redisReply *e = cu->st->element[1 + k];

	return e->type == REDIS_REPLY_STRING ? e : NULL;
}

/*
 * Decides each customer of the batch in line order, against what is stored as the
 * batch's earlier lines leave it (the overlay): rejected, new, changed or unchanged.
 */
static void im_decide_batch(struct im *im)
{
	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];
		int any = 0, k;

		if (cu->bad) {
			im_reject(im, cu->line, "%.*s", (int)cu->why_len, im->arena.p + cu->why_off);
			continue;
		}
		for (k = 0; k < CTL_NIDENTS; k++) {
			struct im_slot *s;
			int64_t h;

			if (!cu->has[k])
				continue;
			s = im_ov_slot(im, k, cu->val[k], cu->len[k]);
			h = s->gen == im->gen ? s->cid : cu->holder[k];
			if (h == 0 || h == cu->id)
				continue;
			if (h < 0)
				im_reject(im, cu->line, "customer %" PRId64 ": the stored %s index entry "
				          "for %s is not a customer id (run partnerctl check)", cu->id,
				          ctl_ident_name[k], ctl_quote(cu->val[k], cu->len[k]));
			else
				im_reject(im, cu->line, "customer %" PRId64 ": %s %s is already held by "
				          "customer %" PRId64, cu->id, ctl_ident_name[k],
				          ctl_quote(cu->val[k], cu->len[k]), h);
			break;
		}
		if (k < CTL_NIDENTS) {
			cu->verdict = IM_REJECTED;
			continue;
		}
		for (k = 0; k < CTL_NIDENTS; k++) {
			const redisReply *old = im_old(cu, k);

			cu->changed[k] = (old == NULL) != !cu->has[k] ||
			                 (old != NULL && (old->len != cu->len[k] ||
			                                  memcmp(old->str, cu->val[k], old->len) != 0));
			any |= cu->changed[k];
			if (cu->changed[k] && old != NULL)
				im_ov_set(im, k, old->str, old->len, 0);
			if (cu->has[k])
				im_ov_set(im, k, cu->val[k], cu->len[k], cu->id);
		}
		if (!cu->stored) {
			cu->verdict = IM_NEW;
			im->cnt.new++;
		} else if (any) {
			cu->verdict = IM_CHANGED;
			im->cnt.changed++;
		} else {
			cu->verdict = IM_UNCHANGED;
			im->cnt.unchanged++;
		}
	}
}

/* Queues the checkpoint: where the batch ends and the counts so far. */
static int im_queue_checkpoint(struct im *im)
{
	struct ctl_argv *a = &im->cmd;
	const struct im_counts *c = &im->cnt;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "HSET");
	ctl_argv_addstr(a, im->ckey);
	ctl_argv_addstr(a, "offset");
	ctl_argv_addll(a, (long long)reader_offset(&im->rd));
	ctl_argv_addstr(a, "line");
	ctl_argv_addll(a, (long long)im->rd.line);
	ctl_argv_addstr(a, "read");
	ctl_argv_addll(a, (long long)c->read);
	ctl_argv_addstr(a, "new");
	ctl_argv_addll(a, (long long)c->new);
	ctl_argv_addstr(a, "changed");
	ctl_argv_addll(a, (long long)c->changed);
	ctl_argv_addstr(a, "unchanged");
	ctl_argv_addll(a, (long long)c->unchanged);
	ctl_argv_addstr(a, "rejected");
	ctl_argv_addll(a, (long long)c->rejected);
	if (im_append(im) < 0)
		return -1;
	ctl_argv_reset(a);
	ctl_argv_addstr(a, "EXPIRE");
	ctl_argv_addstr(a, im->ckey);
	ctl_argv_addll(a, IM_CHECKPOINT_TTL);
	return im_append(im);
}

/*
 * Queues the batch's writes, in load's order (ld_write_customers): old index entries out
 * (only where they still point at the customer), then the customer hashes (v bumped when
 * identifiers changed), then index entries that are new or point elsewhere. Returns the
 * number of commands queued, or -1.
 */
static int im_queue_writes(struct im *im)
{
	struct ctl_argv *a = &im->cmd;
	int queued = 0;

	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];

		if (cu->verdict != IM_CHANGED)
			continue;
		for (int k = 0; k < CTL_NIDENTS; k++) {
			const redisReply *old = im_old(cu, k);

			if (old == NULL || !cu->changed[k])
				continue;
			ctl_argv_reset(a);
			ctl_argv_addstr(a, "EVAL");
			ctl_argv_addstr(a, ctl_lua_hdel_if);
			ctl_argv_addstr(a, "1");
			ctl_argv_addf(a, KEYS_IX_FMT, im->org, ctl_ident_name[k]);
			ctl_argv_add(a, old->str, old->len);
			ctl_argv_addll(a, (long long)cu->id);
			if (im_append(im) < 0)
				return -1;
			queued++;
		}
	}

	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];
		int removed = 0;

		if (cu->verdict == IM_REJECTED || (cu->verdict == IM_UNCHANGED && cu->has_v))
			continue;
		ctl_argv_reset(a);
		ctl_argv_addstr(a, "HSET");
		ctl_argv_addf(a, KEYS_CUST_FMT, im->org, (long long)cu->id);
		if (!cu->stored) {
			ctl_argv_addstr(a, "id");
			ctl_argv_addll(a, (long long)cu->id);
		}
		for (int k = 0; k < CTL_NIDENTS; k++) {
			if (!cu->changed[k])
				continue;
			if (!cu->has[k]) {
				removed = 1;
				continue;
			}
			ctl_argv_addstr(a, ctl_ident_name[k]);
			ctl_argv_add(a, cu->val[k], cu->len[k]);
		}
		if (!cu->has_v) {
			ctl_argv_addstr(a, "v");
			ctl_argv_addstr(a, "0");
		}
		if (a->argc > 2) {
			if (im_append(im) < 0)
				return -1;
			queued++;
		}
		if (removed) {
			ctl_argv_reset(a);
			ctl_argv_addstr(a, "HDEL");
			ctl_argv_addf(a, KEYS_CUST_FMT, im->org, (long long)cu->id);
			for (int k = 0; k < CTL_NIDENTS; k++)
				if (cu->changed[k] && !cu->has[k])
					ctl_argv_addstr(a, ctl_ident_name[k]);
			if (im_append(im) < 0)
				return -1;
			queued++;
		}
		if (cu->stored && cu->verdict == IM_CHANGED) {
			ctl_argv_reset(a);
			ctl_argv_addstr(a, "HINCRBY");
			ctl_argv_addf(a, KEYS_CUST_FMT, im->org, (long long)cu->id);
			ctl_argv_addstr(a, "v");
			ctl_argv_addstr(a, "1");
			if (im_append(im) < 0)
				return -1;
			queued++;
		}
	}

	for (int k = 0; k < CTL_NIDENTS; k++) {
		ctl_argv_reset(a);
		ctl_argv_addstr(a, "HSET");
		ctl_argv_addf(a, KEYS_IX_FMT, im->org, ctl_ident_name[k]);
		for (int i = 0; i < im->n; i++) {
			struct im_cust *cu = &im->cust[i];

			if (cu->verdict == IM_REJECTED || !cu->has[k] ||
			    (cu->holder[k] == cu->id && !cu->changed[k]))
				continue;
			ctl_argv_add(a, cu->val[k], cu->len[k]);
			ctl_argv_addll(a, (long long)cu->id);
		}
		if (a->argc > 2) {
			if (im_append(im) < 0)
				return -1;
			queued++;
		}
	}
	return queued;
}

/*
 * The write round trip, first half: sends MULTI, the writes, the checkpoint (files only)
 * and EXEC, so that a batch and its checkpoint commit together (with nothing to write
 * and no checkpoint the empty transaction is discarded). The replies are collected by
 * im_write_collect, after the next batch was parsed: Redis applies one batch while
 * partnerctl parses the next. Returns 0, or -1 (message printed).
 */
static int im_write_send(struct im *im)
{
	struct ctl_argv *a = &im->cmd;
	int queued, done = 0;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "MULTI");
	if (im_append(im) < 0)
		return -1;
	if ((queued = im_queue_writes(im)) < 0)
		return -1;
	if (im->ckey[0] != '\0') {
		if (im_queue_checkpoint(im) < 0)
			return -1;
		queued += 2;
	}
	ctl_argv_reset(a);
	ctl_argv_addstr(a, queued > 0 ? "EXEC" : "DISCARD");
	if (im_append(im) < 0)
		return -1;
	im->wqueued = queued;
	im->wpending = 1;
	while (!done) {
		if (redisBufferWrite(im->c, &done) != REDIS_OK) {
			im_errf(im, "redis: %s", im->c->errstr[0] ? im->c->errstr : "write failed");
			return -1;
		}
	}
	return 0;
}

/* The write round trip, second half: reads and checks the replies. */
static int im_write_collect(struct im *im)
{
	int queued = im->wqueued, total = queued + 2, rc = 0;
	redisReply *r;

	if (!im->wpending)
		return 0;
	im->wpending = 0;
	for (int i = 0; i < total; i++) {
		if ((r = im_reply(im)) == NULL)
			return -1;
		if (r->type == REDIS_REPLY_ERROR) {
			im_errf(im, "redis refused a write: %s", r->str);
			rc = -1;
		} else if (i == total - 1 && queued > 0) {
			if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)queued) {
				im_errf(im, "the batch's transaction was not applied");
				rc = -1;
			}
			for (size_t j = 0; r->type == REDIS_REPLY_ARRAY && j < r->elements; j++) {
				if (r->element[j]->type == REDIS_REPLY_ERROR) {
					im_errf(im, "redis refused a write: %s", r->element[j]->str);
					rc = -1;
				}
			}
		}
		freeReplyObject(r);
	}
	return rc;
}

/* Frees what a batch holds and makes the next one empty. */
static void im_batch_reset(struct im *im)
{
	for (int i = 0; i < im->n; i++)
		if (im->cust[i].st != NULL)
			freeReplyObject(im->cust[i].st);
	for (int k = 0; k < CTL_NIDENTS; k++) {
		if (im->ix[k] != NULL)
			freeReplyObject(im->ix[k]);
		im->ix[k] = NULL;
	}
	im->n = 0;
	buf_reset(&im->arena);
	im->gen++;
}

/* Reads and decides the batch, and sends its writes (im_write_collect checks them). */
static int im_run_batch(struct im *im)
{
	for (int i = 0; i < im->n; i++)
		for (int k = 0; k < CTL_NIDENTS; k++)
			im->cust[i].val[k] = im->cust[i].has[k] ? im->arena.p + im->cust[i].off[k] : NULL;
	if (im_read_batch(im) < 0)
		return -1;
	im_decide_batch(im);
	return im_write_send(im);
}

/* ---- setting up ---------------------------------------------------------------------- */

/* Reads the org's mobile settings. Returns 0, or a CTL_EXIT_* code (message printed). */
static int im_read_org(struct im *im)
{
	struct ctl_argv *a = &im->cmd;
	redisReply *r, *cc, *nl;
	int rc = CTL_EXIT_OK;
	char *end;
	long v;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "HMGET");
	ctl_argv_addf(a, KEYS_ORG_FMT, im->org);
	ctl_argv_addstr(a, "defaultCountryCode");
	ctl_argv_addstr(a, "nationalNumberLength");
	if ((r = ctl_command(im->c, a)) == NULL)
		return CTL_EXIT_FAIL;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		im_errf(im, "unexpected reply to HMGET of the org settings");
		freeReplyObject(r);
		return CTL_EXIT_FAIL;
	}
	cc = r->element[0];
	nl = r->element[1];
	if (cc->type != REDIS_REPLY_STRING && nl->type != REDIS_REPLY_STRING) {
		im_errf(im, "unknown org %s (load it first with partnerctl load)", im->org);
		rc = CTL_EXIT_USAGE;
	} else if (cc->type != REDIS_REPLY_STRING || cc->len < 1 || cc->len > 4 ||
	           strspn(cc->str, "0123456789") != cc->len || nl->type != REDIS_REPLY_STRING ||
	           (v = strtol(nl->str, &end, 10), *end != '\0') || v < 4 || v > 15) {
		im_errf(im, "org %s: the stored settings (" KEYS_ORG_FMT ") are not valid; run "
		        "partnerctl load for the org", im->org, im->org);
		rc = CTL_EXIT_FAIL;
	} else {
		memcpy(im->cc, cc->str, cc->len);
		im->cc[cc->len] = '\0';
		im->nlen = (int)v;
	}
	freeReplyObject(r);
	return rc;
}

/* The checkpoint key of the open file: BLAKE2b-128 of "ABSPATH\0SIZE\0MTIME". */
static int im_checkpoint_key(struct im *im, const struct stat *st)
{
	unsigned char h[16];
	char hex[sizeof h * 2 + 1];
	char *abs = realpath(im->path, NULL);
	crypto_generichash_state s;
	char tail[96];
	int n;

	if (abs == NULL) {
		im_errf(im, "cannot resolve %s: %s", im->path, strerror(errno));
		return -1;
	}
	n = snprintf(tail, sizeof tail, "%lld%c%lld.%09ld", (long long)st->st_size, '\0',
	             (long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec);
	crypto_generichash_init(&s, NULL, 0, sizeof h);
	crypto_generichash_update(&s, (const unsigned char *)abs, strlen(abs) + 1);
	crypto_generichash_update(&s, (const unsigned char *)tail, (unsigned long long)n);
	crypto_generichash_final(&s, h, sizeof h);
	free(abs);
	sodium_bin2hex(hex, sizeof hex, h, sizeof h);
	snprintf(im->ckey, sizeof im->ckey, KEYS_IMPORT_FMT, im->org, hex);
	return 0;
}

/* Parses a checkpoint count. */
static int im_u64(const redisReply *e, uint64_t *out)
{
	char *end;

	if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 19 ||
	    strspn(e->str, "0123456789") != e->len)
		return -1;
	*out = strtoull(e->str, &end, 10);
	return 0;
}

/*
 * --resume: reads the checkpoint into im->resume_* and im->cnt. Returns 1 when there is
 * one, 0 when there is none, -1 on error (message printed).
 */
static int im_read_checkpoint(struct im *im)
{
	static const char *const f[] = { "offset", "line", "read", "new", "changed",
	                                 "unchanged", "rejected" };
	struct ctl_argv *a = &im->cmd;
	uint64_t v[7];
	redisReply *r;
	int rc = 1;

	ctl_argv_reset(a);
	ctl_argv_addstr(a, "HMGET");
	ctl_argv_addstr(a, im->ckey);
	for (size_t i = 0; i < 7; i++)
		ctl_argv_addstr(a, f[i]);
	if ((r = ctl_command(im->c, a)) == NULL)
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 7) {
		rc = -1;
	} else if (r->element[0]->type == REDIS_REPLY_NIL) {
		rc = 0;
	} else {
		for (size_t i = 0; i < 7 && rc == 1; i++)
			if (im_u64(r->element[i], &v[i]) < 0)
				rc = -1;
		if (rc == 1 && im->size > 0 && v[0] > im->size)
			rc = -1;
	}
	freeReplyObject(r);
	if (rc < 0) {
		im_errf(im, "the checkpoint %s is not valid; run without --resume", im->ckey);
		return -1;
	}
	if (rc == 1) {
		im->resume_off = v[0];
		im->resume_line = v[1];
		im->cnt = (struct im_counts){ .read = v[2], .new = v[3], .changed = v[4],
		                              .unchanged = v[5], .rejected = v[6] };
	}
	return rc;
}

/* 1 when path ends with ext (case-insensitively). */
/*
 * Opens the input, decides its format, reads the CSV header, and for --resume seeks to
 * the checkpoint. Returns 0 or a CTL_EXIT_* code (message printed).
 */
static int im_open(struct im *im, int resume)
{
	struct stat st;
	int fd, rc;

	if (strcmp(im->path, "-") == 0) {
		fd = STDIN_FILENO;
		im->name = "stdin";
	} else if ((fd = open(im->path, O_RDONLY | O_CLOEXEC)) < 0) {
		im_errf(im, "cannot open %s: %s", im->path, strerror(errno));
		return CTL_EXIT_FAIL;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		im->size = (uint64_t)st.st_size;
	reader_init(&im->rd, fd);
	if (fd != STDIN_FILENO && im_checkpoint_key(im, &st) < 0)
		return CTL_EXIT_FAIL;
	if (reader_detect_format(&im->rd, fd == STDIN_FILENO ? NULL : im->path) < 0) {
		im_errf(im, "cannot read %s: %s", im->name, strerror(im->rd.err));
		return CTL_EXIT_FAIL;
	}
	if (im->rd.format == READER_CSV) {
		char why[512];

		rc = reader_csv_header(&im->rd, why, sizeof why);
		if (rc == -1) {
			im_errf(im, "cannot read %s: %s", im->name, strerror(im->rd.err));
			return CTL_EXIT_FAIL;
		}
		if (rc < 0) {
			im_errf(im, "%s: %s", im->name, why);
			return CTL_EXIT_FAIL;
		}
	}

	if (resume) {
		rc = im_read_checkpoint(im);
		if (rc < 0)
			return CTL_EXIT_FAIL;
		if (rc == 0) {
			im_errf(im, "no checkpoint for %s: starting at the beginning", im->name);
		} else if (im->resume_off >= reader_offset(&im->rd)) {
			if (reader_seek(&im->rd, im->resume_off, im->resume_line) < 0) {
				im_errf(im, "cannot seek in %s: %s", im->name, strerror(errno));
				return CTL_EXIT_FAIL;
			}
			im->resumed = 1;
			im_errf(im, "resuming %s after line %" PRIu64 " (byte %" PRIu64 ")", im->name,
			        im->resume_line, im->resume_off);
		} else {
			im_errf(im, "the checkpoint %s points before the data; run without --resume",
			        im->ckey);
			return CTL_EXIT_FAIL;
		}
	}
	return CTL_EXIT_OK;
}

/* ---- the verb ------------------------------------------------------------------------ */

static void im_free(struct im *im)
{
	im_batch_reset(im);
	reader_free(&im->rd);
	free(im->cust);
	free(im->ov);
	free(im->ids);
	buf_free(&im->arena);
	buf_free(&im->why);
	ctl_argv_free(&im->cmd);
	if (im->c != NULL)
		redisFree(im->c);
}

/* Reports a failed batch: what to do next. */
static void im_failed(struct im *im, uint64_t first, uint64_t last)
{
	im_errf(im, "the batch of lines %" PRIu64 "-%" PRIu64 " failed%s", first, last,
	        im->ckey[0] ? "; run again with --resume to continue after the last committed "
	        "batch" : "");
}

/*
 * The whole file, batch by batch: parse batch i + 1 while Redis applies batch i, then
 * collect batch i's replies before batch i + 1's reads go out (one connection: Redis
 * runs them in that order). Returns a CTL_EXIT_* code.
 */
static int im_run(struct im *im)
{
	uint64_t first = im->rd.line + 1, sent_first = 0, sent_last = 0;
	int eof = 0;

	im->lines_start = im->rd.line;
	while (!eof) {
		const char *p;
		size_t len;
		int too_long, rc;

		while (im->n < im->batch) {
			rc = reader_next(&im->rd, &p, &len, &too_long);
			if (rc < 0) {
				im_errf(im, "cannot read %s: %s", im->name, strerror(im->rd.err));
				return CTL_EXIT_FAIL;
			}
			if (rc == 0) {
				eof = 1;
				break;
			}
			if (im_take_line(im, p, len, too_long) == IM_LINE_HELD) {
				reader_unread(&im->rd);
				break;
			}
			if ((im->rd.line & 255) == 0)
				im_progress(im, 0);
		}
		if (im_write_collect(im) < 0) {
			im_failed(im, sent_first, sent_last);
			return CTL_EXIT_FAIL;
		}
		if (im->n == 0 && eof)
			break;
		sent_first = first;
		sent_last = im->rd.line;
		if (im_run_batch(im) < 0) {
			im_failed(im, sent_first, sent_last);
			return CTL_EXIT_FAIL;
		}
		first = im->rd.line + 1;
		im_batch_reset(im);
		im_progress(im, 0);
	}
	if (im_write_collect(im) < 0) {
		im_failed(im, sent_first, sent_last);
		return CTL_EXIT_FAIL;
	}
	if (im->ckey[0] != '\0') {
		struct ctl_argv *a = &im->cmd;
		redisReply *r;

		ctl_argv_reset(a);
		ctl_argv_addstr(a, "DEL");
		ctl_argv_addstr(a, im->ckey);
		if ((r = ctl_command(im->c, a)) == NULL)
			return CTL_EXIT_FAIL;
		freeReplyObject(r);
	}
	im_progress(im, 1);
	im_bar_clear(im);
	return CTL_EXIT_OK;
}

int ctl_import_main(struct ctl *ctl, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "org", required_argument, NULL, 'o' },
		{ "resume", no_argument, NULL, 'R' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct im im = { .batch = IM_BATCH_DEFAULT };
	int c, resume = 0, rc;
	char *end;
	long v;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'o':
			im.org = optarg;
			break;
		case 'R':
			resume = 1;
			break;
		case 'b':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || v < 1 || v > IM_BATCH_MAX) {
				ctl_errf("import-customers: --batch must be from 1 to %d", IM_BATCH_MAX);
				return CTL_EXIT_USAGE;
			}
			im.batch = (int)v;
			break;
		case 'h':
			ctl_verb_usage(stdout, "import-customers");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "import-customers");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || im.org == NULL) {
		ctl_verb_usage(stderr, "import-customers");
		return CTL_EXIT_USAGE;
	}
	im.path = im.name = argv[optind];
	if (!ident_valid_org(im.org)) {
		ctl_errf("import-customers: org id %s is not [A-Za-z0-9_.-]{1,64}",
		         ctl_quote(im.org, strlen(im.org)));
		return CTL_EXIT_USAGE;
	}
	if (resume && strcmp(im.path, "-") == 0) {
		ctl_errf("import-customers: --resume needs a file (stdin has no checkpoint)");
		return CTL_EXIT_USAGE;
	}

	ctl_argv_init(&im.cmd);
	buf_init(&im.why, 4096);
	buf_init(&im.arena, (size_t)-1 / 2);
	im.tty = isatty(STDERR_FILENO);
	im.cust = xcalloc((size_t)im.batch, sizeof *im.cust);
	im.ovmask = im_pow2_at_least((size_t)im.batch * 4 * CTL_NIDENTS) - 1;
	im.ov = xcalloc(im.ovmask + 1, sizeof *im.ov);
	im.idmask = im_pow2_at_least((size_t)im.batch * 2) - 1;
	im.ids = xcalloc(im.idmask + 1, sizeof *im.ids);
	im.gen = 1;

	if ((im.c = ctl_connect(ctl)) == NULL) {
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	if ((rc = im_read_org(&im)) != CTL_EXIT_OK)
		goto out;
	if ((rc = im_open(&im, resume)) != CTL_EXIT_OK)
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &im.t0);
	rc = im_run(&im);
	if (rc == CTL_EXIT_OK) {
		const struct im_counts *n = &im.cnt;

		printf("import-customers: org %s: %s: %" PRIu64 " line(s) read, %" PRIu64
		       " imported (%" PRIu64 " new, %" PRIu64 " changed, %" PRIu64 " unchanged), %"
		       PRIu64 " rejected", im.org, im.name, n->read, n->new + n->changed + n->unchanged,
		       n->new, n->changed, n->unchanged, n->rejected);
		if (im.resumed)
			printf("; resumed after line %" PRIu64 " (byte %" PRIu64 ")", im.resume_line,
			       im.resume_off);
		printf("; %.2f s\n", im_elapsed(&im));
		rc = n->rejected > 0 ? CTL_EXIT_FAIL : CTL_EXIT_OK;
	}
out:
	im_free(&im);
	return rc;
}
