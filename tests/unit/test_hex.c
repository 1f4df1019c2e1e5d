/*
 * Unit tests for src/hex.c: hex digits and the %XX decoding shared by query strings
 * (http_query_param, '+' is a space) and the Redis URL's user and password (rconn, '+'
 * is itself).
 */
#include <string.h>

#include "hex.h"
#include "test.h"

static int dec(const char *s, int plus, char *out, size_t outsz)
{
	return hex_pct_decode(s, strlen(s), plus, out, outsz);
}

int main(void)
{
	char out[16];

	TEST("hex digits of either case have their value; anything else is -1") {
		CHECK_EQ_INT(hex_digit('0'), 0);
		CHECK_EQ_INT(hex_digit('9'), 9);
		CHECK_EQ_INT(hex_digit('a'), 10);
		CHECK_EQ_INT(hex_digit('F'), 15);
		CHECK_EQ_INT(hex_digit('g'), -1);
		CHECK_EQ_INT(hex_digit('G'), -1);
		CHECK_EQ_INT(hex_digit('/'), -1);
		CHECK_EQ_INT(hex_digit(':'), -1);
		CHECK_EQ_INT(hex_digit('\0'), -1);
	}
	TEST("%XX escapes of either case decode; the length is returned") {
		CHECK_EQ_INT(dec("p%3Aw%40d%2f", 0, out, sizeof out), 6);
		CHECK_EQ_STR(out, "p:w@d/");
		CHECK_EQ_INT(dec("", 0, out, sizeof out), 0);
		CHECK_EQ_STR(out, "");
	}
	TEST("'+' is a space only in form encoding") {
		CHECK_EQ_INT(dec("a+b%2B", 1, out, sizeof out), 4);
		CHECK_EQ_STR(out, "a b+");
		CHECK_EQ_INT(dec("a+b%2B", 0, out, sizeof out), 4);
		CHECK_EQ_STR(out, "a+b+");
	}
	TEST("a '%' without two hex digits, or an escaped NUL, is refused") {
		CHECK_EQ_INT(dec("a%", 0, out, sizeof out), HEX_BAD);
		CHECK_EQ_INT(dec("a%4", 1, out, sizeof out), HEX_BAD);
		CHECK_EQ_INT(dec("a%4g", 0, out, sizeof out), HEX_BAD);
		CHECK_EQ_INT(dec("%zz", 1, out, sizeof out), HEX_BAD);
		CHECK_EQ_INT(dec("a%00b", 0, out, sizeof out), HEX_NUL);
		CHECK_EQ_INT(dec("a%00b", 1, out, sizeof out), HEX_NUL);
	}
	TEST("only n bytes are read: an escape cut by n is refused") {
		CHECK_EQ_INT(hex_pct_decode("ab%41", 4, 0, out, sizeof out), HEX_BAD);
		CHECK_EQ_INT(hex_pct_decode("ab%41", 2, 0, out, sizeof out), 2);
		CHECK_EQ_STR(out, "ab");
	}
	TEST("a result that does not fit with its NUL is refused") {
		CHECK_EQ_INT(dec("abc", 0, out, 4), 3);
		CHECK_EQ_INT(dec("abcd", 0, out, 4), HEX_TOO_LONG);
		CHECK_EQ_INT(dec("%41%42%43", 0, out, 4), 3);
		CHECK_EQ_INT(dec("%41%42%43%44", 0, out, 4), HEX_TOO_LONG);
		CHECK_EQ_INT(dec("", 0, out, 0), HEX_TOO_LONG);
	}
	TEST_MAIN_END();
}
