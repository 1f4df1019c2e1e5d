/*
 * testfault: deliberately broken builds for the tests (testfault.h). Only compiled with
 * -DPARTNERD_TEST_FAULTS (tests/faults/partnerd-faulty).
 */
#ifdef PARTNERD_TEST_FAULTS

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "http.h"
#include "testfault.h"
#include "xmalloc.h"

enum fault { TF_NONE, TF_ACK_BEFORE_COMMIT, TF_LOST_ACK, TF_STALE_READ, TF_DIE_AFTER_CLAIM };

static enum fault fault = TF_NONE;
static atomic_uint hits;

void
testfault_init(int on_cluster)
{
	const char *v = getenv("PARTNERD_TEST_FAULT");

	if (v == NULL || *v == '\0')
		return;
	if (strcmp(v, "ack-before-commit") == 0)
		fault = TF_ACK_BEFORE_COMMIT;
	else if (strcmp(v, "lost-ack") == 0)
		fault = TF_LOST_ACK;
	else if (strcmp(v, "stale-read") == 0)
		fault = TF_STALE_READ;
	else if (strcmp(v, "die-after-claim") == 0)
		fault = TF_DIE_AFTER_CLAIM;
	else {
		fprintf(stderr, "partnerd: PARTNERD_TEST_FAULT=%s names no fault (ack-before-commit, lost-ack, stale-read, die-after-claim)\n", v);
		exit(2);
	}
	if (fault == TF_DIE_AFTER_CLAIM && !on_cluster) {
		fprintf(stderr, "partnerd: PARTNERD_TEST_FAULT=die-after-claim needs --redis-cluster: on one "
		        "Redis the membership-id claim is inside commit.lua, there is no moment between "
		        "claim and commit to die in\n");
		exit(2);
	}
	fprintf(stderr, "partnerd: BROKEN BUILD FOR TESTS: fault %s is on\n", v);
}

/* One occurrence in 4 is hit. */
static int
hit(void)
{
	return atomic_fetch_add(&hits, 1) % 4 == 0;
}

int
testfault_skip_commit(void)
{
	return fault == TF_ACK_BEFORE_COMMIT && hit();
}

void
testfault_after_claims(size_t claimed)
{
	static const char msg[] = "partnerd: BROKEN BUILD FOR TESTS: die-after-claim: SIGKILL after the claims round\n";

	if (fault != TF_DIE_AFTER_CLAIM || claimed == 0)
		return;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing to do: the kill below is what matters */
	}
	raise(SIGKILL);
	_exit(137);                     /* not reached */
}

int
testfault_lose_ack(void)
{
	return fault == TF_LOST_ACK && hit();
}

/* ---- stale-read: a small table of recent answers, shared by the worker threads ---- */

#define STALE_SLOTS 64
#define STALE_MS 1000

static struct {
	char *key;
	char *body;
	size_t len;
	int64_t at_ms;
} stale[STALE_SLOTS];
static pthread_mutex_t stale_mu = PTHREAD_MUTEX_INITIALIZER;

static char *
stale_key(const char *org, int kind, const char *query)
{
	size_t n = strlen(org) + strlen(query) + 16;
	char *k = xmalloc(n);

	snprintf(k, n, "%s|%d|%s", org, kind, query);
	return k;
}

int
testfault_stale_answer(struct http_req *r, const char *org, int kind)
{
	char *key, *body = NULL;
	size_t k, len = 0;
	int64_t now = mono_ms();

	if (fault != TF_STALE_READ)
		return 0;
	key = stale_key(org, kind, r->query);
	pthread_mutex_lock(&stale_mu);
	for (k = 0; k < STALE_SLOTS; k++)
		if (stale[k].key != NULL && strcmp(stale[k].key, key) == 0 && now - stale[k].at_ms < STALE_MS) {
			len = stale[k].len;
			body = xmalloc(len + 1);
			memcpy(body, stale[k].body, len);
			break;
		}
	pthread_mutex_unlock(&stale_mu);
	free(key);
	if (body == NULL)
		return 0;
	http_respond(r, 200, NULL, body, len);
	free(body);
	return 1;
}

void
testfault_stale_keep(const struct http_req *r, const char *org, int kind, const char *body, size_t len)
{
	char *key;
	size_t k, slot = 0;
	int64_t now = mono_ms();

	if (fault != TF_STALE_READ)
		return;
	key = stale_key(org, kind, r->query);
	pthread_mutex_lock(&stale_mu);
	for (k = 0; k < STALE_SLOTS; k++) {
		if (stale[k].key != NULL && strcmp(stale[k].key, key) == 0) {
			slot = k;
			break;
		}
		if (stale[k].key == NULL || stale[k].at_ms < stale[slot].at_ms)
			slot = k;               /* a free slot, or the oldest */
	}
	if (stale[slot].key == NULL || strcmp(stale[slot].key, key) != 0 || now - stale[slot].at_ms >= STALE_MS) {
		/* a fresh copy only when there is none younger than a second: answers stay stale */
		free(stale[slot].key);
		free(stale[slot].body);
		stale[slot].key = key;
		key = NULL;
		stale[slot].body = xmalloc(len + 1);
		memcpy(stale[slot].body, body, len);
		stale[slot].len = len;
		stale[slot].at_ms = now;
	}
	pthread_mutex_unlock(&stale_mu);
	free(key);
}

#else
/* ISO C wants a translation unit to declare something. */
typedef int testfault_unused;
#endif
