/*
 * router_probe: drives src/cluster.c against a real Redis Cluster for
 * tests/integration/test_cluster.py (built by `make check` only; not installed).
 *
 * Usage: router_probe [--timeout-ms N] [--deadline-ms N] [--refresh-ms N] [--batch] SEEDS
 *
 * Reads commands from stdin, one a line, words split on spaces:
 *     KEY CMD ARG...          the command CMD ARG..., routed by KEY's slot
 *     KEY @incrby 1 KEY N     the built-in script 0 (INCRBY KEYS[1] ARGV[1]) by EVALSHA
 *     KEY @slowincr 1 KEY MS  script 1: INCR KEYS[1], then busy for MS ms (a late reply)
 *     KEY @setundeclared 0 K V  script 2: SET K V, K not declared (a write no key routes:
 *                             a replica runs it and answers READONLY)
 *     !stats                  prints the router's counters (cluster_stats)
 *     !deadline N             later commands get N ms from their start
 * --refresh-ms N sets the router's least interval between slot map loads
 * (cluster_set_refresh_interval).
 * Each command is run at once (cluster_command) and answered with one line:
 *     OK <reply>   |   UNAVAILABLE <why>   |   INDOUBT <why>
 * where <reply> is :5, $text, +OK, -ERR text, nil or *[a, b]. With --batch, the commands
 * up to an empty line (or the end of input) are one pipelined batch (cluster_run): their
 * answers come in order, then a line "." . Output is flushed after every answer, so that a
 * test can keep one warm router across changes it makes to the cluster.
 * Exit status: 0, or 2 for a usage or seed error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "cluster.h"

#define MAX_WORDS 64
#define MAX_BATCH 4096

static const char *const scripts[] = {
	"return redis.call('INCRBY', KEYS[1], ARGV[1])",
	/* INCR, then keep the node busy for ARGV[1] ms: a reply later than a read timeout */
	"local v = redis.call('INCR', KEYS[1])\n"
	"local t = redis.call('TIME')\n"
	"local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1]) * 1000\n"
	"repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop\n"
	"return v",
	"return redis.call('SET', ARGV[1], ARGV[2])",
};

struct line {
	char *buf;                      /* the line (words point into it) */
	const char *argv[MAX_WORDS];
	size_t len[MAX_WORDS];
	size_t argc;
	struct cluster_cmd cmd;
};

static void print_reply(const redisReply *r)
{
	size_t i;

	switch (r->type) {
	case REDIS_REPLY_INTEGER:
		printf(":%lld", r->integer);
		break;
	case REDIS_REPLY_STRING:
		printf("$%.*s", (int)r->len, r->str);
		break;
	case REDIS_REPLY_STATUS:
		printf("+%.*s", (int)r->len, r->str);
		break;
	case REDIS_REPLY_ERROR:
		printf("-%.*s", (int)r->len, r->str);
		break;
	case REDIS_REPLY_NIL:
		printf("nil");
		break;
	case REDIS_REPLY_ARRAY:
		printf("*[");
		for (i = 0; i < r->elements; i++) {
			if (i > 0)
				printf(", ");
			print_reply(r->element[i]);
		}
		printf("]");
		break;
	default:
		printf("?");
	}
}

static void print_result(const struct cluster *cl, const redisReply *r, enum cluster_status st)
{
	if (st == CLUSTER_OK) {
		printf("OK ");
		print_reply(r);
	} else {
		printf("%s %s", st == CLUSTER_INDOUBT ? "INDOUBT" : "UNAVAILABLE", cluster_error(cl));
	}
	printf("\n");
	fflush(stdout);
}

static void print_stats(const struct cluster *cl)
{
	struct cluster_stats s;

	cluster_get_stats(cl, &s);
	printf("STATS rounds=%llu sends=%llu moved=%llu ask=%llu tryagain=%llu clusterdown=%llu "
	       "noscript=%llu loading=%llu masterdown=%llu readonly=%llu down=%llu refreshes=%llu "
	       "refresh_skips=%llu connects=%llu\n",
	       (unsigned long long)s.rounds, (unsigned long long)s.sends,
	       (unsigned long long)s.moved, (unsigned long long)s.ask,
	       (unsigned long long)s.tryagain, (unsigned long long)s.clusterdown,
	       (unsigned long long)s.noscript, (unsigned long long)s.loading,
	       (unsigned long long)s.masterdown, (unsigned long long)s.readonly,
	       (unsigned long long)s.down, (unsigned long long)s.refreshes,
	       (unsigned long long)s.refresh_skips, (unsigned long long)s.connects);
	fflush(stdout);
}

