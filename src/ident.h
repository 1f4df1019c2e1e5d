/* ident: customer identifier rules shared by partnerd and partnerctl. Pure. */
#ifndef PARTNERD_IDENT_H
#define PARTNERD_IDENT_H

#include <stddef.h>
#include <stdint.h>

#define IDENT_MOBILE_MAX 15   /* digits after normalisation */
/* Longest email and externalId, in bytes (SPEC §4 "Sizes and encodings"): partnerd refuses
 * longer ones (the customer's 400, or the read routes' 400), partnerctl does not store them. */
#define IDENT_EMAIL_MAX 254
#define IDENT_EXTERNAL_ID_MAX 128

/*
 * Normalises a mobile number: drops ' ', '+', '-', '.', '(' and ')'; what remains must be
 * 6 to 15 ASCII digits. If exactly national_len digits remain, country_code (digits) is
 * prefixed. out must hold IDENT_MOBILE_MAX + 16 + 1 bytes (the country code may make the
 * result longer than 15; it is NUL-terminated).
 * Returns the length written, or -1 when the input is not a valid mobile number.
 */
int ident_normalize_mobile(const char *in, size_t len, const char *country_code,
                           int national_len, char *out, size_t outsz);

/*
 * Parses a decimal customer id as stored and as partnerctl takes it: "1" ..
 * "9223372036854775807", digits only, no sign, no leading 0. Returns 0 with *out, or -1.
 */
int ident_parse_cid(const char *s, size_t len, int64_t *out);

/* 1 when an org id is acceptable in a key name: [A-Za-z0-9_.-]{1,64}, else 0. */
int ident_valid_org(const char *s);

#endif
