/*
 * store_keys: the key layout of keys.h (layout 2) as a table: for each kind of key its
 * pattern (the keys.h format), its Redis type and what its parts are. Pure (no I/O).
 * partnerctl check classifies every stored key name with it; messages name keys with it.
 *
 * A kind whose pattern starts with a TAG (layout.h: one of the LAYOUT_PARTS partition
 * tags) is "tagged": its keys are spread over the partitions. Which partition a key
 * belongs in follows from its name for a customer's keys (layout_part_of_cid of its CID)
 * and for the HEX keys (layout_bucket_of the HEX text: rate, idem); from a value inside it
 * for the buckets of an index (ix: layout_bucket_of of each identifier, mid: of each
 * membership id); the feed has one key per partition.
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
	STORE_KEY_LAYOUT, STORE_KEY_ORGS, STORE_KEY_CREDS, STORE_KEY_LOGIN_USER,
	STORE_KEY_LOGIN_ADDR, STORE_KEY_ORG, STORE_KEY_PROGS, STORE_KEY_PSEQ, STORE_KEY_IX,
	STORE_KEY_MID, STORE_KEY_CUST, STORE_KEY_LOCK, STORE_KEY_HIST, STORE_KEY_FEED,
	STORE_KEY_RATE, STORE_KEY_IDEM, STORE_KEY_IMPORT, STORE_NKEYS
};

/* What a conversion of a pattern stands for. */
enum store_key_part {
	STORE_PART_NONE,
	STORE_PART_TAG,      /* a partition tag: layout_tag(p) for some p < LAYOUT_PARTS */
	STORE_PART_ORG,      /* an org id (ident_valid_org) */
	STORE_PART_CID,      /* a customer id (ident_parse_cid) */
	STORE_PART_PID,      /* a program id: 1..2^31-1, no leading zero */
	STORE_PART_IDENT,    /* "mobile", "email" or "externalId" (store_ident_name) */
	STORE_PART_HEX32,    /* 32 lowercase hex digits (a BLAKE2b-128 digest) */
	STORE_PART_HEX,      /* lowercase hex digits, at least one */
	STORE_PART_DIGITS,   /* decimal digits, at least one */
};

#define STORE_KEY_MAXPARTS 4

struct store_key_def {
	const char *pattern;                 /* the keys.h format */
	const char *type;                    /* its Redis type: "hash", "set", "string"... */
	enum store_key_part part[STORE_KEY_MAXPARTS];  /* what each conversion is, in order */
};

extern const struct store_key_def store_key_defs[STORE_NKEYS];

/* A key name taken apart (the parts its kind has). */
struct store_key_parts {
	char org[65];
	int64_t cid;
	int pid;
	int ident;                           /* enum store_ident */
	int tagged;                          /* the kind has a TAG: part is its partition */
	unsigned part;                       /* the partition of the TAG (layout_tag(part)) */
	size_t hex_at, hex_len;              /* where its HEX32 or HEX part is in the name */
};

/* 1 when the kind's keys carry a TAG. */
int store_key_tagged(enum store_key kind);

/*
 * Which kind of key k[0..len) is: its kind with the parts filled in, or -1 when it fits
 * no pattern (a stray key; a TAG that is no partition's tag is stray too).
 */
int store_key_classify(const char *k, size_t len, struct store_key_parts *out);

/*
 * Whether a classified key is in the partition the layout gives it, as far as its name
 * says: 1 when it is, or when its name alone cannot say (an untagged kind, an ix or mid
 * bucket, whose fields each belong in layout_bucket_of(field): partnerctl check reads
 * them; a feed partition); 0 for a customer's key whose TAG is not its CID's partition,
 * or a rate or idem key whose TAG is not its HEX's.
 */
int store_key_placed(const char *k, size_t len, int kind, const struct store_key_parts *p);

/*
 * The partition a classified key belongs in as far as its name says: layout_part_of_cid
 * of a customer's CID (c, lock, h), layout_bucket_of of the HEX text (rate, idem); -1 when
 * its name alone cannot say (see store_key_placed).
 */
int store_key_home(const char *k, size_t len, int kind, const struct store_key_parts *p);

/*
 * k[0..len), a name "pp:{TAG}..." whose TAG is a partition's, with that tag replaced by
 * partition part's (< LAYOUT_PARTS): the name the key has in that partition (for
 * messages: where a misplaced key belongs). "" when k has no such tag or buf is too small.
 */
const char *store_key_retag(char *buf, size_t sz, const char *k, size_t len, unsigned part);

/*
 * The org of a key name that has one, known kind or stray: the ORG after the tag of
 * "pp:{TAG}:WORD:ORG" (ending there or followed by ':'; TAG a partition's tag), else the
 * ORG of "pp:{ORG}:..." (ORG valid, something after the tag). 0 with org filled, else -1.
 * (An org whose id is a partition's tag, "p0.239", owns its "pp:{p0.239}:org" keys; a
 * stray "pp:{p0.239}:x:y" is filed under org y.)
 */
int store_key_tag_org(const char *k, size_t len, char org[65]);

/*
 * The name of a key of the given kind (for messages and for the store files' commands):
 * org, then id (a cid, a pid, an enum store_ident or a partition, as the kind's parts
 * say), into buf. A customer's key gets the tag of its cid; a feed partition is named by
 * id, the partition (0..LAYOUT_PARTS-1). An ix or mid index, whose bucket depends on a
 * value the arguments do not give, is named with the tag "*" ("pp:{*}:mid:ORG:PID": the
 * whole index, every bucket; for messages, and a SCAN MATCH glob; one bucket's name is
 * store_key_name_at's). Kinds named by a digest are not named here (returns "").
 */
const char *store_key_name(char *buf, size_t sz, enum store_key kind, const char *org, int64_t id);

/*
 * The name of a key of a tagged kind in partition part (< LAYOUT_PARTS): an ix bucket (id
 * an enum store_ident), a mid bucket (id a pid), a feed partition (id unused), a
 * customer's key (id the cid; part as given, the right one or not). Other kinds as
 * store_key_name. "" when part or id is out of range.
 */
const char *store_key_name_at(char *buf, size_t sz, enum store_key kind, unsigned part,
                              const char *org, int64_t id);

#endif
