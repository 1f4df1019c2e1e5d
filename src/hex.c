/* hex: hex digits and percent decoding. See hex.h. */
#include "hex.h"

int
hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_pct_decode(const char *s, size_t n, int plus_is_space, char *out, size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '%') {
			int hi, lo;

			if (n - i < 3 || (hi = hex_digit(s[i + 1])) < 0 || (lo = hex_digit(s[i + 2])) < 0)
				return HEX_BAD;
			c = (char)(hi * 16 + lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			c = ' ';
		}
		if (c == '\0')
			return HEX_NUL;
		if (o + 1 >= outsz)
			return HEX_TOO_LONG;
		out[o++] = c;
	}
	if (outsz == 0)
		return HEX_TOO_LONG;
	out[o] = '\0';
	return (int)o;
}
