/*
 * Unit tests for src/rarena.c: the bump allocator, and replies built in it by hiredis's
 * protocol reader (fed bytes, no socket) compared with hiredis's own replies.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rarena.h"
#include "test.h"

#define CHUNK 4096

/* 1 when the two reply trees are equal (types, strings with lengths, integers, shapes). */
static int same_reply(const redisReply *a, const redisReply *b)
{
	size_t i;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->type != b->type || a->integer != b->integer || a->len != b->len ||
	    a->elements != b->elements || (a->str == NULL) != (b->str == NULL) ||
	    (a->element == NULL) != (b->element == NULL))
		return 0;
	if (a->str != NULL && (memcmp(a->str, b->str, a->len) != 0 || a->str[a->len] != '\0'))
		return 0;
	for (i = 0; i < a->elements; i++)
		if (!same_reply(a->element[i], b->element[i]))
			return 0;
	return 1;
}

/*
 * Parses the RESP text s[0..n) with an arena reader, fed in pieces of step bytes, and with
 * hiredis's default reader; 1 when both give one reply and the replies are equal.
 */
static int parses_as_hiredis(struct rarena *a, const char *s, size_t n, size_t step,
                             redisReply **out)
{
	redisReader *ra = redisReaderCreate(), *rd = redisReaderCreate();
	void *ar = NULL, *dr = NULL;
	size_t off;
	int ok;

	rarena_attach(ra, a);
	for (off = 0; off < n && ar == NULL; off += step) {
		size_t k = n - off < step ? n - off : step;

		if (redisReaderFeed(ra, s + off, k) != REDIS_OK ||
		    redisReaderGetReply(ra, &ar) != REDIS_OK)
			break;
	}
	ok = redisReaderFeed(rd, s, n) == REDIS_OK && redisReaderGetReply(rd, &dr) == REDIS_OK &&
	     ar != NULL && dr != NULL && same_reply(ar, dr);
	if (dr != NULL)
		freeReplyObject(dr);
	redisReaderFree(ra);
	redisReaderFree(rd);
	*out = ar;
	return ok;
}

