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
 * length, or -1 (out then holds garbage) for a '%' without two hex digits after it, a NUL
 * byte (escaped or not: the result is a C string), or a result that does not fit.
 */
int hex_pct_decode(const char *s, size_t n, int plus_is_space, char *out, size_t outsz);

#endif
