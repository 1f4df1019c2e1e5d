/*
 * ctl_migrate: `partnerctl migrate [--batch N]`: the data of key layout 1 (every release
 * before layout 2) moved to the current key layout (issue 14; docs/OPERATIONS.md "Upgrading
 * the key layout"), in place, on one Redis; and data of key layout 2 brought to layout 3
 * (one Redis or a cluster: layout 3 keeps the customer's lock in its hash, so nothing moves).
 * The Redis work is store_migrate.c's; this file holds the policy: when to refuse, the order
 * of the phases, progress and messages.
 *
 * Refuses (and changes nothing) when the data is on the current layout already ("nothing
 * to do", exit 0), on a layout it does not know (exit 1), on a Redis Cluster holding
 * layout 1 (the migration is of one Redis: exit 1), and while lock keys of layout 1 or 2
 * exist (a partnerd of an older release is serving: exit 1). From layout 1: the customer
 * keys, Idempotency-Keys and rate windows (one SCAN pass), the indexes into buckets, the
 * feeds into partitions; a last SCAN makes sure that no layout-1 key is left, and only
 * then is the layout recorded. A run that was killed, or stopped by a problem, is finished
 * by running migrate again: see store_migrate.h for why every point of a crash leaves data
 * a re-run completes.
 *
 * Progress: on stderr, only when stderr is a terminal, redrawn at most every 100 ms. The
 * summary goes to stdout.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "layout.h"
#include "store_migrate.h"

#define MG_BATCH_DEFAULT 1000
#define MG_BATCH_MAX 100000
#define MG_PROGRESS_NS 100000000LL      /* at most 10 redraws a second */

static const char *const mg_phase_name[STORE_MIGRATE_NPHASES] = {
	[STORE_MIGRATE_KEYS] = "keys",
	[STORE_MIGRATE_HASHES] = "indexes",
	[STORE_MIGRATE_FEEDS] = "feeds",
};

struct mg {
	int tty;                        /* stderr is a terminal: draw progress */
	int bar;                        /* a progress line is on screen */
	int64_t t0;                     /* ns at the start */
	int64_t phase_t0;               /* ns at the start of the phase drawn */
	int64_t last_draw;              /* ns of the last redraw */
	int phase;                      /* the phase drawn, -1 before the first */
	double secs[STORE_MIGRATE_NPHASES]; /* how long each phase took */
};

static void mg_bar_clear(struct mg *g)
{
	if (g->bar) {
		fputs("\r\033[K", stderr);
		g->bar = 0;
	}
}

static void mg_errf(struct mg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "partnerctl: migrate: " + message, with the progress line out of the way. */
static void mg_errf(struct mg *g, const char *fmt, ...)
{
	va_list ap;

	mg_bar_clear(g);
	fputs("partnerctl: migrate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void mg_report(void *arg, const char *msg)
{
	mg_errf(arg, "%s", msg);
}

/* Redraws the progress line (terminals only): at a new phase and at its end, else every
   MG_PROGRESS_NS. */
static void mg_tick(void *arg, enum store_migrate_phase ph, uint64_t done, uint64_t total)
{
	struct mg *g = arg;
	int64_t now;
	double secs, frac;
	int fill;

	if (!g->tty)
		return;
	now = mono_ns();
	if ((int)ph != g->phase) {
		g->phase = (int)ph;
		g->phase_t0 = now;
	} else if (now - g->last_draw < MG_PROGRESS_NS && done < total) {
		return;
	}
	g->last_draw = now;
	secs = (double)(now - g->phase_t0) / 1e9;
	frac = total > 0 ? (double)(done > total ? total : done) / (double)total : 1;
	fill = (int)(frac * 20);
	fprintf(stderr, "\r\033[Kmigrate: %s %" PRIu64 "/%" PRIu64 "  [%.*s%.*s] %3.0f%%  %.0f/s",
	        mg_phase_name[ph], done, total, fill, "####################", 20 - fill,
	        "                    ", frac * 100, secs > 0 ? (double)done / secs : 0);
	fflush(stderr);
	g->bar = 1;
}

/* The verb's options: -1 to go on, else the exit code (usage or help printed). */
static int mg_parse_args(struct ctl *ctl, int argc, char **argv, size_t *batch)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl->redis_url = optarg;
			break;
		case 'b':
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || end == optarg || v < 1 || v > MG_BATCH_MAX) {
				ctl_errf("migrate: --batch must be from 1 to %d", MG_BATCH_MAX);
				return CTL_EXIT_USAGE;
			}
			*batch = (size_t)v;
			break;
		case 'h':
			ctl_verb_usage(stdout, "migrate");
			return CTL_EXIT_OK;
		default:
			ctl_verb_usage(stderr, "migrate");
			return CTL_EXIT_USAGE;
		}
	}
	if (optind != argc) {
		ctl_verb_usage(stderr, "migrate");
		return CTL_EXIT_USAGE;
	}
	return -1;
}

