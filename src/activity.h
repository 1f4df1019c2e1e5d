/*
 * activity: the stored form of an activity (docs/CHANGE-FEED.md "History entries"): the
 * compact record partnerd writes in a customer's history and hands to the commit (which
 * makes the change-feed entry's fields of it), its reader, and its rendering as the
 * activity JSON of the API (format 1). Pure: bytes in, bytes out.
 *
 * A record is a variant byte, then ACTIVITY_NFIELDS fields, each its length then its
 * bytes: variant 1 (ACTIVITY_REC_SHORT) has one-byte lengths, variant 2 (ACTIVITY_REC_LONG)
 * four-byte big-endian ones (a field over 255 bytes: a value stored before the size limits).
 * Any byte string fits. A JSON entry (format 1) starts with '{', never with 1 or 2.
 * Fields, in order: type (one letter: L U D S C), activityDate, partnerProgramName,
 * updateType, requestId, then before's and after's partnerMembershipId, partnerTierName,
 * partnerTierExpiryDate, membershipStartDate, membershipEndDate. Dates are epoch
 * milliseconds in decimal; an empty field is null (the API never stores an empty name,
 * id, tier or updateType), and before / after is null when its partnerMembershipId is.
 */
#ifndef PARTNERD_ACTIVITY_H
#define PARTNERD_ACTIVITY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "rules_codec.h"

#define ACTIVITY_REC_SHORT 1
#define ACTIVITY_REC_LONG 2
#define ACTIVITY_NFIELDS 15

enum activity_field {
	AF_TYPE, AF_DATE, AF_PROGRAM, AF_UPDATE_TYPE, AF_REQUEST_ID,
	AF_BEFORE,              /* 5 fields: mid, tier, expiry, start, end */
	AF_AFTER = AF_BEFORE + 5,
};

struct activity_rec {
	struct { const char *p; size_t len; } f[ACTIVITY_NFIELDS];   /* borrowed from the text */
	const char *type;       /* the activityType name (static) */
};

/*
 * Appends the record of an activity to out: type is its activityType name, update_type
 * NULL for null, before / after NULL for null. Returns 0, or -1 at out's cap.
 */
int activity_encode(struct buf *out, const char *type, int64_t date_ms, const char *program,
                    size_t program_len, const char *update_type, size_t update_type_len,
                    const char *rid, size_t rid_len, const struct rules_values *before,
                    const struct rules_values *after);

/* 1 when s[0..len) is a record (by its first byte), 0 when it is something else (JSON). */
int activity_is_record(const char *s, size_t len);

/*
 * Reads record s[0..len) into r (borrowing s). Returns 0, or -1 with *why set when it is
 * not a well-formed record (a variant, ACTIVITY_NFIELDS fields and nothing after them, a
 * known type, dates in range, a non-empty date and program).
 */
int activity_decode(const char *s, size_t len, struct activity_rec *r, const char **why);

/*
 * Appends the activity JSON of a decoded record of customer cid (docs/CHANGE-FEED.md, key
 * order as partnerd always wrote it). Returns 0, or -1 at b's cap.
 */
int activity_render(struct buf *b, const struct activity_rec *r, int64_t cid);

#endif
