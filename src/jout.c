/* jout: JSON text into a struct buf. See jout.h. */
#include "jout.h"

#include <string.h>

#include "dates.h"

int
jout_lit(struct buf *b, const char *text)
{
	return buf_append(b, text, strlen(text));
}

int
jout_str(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, run;

	if (buf_append(b, "\"", 1) != 0)
		return -1;
	while (i < n) {
		char esc[6];
		size_t elen = 2;
		unsigned char ch;

		/* The longest run of bytes that need no escape goes in one append. */
		for (run = i; run < n; run++) {
			ch = (unsigned char)s[run];
			if (ch < 0x20 || ch == '"' || ch == '\\')
				break;
		}
		if (run > i && buf_append(b, s + i, run - i) != 0)
			return -1;
		if (run == n)
			break;
		ch = (unsigned char)s[run];
		esc[0] = '\\';
		switch (ch) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[ch >> 4];
			esc[5] = hex[ch & 15];
			elen = 6;
		}
		if (buf_append(b, esc, elen) != 0)
			return -1;
		i = run + 1;
	}
	return buf_append(b, "\"", 1);
}

int
jout_cstr(struct buf *b, const char *s)
{
	return jout_str(b, s, strlen(s));
}

int
jout_str_or_null(struct buf *b, const char *s, size_t n)
{
	return s == NULL ? JOUT_LIT(b, "null") : jout_str(b, s, n);
}

int
jout_i64(struct buf *b, int64_t v)
{
	char tmp[24], *d = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

	do {
		*--d = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		*--d = '-';
	return buf_append(b, d, (size_t)(tmp + sizeof(tmp) - d));
}

int
jout_date_or_null(struct buf *b, int64_t ms, int64_t none)
{
	char d[DATES_FMT_LEN + 3];

	if (ms == none)
		return JOUT_LIT(b, "null");
	d[0] = '"';
	dates_format(ms, d + 1);
	d[DATES_FMT_LEN + 1] = '"';
	return buf_append(b, d, DATES_FMT_LEN + 2);
}
