/*
 * ctl_reader: the input side of `partnerctl import-customers`: a file (or stdin) read line
 * by line through one fixed buffer, its format (JSON Lines or CSV with a header line), and
 * each data line turned into the customer object `partnerctl load` takes, with its line
 * number. It knows nothing of Redis, batches or checkpoints (ctl_import.c, the batch
 * engine, does); validation of the object is ctl_cust_parse's.
 *
 * Formats: JSON Lines (one customer object a line) or CSV (RFC 4180 except that a record
 * may not span lines; an empty field is an absent value) whose header names the columns
 * id, mobile, email, externalId (any order, id required). Blank lines are skipped; a UTF-8
 * byte order mark at the start is ignored; a line longer than READER_LINE_MAX is a bad
 * line of its own (memory does not grow with the file).
 */
#ifndef PARTNERD_CTL_READER_H
#define PARTNERD_CTL_READER_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "buf.h"

#define READER_LINE_MAX ((size_t)1 << 20)    /* longest line, without its newline */
#define READER_CSV_MAX_FIELDS 16             /* more fields than that: the line is bad */

enum reader_format { READER_JSONL, READER_CSV };

/*
 * A line reader over a file descriptor with one buffer of READER_LINE_MAX + 1 bytes. A
 * line returned by reader_next stays valid until the next call; reader_unread gives it
 * back once.
 */
struct reader {
	int fd;               /* closed by reader_free unless it is stdin */
	char *buf;            /* READER_LINE_MAX + 1 bytes (owned) */
	size_t pos, end;      /* unread bytes: buf[pos..end) */
	uint64_t base;        /* file offset of buf[0] */
	int eof;              /* read() returned 0 */
	int err;              /* errno of a failed read, or 0 */
	uint64_t line;        /* number of the last line returned (1-based) */
	size_t last_pos;      /* where that line started, for reader_unread */

	enum reader_format format;
	int csv_col[READER_CSV_MAX_FIELDS];  /* CSV: field i is identifier csv_col[i], -1: id */
	int csv_ncols;
	char *csvbuf;                        /* CSV: unquoted field values of one line (owned) */
	json_tokener *tok;                   /* JSON Lines: the parser (owned) */
};

/* Makes r read fd from its start (line 0). Allocates its buffers (aborts on OOM). */
void reader_init(struct reader *r, int fd);
/* Frees r's buffers and closes its fd (stdin stays open). */
void reader_free(struct reader *r);

/* File offset of the first byte not yet returned. */
uint64_t reader_offset(const struct reader *r);

/*
 * The next line, without its '\n': returns 1 with *p, *len (*too_long set when the line
 * was longer than READER_LINE_MAX: it was skipped and *len is 0), 0 at the end of the
 * input, -1 on a read error (r->err).
 */
int reader_next(struct reader *r, const char **p, size_t *len, int *too_long);
/* Gives the line reader_next just returned back: the next reader_next returns it again. */
void reader_unread(struct reader *r);

/*
 * Continues at byte `offset` of the file as if `line` lines were read (--resume): seeks
 * the fd. Returns 0, or -1 with errno.
 */
int reader_seek(struct reader *r, uint64_t offset, uint64_t line);

/*
 * Sets r->format: from the extension of path (.jsonl, .ndjson, .json: JSON Lines; .csv:
 * CSV; NULL, stdin: JSON Lines), else from the first byte after a byte order mark and
 * blank lines ('{': JSON Lines, else CSV). Then steps over a byte order mark. Returns 0,
 * or -1 on a read error (r->err).
 */
int reader_detect_format(struct reader *r, const char *path);

/*
 * CSV: reads the header line (the first line that is not blank) into r's columns.
 * Returns 0; -1 on a read error (r->err); -2 when it is missing or bad, with the reason
 * ("no CSV header line", "the header line ...") in why.
 */
int reader_csv_header(struct reader *r, char *why, size_t whysz);

/*
 * The customer object of the data line s[0..len) as reader_next gave it (too_long too).
 * Returns 1 with *out (a new object: put it), 0 for a blank line (skip it), or -1 with
 * the reason the line is bad appended to why.
 */
int reader_record(struct reader *r, const char *s, size_t len, int too_long,
                  json_object **out, struct buf *why);

#endif
