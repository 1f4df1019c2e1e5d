/*
 * store_probe: drives src/store.c (the store layer) on one Redis or a Redis Cluster for
 * tests/integration/test_store_cluster.py (built by `make check` only; not installed).
 *
 * Usage: store_probe [--timeout-ms N] [--layout-check] URL-OR-SEEDS
 *     URL-OR-SEEDS: redis://... or unix://... (one Redis), redis-cluster://... or
 *     HOST:PORT[,HOST:PORT...] (a cluster). --layout-check gives the store partnerd's
 *     connect check (store_layout_connect_check).
 *
 * Reads one command a line from stdin, words split on spaces; each is answered at once:
 *     CMD ARG...            store_command (on a cluster routed by ARG 1, the first key)
 *     @I CMD ARG...         store_command_on master I
 *     |CMD ARG...           added to a pipeline; `!pipe` runs it (store_pipeline)
 *     >KEY CMD ARG...       added to a round; `!run` runs it (store_run, routed by KEY)
 *     >KEY @hdel_if N K... ARG...  the same, the embedded script hdel_if.lua by EVALSHA
 *     +CMD ARG...           store_queue (its reply printed by its callback: "Q <reply>")
 *     +@hdel_if N K... ARG...  store_queue_script
 *     !flush  !send  !ping  !warm  !masters  !trips  !cluster  !refused
 *     !eval                 store_eval of the embedded read script (no KEYS)
 * Answers: OK <reply> | FAIL <maybe_ran> <store_error> | one line per op of a round
 * (OK <reply>, UNAVAILABLE or INDOUBT) then "." ; <reply> is :5, $text, +OK, -ERR text, nil
 * or *[a, b]. Output is flushed after every answer.
 * Exit status: 0, or 2 for a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rconn.h"
#include "store.h"
#include "store_layout.h"

#define MAX_WORDS 64
#define MAX_BATCH 4096

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

static void answer(struct store *st, const redisReply *r)
{
	if (r != NULL) {
		printf("OK ");
		print_reply(r);
		printf("\n");
	} else {
		printf("FAIL %d %s\n", store_maybe_ran(st), store_error(st));
	}
	fflush(stdout);
}

static void answer_rc(struct store *st, int rc)
{
	if (rc == 0)
		printf("OK %d\n", rc);
	else
		printf("FAIL %d %d %s\n", store_maybe_ran(st), rc, store_error(st));
	fflush(stdout);
}

/* Words of line (split in place) into a (borrowed); the number of words. */
static size_t split(char *line, struct store_argv *a)
{
	char *save = NULL, *w;

	store_argv_reset(a);
	for (w = strtok_r(line, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save))
		store_argv_addcopy(a, w, strlen(w));
	return a->n;
}

static int on_queued(void *arg, const redisReply *r)
{
	(void)arg;
	printf("Q ");
	print_reply(r);
	printf("\n");
	fflush(stdout);
	return r->type == REDIS_REPLY_ERROR ? -1 : 0;
}

