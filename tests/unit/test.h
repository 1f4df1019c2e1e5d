/*
 * test.h: a tiny unit-test macro set in the manner of hiredis's test() / test_cond().
 * One test program includes it once:
 *
 *     int main(void)
 *     {
 *         TEST("a date without an offset is refused") {
 *             CHECK(dates_parse(s, strlen(s), &ms) == -1);
 *         }
 *         TEST_MAIN_END();
 *     }
 *
 * A test passes when every check inside it passes. Each test prints "PASS: name" or
 * "FAIL: name" (failing checks print file:line before it); the last line is exactly
 * "N passed, M failed" (tests, not checks), and TEST_MAIN_END returns non-zero from main
 * when any test failed. A check outside any TEST counts as a failed test of its own.
 */
#ifndef PARTNERD_TEST_H
#define PARTNERD_TEST_H

#include <stdio.h>
#include <string.h>

static int test_passed;        /* tests that passed */
static int test_failed;        /* tests that failed */
static int test_running;       /* 1 inside a TEST body */
static int test_cur_failures;  /* failed checks in the running test */
static const char *test_cur;   /* name of the running test */

__attribute__((unused)) static void test_begin(const char *name)
{
	test_cur = name;
	test_cur_failures = 0;
	test_running = 1;
}

__attribute__((unused)) static void test_end(void)
{
	if (test_cur_failures == 0) {
		test_passed++;
		printf("PASS: %s\n", test_cur);
	} else {
		test_failed++;
		printf("FAIL: %s\n", test_cur);
	}
	test_running = 0;
	fflush(stdout);
}

/* Counts a failed check (already described); returns 0. */
__attribute__((unused)) static int test_count_failure(void)
{
	if (test_running) {
		test_cur_failures++;
	} else {
		test_failed++;
		printf("FAIL: (check outside a test)\n");
	}
	return 0;
}

/* Records a failed check; returns 0 so that checks can be used in conditions. */
__attribute__((unused)) static int test_fail(const char *file, int line, const char *what)
{
	printf("  %s:%d: check failed: %s\n", file, line, what);
	return test_count_failure();
}

/* Returns ok; records a failure when it is 0. */
__attribute__((unused)) static int test_check(int ok, const char *file, int line, const char *what)
{
	return ok ? 1 : test_fail(file, line, what);
}

__attribute__((unused)) static int test_eq_int(const char *file, int line, const char *what,
                                               long long a, long long b)
{
	if (a == b)
		return 1;
	printf("  %s:%d: check failed: %s: got %lld, want %lld\n", file, line, what, a, b);
	return test_count_failure();
}

__attribute__((unused)) static int test_eq_str(const char *file, int line, const char *what,
                                               const char *a, const char *b)
{
	if (a == b || (a != NULL && b != NULL && strcmp(a, b) == 0))
		return 1;
	printf("  %s:%d: check failed: %s: got \"%s\", want \"%s\"\n", file, line, what,
	       a ? a : "(null)", b ? b : "(null)");
	return test_count_failure();
}

__attribute__((unused)) static int test_main_end(void)
{
	printf("%d passed, %d failed\n", test_passed, test_failed);
	return test_failed != 0;
}

/* TEST("name") { checks... } runs the block once as the test "name". */
#define TEST(name) for (test_begin(name); test_running; test_end())

#define CHECK(cond) test_check((cond) ? 1 : 0, __FILE__, __LINE__, #cond)
#define CHECK_EQ_INT(a, b) \
	test_eq_int(__FILE__, __LINE__, #a " == " #b, (long long)(a), (long long)(b))
#define CHECK_EQ_STR(a, b) test_eq_str(__FILE__, __LINE__, #a " == " #b, (a), (b))

#define TEST_MAIN_END() return test_main_end()

#endif
