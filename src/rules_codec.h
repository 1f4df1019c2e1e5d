/*
 * rules_codec: the stored forms of the rules' types (docs/DATA-MODEL.md): a membership
 * value of a customer hash (compact text, or the JSON an older partnerd wrote) and a
 * program definition of pp:{ORG}:progs. Pure: bytes in, structs out, and back; no Redis.
 *
 * Two readers of one format: partnerd reads leniently (what it needs, as it always has);
 * partnerctl load, check and show read strictly (the exact shape of the data model, with
 * a reason for a refusal) through the same code and a validation step on top of it.
 * The business rules on these types are rules.h's.
 */
#ifndef PARTNERD_RULES_CODEC_H
#define PARTNERD_RULES_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dates.h"

#define RULES_NONE INT64_MIN    /* an absent date */
#define RULES_MAX_TIERS 64      /* partnerd reads the first 64 tiers of a program */

/* ---- program definitions -------------------------------------------------------------- */

/* A partner program definition (docs/DATA-MODEL.md), parsed from its stored JSON. */
struct rules_program {
	int found;                      /* 0: no such program in the org */
	int pid;
	int supplementary;              /* type SUPPLEMENTARY (else EXTERNAL) */
	size_t ntiers;                  /* 0: not tier based */
	char *tiers[RULES_MAX_TIERS];   /* owned, lowest first */
	size_t tier_len[RULES_MAX_TIERS];
	int has_cycle;
	enum dates_unit cycle_unit;
	int cycle_n;
	int64_t expires_at;             /* RULES_NONE: never */
};

/*
 * Parses a stored program definition leniently, as partnerd reads it: an object with an
 * integer pid; type, tiers, cycle and expiresAt are taken when they have their types.
 * Returns 0, or -1 when it is not one (p is then empty).
 */
int rules_program_parse(const char *json, size_t len, struct rules_program *p);
/*
 * The same, strictly (partnerctl): strict JSON (UTF-8 validated, the whole input
 * consumed) with exactly the keys pid, type, tiers, cycle, expiresAt and the types of
 * docs/DATA-MODEL.md (pid 1..2^31-1, type EXTERNAL or SUPPLEMENTARY, tiers non-empty
 * strings, cycle null or {unit DAYS|MONTHS, value 1..2^31-1} on a SUPPLEMENTARY program
 * only, expiresAt null or an integer). Returns 0, or -1 with the reason in why ("is not
 * valid JSON", "has a bad pid", ...: it reads after "the definition"); p is then empty.
 */
int rules_program_parse_strict(const char *json, size_t len, struct rules_program *p,
                               char *why, size_t whysz);
void rules_program_free(struct rules_program *p);
/* A deep copy of src (dst owns its tiers; free it with rules_program_free). */
void rules_program_copy(struct rules_program *dst, const struct rules_program *src);
/* The index of tier t (tlen bytes) in p, lowest 0; -1 when it is none (or t is NULL). */
int rules_program_tier(const struct rules_program *p, const char *t, size_t tlen);

/* ---- membership values ---------------------------------------------------------------- */

/* The values of one membership, or of a pending relink. */
struct rules_values {
	char *mid;                      /* owned */
	size_t mid_len;
	char *tier;                     /* owned; NULL for no tier */
	size_t tier_len;
	int64_t exp;                    /* tier expiry, RULES_NONE when none */
	int64_t start;                  /* membership start */
	int64_t end;                    /* membership end, RULES_NONE when none */
};

struct rules_membership {
	struct rules_values v;
	int64_t linked_on;              /* lk */
	int64_t updated_on;             /* up */
	int has_relink;
	struct rules_values rl;         /* pending relink, when has_relink */
};

/* Frees the owned strings of v and empties it. */
void rules_values_free(struct rules_values *v);
/* A deep copy of src into dst (dst owns its strings; free them with rules_values_free). */
void rules_values_copy(struct rules_values *dst, const struct rules_values *src);

/*
 * Parses a stored membership value into m (owned strings): the compact format of
 * docs/DATA-MODEL.md, or, when the first byte is '{', the JSON an older partnerd wrote.
 * Strict: anything else, trailing bytes included, is refused. Returns 0 or -1 (m is then
 * empty, nothing to free).
 */
int rules_membership_parse(const char *val, size_t len, struct rules_membership *m);
/*
 * The same for partnerctl check: legacy JSON must also be strict JSON with exactly the
 * keys mid, tier, exp, start, end, lk, up, rl and their types. Returns 0 with m filled;
 * -1 when the value decodes as neither format, -2 when it is JSON of the wrong shape (the
 * reason in why); m is empty then.
 */
int rules_membership_parse_strict(const char *val, size_t len, struct rules_membership *m,
                                  char *why, size_t whysz);
/*
 * Serialises m in the compact stored format (NUL-terminated, *len_out excludes the NUL;
 * the value may hold NUL bytes of mid or tier); the caller frees the result with free().
 */
char *rules_membership_encode(const struct rules_membership *m, size_t *len_out);
/* Frees the owned strings of m and empties it. */
void rules_membership_free(struct rules_membership *m);

#endif
