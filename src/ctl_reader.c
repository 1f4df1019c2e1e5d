/* ctl_reader: import-customers' input, line by line, into customer objects. See ctl_reader.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl.h"
#include "ctl_reader.h"
#include "xmalloc.h"

#define READER_BUF_CAP (READER_LINE_MAX + 1)

/* ---- reading lines ------------------------------------------------------------------- */

void reader_init(struct reader *r, int fd)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	r->buf = xmalloc(READER_BUF_CAP);
	r->csvbuf = xcalloc(READER_BUF_CAP, 1);
	r->tok = json_tokener_new_ex(32);
	if (r->tok == NULL) {
		fprintf(stderr, "partnerctl: out of memory\n");
		abort();
	}
}

void reader_free(struct reader *r)
{
	if (r->fd > STDIN_FILENO)
		close(r->fd);
	free(r->buf);
	free(r->csvbuf);
	if (r->tok != NULL)
		json_tokener_free(r->tok);
	memset(r, 0, sizeof *r);
	r->fd = -1;
}

uint64_t reader_offset(const struct reader *r)
{
	return r->base + r->pos;
}

/* Moves the unread bytes to the front and reads more. Returns 0, or -1 (r->err set). */
static int reader_fill(struct reader *r)
{
	ssize_t n;

	if (r->pos > 0) {
		memmove(r->buf, r->buf + r->pos, r->end - r->pos);
		r->base += r->pos;
		r->end -= r->pos;
		r->pos = 0;
	}
	do
		n = read(r->fd, r->buf + r->end, READER_BUF_CAP - r->end);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r->err = errno;
		return -1;
	}
	if (n == 0)
		r->eof = 1;
	r->end += (size_t)n;
	return 0;
}

int reader_next(struct reader *r, const char **p, size_t *len, int *too_long)
{
	size_t scanned = 0;
	char *nl;

	*too_long = 0;
	for (;;) {
		nl = memchr(r->buf + r->pos + scanned, '\n', r->end - r->pos - scanned);
		if (nl != NULL || (r->eof && r->pos < r->end)) {
			size_t stop = nl != NULL ? (size_t)(nl - r->buf) : r->end;

			*p = r->buf + r->pos;
			*len = stop - r->pos;
			r->last_pos = r->pos;
			r->pos = nl != NULL ? stop + 1 : stop;
			r->line++;
			return 1;
		}
		if (r->eof)
			return 0;
		scanned = r->end - r->pos;
		if (scanned == READER_BUF_CAP)
			break;
		if (reader_fill(r) < 0)
			return -1;
	}
	/* A full buffer without a newline: skip the rest of this line. */
	for (;;) {
		r->base += r->end;
		r->pos = r->end = 0;
		if (r->eof)
			break;
		if (reader_fill(r) < 0)
			return -1;
		if ((nl = memchr(r->buf, '\n', r->end)) != NULL) {
			r->pos = (size_t)(nl - r->buf) + 1;
			break;
		}
	}
	r->last_pos = r->pos;   /* not unreadable: never held back */
	r->line++;
	*p = r->buf;
	*len = 0;
	*too_long = 1;
	return 1;
}

void reader_unread(struct reader *r)
{
	r->pos = r->last_pos;
	r->line--;
}

int reader_seek(struct reader *r, uint64_t offset, uint64_t line)
{
	if (lseek(r->fd, (off_t)offset, SEEK_SET) < 0)
		return -1;
	r->base = offset;
	r->pos = r->end = 0;
	r->eof = 0;
	r->line = line;
	return 0;
}

/* ---- the format ---------------------------------------------------------------------- */

static int reader_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* 1 when s[0..len) is only spaces, tabs and CRs. */
static int reader_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!reader_is_space(s[i]))
			return 0;
	return 1;
}

static int reader_has_ext(const char *path, const char *ext)
{
	size_t n = strlen(path), e = strlen(ext);

	return n > e && strcasecmp(path + n - e, ext) == 0;
}

int reader_detect_format(struct reader *r, const char *path)
{
	if (path == NULL || reader_has_ext(path, ".jsonl") ||
	    reader_has_ext(path, ".ndjson") || reader_has_ext(path, ".json")) {
		r->format = READER_JSONL;
	} else if (reader_has_ext(path, ".csv")) {
		r->format = READER_CSV;
	} else {
		size_t i = 0;

		if (reader_fill(r) < 0)
			return -1;
		if (r->end >= 3 && memcmp(r->buf, "\xef\xbb\xbf", 3) == 0)
			i = 3;   /* a byte order mark */
		while (i < r->end && (reader_is_space(r->buf[i]) || r->buf[i] == '\n'))
			i++;
		r->format = i < r->end && r->buf[i] == '{' ? READER_JSONL : READER_CSV;
	}
	/* A UTF-8 byte order mark is not part of the first line. */
	while (r->end < 3 && !r->eof)
		if (reader_fill(r) < 0)
			break;
	if (r->end >= 3 && memcmp(r->buf, "\xef\xbb\xbf", 3) == 0)
		r->pos = 3;
	return 0;
}

/* ---- CSV ----------------------------------------------------------------------------- */

/*
 * Splits one CSV record into fields: the unquoted values are written to out (as big as
 * the line) and described by fp/fl. Returns the field count, or -1 with the reason.
 */
