/*
 * store_keys: the key layout of keys.h as a table: for each kind of key its pattern (the
 * keys.h format), its Redis type and what its parts are. Pure (no I/O). partnerctl check
 * classifies every stored key name with it; messages name keys with it.
 */
#ifndef PARTNERD_STORE_KEYS_H
#define PARTNERD_STORE_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* A customer's identifiers: the fields of its hash and the KIND of its index hashes. */
enum store_ident { STORE_IDENT_MOBILE, STORE_IDENT_EMAIL, STORE_IDENT_EXTERNAL_ID, STORE_NIDENTS };

/* "mobile", "email", "externalId" (docs/DATA-MODEL.md). */
extern const char *const store_ident_name[STORE_NIDENTS];

enum store_key {
	STORE_KEY_ORGS, STORE_KEY_CREDS, STORE_KEY_LOGIN_USER, STORE_KEY_LOGIN_ADDR,
	STORE_KEY_ORG, STORE_KEY_PROGS, STORE_KEY_PSEQ, STORE_KEY_IX, STORE_KEY_MID,
	STORE_KEY_CUST, STORE_KEY_LOCK, STORE_KEY_HIST, STORE_KEY_FEED, STORE_KEY_RATE,
	STORE_KEY_IDEM, STORE_KEY_IMPORT, STORE_NKEYS
};

/* What a conversion of a pattern stands for. */
enum store_key_part {
	STORE_PART_NONE,
	STORE_PART_ORG,      /* an org id (ident_valid_org) */
	STORE_PART_CID,      /* a customer id (ident_parse_cid) */
	STORE_PART_PID,      /* a program id: 1..2^31-1, no leading zero */
	STORE_PART_IDENT,    /* "mobile", "email" or "externalId" (store_ident_name) */
	STORE_PART_HEX32,    /* 32 lowercase hex digits (a BLAKE2b-128 digest) */
	STORE_PART_HEX,      /* lowercase hex digits, at least one */
	STORE_PART_DIGITS,   /* decimal digits, at least one */
};

struct store_key_def {
	const char *pattern;                 /* the keys.h format */
	const char *type;                    /* its Redis type: "hash", "set", "string"... */
	enum store_key_part part[3];         /* what each conversion is, in order */
};

extern const struct store_key_def store_key_defs[STORE_NKEYS];

/* A key name taken apart (the parts its kind has). */
struct store_key_parts {
	char org[65];
	int64_t cid;
	int pid;
	int ident;                           /* enum store_ident */
};

/*
 * Which kind of key k[0..len) is: its kind with the parts filled in, or -1 when it fits
 * no pattern (a stray key).
 */
int store_key_classify(const char *k, size_t len, struct store_key_parts *out);

/*
 * The org of a key with a hash tag ("pp:{ORG}:..." or "pp:{ORG:CID}:...", ORG valid,
 * CID a customer id, something after the tag): 0 with org filled, else -1.
 */
int store_key_tag_org(const char *k, size_t len, char org[65]);

/*
 * The name of a key of the given kind (for messages and for the store files' commands):
 * org, then id (a cid, a pid, or an enum store_ident, as the kind's parts say), into buf.
 * Kinds whose names carry a digest are not named here (returns "").
 */
const char *store_key_name(char *buf, size_t sz, enum store_key kind, const char *org, int64_t id);

#endif
