/*
 * jout: JSON text written straight into a struct buf, for the hot paths (history
 * entries, change-feed events, write responses) where building a json-c tree and
 * serialising it cost more than the rest of the request. Pure.
 *
 * Every function appends to b and returns 0, or -1 when b's cap was reached (b then
 * holds a truncated prefix: the caller discards it). Strings are written as JSON string
 * literals: '"' and '\\' escaped, \b \f \n \r \t by name, other bytes below 0x20 as
 * \u00XX; every other byte (UTF-8 included) verbatim, so valid UTF-8 in gives valid JSON
 * out. The output parses back to the same bytes with any JSON parser (json-c included).
 */
#ifndef PARTNERD_JOUT_H
#define PARTNERD_JOUT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

int jout_str(struct buf *b, const char *s, size_t n);       /* "..." escaped */
int jout_cstr(struct buf *b, const char *s);                /* same, NUL-terminated */
int jout_str_or_null(struct buf *b, const char *s, size_t n); /* null when s is NULL */
int jout_lit(struct buf *b, const char *text);              /* raw text, no escaping */
/* jout_lit of a string literal, without the strlen (a non-literal does not compile). */
#define JOUT_LIT(b, lit) buf_append((b), "" lit, sizeof("" lit) - 1)
int jout_i64(struct buf *b, int64_t v);                     /* decimal */
/* A date as dates_format writes it (a JSON string), or null when ms == none. */
int jout_date_or_null(struct buf *b, int64_t ms, int64_t none);

#endif
