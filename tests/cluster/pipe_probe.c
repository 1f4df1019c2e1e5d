/*
 * pipe_probe: src/store_pipe.c's two halves (store_pipe_send, store_pipe_wait) against real
 * redis-servers, for tests/integration/test_pipes.py: callers that come to wait late, as a
 * cluster router does (it sends a round to every node's shared connection, then waits on
 * each in turn).
 *
 *   pipe_probe late-waiter PORT
 *       three calls queued on one connection: BLPOP of 0.5 s, PING, PING. The first and the
 *       third are waited on at once; the second only after 2.5 s (its thread busy on
 *       another node). The third must not sleep until its deadline (2 s) for want of a
 *       reader once the first is served.
 *   pipe_probe late-node PORT_A PORT_B
 *       a router sends BLPOP of 1.5 s to A and PING to B, deadline 1 s; another router
 *       queues PING on B behind it, deadline 5 s, and waits after 1.5 s. The first waits on
 *       A (it times out there), then on B, past its deadline: B's reply has come and must
 *       be read, not taken for a stuck connection (which would fail the other router too).
 *
 * Prints one line per call, "NAME rc=N ms=T ERR", and exits 0 when it ran; 2 on bad usage.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "rarena.h"
#include "store_pipe.h"

static const char BLPOP_05[] = "*3\r\n$5\r\nBLPOP\r\n$13\r\npipe-probe:no\r\n$3\r\n0.5\r\n";
static const char BLPOP_15[] = "*3\r\n$5\r\nBLPOP\r\n$13\r\npipe-probe:no\r\n$3\r\n1.5\r\n";
static const char PING[] = "*1\r\n$4\r\nPING\r\n";

struct caller {
	const char *name;
	struct store_pipe *p;
	struct store_pipe_call call;
	redisReply *out[1];
	struct rarena arena;
	int64_t deadline;
	int delay_ms;           /* before it waits */
	int rc;
	int64_t at;             /* when its wait returned, ms after the start */
	char err[200];
};

static int64_t t0;
static pthread_mutex_t print_mu = PTHREAD_MUTEX_INITIALIZER;

static struct store_pipe *
pipe_to(int port)
{
	struct rconn_cfg cfg;

	memset(&cfg, 0, sizeof(cfg));
	snprintf(cfg.host, sizeof(cfg.host), "127.0.0.1");
	cfg.port = port;
	cfg.timeout_ms = 5000;
	return store_pipe_new(&cfg);
}

static int
send_call(struct caller *c, struct store_pipe *p, const char *name, const char *cmd,
          int64_t deadline, int delay_ms)
{
	struct store_pipe_result res;

	c->name = name;
	c->p = p;
	c->deadline = deadline;
	c->delay_ms = delay_ms;
	rarena_init(&c->arena, 4096);
	if (store_pipe_send(p, cmd, strlen(cmd), 1, c->out, &c->arena, deadline, &c->call, &res) != 0) {
		fprintf(stderr, "pipe_probe: %s: cannot send: %s\n", name, res.err);
		return -1;
	}
	return 0;
}

static void
wait_call(struct caller *c)
{
	struct store_pipe_result res;

	if (c->delay_ms > 0)
		usleep((useconds_t)c->delay_ms * 1000);
	c->rc = store_pipe_wait(c->p, &c->call, c->deadline, &res);
	c->at = mono_ms() - t0;
	snprintf(c->err, sizeof(c->err), "%s", c->rc == 0 ? "" : res.err);
	pthread_mutex_lock(&print_mu);
	printf("%s rc=%d ms=%lld %s\n", c->name, c->rc, (long long)c->at, c->err);
	fflush(stdout);
	pthread_mutex_unlock(&print_mu);
	rarena_free(&c->arena);
}

static void *
waiter(void *arg)
{
	wait_call(arg);
	return NULL;
}

static int
late_waiter(int port)
{
	struct store_pipe *p = pipe_to(port);
	struct caller c[3];
	pthread_t th[3];
	int i;

	t0 = mono_ms();
	if (send_call(&c[0], p, "first", BLPOP_05, t0 + 2000, 0) != 0 ||
	    send_call(&c[1], p, "late", PING, t0 + 5000, 2500) != 0 ||
	    send_call(&c[2], p, "third", PING, t0 + 2000, 100) != 0)
		return 1;
	for (i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, waiter, &c[i]);
	for (i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	store_pipe_free(p);
	return 0;
}

static int
late_node(int port_a, int port_b)
{
	struct store_pipe *a = pipe_to(port_a), *b = pipe_to(port_b);
	struct caller xa, xb, yb;
	pthread_t th;

	t0 = mono_ms();
	if (send_call(&xa, a, "x-on-a", BLPOP_15, t0 + 1000, 0) != 0 ||
	    send_call(&xb, b, "x-on-b", PING, t0 + 1000, 0) != 0 ||
	    send_call(&yb, b, "y-on-b", PING, t0 + 5000, 1500) != 0)
		return 1;
	pthread_create(&th, NULL, waiter, &yb);
	wait_call(&xa);
	wait_call(&xb);
	pthread_join(th, NULL);
	store_pipe_free(a);
	store_pipe_free(b);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "late-waiter") == 0)
		return late_waiter(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "late-node") == 0)
		return late_node(atoi(argv[2]), atoi(argv[3]));
	fprintf(stderr, "usage: pipe_probe late-waiter PORT | late-node PORT_A PORT_B\n");
	return 2;
}
