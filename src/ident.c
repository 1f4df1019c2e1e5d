/* ident: customer identifier rules shared by partnerd and partnerctl (SPEC §4). Pure. */
#include "ident.h"

#include <string.h>

#define IDENT_MOBILE_MIN 6
#define IDENT_ORG_MAX 64

int ident_normalize_mobile(const char *in, size_t len, const char *country_code,
                           int national_len, char *out, size_t outsz)
{
	char digits[IDENT_MOBILE_MAX];
	size_t n = 0, cclen = 0;

	if (in == NULL)
		return -1;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];

		if (c >= '0' && c <= '9') {
			if (n == sizeof digits)
				return -1;   /* more than 15 digits */
			digits[n++] = c;
		} else if (c != ' ' && c != '+' && c != '-' && c != '.' && c != '(' &&
		           c != ')') {
			return -1;
		}
	}
	if (n < IDENT_MOBILE_MIN)
		return -1;
	if (country_code != NULL && national_len > 0 && n == (size_t)national_len)
		cclen = strlen(country_code);
	if (cclen + n + 1 > outsz)
		return -1;
	memcpy(out, country_code == NULL ? "" : country_code, cclen);
	memcpy(out + cclen, digits, n);
	out[cclen + n] = '\0';
	return (int)(cclen + n);
}

int ident_valid_org(const char *s)
{
	size_t n;

	if (s == NULL)
		return 0;
	for (n = 0; s[n] != '\0'; n++) {
		char c = s[n];

		if (n == IDENT_ORG_MAX)
			return 0;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return n > 0;
}

int ident_parse_cid(const char *s, size_t len, int64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 19 || s[0] == '0')
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return -1;
	*out = (int64_t)v;
	return 0;
}