int main(int argc, char **argv)
{
	int timeout_ms = 1000, check = 0, i;
	const char *spec = NULL;
	struct rconn_cfg cfg;
	struct store *st;
	char err[300], buf[8192];
	struct store_argv *pipe = calloc(MAX_BATCH, sizeof *pipe);
	struct store_argv *round = calloc(MAX_BATCH, sizeof *round);
	struct store_op *ops = calloc(MAX_BATCH, sizeof *ops);
	char **keys = calloc(MAX_BATCH, sizeof *keys);
	size_t npipe = 0, nround = 0, k;
	struct store_argv one;

	if (pipe == NULL || round == NULL || ops == NULL || keys == NULL)
		abort();
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc)
			timeout_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--layout-check") == 0)
			check = 1;
		else if (spec == NULL && argv[i][0] != '-')
			spec = argv[i];
		else {
			fprintf(stderr, "usage: store_probe [--timeout-ms N] [--layout-check] "
			        "URL-OR-SEEDS\n");
			return 2;
		}
	}
	if (spec == NULL) {
		fprintf(stderr, "usage: store_probe [--timeout-ms N] [--layout-check] URL-OR-SEEDS\n");
		return 2;
	}
	memset(&cfg, 0, sizeof cfg);
	cfg.timeout_ms = timeout_ms;
	if (strstr(spec, "://") == NULL) {
		if (strlen(spec) >= sizeof cfg.cluster) {
			fprintf(stderr, "store_probe: seeds too long\n");
			return 2;
		}
		strcpy(cfg.cluster, spec);
	} else if (rconn_parse_url(spec, &cfg, err, sizeof err) != 0) {
		fprintf(stderr, "store_probe: %s\n", err);
		return 2;
	}
	cfg.timeout_ms = timeout_ms;
	st = store_new(&cfg);
	if (check)
		store_set_connect_check(st, store_layout_connect_check);
	store_argv_init(&one);
	while (fgets(buf, sizeof buf, stdin) != NULL) {
		char *line = buf;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0')
			continue;
		if (strcmp(line, "!flush") == 0) {
			answer_rc(st, store_flush(st));
		} else if (strcmp(line, "!send") == 0) {
			answer_rc(st, store_send(st));
		} else if (strcmp(line, "!ping") == 0) {
			answer_rc(st, store_ping(st));
		} else if (strcmp(line, "!warm") == 0) {
			answer_rc(st, store_warm(st));
		} else if (strcmp(line, "!masters") == 0) {
			printf("OK %zu\n", store_masters(st));
			fflush(stdout);
		} else if (strcmp(line, "!trips") == 0) {
			printf("OK %llu\n", (unsigned long long)store_round_trips(st));
			fflush(stdout);
		} else if (strcmp(line, "!cluster") == 0) {
			printf("OK %d\n", store_is_cluster(st));
			fflush(stdout);
		} else if (strcmp(line, "!refused") == 0) {
			printf("OK %d\n", store_check_refused(st));
			fflush(stdout);
		} else if (strcmp(line, "!eval") == 0) {
			store_argv_reset(&one);
			store_argv_add(&one, "x", 1);
			answer(st, store_eval(st, STORE_READ, &one));
		} else if (strcmp(line, "!pipe") == 0) {
			redisReply **rep = NULL;

			if (store_pipeline(st, pipe, npipe, &rep) != 0) {
				answer(st, NULL);
			} else {
				for (k = 0; k < npipe; k++)
					answer(st, rep[k]);
				printf(".\n");
				fflush(stdout);
			}
			npipe = 0;
		} else if (strcmp(line, "!run") == 0) {
			redisReply **rep = calloc(nround + 1, sizeof *rep);
			enum store_op_status *sts = calloc(nround + 1, sizeof *sts);
			int rc;

			if (rep == NULL || sts == NULL)
				abort();
			rc = store_run(st, ops, nround, 0, rep, sts);
			for (k = 0; k < nround; k++) {
				if (sts[k] == STORE_OP_OK) {
					printf("OK ");
					print_reply(rep[k]);
					printf("\n");
				} else {
					printf("%s\n", sts[k] == STORE_OP_INDOUBT ? "INDOUBT" : "UNAVAILABLE");
				}
				free(keys[k]);
			}
			printf(". %d %d %s\n", rc, store_maybe_ran(st), rc != 0 ? store_error(st) : "");
			fflush(stdout);
			free(rep);
			free(sts);
			nround = 0;
		} else if (line[0] == '|') {
			if (npipe == MAX_BATCH)
				abort();
			split(line + 1, &pipe[npipe++]);
		} else if (line[0] == '>') {
			char *sp = strchr(line, ' ');
			struct store_argv *a;
			int script = -1;

			if (sp == NULL || nround == MAX_BATCH) {
				printf("FAIL 0 probe: >KEY CMD ARG...\n");
				fflush(stdout);
				continue;
			}
			*sp = '\0';
			keys[nround] = strdup(line + 1);
			if (strncmp(sp + 1, "@hdel_if ", 9) == 0) {
				script = STORE_HDEL_IF;
				sp += 9;
			}
			a = &round[nround];
			split(sp + 1, a);
			ops[nround].key = keys[nround];
			ops[nround].keylen = strlen(keys[nround]);
			ops[nround].script = script;
			ops[nround].argv = a;
			nround++;
		} else if (line[0] == '+') {
			if (strncmp(line + 1, "@hdel_if ", 9) == 0) {
				split(line + 10, &one);
				answer_rc(st, store_queue_script(st, STORE_HDEL_IF, &one, on_queued, NULL));
			} else {
				split(line + 1, &one);
				answer_rc(st, store_queue(st, &one, on_queued, NULL));
			}
		} else if (line[0] == '@') {
			size_t m = strtoul(line + 1, NULL, 10);
			char *sp = strchr(line, ' ');

			if (sp == NULL) {
				printf("FAIL 0 probe: @I CMD ARG...\n");
				fflush(stdout);
				continue;
			}
			split(sp + 1, &one);
			answer(st, store_command_on(st, m, &one));
		} else {
			split(line, &one);
			answer(st, store_command(st, &one));
		}
		store_replies_release(st);
	}
	for (k = 0; k < MAX_BATCH; k++) {
		store_argv_free(&pipe[k]);
		store_argv_free(&round[k]);
	}
	store_argv_free(&one);
	free(pipe);
	free(round);
	free(ops);
	free(keys);
	store_free(st);
	return 0;
}
