/*
 * store_memo: what partnerd's workers remember between requests on a Redis Cluster, where
 * every lookup is a round of its own (docs/CONSISTENCY.md "On a Redis Cluster", "The
 * memo"): an identifier's customer id, and an org's program definitions for
 * STORE_MEMO_DEF_TTL_MS. Store layer, pure (no Redis, no clock: times are arguments); one
 * memo per process (store_memo_shared), safe for every worker thread at once (striped
 * mutexes).
 *
 * An identifier's customer id may be stale: begin re-checks the identifiers against the
 * customer's own fields under its lock and, when they no longer agree, drops them here and
 * looks them up again. A program definition is at most STORE_MEMO_DEF_TTL_MS old; on a
 * cluster it is read in a round of its own, outside the customer's lock, anyway.
 *
 * Both tables are direct-mapped (a hash picks the one slot an entry may be in; a newer
 * entry replaces an older one): bounded memory, no chains a client could lengthen. An
 * identifier's slot holds a keyed 64-bit hash of it (SipHash, libsodium's crypto_shorthash,
 * a random key per process), not the identifier: 4 MB for the table, allocated on first use.
 */
#ifndef PARTNERD_STORE_MEMO_H
#define PARTNERD_STORE_MEMO_H

#include <stddef.h>
#include <stdint.h>

#define STORE_MEMO_IDS 262144           /* identifier slots per process (16 bytes each) */
#define STORE_MEMO_DEFS 256             /* program definition slots per process */
#define STORE_MEMO_DEF_TTL_MS 1000

struct store_memo;

struct store_memo *store_memo_new(void);
void store_memo_free(struct store_memo *m);
/* The process's memo, made on first use (never freed: it lives as long as the process). */
struct store_memo *store_memo_shared(void);

/* The customer id remembered for identifier (kind, val) of org, or 0. */
int64_t store_memo_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len);
void store_memo_put_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len,
                        int64_t cid);
void store_memo_drop_cid(struct store_memo *m, const char *org, int kind, const char *val, size_t len);

/*
 * A copy, NUL-terminated, in memory from alloc(ctx, n), of the definition of program name of
 * org read at most STORE_MEMO_DEF_TTL_MS before now_ms, or NULL (also when alloc gives NULL);
 * its length in *len.
 */
char *store_memo_def(struct store_memo *m, const char *org, const char *name, size_t nlen, int64_t now_ms,
                     size_t *len, void *(*alloc)(void *ctx, size_t n), void *ctx);
void store_memo_put_def(struct store_memo *m, const char *org, const char *name, size_t nlen,
                        const char *def, size_t len, int64_t now_ms);

#endif
