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
 * Round trips: lines are taken in batches of N customers (--batch, default 5000; a batch
 * also ends early at a line whose id is already in it, so that the line sees the earlier
 * one applied). Per batch: one pipelined read (HMGET of each customer hash, and one HMGET
 * per index bucket the batch's values fall in), the decisions in memory, then one
 * pipelined MULTI/EXEC holding the batch's writes and its checkpoint.
 *
 * On a Redis Cluster a batch's keys are on every master and no transaction spans them:
 * the writes go in three rounds, each applied before the next is sent, then the
 * checkpoint (im_write_send_phased says why that order). A batch is not atomic there, but
 * whatever a kill or a failure stops leaves data that the same import run again (--resume,
 * from the last checkpoint) finishes: the same result as a run that was not stopped.
 *
 * The default batch: key layout 2 spreads each identifier index over LAYOUT_PARTS bucket
 * hashes, and a batch reads and writes each bucket it touches with one command. With 1000
 * customers a batch touches ~250 buckets of each kind: 1.5 bucket commands (reads and
 * writes) per customer on top of its HMGET and HSET; with 5000, ~0.3. Bigger batches buy
 * little more and hold Redis longer in each EXEC (docs/PERFORMANCE.md, import-customers).
 *
 * Checkpoint (docs/DATA-MODEL.md): pp:{ORG}:import:HEX, HEX = 32 hex chars of BLAKE2b-128
 * of the file's absolute path, size and mtime, a HASH: offset (byte offset after the last
 * line of the last committed batch), line (its line number) and the running counts read,
 * new, changed, unchanged, rejected. It commits atomically with the batch's writes (the
 * same MULTI/EXEC; on a cluster once the batch's writes applied), expires IM_CHECKPOINT_TTL after the last batch, and is deleted when
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
#include "xmalloc.h"

#define IM_BATCH_DEFAULT 5000
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
	size_t old_off[CTL_NIDENTS];      /* stored identifier k: im->olds bytes [off, off + len) */
	size_t old_len[CTL_NIDENTS];
	int has_old[CTL_NIDENTS];         /* identifier k is stored */
	const char *old[CTL_NIDENTS];     /* resolved from old_off once the batch was read */
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
	struct store_import_ckpt ckpt;    /* the checkpoint, key "" for stdin */
	int resumed;
	uint64_t resume_line, resume_off;

	struct store_admin *st;           /* the store session */
	struct buf why;                   /* the reasons of the line being rejected */

	struct im_cust *cust;             /* batch: batch entries */
	int n;
	int nread;                        /* batch: customers whose stored fields came back */
	struct buf arena;                 /* batch: identifier bytes */
	struct buf olds;                  /* batch: stored identifier bytes */
	int *ixcust[CTL_NIDENTS];         /* batch: index lookup i of kind k is customer ixcust[k][i] */
	struct im_slot *ov;               /* batch: the index overlay */
	size_t ovmask;
	struct im_idslot *ids;            /* batch: its customer ids */
	size_t idmask;
	uint64_t gen;                     /* batch number: marks the used overlay and id slots */

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

