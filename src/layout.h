/*
 * layout: the partition math of the key layout that spreads an org over a cluster's
 * masters (issue 14, docs/CLUSTER.md "Partitions"). Pure: no I/O, no clock; the store
 * layer builds key layout 2's names with it (keys.h), and the scripts get the tags from
 * layout_tags_text (store.c puts them into the script text when it loads the scripts).
 *
 * A partition is a hash tag. Partition p of LAYOUT_PARTS has the tag layout_tag(p), whose
 * slot (CRC16 mod 16384, cluster.h) lies in the middle quarter of
 * [p*16384/LAYOUT_PARTS, (p+1)*16384/LAYOUT_PARTS): the partitions tile the slot space
 * evenly, and a partition whose range a master boundary cuts goes to the master that owns
 * most of it, so masters that own equal slot ranges own equal numbers of partitions (to
 * one), whatever the orgs. A customer lives in the partition
 * layout_part_of_cid(cid); an identifier or membership id in layout_bucket_of(value).
 *
 * A stored layout depends on every value these functions return: tests/unit/test_layout.c
 * pins them with known vectors. Changing any of them (LAYOUT_PARTS, the tag search, the
 * hash or its key) is a new layout version with a migration, never an edit.
 */
#ifndef PARTNERD_LAYOUT_H
#define PARTNERD_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#define LAYOUT_VERSION 3        /* the layout these partitions belong to (3: layout 2 with the
                                 * customer's lock in its hash, src/lua/lock.lua) */
#define LAYOUT_PARTS 256        /* partitions (tags) of layout 2: 64 slots each */
#define LAYOUT_TAG_MAX 16       /* a tag's bytes, its NUL included ("p1023.65535" at most) */
#define LAYOUT_TAG_WIDTH 10     /* a tag's slice of layout_tags_text ("p255.65535" at most) */
#define LAYOUT_CID_MOD 65521    /* layout_part_of_cid's modulus: the largest prime < 2^16 */

/*
 * The tag of partition p of np (np a power of two up to 1024, p < np): the first of
 * "p<p>.0", "p<p>.1", ... (decimal) whose CRC16 mod 16384 lies in the middle quarter of
 * partition p's range [p*w, (p+1)*w), w = 16384/np: [p*w + 3w/8, p*w + 5w/8). Into out
 * (LAYOUT_TAG_MAX bytes); returns its length, or -1 when np or p is out of range or no
 * suffix below 65536 fits (every p of 256 and of 1024 finds one: test_layout.c).
 */
int layout_find_tag(unsigned p, unsigned np, char out[LAYOUT_TAG_MAX]);

/*
 * The tag of partition p (p < LAYOUT_PARTS), NUL-terminated, from a table computed on the
 * first call (thread-safe; the search costs about 220,000 CRCs of 6-8 bytes, a few ms).
 * *len gets its length when len is not NULL.
 */
const char *layout_tag(unsigned p, size_t *len);

/*
 * A stable 64-bit hash of bytes: SipHash-2-4 (libsodium's crypto_shorthash_siphash24)
 * under a fixed key, so that every process, host and release computes the same value.
 */
uint64_t layout_hash(const void *buf, size_t len);

/* The partition of a value: layout_hash(value) mod LAYOUT_PARTS (identifier and
 * membership-id buckets, Idempotency-Key and rate-limit digests). */
unsigned layout_bucket_of(const void *value, size_t len);

/*
 * The partition of a customer: (CID mod LAYOUT_CID_MOD) mod LAYOUT_PARTS, computed over
 * the decimal digits of the id's text (Horner: h = (h*10 + digit) % 65521; a leading '-'
 * is skipped, so a negative id has the partition of its absolute value). Not SipHash: the
 * scripts compute it too (begin.lua finds a customer's id through an index, holds.lua
 * checks a holder) and Redis's Lua has no SipHash; this is exact in Lua's doubles, in C
 * and in Python. Sequential ids go round-robin, and as 65521 is prime, ids that are all
 * multiples of 256 or 1000 still spread (test_layout.c).
 */
unsigned layout_part_of_cid(int64_t cid);

/* The same over an id's decimal text (digits, a leading '-'; other bytes are skipped). */
unsigned layout_part_of_cid_text(const char *s, size_t len);

/* The tag of a customer's keys and feed partition: layout_tag(layout_part_of_cid(cid)). */
const char *layout_tag_of_cid(int64_t cid);

/* The tag of a value's bucket (an identifier, a membership id, a digest's hex text):
 * layout_tag(layout_bucket_of(v, len)). */
const char *layout_tag_of(const void *v, size_t len);

/*
 * The LAYOUT_PARTS tags in partition order, each right-padded with spaces to
 * LAYOUT_TAG_WIDTH bytes, NUL-terminated (LAYOUT_PARTS * LAYOUT_TAG_WIDTH bytes): the
 * scripts' TAGS string (src/lua/tags.lua), where partition p's tag is the slice
 * [p*10+1, p*10+10] without its padding. Built with layout_tag's table.
 */
const char *layout_tags_text(void);

#endif
