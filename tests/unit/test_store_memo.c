/*
 * Unit tests for src/store_memo.c: partnerd's memo of identifiers and program definitions
 * (the times are arguments: no clock).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_memo.h"
#include "test.h"

static void *alloc_malloc(void *ctx, size_t n)
{
	(void)ctx;
	return malloc(n);
}

static void *alloc_none(void *ctx, size_t n)
{
	(void)ctx;
	(void)n;
	return NULL;
}

/* The definition as the memo gives it (a malloc'd copy, compared and freed here), or "". */
static int def_is(struct store_memo *m, const char *org, int64_t now, const char *want)
{
	size_t len = 0;
	char *d = store_memo_def(m, org, "Air", 3, now, &len, alloc_malloc, NULL);
	int ok = want == NULL ? d == NULL : d != NULL && len == strlen(want) && strcmp(d, want) == 0;

	free(d);
	return ok;
}

int main(void)
{
	struct store_memo *m = store_memo_new();
	size_t len = 0;

	TEST("an identifier is remembered per org and kind, dropped, and replaced") {
		CHECK(store_memo_cid(m, "acme", 1, "919000000001", 12) == 0);
		store_memo_put_cid(m, "acme", 1, "919000000001", 12, 42);
		CHECK(store_memo_cid(m, "acme", 1, "919000000001", 12) == 42);
		CHECK(store_memo_cid(m, "acme", 2, "919000000001", 12) == 0);     /* another kind */
		CHECK(store_memo_cid(m, "acmf", 1, "919000000001", 12) == 0);     /* another org */
		CHECK(store_memo_cid(m, "acme", 1, "91900000000", 11) == 0);      /* a prefix */
		store_memo_put_cid(m, "acme", 1, "919000000001", 12, 43);
		CHECK(store_memo_cid(m, "acme", 1, "919000000001", 12) == 43);
		store_memo_drop_cid(m, "acme", 1, "919000000001", 12);
		CHECK(store_memo_cid(m, "acme", 1, "919000000001", 12) == 0);
		store_memo_drop_cid(m, "acme", 1, "919000000001", 12);            /* not there: nothing */
	}
	TEST("values with NUL bytes and longer than the key buffer are told apart") {
		char a[600], b[600];

		memset(a, 'x', sizeof a);
		memcpy(b, a, sizeof b);
		b[599] = 'y';
		a[3] = '\0';
		store_memo_put_cid(m, "o", 2, a, sizeof a, 7);
		CHECK(store_memo_cid(m, "o", 2, a, sizeof a) == 7);
		CHECK(store_memo_cid(m, "o", 2, b, sizeof b) == 0);
		CHECK(store_memo_cid(m, "o", 2, a, 3) == 0);
	}
	TEST("many identifiers: the table stays bounded, each lookup is its own or none") {
		char v[32];
		int i, wrong = 0, kept = 0;

		for (i = 0; i < 4 * STORE_MEMO_IDS; i++) {
			int n = snprintf(v, sizeof v, "m%d", i);

			store_memo_put_cid(m, "big", 1, v, (size_t)n, i + 1);
		}
		for (i = 0; i < 4 * STORE_MEMO_IDS; i++) {
			int n = snprintf(v, sizeof v, "m%d", i);
			int64_t c = store_memo_cid(m, "big", 1, v, (size_t)n);

			wrong += c != 0 && c != i + 1;
			kept += c == i + 1;
		}
		CHECK_EQ_INT(wrong, 0);
		CHECK(kept > 0 && kept <= STORE_MEMO_IDS);
	}
	TEST("a program definition lives STORE_MEMO_DEF_TTL_MS, then is read again") {
		CHECK(def_is(m, "acme", 1000, NULL));
		store_memo_put_def(m, "acme", "Air", 3, "{\"pid\":1}", 9, 1000);
		CHECK(def_is(m, "acme", 1000 + STORE_MEMO_DEF_TTL_MS, "{\"pid\":1}"));
		CHECK(def_is(m, "acme", 1001 + STORE_MEMO_DEF_TTL_MS, NULL));
		CHECK(def_is(m, "acme", 999, NULL));                    /* clock went back */
		CHECK(def_is(m, "other", 1000, NULL));
		store_memo_put_def(m, "acme", "Air", 3, "{\"pid\":2}", 9, 5000);
		CHECK(def_is(m, "acme", 5000, "{\"pid\":2}"));
		CHECK(store_memo_def(m, "acme", "Air", 3, 5000, &len, alloc_none, NULL) == NULL);
	}
	TEST("the process's memo is one") {
		CHECK(store_memo_shared() != NULL && store_memo_shared() == store_memo_shared());
	}
	store_memo_free(m);
	store_memo_free(NULL);
	TEST_MAIN_END();
}
