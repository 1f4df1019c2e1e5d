/*
 * hex: hexadecimal digits and %XX (percent) decoding, for the query strings partnerd
 * reads, the Redis URL's user and password, and JSON's \uXXXX. Pure.
 */
#ifndef PARTNERD_HEX_H
#define PARTNERD_HEX_H

#include <stddef.h>

/* The value of one hex digit (0-9, a-f, A-F), or -1. */
int hex_digit(char c);

/*
 * Decodes s[0..n) into out (outsz bytes, NUL-terminated): %XX escapes (either case) become
 * their byte, and '+' a space when plus_is_space (form encoding). Returns the decoded
 * length, or (out then holds garbage) HEX_BAD for a '%' without two hex digits after it,
 * HEX_NUL for a NUL byte (escaped or not: the result is a C string), HEX_TOO_LONG for a
 * result that does not fit.
 */
#define HEX_BAD      (-1)
#define HEX_NUL      (-2)
#define HEX_TOO_LONG (-3)
int hex_pct_decode(const char *s, size_t n, int plus_is_space, char *out, size_t outsz);

#endif