/*
 * Key layout 2 -> 3: the customer locks moved into the customer hashes (src/lua/lock.lua).
 * No data moves; a layout-2 lock key left means a partnerd of the older release is serving
 * (or died less than its lock TTL ago): its locks and the new ones would not exclude each
 * other, so migrate refuses until every such partnerd is stopped. The exit code.
 */
static int mg_from_v2(struct mg *g, struct store_migrate *m)
{
	char first[300];
	uint64_t locks;

	if (store_migrate_v2_locks(m, &locks, first, sizeof(first)) < 0)
		return CTL_EXIT_USAGE;
	if (locks > 0) {
		mg_errf(g, "%" PRIu64 " customer lock(s) of key layout 2 exist (%s): a partnerd of an "
		        "older release is serving this Redis; stop every such partnerd, wait for its "
		        "locks to expire (--lock-ttl-ms), then run migrate again (nothing was changed)",
		        locks, first);
		return CTL_EXIT_FAIL;
	}
	if (store_migrate_v2_finish(m) < 0)
		return CTL_EXIT_FAIL;
	printf("migrate: key layout %d recorded (from key layout 2: the customer locks are fields "
	       "of the customer hashes now; no data moved)\n", LAYOUT_VERSION);
	return CTL_EXIT_OK;
}

/* Whether migrate may start: -1 to go on, else the exit code (the message printed). */
static int mg_may_start(struct mg *g, struct store_migrate *m)
{
	char val[300], first[300];
	uint64_t locks;

	switch (store_migrate_layout(m, val, sizeof(val))) {
	case STORE_MIGRATE_CURRENT:
		printf("migrate: the data is on key layout %d already: nothing to do\n", LAYOUT_VERSION);
		return CTL_EXIT_OK;
	case STORE_MIGRATE_V2:
		return mg_from_v2(g, m);
	case STORE_MIGRATE_EMPTY:
		printf("migrate: this Redis holds no org (nothing loaded): nothing to do\n");
		return CTL_EXIT_OK;
	case STORE_MIGRATE_OTHER:
		mg_errf(g, "the data is on key layout \"%s\", which this partnerctl does not know; "
		        "nothing was changed", val);
		return CTL_EXIT_FAIL;
	case STORE_MIGRATE_CLUSTER:
		mg_errf(g, "the data is of key layout 1, on a Redis Cluster: migrate works on one "
		        "Redis only (no release before key layout 2 ran on a cluster). Migrate the data "
		        "on one Redis first, then move it to the cluster (docs/OPERATIONS.md); nothing "
		        "was changed");
		return CTL_EXIT_FAIL;
	case STORE_MIGRATE_V1:
		break;
	default:
		return CTL_EXIT_USAGE;  /* Redis failed: reported */
	}
	if (store_migrate_locks(m, &locks, first, sizeof(first)) < 0)
		return CTL_EXIT_USAGE;
	if (locks > 0) {
		mg_errf(g, "%" PRIu64 " customer lock(s) of key layout 1 exist (%s): a partnerd is "
		        "serving this Redis; stop every partnerd, then run migrate again (nothing was "
		        "changed)", locks, first);
		return CTL_EXIT_FAIL;
	}
	return -1;
}

