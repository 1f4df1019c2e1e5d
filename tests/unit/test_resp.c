/*
 * Unit tests for src/resp.c (the RESP text store.c and cluster.c send, compared with
 * hiredis's own formatting) and rconn_gone (the dead-connection check) on socket pairs.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "rconn.h"
#include "resp.h"
#include "test.h"

/* 1 when resp_command's text for argv equals hiredis's redisFormatCommandArgv's. */
static int same_as_hiredis(size_t argc, const char **argv, const size_t *lens)
{
	struct resp_out o = { 0 };
	char *h = NULL;
	int hn = redisFormatCommandArgv(&h, (int)argc, argv, lens);
	int ok;

	resp_command(&o, argc, argv, lens);
	ok = hn >= 0 && (size_t)hn == o.len && memcmp(h, o.p, o.len) == 0;
	if (!ok)
		printf("  resp: %.*s\n  hiredis: %.*s\n", (int)o.len, o.p, hn, h);
	redisFreeCommand(h);
	resp_free(&o);
	return ok;
}

/* A context on fd that rconn_gone can look at (no connect: only fd and err are read). */
static redisContext *ctx_on(int fd)
{
	redisContext *c = calloc(1, sizeof(*c));

	if (c == NULL)
		abort();
	c->fd = fd;
	return c;
}

int main(void)
{
	TEST("resp_put_u64 writes 0, the largest u64 and negatives as snprintf does") {
		static const uint64_t v[] = { 0, 1, 9, 10, 99, 100, 4095, 4096, 1234567890123ULL,
		                              UINT64_MAX };
		char got[32], want[32];
		size_t i, n;

		for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			n = resp_put_u64(got, v[i], 0);
			snprintf(want, sizeof(want), "%" PRIu64, v[i]);
			CHECK(n == strlen(want) && memcmp(got, want, n) == 0);
		}
		n = resp_put_u64(got, (uint64_t)INT64_MAX + 1, 1);
		CHECK(n == 20 && memcmp(got, "-9223372036854775808", n) == 0);
		n = resp_put_u64(got, 7, 1);
		CHECK(n == 2 && memcmp(got, "-7", 2) == 0);
	}

	TEST("a command's text is hiredis's: empty, binary and long arguments") {
		static char big[70000];
		const char *a1[] = { "PING" };
		size_t l1[] = { 4 };
		const char *a3[] = { "SET", "k\0ey", "" };
		size_t l3[] = { 3, 4, 0 };
		const char *ab[] = { "SET", "k", big };
		size_t lb[] = { 3, 1, sizeof(big) };
		const char *a12[12];
		size_t l12[12], i;

		memset(big, 'x', sizeof(big));
		for (i = 0; i < 12; i++) {
			a12[i] = "0123456789";
			l12[i] = i;     /* 0 to 11 bytes: one and two digit counts */
		}
		CHECK(same_as_hiredis(1, a1, l1));
		CHECK(same_as_hiredis(3, a3, l3));
		CHECK(same_as_hiredis(3, ab, lb));
		CHECK(same_as_hiredis(12, a12, l12));
	}

	TEST("commands appended one after another make a pipeline; resp_free empties it") {
		struct resp_out o = { 0 };
		const char *want = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$6\r\nASKING\r\n";

		resp_count(&o, '*', 2);
		resp_arg(&o, "GET", 3);
		resp_arg(&o, "k", 1);
		resp_count(&o, '*', 1);
		resp_arg(&o, "ASKING", 6);
		CHECK(o.len == strlen(want) && memcmp(o.p, want, o.len) == 0);
		CHECK(o.cap >= o.len);
		resp_free(&o);
		CHECK(o.p == NULL && o.len == 0 && o.cap == 0);
		resp_arg(&o, "x", 1);   /* an emptied buffer is usable again */
		CHECK(o.len == 7 && memcmp(o.p, "$1\r\nx\r\n", 7) == 0);
		resp_free(&o);
	}

	TEST("resp_write writes everything on a socket; EPIPE when the peer is gone") {
		static char big[300000];
		char *back = malloc(sizeof(big));
		int sv[2], status = -1;
		size_t got = 0;
		pid_t pid;

		CHECK(back != NULL);
		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
		CHECK(resp_write(sv[0], "hello", 5) == 5);
		CHECK(read(sv[1], back, 5) == 5 && memcmp(back, "hello", 5) == 0);
		pid = fork();
		if (pid == 0) {
			/* a reader for more than the socket buffer holds */
			while (got < sizeof(big)) {
				ssize_t n = read(sv[1], back + got, sizeof(big) - got);

				if (n <= 0)
					_exit(1);
				got += (size_t)n;
			}
			_exit(0);
		}
		memset(big, 'y', sizeof(big));
		CHECK(resp_write(sv[0], big, sizeof(big)) == sizeof(big));
		close(sv[1]);
		CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && status == 0);
		errno = 0;
		CHECK(resp_write(sv[0], "z", 1) == 0 && errno == EPIPE);
		close(sv[0]);
		free(back);
	}

	TEST("rconn_gone: alive, unread bytes waiting, peer closed, context error") {
		int sv[2];
		redisContext *c;

		CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
		c = ctx_on(sv[0]);
		CHECK(rconn_gone(c) == 0);
		CHECK(write(sv[1], "+OK\r\n", 5) == 5);
		CHECK(rconn_gone(c) == 1);      /* a reply nobody waits for */
		CHECK(rconn_gone(c) == 1);      /* and the peek consumed nothing */
		{
			char b[8];

			CHECK(read(sv[0], b, sizeof(b)) == 5);
		}
		CHECK(rconn_gone(c) == 0);
		c->err = REDIS_ERR_IO;
		CHECK(rconn_gone(c) == 1);
		c->err = 0;
		close(sv[1]);
		CHECK(rconn_gone(c) == 1);
		close(sv[0]);
		free(c);
	}

	TEST_MAIN_END();
}