static int reader_csv_split(const char *s, size_t len, char *out, const char **fp, size_t *fl,
                            const char **why)
{
	size_t i = 0, o = 0;
	int n = 0;

	for (;;) {
		if (n == READER_CSV_MAX_FIELDS) {
			*why = "too many fields";
			return -1;
		}
		fp[n] = out + o;
		if (i < len && s[i] == '"') {
			for (i++;; i++) {
				if (i == len) {
					*why = "a quoted field is not closed (a record may not span lines)";
					return -1;
				}
				if (s[i] == '"') {
					if (i + 1 < len && s[i + 1] == '"') {
						out[o++] = '"';
						i++;
						continue;
					}
					i++;
					break;
				}
				out[o++] = s[i];
			}
			if (i < len && s[i] != ',') {
				*why = "text after a closing quote";
				return -1;
			}
		} else {
			while (i < len && s[i] != ',') {
				if (s[i] == '"') {
					*why = "a quote inside an unquoted field";
					return -1;
				}
				out[o++] = s[i++];
			}
		}
		fl[n] = (size_t)(out + o - fp[n]);
		n++;
		if (i == len)
			return n;
		i++;   /* the comma */
	}
}

int reader_csv_header(struct reader *r, char *why, size_t whysz)
{
	const char *fp[READER_CSV_MAX_FIELDS], *s, *splitwhy;
	size_t fl[READER_CSV_MAX_FIELDS], len;
	int n, rc, too_long, seen_id = 0, seen[CTL_NIDENTS] = { 0 };

	do
		rc = reader_next(r, &s, &len, &too_long);
	while (rc == 1 && !too_long && reader_blank(s, len));
	if (rc < 0)
		return -1;
	if (rc == 0 || too_long) {
		snprintf(why, whysz, "no CSV header line");
		return -2;
	}
	while (len > 0 && reader_is_space(s[len - 1]))
		len--;
	n = reader_csv_split(s, len, r->csvbuf, fp, fl, &splitwhy);
	if (n < 0) {
		snprintf(why, whysz, "the header line: %s", splitwhy);
		return -2;
	}
	for (int i = 0; i < n; i++) {
		const char *f = fp[i];
		size_t l = fl[i];
		int col = -2;

		while (l > 0 && (*f == ' ' || *f == '\t')) {
			f++;
			l--;
		}
		while (l > 0 && (f[l - 1] == ' ' || f[l - 1] == '\t'))
			l--;
		if (l == 2 && memcmp(f, "id", 2) == 0)
			col = -1;
		for (int k = 0; k < CTL_NIDENTS; k++)
			if (l == strlen(ctl_ident_name[k]) && memcmp(f, ctl_ident_name[k], l) == 0)
				col = k;
		if (col == -2) {
			snprintf(why, whysz, "the header line names an unknown column %s (columns: id, "
			         "mobile, email, externalId)", ctl_quote(f, l));
			return -2;
		}
		if ((col == -1 && seen_id++) || (col >= 0 && seen[col]++)) {
			snprintf(why, whysz, "the header line names column %s twice", ctl_quote(f, l));
			return -2;
		}
		r->csv_col[i] = col;
	}
	if (!seen_id) {
		snprintf(why, whysz, "the header line has no id column");
		return -2;
	}
	r->csv_ncols = n;
	return 0;
}

/*
 * A CSV record as the customer object load would take: id as a JSON integer when it is
 * decimal digits (else as a string, which validation refuses), the others as strings,
 * empty fields left out. Returns a new object, or NULL with the reason appended to why.
 */
static json_object *reader_csv_object(struct reader *r, const char *s, size_t len,
                                      struct buf *why)
{
	const char *fp[READER_CSV_MAX_FIELDS], *splitwhy;
	size_t fl[READER_CSV_MAX_FIELDS];
	json_object *o;
	int n = reader_csv_split(s, len, r->csvbuf, fp, fl, &splitwhy);

	if (n < 0) {
		buf_appendf(why, "%s", splitwhy);
		return NULL;
	}
	if (n != r->csv_ncols) {
		buf_appendf(why, "%d field(s), the header has %d", n, r->csv_ncols);
		return NULL;
	}
	o = json_object_new_object();
	for (int i = 0; i < n; i++) {
		int col = r->csv_col[i];
		int64_t id;

		if (fl[i] == 0)
			continue;
		if (col == -1 && ident_parse_cid(fp[i], fl[i], &id) == 0)
			json_object_object_add(o, "id", json_object_new_int64(id));
		else
			json_object_object_add(o, col == -1 ? "id" : ctl_ident_name[col],
			                       json_object_new_string_len(fp[i], (int)fl[i]));
	}
	return o;
}

/* ---- records ------------------------------------------------------------------------- */

int reader_record(struct reader *r, const char *s, size_t len, int too_long,
                  json_object **out, struct buf *why)
{
	size_t b = 0;

	*out = NULL;
	while (len > 0 && reader_is_space(s[len - 1]))
		len--;
	while (b < len && reader_is_space(s[b]))
		b++;
	if (!too_long && b == len)
		return 0;
	if (too_long) {
		buf_appendf(why, "the line is longer than %zu bytes", READER_LINE_MAX);
		return -1;
	}
	if (r->format == READER_CSV) {
		*out = reader_csv_object(r, s, len, why);
	} else {
		*out = ctl_json_parse_tok(r->tok, s + b, len - b);
		if (*out == NULL)
			buf_appendf(why, "not a valid JSON value (strict JSON, UTF-8, one a line)");
	}
	return *out != NULL ? 1 : -1;
}
