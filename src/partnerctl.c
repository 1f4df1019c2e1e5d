/*
 * partnerctl: the admin CLI of partnerd (SPEC §3, §7). This file holds main, the global
 * options and the verb table; each verb lives in its own ctl_*.c file (load, show, check,
 * import, migrate), on the plumbing of ctl_util.c.
 *
 * --redis-cluster SEEDS (or a redis-cluster:// URL given to --redis) selects a Redis Cluster.
 *
 *     partnerctl [--redis URL] load FILE
 *     partnerctl [--redis URL] show --org ORG (--id N | --mobile M | --email E | --external-id X)
 *     partnerctl [--redis URL] check [--org ORG]
 *     partnerctl [--redis URL] import-customers --org ORG [--resume] [--batch N] FILE
 *     partnerctl [--redis URL] migrate [--batch N]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cluster.h"
#include "ctl.h"

#define CTL_DEFAULT_REDIS "redis://127.0.0.1:6379"

struct ctl_verb {
	const char *name;                                   /* argv word */
	const char *usage;                                  /* its synopsis line(s) */
	int (*run)(struct ctl *, int, char **);             /* entry point */
};

static const struct ctl_verb ctl_verbs[] = {
	{ .name = "load", .run = ctl_load_main,
	  .usage = "load FILE     upsert orgs, credentials, programs and customers (SPEC §3)" },
	{ .name = "show", .run = ctl_show_main,
	  .usage = "show --org ORG (--id N | --mobile M | --email E | --external-id X)\n"
	           "              print a customer and its memberships as JSON" },
	{ .name = "import-customers", .run = ctl_import_main,
	  .usage = "import-customers --org ORG [--resume] [--batch N] FILE\n"
	           "              bulk-upsert customers from JSON Lines or CSV (FILE '-': stdin),\n"
	           "              streamed; bad lines rejected (exit 1); --resume continues\n"
	           "              after the last committed batch of an interrupted import" },
	{ .name = "check", .run = ctl_check_main,
	  .usage = "check [--org ORG]\n"
	           "              verify the stored-data invariants (exit 0 ok, 1 violations)" },
	{ .name = "migrate", .run = ctl_migrate_main,
	  .usage = "migrate [--batch N]\n"
	           "              move the data of key layout 1 to key layout 2, in place\n"
	           "              (partnerd stopped); run again to finish an interrupted run" },
};

static void ctl_usage(FILE *f)
{
	fputs("usage: partnerctl [--redis URL] VERB [ARGS]\n\n"
	      "  --redis URL   redis://[[user]:password@]host[:port][/db] or unix:///path[?db=N]\n"
	      "                (default: $PARTNERD_REDIS_URL, then " CTL_DEFAULT_REDIS ")\n"
	      "  --redis-cluster SEEDS\n"
	      "                a Redis Cluster instead: HOST:PORT[,HOST:PORT...] or\n"
	      "                redis-cluster://[[user]:password@]HOST:PORT[,...]\n"
	      "                (default: $PARTNERD_REDIS_CLUSTER)\n"
	      "  --help        this text; 'partnerctl VERB --help' for one verb\n\nverbs:\n", f);
	for (size_t i = 0; i < sizeof ctl_verbs / sizeof ctl_verbs[0]; i++)
		fprintf(f, "  %s\n", ctl_verbs[i].usage);
}

void ctl_verb_usage(FILE *f, const char *verb)
{
	for (size_t i = 0; i < sizeof ctl_verbs / sizeof ctl_verbs[0]; i++)
		if (strcmp(ctl_verbs[i].name, verb) == 0)
			fprintf(f, "usage: partnerctl [--redis URL] %s\n", ctl_verbs[i].usage);
}

/*
 * The Redis Cluster setting (--redis-cluster or $PARTNERD_REDIS_CLUSTER): its seeds checked
 * now, and given to the verbs as a redis-cluster:// URL (the store makes a cluster of one).
 * With --redis (or $PARTNERD_REDIS_URL) too: refused. Returns 0, or -1 with the message
 * printed.
 */
static int ctl_cluster_url(struct ctl *ctl, const char *seeds)
{
	static char url[1100];     /* rconn_cfg.cluster holds 1023 bytes */
	struct cluster_seeds parsed;
	char err[300];

	if (seeds == NULL || seeds[0] == '\0') {
		if (ctl->redis_url == NULL)
			ctl->redis_url = CTL_DEFAULT_REDIS;
		seeds = ctl->redis_url;
		if (strncmp(seeds, "redis-cluster://", 16) != 0)
			return 0;
	} else if (ctl->redis_url != NULL) {
		ctl_errf("--redis and --redis-cluster both given: give one Redis (--redis URL) or a "
		         "cluster's seeds (--redis-cluster SEEDS), not both");
		return -1;
	}
	if (cluster_parse_seeds(seeds, &parsed, err, sizeof err) != 0) {
		ctl_errf("--redis-cluster: %s", err);
		return -1;
	}
	if (strlen(seeds) > sizeof url - 20) {
		ctl_errf("--redis-cluster: the seed list is too long");
		return -1;
	}
	/* the store's URL parser (rconn) keeps a redis-cluster:// URL for the store */
	snprintf(url, sizeof url, "%s%s",
	         strncmp(seeds, "redis-cluster://", 16) == 0 ? "" : "redis-cluster://", seeds);
	ctl->redis_url = url;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "redis", required_argument, NULL, 'r' },
		{ "redis-cluster", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .redis_url = getenv("PARTNERD_REDIS_URL") };
	const char *seeds = getenv("PARTNERD_REDIS_CLUSTER");
	int c;

	if (ctl.redis_url == NULL || ctl.redis_url[0] == '\0')
		ctl.redis_url = NULL;
	/* '+': stop at the verb, whose options are its own. */
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ctl.redis_url = optarg;
			break;
		case 'C':
			seeds = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return CTL_EXIT_OK;
		default:
			ctl_usage(stderr);
			return CTL_EXIT_USAGE;
		}
	}
	if (ctl_cluster_url(&ctl, seeds) != 0)
		return CTL_EXIT_USAGE;
	if (optind >= argc) {
		ctl_usage(stderr);
		return CTL_EXIT_USAGE;
	}
	if (sodium_init() < 0) {
		ctl_errf("cannot initialise libsodium");
		return CTL_EXIT_FAIL;
	}
	for (size_t i = 0; i < sizeof ctl_verbs / sizeof ctl_verbs[0]; i++) {
		if (strcmp(argv[optind], ctl_verbs[i].name) == 0) {
			int vargc = argc - optind;
			char **vargv = argv + optind;

			optind = 0;   /* glibc: restart getopt from scratch for the verb */
			return ctl_verbs[i].run(&ctl, vargc, vargv);
		}
	}
	ctl_errf("unknown verb '%s'", argv[optind]);
	ctl_usage(stderr);
	return CTL_EXIT_USAGE;
}