/* Splits buf into ln; 0, or -1 (with a message printed) for a line that is no command. */
static int parse_line(char *buf, struct line *ln)
{
	char *save = NULL, *w;

	ln->buf = buf;
	ln->argc = 0;
	for (w = strtok_r(buf, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
		if (ln->argc == MAX_WORDS) {
			printf("UNAVAILABLE probe: more than %d words\n", MAX_WORDS);
			return -1;
		}
		ln->argv[ln->argc] = w;
		ln->len[ln->argc++] = strlen(w);
	}
	if (ln->argc < 2) {
		printf("UNAVAILABLE probe: a line is KEY CMD ARG...\n");
		return -1;
	}
	ln->cmd.key = ln->argv[0];
	ln->cmd.keylen = ln->len[0];
	ln->cmd.script = strcmp(ln->argv[1], "@incrby") == 0 ? 0 :
	                 strcmp(ln->argv[1], "@slowincr") == 0 ? 1 :
	                 strcmp(ln->argv[1], "@setundeclared") == 0 ? 2 : -1;
	ln->cmd.argc = ln->argc - 2 + (ln->cmd.script < 0);
	ln->cmd.argv = ln->argv + (ln->cmd.script < 0 ? 1 : 2);
	ln->cmd.argvlen = ln->len + (ln->cmd.script < 0 ? 1 : 2);
	return 0;
}

static void run_batch(struct cluster *cl, struct line *lines, size_t n, int deadline_ms)
{
	struct cluster_cmd *cmds = calloc(n + 1, sizeof *cmds);
	redisReply **replies = calloc(n + 1, sizeof *replies);
	enum cluster_status *st = calloc(n + 1, sizeof *st);
	size_t i;

	if (cmds == NULL || replies == NULL || st == NULL)
		abort();
	for (i = 0; i < n; i++)
		cmds[i] = lines[i].cmd;
	cluster_run(cl, cmds, n, mono_ms() + deadline_ms, replies, st);
	for (i = 0; i < n; i++)
		print_result(cl, replies[i], st[i]);
	printf(".\n");
	fflush(stdout);
	cluster_replies_release(cl);
	for (i = 0; i < n; i++)
		free(lines[i].buf);
	free(cmds);
	free(replies);
	free(st);
}

int main(int argc, char **argv)
{
	int timeout_ms = 1000, deadline_ms = 2000, refresh_ms = -1, batch = 0, i;
	const char *spec = NULL;
	struct cluster_seeds seeds;
	struct cluster *cl;
	char err[300], buf[8192];
	struct line *lines;
	size_t nlines = 0;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--deadline-ms") == 0 && i + 1 < argc)
			deadline_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--refresh-ms") == 0 && i + 1 < argc)
			refresh_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--batch") == 0)
			batch = 1;
		else if (spec == NULL && argv[i][0] != '-')
			spec = argv[i];
		else {
			fprintf(stderr, "usage: router_probe [--timeout-ms N] [--deadline-ms N] "
			        "[--refresh-ms N] [--batch] SEEDS\n");
			return 2;
		}
	}
	if (cluster_parse_seeds(spec, &seeds, err, sizeof err) != 0) {
		fprintf(stderr, "router_probe: %s\n", err);
		return 2;
	}
	cl = cluster_new(&seeds, timeout_ms, scripts, sizeof scripts / sizeof scripts[0]);
	cluster_set_refresh_interval(cl, refresh_ms);
	lines = calloc(MAX_BATCH, sizeof *lines);
	if (lines == NULL)
		abort();
	while (fgets(buf, sizeof buf, stdin) != NULL) {
		size_t n = strcspn(buf, "\r\n");

		buf[n] = '\0';
		if (strcmp(buf, "!stats") == 0) {
			print_stats(cl);
		} else if (strncmp(buf, "!deadline ", 10) == 0) {
			deadline_ms = atoi(buf + 10);
		} else if (n == 0) {
			if (batch && nlines > 0)
				run_batch(cl, lines, nlines, deadline_ms);
			nlines = 0;
		} else {
			char *copy = strdup(buf);

			if (copy == NULL)
				abort();
			if (parse_line(copy, &lines[nlines]) != 0) {
				fflush(stdout);
				free(copy);
			} else if (batch && nlines + 1 < MAX_BATCH) {
				nlines++;
			} else {
				enum cluster_status st;
				redisReply *r = cluster_command(cl, &lines[nlines].cmd,
				                                mono_ms() + deadline_ms, &st);

				print_result(cl, r, st);
				cluster_replies_release(cl);
				free(copy);
			}
		}
	}
	if (batch && nlines > 0)
		run_batch(cl, lines, nlines, deadline_ms);
	free(lines);
	cluster_free(cl);
	return 0;
}