/* A failure the store found in the pipeline. */
static void im_report(void *arg, const char *msg)
{
	im_errf(arg, "%s", msg);
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

/* Receives what is stored of customer i of the batch; its identifiers go to im->olds. */
static int im_on_stored(void *arg, const struct store_cust_ids *ids)
{
	struct im *im = arg;
	struct im_cust *cu = &im->cust[im->nread++];

	while (cu->bad)
		cu = &im->cust[im->nread++];
	cu->has_v = ids->has_v;
	cu->stored = ids->stored;
	for (int k = 0; k < CTL_NIDENTS; k++) {
		cu->has_old[k] = ids->val[k] != NULL;
		if (!cu->has_old[k])
			continue;
		cu->old_off[k] = im->olds.len;
		cu->old_len[k] = ids->len[k];
		if (buf_append(&im->olds, ids->val[k], ids->len[k]) < 0) {
			fprintf(stderr, "partnerctl: import-customers: batch arena over its cap\n");
			abort();
		}
	}
	return 0;
}

/* The index holder of lookup i of one kind (arg: that kind's customer map). */
struct im_holders {
	struct im *im;
	int kind;
};

static void im_on_holder(void *arg, size_t i, int64_t holder)
{
	struct im_holders *h = arg;

	h->im->cust[h->im->ixcust[h->kind][i]].holder[h->kind] = holder;
}

/* Queues the lookup of the index holders of the batch's identifiers of kind k. */
static int im_read_holders(struct im *im, int k, struct im_holders *h)
{
	const char **vals = xcalloc((size_t)im->n + 1, sizeof *vals);
	size_t *lens = xcalloc((size_t)im->n + 1, sizeof *lens), n = 0;
	int rc = 0;

	for (int i = 0; i < im->n; i++) {
		if (!im->cust[i].has[k])
			continue;
		im->ixcust[k][n] = i;
		vals[n] = im->cust[i].val[k];
		lens[n++] = im->cust[i].len[k];
	}
	h->im = im;
	h->kind = k;
	/* no customer of the batch has this identifier: nothing to ask */
	if (n > 0)
		rc = store_admin_q_ix_holders(im->st, im->org, (enum store_ident)k, n, vals, lens,
		                              im_on_holder, h);
	free(vals);
	free(lens);
	return rc;
}

/* The read round trip: each customer's stored fields, the index holders of its values. */
static int im_read_batch(struct im *im)
{
	struct im_holders h[CTL_NIDENTS];

	im->nread = 0;
	for (int i = 0; i < im->n; i++)
		if (!im->cust[i].bad &&
		    store_admin_q_customer_ids(im->st, im->org, im->cust[i].id, im_on_stored, im) < 0)
			break;
	for (int k = 0; k < CTL_NIDENTS; k++)
		if (im_read_holders(im, k, &h[k]) < 0)
			break;
	if (store_admin_flush(im->st) < 0)
		return -1;
	for (int i = 0; i < im->n; i++)
		for (int k = 0; k < CTL_NIDENTS; k++)
			im->cust[i].old[k] = im->cust[i].has_old[k] ?
			                     im->olds.p + im->cust[i].old_off[k] : NULL;
	return 0;
}

/* The stored identifier k of cu and its length, or NULL. */
static const char *im_old(const struct im_cust *cu, int k, size_t *len)
{
	*len = cu->old_len[k];
	return cu->old[k];
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
			size_t oldlen;
			const char *old = im_old(cu, k, &oldlen);

			cu->changed[k] = (old == NULL) != !cu->has[k] ||
			                 (old != NULL && (oldlen != cu->len[k] ||
			                                  memcmp(old, cu->val[k], oldlen) != 0));
			any |= cu->changed[k];
			if (cu->changed[k] && old != NULL)
				im_ov_set(im, k, old, oldlen, 0);
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

/* Queues the checkpoint: where the batch ends and the counts so far (2 commands). */
static int im_queue_checkpoint(struct im *im)
{
	const struct im_counts *c = &im->cnt;
	struct store_import_mark m = {
		.offset = reader_offset(&im->rd), .line = im->rd.line, .read = c->read,
		.new = c->new, .changed = c->changed, .unchanged = c->unchanged,
		.rejected = c->rejected,
	};

	return store_admin_q_import_ckpt(im->st, &im->ckpt, &m, IM_CHECKPOINT_TTL);
}

/* Old index entries out, where they still point at a changed customer. */
static int im_queue_releases(struct im *im)
{
	int queued = 0;

	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];

		if (cu->verdict != IM_CHANGED)
			continue;
		for (int k = 0; k < CTL_NIDENTS; k++) {
			if (cu->old[k] == NULL || !cu->changed[k])
				continue;
			if (store_admin_q_ix_release(im->st, im->org, (enum store_ident)k, cu->old[k],
			                             cu->old_len[k], cu->id) < 0)
				return -1;
			queued++;
		}
	}
	return queued;
}

/* The customer hashes: new ones, changed identifiers (v bumped), a missing v. */
static int im_queue_hashes(struct im *im)
{
	int queued = 0, n;

	for (int i = 0; i < im->n; i++) {
		struct im_cust *cu = &im->cust[i];
		struct store_cust_ids ids = { .stored = cu->stored, .has_v = cu->has_v };

		if (cu->verdict == IM_REJECTED || (cu->verdict == IM_UNCHANGED && cu->has_v))
			continue;
		for (int k = 0; k < CTL_NIDENTS; k++) {
			ids.val[k] = cu->old[k];
			ids.len[k] = cu->old_len[k];
		}
		if ((n = store_admin_q_customer_write(im->st, im->org, cu->id, &ids, cu->val,
		                                      cu->len)) < 0)
			return -1;
		queued += n;
	}
	return queued;
}

/* Index entries that are new or point elsewhere: one command per index. */
static int im_queue_index(struct im *im)
{
	const char **vals = xcalloc((size_t)im->n + 1, sizeof *vals);
	size_t *lens = xcalloc((size_t)im->n + 1, sizeof *lens);
	int64_t *cids = xcalloc((size_t)im->n + 1, sizeof *cids);
	int queued = 0;

	for (int k = 0; k < CTL_NIDENTS && queued >= 0; k++) {
		size_t n = 0;

		for (int i = 0; i < im->n; i++) {
			struct im_cust *cu = &im->cust[i];

			if (cu->verdict == IM_REJECTED || !cu->has[k] ||
			    (cu->holder[k] == cu->id && !cu->changed[k]))
				continue;
			vals[n] = cu->val[k];
			lens[n] = cu->len[k];
			cids[n++] = cu->id;
		}
		if (n == 0)
			continue;
		int q = store_admin_q_ix_set(im->st, im->org, (enum store_ident)k, n, vals, lens, cids);

		queued = q < 0 ? -1 : queued + q;
	}
	free(vals);
	free(lens);
	free(cids);
	return queued;
}

