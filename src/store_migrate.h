/*
 * store_migrate: the Redis side of `partnerctl migrate` (ctl_migrate.c): key layout 1
 * (keys_v1.h) to the current key layout (keys.h, layout.h), in place, on one Redis; and
 * key layout 2 to 3 (one Redis or a cluster), which only moved the customer locks into the
 * customer hashes: no data moves, the step checks that no layout-2 lock key is left and
 * records layout 3. The verb never sees a key name, a command or a redisReply; this file
 * is the only reader of keys_v1.h.
 *
 * Layout 1 -> 3 moves the data as layout 2 did (layout 3 names every key as layout 2) and
 * records LAYOUT_VERSION:
 * What moves where (docs/OPERATIONS.md "Upgrading the key layout"):
 * - a customer's hash and history, an Idempotency-Key and a rate window: RENAMENX to their
 *   layout-2 name (the value, its encoding and its expiry go with it, in one step; a name
 *   taken already is reported and the key left as it is);
 * - an org's identifier indexes and membership-id indexes: each field to its bucket hash;
 * - an org's change feed: each entry to the partition of its customerId, with its stream
 *   id (XADD with the id, in id order, so each partition keeps the feed's order);
 * - keys of the org's reference data, credentials, failed-login counters and import
 *   checkpoints keep their names; pp:layout = LAYOUT_VERSION is written last
 *   (store_migrate_finish).
 *
 * Crashes: a batch of index fields or feed entries is copied and deleted from the old key
 * in one MULTI/EXEC, and a rename is one command, so at every point of a crash each value
 * is under its layout-1 name or its layout-2 name, whole. A run again finds what is left
 * under layout-1 names and moves it. It also accepts a value found in both places (written
 * by hand, or by a release that copied before deleting): an index field is copied again
 * with the same value; a feed entry at or below its partition's last id is looked up
 * there and only deleted from the old feed when it is there (else reported and left).
 * Until pp:layout is recorded, partnerd and the other partnerctl verbs refuse the data.
 *
 * Each phase is pipelined: SCAN/HSCAN/XRANGE take `batch` items a round trip and the writes
 * of a batch go in one pipeline.
 */
#ifndef PARTNERD_STORE_MIGRATE_H
#define PARTNERD_STORE_MIGRATE_H

#include <stddef.h>
#include <stdint.h>

struct store_migrate;

/* Receives the message of a problem found (no newline, no prefix). */
typedef void (*store_migrate_report_fn)(void *arg, const char *msg);

/* The phases, in the order they run. */
enum store_migrate_phase {
	STORE_MIGRATE_KEYS,      /* customer keys, Idempotency-Keys, rate windows (SCAN) */
	STORE_MIGRATE_HASHES,    /* identifier and membership-id indexes into buckets */
	STORE_MIGRATE_FEEDS,     /* change feeds into partitions */
	STORE_MIGRATE_NPHASES
};

/* Progress: done of about total units (keys, fields, entries) of a phase. */
typedef void (*store_migrate_tick_fn)(void *arg, enum store_migrate_phase ph, uint64_t done,
                                      uint64_t total);

/* What a run moved. */
struct store_migrate_counts {
	uint64_t keys;           /* key names the key pass looked at */
	uint64_t customers;      /* customer hashes renamed */
	uint64_t histories;      /* histories renamed */
	uint64_t idem;           /* Idempotency-Keys renamed */
	uint64_t rate;           /* rate windows renamed */
	uint64_t ix;             /* identifier index entries moved into buckets */
	uint64_t mid;            /* membership-id index entries moved into buckets */
	uint64_t feed;           /* feed entries moved into partitions */
	uint64_t feed_again;     /* of them: found copied already (by a killed run) */
	uint64_t problems;       /* things reported and left where they are */
};

/*
 * Connects to url (redis://, unix://) with a read/write timeout of timeout_ms; batch is
 * the number of keys, fields or entries a round trip (1..100000). NULL when that fails:
 * the cause (never the password) went to report.
 */
struct store_migrate *store_migrate_open(const char *url, int timeout_ms, size_t batch,
                                         store_migrate_report_fn report, void *arg);
void store_migrate_close(struct store_migrate *m);

/* Progress goes to fn(arg, ...) after each batch. */
void store_migrate_set_tick(struct store_migrate *m, store_migrate_tick_fn fn, void *arg);

/* The cause of the last failed call (valid until the next call). */
const char *store_migrate_error(const struct store_migrate *m);

/* What the Redis holds. */
enum store_migrate_layout {
	STORE_MIGRATE_EMPTY,     /* no pp:layout and no pp:orgs: no partnerd data */
	STORE_MIGRATE_V1,        /* no pp:layout, pp:orgs: layout 1, or a migration under way */
	STORE_MIGRATE_V2,        /* pp:layout is "2": the locks move into the customer hashes */
	STORE_MIGRATE_CURRENT,   /* pp:layout is LAYOUT_VERSION: nothing to do */
	STORE_MIGRATE_OTHER,     /* pp:layout holds something else (its text in val) */
	STORE_MIGRATE_CLUSTER    /* layout 1 on a Redis Cluster: migrate works on one Redis */
};

/* The layout of the data (val: pp:layout's value, quoted for a message). -1 on an error. */
int store_migrate_layout(struct store_migrate *m, char *val, size_t valsz);

/*
 * Key layout 2 -> 3: counts the layout-2 lock keys (pp:{TAG}:lock:ORG:CID, a partnerd of an
 * older release holds a customer) on every master: *n, and the first's name in first. 0,
 * or -1 on an error.
 */
int store_migrate_v2_locks(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz);

/* Records layout LAYOUT_VERSION over "2" (SET XX GET). 0, or -1 (reported). */
int store_migrate_v2_finish(struct store_migrate *m);

/*
 * Counts the layout-1 lock keys (a partnerd holds a customer): *n, and the name of the
 * first in first. 0, or -1 on an error.
 */
int store_migrate_locks(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz);

/*
 * The phases. Each returns 0 when everything it found moved, 1 when it reported problems
 * (those keys, fields or entries are left under their layout-1 names; the rest moved), -1
 * when Redis failed (reported; run again). store_migrate_keys must run first: it finds the
 * indexes and feeds the other two move. A layout-1 lock key found by store_migrate_keys
 * stops it (-1): a partnerd started meanwhile.
 */
int store_migrate_keys(struct store_migrate *m, struct store_migrate_counts *c);
int store_migrate_hashes(struct store_migrate *m, struct store_migrate_counts *c);
int store_migrate_feeds(struct store_migrate *m, struct store_migrate_counts *c);

/*
 * Counts the keys of layout-1 names that migrate moves (customer keys, locks, indexes,
 * feeds, Idempotency-Keys, rate windows) still in Redis: *n, the first's name in first. 0,
 * or -1.
 */
int store_migrate_left(struct store_migrate *m, uint64_t *n, char *first, size_t firstsz);

/* Records layout 2 (pp:layout = "2", unless it holds a value already). 0, or -1. */
int store_migrate_finish(struct store_migrate *m);

#endif