int main(void)
{
	struct rarena a;
	redisReply *r;

	rarena_init(&a, CHUNK);

	TEST("allocations are aligned as malloc's, distinct, and keep their bytes") {
		unsigned char *p[300];
		size_t i, j;
		int intact = 1;

		for (i = 0; i < 300; i++) {
			p[i] = rarena_alloc(&a, i % 37 + 1);
			CHECK(p[i] != NULL);
			CHECK_EQ_INT((uintptr_t)p[i] % _Alignof(max_align_t), 0);
			memset(p[i], (int)i, i % 37 + 1);
		}
		for (i = 0; i < 300; i++)
			for (j = 0; j < i % 37 + 1; j++)
				intact &= p[i][j] == (unsigned char)i;
		CHECK(intact);
		rarena_reset(&a);
	}

	TEST("after a reset the arena holds at most its kept chunk") {
		void *big;
		size_t i;

		for (i = 0; i < 10000; i++)
			CHECK(rarena_alloc(&a, 100) != NULL);
		big = rarena_alloc(&a, 10 * CHUNK);
		CHECK(big != NULL);
		memset(big, 1, 10 * CHUNK);
		CHECK(rarena_held(&a) > 10 * CHUNK);
		rarena_reset(&a);
		CHECK(rarena_held(&a) <= CHUNK);
		rarena_reset(&a);
		CHECK(rarena_held(&a) <= CHUNK);
	}

	TEST("a reset reuses the kept chunk from its start (not in ASan builds, which free it)") {
		void *p1, *p2;

		rarena_reset(&a);
		p1 = rarena_alloc(&a, 64);
		rarena_reset(&a);
		p2 = rarena_alloc(&a, 64);
		CHECK(p1 != NULL && p2 != NULL);
		CHECK(p1 == p2 || rarena_held(&a) <= 64);
		rarena_reset(&a);
	}

	TEST("an allocation too large for size_t fails instead of wrapping") {
		CHECK(rarena_alloc(&a, SIZE_MAX) == NULL);
		CHECK(rarena_alloc(&a, SIZE_MAX - 3) == NULL);
		CHECK(rarena_alloc(&a, 8) != NULL);
		rarena_reset(&a);
	}

	TEST("zero bytes give a usable pointer, distinct from the next one") {
		void *p0 = rarena_alloc(&a, 0);

		CHECK(p0 != NULL);
		CHECK(p0 != rarena_alloc(&a, 1));
		rarena_reset(&a);
	}

	TEST("strings, statuses, errors, integers and nils are built as hiredis builds them") {
		static const char s1[] = "$5\r\nhello\r\n";
		static const char s2[] = "+OK\r\n";
		static const char s3[] = "-ERR wrong\r\n";
		static const char s4[] = ":-42\r\n";
		static const char s5[] = "$-1\r\n";
		static const char s6[] = "$0\r\n\r\n";
		static const char s7[] = "*-1\r\n";

		CHECK(parses_as_hiredis(&a, s1, sizeof s1 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_STRING && r->len == 5 && strcmp(r->str, "hello") == 0);
		CHECK(parses_as_hiredis(&a, s2, sizeof s2 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0);
		CHECK(parses_as_hiredis(&a, s3, sizeof s3 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_ERROR && strcmp(r->str, "ERR wrong") == 0);
		CHECK(parses_as_hiredis(&a, s4, sizeof s4 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_INTEGER && r->integer == -42);
		CHECK(parses_as_hiredis(&a, s5, sizeof s5 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_NIL && r->str == NULL);
		CHECK(parses_as_hiredis(&a, s6, sizeof s6 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_STRING && r->len == 0 && r->str[0] == '\0');
		CHECK(parses_as_hiredis(&a, s7, sizeof s7 - 1, 64, &r));
		CHECK(r->type == REDIS_REPLY_NIL);
		rarena_reset(&a);
	}

	TEST("a string holding NUL bytes keeps its length and gets a trailing NUL") {
		static const char s[] = "$5\r\na\0b\0c\r\n";

		CHECK(parses_as_hiredis(&a, s, sizeof s - 1, 64, &r));
		CHECK(r->len == 5 && memcmp(r->str, "a\0b\0c", 6) == 0);
		rarena_reset(&a);
	}

	TEST("nested arrays are linked into their parents, also when fed byte by byte") {
		static const char s[] =
		    "*4\r\n$2\r\nOK\r\n:7\r\n*3\r\n$1\r\nv\r\n$-1\r\n*0\r\n*2\r\n*1\r\n+x\r\n-E\r\n";

		CHECK(parses_as_hiredis(&a, s, sizeof s - 1, 1, &r));
		CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 4);
		CHECK(strcmp(r->element[0]->str, "OK") == 0);
		CHECK(r->element[1]->integer == 7);
		CHECK(r->element[2]->elements == 3 && r->element[2]->element[1]->type == REDIS_REPLY_NIL);
		CHECK(r->element[2]->element[2]->type == REDIS_REPLY_ARRAY);
		CHECK(r->element[2]->element[2]->elements == 0 &&
		      r->element[2]->element[2]->element == NULL);
		CHECK(r->element[3]->element[0]->element[0]->type == REDIS_REPLY_STATUS);
		CHECK(r->element[3]->element[1]->type == REDIS_REPLY_ERROR);
		rarena_reset(&a);
	}

	TEST("a reply larger than many chunks parses, and the arena shrinks back at the reset") {
		size_t n = 20000, len = 0, i, big = 3 * CHUNK + 5;
		char *s = malloc(n * 16 + big + 64);
		int ok;

		CHECK(s != NULL);
		len += (size_t)sprintf(s + len, "*%zu\r\n", n + 1);
		for (i = 0; i < n; i++) {
			char num[24];
			int w = snprintf(num, sizeof num, "%zu", i);

			len += (size_t)sprintf(s + len, "$%d\r\n%s\r\n", w, num);
		}
		len += (size_t)sprintf(s + len, "$%zu\r\n", big);
		memset(s + len, 'z', big);
		len += big;
		memcpy(s + len, "\r\n", 2);
		len += 2;
		ok = parses_as_hiredis(&a, s, len, 1000, &r);
		CHECK(ok);
		CHECK(ok && r->elements == n + 1 && strcmp(r->element[12345]->str, "12345") == 0);
		CHECK(ok && r->element[n]->len == big && r->element[n]->str[big] == '\0');
		CHECK(rarena_held(&a) > 20000 * 48);
		rarena_reset(&a);
		CHECK(rarena_held(&a) <= CHUNK);
		free(s);
	}

	TEST("a protocol error in the middle of a reply leaves nothing to free by hand") {
		static const char s[] = "*3\r\n$1\r\na\r\n:1\r\n?bad\r\n";
		redisReader *rd = redisReaderCreate();
		void *reply = NULL;

		rarena_attach(rd, &a);
		CHECK(redisReaderFeed(rd, s, sizeof s - 1) == REDIS_OK);
		CHECK(redisReaderGetReply(rd, &reply) == REDIS_ERR);
		CHECK(reply == NULL);
		redisReaderFree(rd);
		rarena_reset(&a);
	}

	TEST("a reader freed with a partial reply does not free arena memory") {
		static const char s[] = "*2\r\n$1\r\na\r\n";
		redisReader *rd = redisReaderCreate();
		void *reply = NULL;

		rarena_attach(rd, &a);
		CHECK(redisReaderFeed(rd, s, sizeof s - 1) == REDIS_OK);
		CHECK(redisReaderGetReply(rd, &reply) == REDIS_OK);
		CHECK(reply == NULL);
		redisReaderFree(rd);
		rarena_reset(&a);
	}

	TEST("a copied reply equals its original and outlives the original's arena") {
		static const char s[] = "*4\r\n$5\r\nhe\0lo\r\n:-42\r\n*2\r\n+OK\r\n$-1\r\n*0\r\n";
		redisReader *rd = redisReaderCreate();
		struct rarena b;
		void *orig = NULL;
		redisReply *copy = NULL, *want = NULL;

		rarena_init(&b, CHUNK);
		rarena_attach(rd, &a);
		CHECK(redisReaderFeed(rd, s, sizeof s - 1) == REDIS_OK);
		CHECK(redisReaderGetReply(rd, &orig) == REDIS_OK && orig != NULL);
		if (orig != NULL)
			copy = rarena_copy_reply(&b, orig);
		CHECK(copy != NULL && copy != orig);
		rarena_reset(&a);       /* the original's memory is gone (freed, in ASan builds) */
		CHECK(parses_as_hiredis(&a, s, sizeof s - 1, 3, &want));
		CHECK(copy != NULL && same_reply(copy, want));
		CHECK(copy != NULL && copy->element[0]->len == 5 && copy->element[0]->str[2] == '\0');
		CHECK(copy != NULL && copy->element[3]->type == REDIS_REPLY_ARRAY &&
		      copy->element[3]->elements == 0);
		redisReaderFree(rd);
		rarena_reset(&a);
		rarena_free(&b);
	}

	TEST("rarena_free releases every chunk") {
		CHECK(rarena_alloc(&a, 10) != NULL);
		CHECK(rarena_alloc(&a, 2 * CHUNK) != NULL);
		rarena_free(&a);
		CHECK_EQ_INT(rarena_held(&a), 0);
	}
	TEST_MAIN_END();
}