/*
 * Queues the batch's writes, in load's order (ld_write_customers): old index entries out
 * (only where they still point at the customer), then the customer hashes (v bumped when
 * identifiers changed), then index entries that are new or point elsewhere. Returns the
 * number of commands queued, or -1.
 */
static int im_queue_writes(struct im *im)
{
	int a, b, c;

	if ((a = im_queue_releases(im)) < 0 || (b = im_queue_hashes(im)) < 0 ||
	    (c = im_queue_index(im)) < 0)
		return -1;
	return a + b + c;
}

/*
 * The write round trip on a Redis Cluster, where nothing makes a batch atomic: three
 * rounds, each sent once the one before applied (store_admin_flush), in an order that
 * lets a re-run finish what a kill or a failure stopped at any point:
 * 1. the old index entries out (hdel_if: only where they still name the customer), while
 *    the customer hashes still hold the old values: a re-run reads them there again and
 *    removes what is left (a hash written first would forget them, and their index entries
 *    would stay);
 * 2. the customer hashes (v bumped before the identifiers: store_admin.h);
 * 3. the new index entries, once their customers hold the values (an entry never names a
 *    customer hash that does not exist yet); a re-run writes those that are missing (it
 *    finds the customer's values stored and the index not naming it);
 * then the checkpoint, written only when all of that applied, so --resume never skips a
 * line whose writes are not all there. Its reply is collected with the next batch's, as
 * on one Redis. Returns 0, or -1 (message printed).
 */
static int im_write_send_phased(struct im *im)
{
	if (im_queue_releases(im) < 0 || store_admin_flush(im->st) < 0)
		return -1;
	if (im_queue_hashes(im) < 0 || store_admin_flush(im->st) < 0)
		return -1;
	if (im_queue_index(im) < 0 || store_admin_flush(im->st) < 0)
		return -1;
	if (im->ckpt.key[0] != '\0' && im_queue_checkpoint(im) < 0)
		return -1;
	return store_admin_send(im->st);
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
	int queued;

	if (store_admin_is_cluster(im->st))
		return im_write_send_phased(im);
	if (store_admin_q_multi(im->st) < 0)
		return -1;
	if ((queued = im_queue_writes(im)) < 0)
		return -1;
	if (im->ckpt.key[0] != '\0') {
		if (im_queue_checkpoint(im) < 0)
			return -1;
		queued += 2;
	}
	if (store_admin_q_exec(im->st, queued) < 0)
		return -1;
	return store_admin_send(im->st);
}

/* The write round trip, second half: reads and checks the replies. */
static int im_write_collect(struct im *im)
{
	return store_admin_flush(im->st);
}

/* Frees what a batch holds and makes the next one empty. */
static void im_batch_reset(struct im *im)
{
	im->n = 0;
	buf_reset(&im->arena);
	buf_reset(&im->olds);
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
	struct store_org_settings set;
	char nl[24], key[128];
	char *end;
	long v;

	if (store_admin_org_settings(im->st, im->org, &set) < 0) {
		ctl_errf("%s", store_admin_error(im->st));
		return CTL_EXIT_FAIL;
	}
	if (set.cc == NULL && set.nlen == NULL) {
		im_errf(im, "unknown org %s (load it first with partnerctl load)", im->org);
		return CTL_EXIT_USAGE;
	}
	if (set.nlen != NULL && set.nlen_len < sizeof nl) {
		memcpy(nl, set.nlen, set.nlen_len);
		nl[set.nlen_len] = '\0';
	} else {
		nl[0] = '\0';
	}
	if (set.cc == NULL || set.cc_len < 1 || set.cc_len > 4 ||
	    strspn(set.cc, "0123456789") < set.cc_len || set.nlen == NULL ||
	    (v = strtol(nl, &end, 10), *end != '\0' || end == nl) || v < 4 || v > 15) {
		im_errf(im, "org %s: the stored settings (%s) are not valid; run partnerctl load "
		        "for the org", im->org, store_key_name(key, sizeof key, STORE_KEY_ORG, im->org, 0));
		return CTL_EXIT_FAIL;
	}
	memcpy(im->cc, set.cc, set.cc_len);
	im->cc[set.cc_len] = '\0';
	im->nlen = (int)v;
	return CTL_EXIT_OK;
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
	store_import_ckpt_init(&im->ckpt, im->org, hex);
	return 0;
}