/* The phases, then the last check and the layout record. Returns the exit code. */
static int mg_run(struct mg *g, struct store_migrate *m, struct store_migrate_counts *c)
{
	int (*const phase[])(struct store_migrate *, struct store_migrate_counts *) = {
		store_migrate_keys, store_migrate_hashes, store_migrate_feeds,
	};
	char first[300];
	uint64_t left;
	size_t i;
	int problems = 0;

	for (i = 0; i < sizeof(phase) / sizeof(phase[0]); i++) {
		int64_t t = mono_ns();
		int rc = phase[i](m, c);

		g->secs[i] = (double)(mono_ns() - t) / 1e9;

		if (rc < 0) {
			mg_errf(g, "stopped; what moved stays moved: run migrate again to finish (no key "
			        "layout is recorded yet, so partnerd refuses the data until then)");
			return CTL_EXIT_FAIL;
		}
		problems |= rc;
	}
	mg_bar_clear(g);
	if (problems) {
		mg_errf(g, "%" PRIu64 " problem(s), reported above: what they name is left under its "
		        "layout-1 name, everything else moved; fix them and run migrate again (no key "
		        "layout is recorded yet)", c->problems);
		return CTL_EXIT_FAIL;
	}
	if (store_migrate_left(m, &left, first, sizeof(first)) < 0)
		return CTL_EXIT_FAIL;
	if (left > 0) {
		mg_errf(g, "%" PRIu64 " key(s) of key layout 1 are still there (%s): were they written "
		        "during the run (a partnerd serving)? Stop every partnerd and run migrate "
		        "again", left, first);
		return CTL_EXIT_FAIL;
	}
	if (store_migrate_finish(m) < 0)
		return CTL_EXIT_FAIL;
	return CTL_EXIT_OK;
}

int ctl_migrate_main(struct ctl *ctl, int argc, char **argv)
{
	struct mg g = { .phase = -1 };
	struct store_migrate_counts c = { 0 };
	struct store_migrate *m;
	size_t batch = MG_BATCH_DEFAULT;
	int rc;

	if ((rc = mg_parse_args(ctl, argc, argv, &batch)) >= 0)
		return rc;
	g.tty = isatty(STDERR_FILENO);
	g.t0 = mono_ns();
	m = store_migrate_open(ctl->redis_url, CTL_REDIS_TIMEOUT_MS, batch, mg_report, &g);
	if (m == NULL)
		return CTL_EXIT_USAGE;
	if ((rc = mg_may_start(&g, m)) >= 0)
		goto out;
	store_migrate_set_tick(m, mg_tick, &g);
	rc = mg_run(&g, m, &c);
	mg_bar_clear(&g);
	if (rc == CTL_EXIT_OK)
		printf("migrate: key layout %d recorded: ", LAYOUT_VERSION);
	else
		printf("migrate: not finished: ");
	printf("%" PRIu64 " customer(s), %" PRIu64 " history(ies), %" PRIu64 " Idempotency-Key(s), "
	       "%" PRIu64 " rate window(s) renamed; %" PRIu64 " identifier and %" PRIu64
	       " membership-id index entries into buckets; %" PRIu64 " feed entries into "
	       "partitions (%" PRIu64 " of them copied by an earlier run); %.2f s (%s %.2f s, %s "
	       "%.2f s, %s %.2f s)\n", c.customers, c.histories, c.idem, c.rate, c.ix, c.mid, c.feed,
	       c.feed_again, (double)(mono_ns() - g.t0) / 1e9,
	       mg_phase_name[STORE_MIGRATE_KEYS], g.secs[STORE_MIGRATE_KEYS],
	       mg_phase_name[STORE_MIGRATE_HASHES], g.secs[STORE_MIGRATE_HASHES],
	       mg_phase_name[STORE_MIGRATE_FEEDS], g.secs[STORE_MIGRATE_FEEDS]);
out:
	store_migrate_close(m);
	return rc;
}
