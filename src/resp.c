/*
 * resp: Redis commands as RESP text, and writing it on a socket (see resp.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "resp.h"

void
resp_grow(struct resp_out *o, size_t n)
{
	if (o->cap - o->len >= n)
		return;
	while (o->cap - o->len < n)
		o->cap = o->cap ? o->cap * 2 : 4096;
	o->p = realloc(o->p, o->cap);
	if (o->p == NULL)
		abort();
}

void
resp_free(struct resp_out *o)
{
	free(o->p);
	o->p = NULL;
	o->len = 0;
	o->cap = 0;
}

void
resp_command(struct resp_out *o, size_t argc, const char *const *argv, const size_t *lens)
{
	size_t i;

	resp_count(o, '*', argc);
	for (i = 0; i < argc; i++)
		resp_arg(o, argv[i], lens[i]);
}

size_t
resp_write(int fd, const char *p, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, p + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EPIPE;
			break;
		}
		done += (size_t)n;
	}
	return done;
}