/*
 * --resume: reads the checkpoint into im->resume_* and im->cnt. Returns 1 when there is
 * one, 0 when there is none, -1 on error (message printed).
 */
static int im_read_checkpoint(struct im *im)
{
	struct store_import_mark m;
	int rc = store_admin_import_ckpt_read(im->st, &im->ckpt, &m);

	if (rc == -1) {
		ctl_errf("%s", store_admin_error(im->st));
		return -1;
	}
	if (rc == 1 && im->size > 0 && m.offset > im->size)
		rc = -2;
	if (rc < 0) {
		im_errf(im, "the checkpoint %s is not valid; run without --resume", im->ckpt.key);
		return -1;
	}
	if (rc == 1) {
		im->resume_off = m.offset;
		im->resume_line = m.line;
		im->cnt = (struct im_counts){ .read = m.read, .new = m.new, .changed = m.changed,
		                              .unchanged = m.unchanged, .rejected = m.rejected };
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
			        im->ckpt.key);
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
	buf_free(&im->olds);
	buf_free(&im->why);
	for (int k = 0; k < CTL_NIDENTS; k++)
		free(im->ixcust[k]);
	store_admin_close(im->st);
}

/* Reports a failed batch: what to do next. */
static void im_failed(struct im *im, uint64_t first, uint64_t last)
{
	im_errf(im, "the batch of lines %" PRIu64 "-%" PRIu64 " failed%s", first, last,
	        im->ckpt.key[0] ? "; run again with --resume to continue after the last committed "
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
	if (im->ckpt.key[0] != '\0' && store_admin_import_ckpt_del(im->st, &im->ckpt) < 0) {
		ctl_errf("%s", store_admin_error(im->st));
		return CTL_EXIT_FAIL;
	}
	im_progress(im, 1);
	im_bar_clear(im);
	return CTL_EXIT_OK;
}

/*
 * The verb's command line into im and *resume. Returns -1 to go on, else the CTL_EXIT_*
 * code to exit with (usage or help printed).
 */
static int im_parse_args(struct ctl *ctl, int argc, char **argv, struct im *im, int *resume)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "org", required_argument, NULL, 'o' },
		{ "resume", no_argument, NULL, 'R' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	char *end;
	long v;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'o':
			im->org = optarg;
			break;
		case 'R':
			*resume = 1;
			break;
		case 'b':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || v < 1 || v > IM_BATCH_MAX) {
				ctl_errf("import-customers: --batch must be from 1 to %d", IM_BATCH_MAX);
				return CTL_EXIT_USAGE;
			}
			im->batch = (int)v;
			break;
		case 'h':
			ctl_verb_usage(stdout, "import-customers");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "import-customers");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc - 1 || im->org == NULL) {
		ctl_verb_usage(stderr, "import-customers");
		return CTL_EXIT_USAGE;
	}
	im->path = im->name = argv[optind];
	if (!ident_valid_org(im->org)) {
		ctl_errf("import-customers: org id %s is not [A-Za-z0-9_.-]{1,64}",
		         ctl_quote(im->org, strlen(im->org)));
		return CTL_EXIT_USAGE;
	}
	if (*resume && strcmp(im->path, "-") == 0) {
		ctl_errf("import-customers: --resume needs a file (stdin has no checkpoint)");
		return CTL_EXIT_USAGE;
	}
	return -1;
}

int ctl_import_main(struct ctl *ctl, int argc, char **argv)
{
	struct im im = { .batch = IM_BATCH_DEFAULT };
	int resume = 0, rc;

	if ((rc = im_parse_args(ctl, argc, argv, &im, &resume)) >= 0)
		return rc;
	buf_init(&im.why, 4096);
	buf_init(&im.arena, (size_t)-1 / 2);
	buf_init(&im.olds, (size_t)-1 / 2);
	for (int k = 0; k < CTL_NIDENTS; k++)
		im.ixcust[k] = xcalloc((size_t)im.batch, sizeof *im.ixcust[k]);
	im.tty = isatty(STDERR_FILENO);
	im.cust = xcalloc((size_t)im.batch, sizeof *im.cust);
	im.ovmask = im_pow2_at_least((size_t)im.batch * 4 * CTL_NIDENTS) - 1;
	im.ov = xcalloc(im.ovmask + 1, sizeof *im.ov);
	im.idmask = im_pow2_at_least((size_t)im.batch * 2) - 1;
	im.ids = xcalloc(im.idmask + 1, sizeof *im.ids);
	im.gen = 1;

	if ((im.st = ctl_store_open(ctl)) == NULL) {
		rc = CTL_EXIT_USAGE;
		goto out;
	}
	store_admin_set_report(im.st, im_report, &im);
	if (store_admin_layout(im.st) < 0) {
		rc = CTL_EXIT_FAIL;
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
