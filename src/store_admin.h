/*
 * store_admin: partnerctl's side of the store layer. The admin verbs (load, show,
 * import-customers, check) reach Redis only through these calls: they never see a key
 * name, a command or a redisReply. One session per run, on one connection (store.c) with
 * partnerctl's long timeout.
 *
 * Two kinds of calls:
 * - store_admin_<read>: one round trip, synchronous; results are typed, strings are
 *   borrowed until the next call of the session.
 * - store_admin_q_<op>: queued in a bounded pipeline (store_queue: at most
 *   STORE_ADMIN_IN_FLIGHT commands in flight); a result comes to a callback in queue
 *   order, its strings borrowed for the callback's time. store_admin_flush sends the rest
 *   and says whether anything failed. A queued argument is copied when queued.
 *
 * On a Redis Cluster (`--redis-cluster`, store.h) every call routes by its key, and the
 * queue runs every node's commands pipelined at store_admin_flush; what differs there:
 * store_admin_scan scans each master, a transaction (store_admin_q_multi) is refused, and
 * store_admin_q_customer_write bumps v first. The verbs ask store_admin_is_cluster where
 * they order their writes differently (import-customers, load).
 *
 * Errors: -1 from a call, with the cause in store_admin_error. A failure inside the
 * pipeline (an error reply, a reply of an unexpected shape) is handed to the session's
 * report function as it is found (partnerctl prints it), and makes store_admin_flush -1.
 */
#ifndef PARTNERD_STORE_ADMIN_H
#define PARTNERD_STORE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "store_keys.h"

#define STORE_ADMIN_IN_FLIGHT 1000   /* commands in flight at a time */

struct store_admin;

/* Receives a message of a failure found in the pipeline (no newline, no prefix). */
typedef void (*store_admin_report_fn)(void *arg, const char *msg);

/*
 * Connects to url with a read/write timeout of timeout_ms (and loads the scripts). NULL
 * when that fails: the cause (never the password) went to report.
 */
struct store_admin *store_admin_open(const char *url, int timeout_ms, store_admin_report_fn report,
                                     void *arg);
void store_admin_close(struct store_admin *a);

/* Hands later failures to report(arg, ...) instead. */
void store_admin_set_report(struct store_admin *a, store_admin_report_fn report, void *arg);

/* 1 when the session is on a Redis Cluster (the order of writes matters, see above). */
int store_admin_is_cluster(const struct store_admin *a);

/* The cause of the last failed call (valid until the next call). */
const char *store_admin_error(const struct store_admin *a);

/* Sends what is queued; 0, or -1 when anything queued failed since the last flush. */
int store_admin_flush(struct store_admin *a);

/*
 * Writes what is queued without waiting: the replies are taken by the next
 * store_admin_flush (Redis applies a batch while partnerctl parses the next). 0, or -1
 * when the connection broke (reported).
 */
int store_admin_send(struct store_admin *a);

/* ---- the key layout (store_layout.h) ----------------------------------------------- */

/*
 * 0 when the data is of key layout 2, or Redis holds none yet; -1 when it is refused
 * (layout 1 data, or another version: the message, reported, names `partnerctl migrate`)
 * or Redis failed. partnerctl load, import-customers, show and check call it first.
 */
int store_admin_layout(struct store_admin *a);

/* Queues the record of layout 2 on a Redis that has none (SET NX): partnerctl load. */
int store_admin_q_layout(struct store_admin *a);

/* ---- reads ------------------------------------------------------------------------- */

/* A field and its value, e.g. of a program or customer hash (borrowed). Returns 0 or -1. */
typedef int (*store_field_fn)(void *arg, const char *f, size_t flen, const char *v, size_t vlen);

/* 1 when org is one of the orgs (pp:orgs), 0 when not, -1 on an error. */
int store_admin_org_exists(struct store_admin *a, const char *org);

/* An org's stored settings; NULL when absent (borrowed until the next call). */
struct store_org_settings {
	const char *cc;            /* defaultCountryCode */
	size_t cc_len;
	const char *nlen;          /* nationalNumberLength, as stored */
	size_t nlen_len;
};
int store_admin_org_settings(struct store_admin *a, const char *org, struct store_org_settings *out);

/*
 * The customer an identifier index entry names: 1 with *cid, 0 when there is no entry or
 * its value is not a customer id, -1 on an error.
 */
int store_admin_ix_get(struct store_admin *a, const char *org, enum store_ident kind,
                       const char *val, size_t len, int64_t *cid);

/* A stored text (an activity, a credential value...): borrowed for the callback's time. */
typedef int (*store_text_fn)(void *arg, const char *s, size_t len);

/*
 * Every field of the hash of the given kind (its name from org and id as store_key_name
 * takes them), to fn: e.g. STORE_KEY_PROGS (program name -> definition), STORE_KEY_CUST,
 * STORE_KEY_CREDS (username -> stored value). Strings are also NUL-terminated. Returns
 * the number of fields (0: no such key), STORE_ADMIN_WRONGTYPE when the key is not a hash,
 * -1 on an error (fn failed, or Redis; see store_admin_error).
 */
#define STORE_ADMIN_WRONGTYPE (-2)
int store_admin_hash(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                     store_field_fn fn, void *arg);

/*
 * The same read with HSCAN, in steps (a field may come twice): for big hashes. For a
 * partitioned kind (STORE_KEY_IX, STORE_KEY_MID) every bucket of the org's index is read,
 * one after the other: the whole index.
 */
int store_admin_hash_scan(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                          store_field_fn fn, void *arg);
/* The same for one bucket (part < LAYOUT_PARTS) of a partitioned kind. */
int store_admin_hash_scan_at(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                             unsigned part, store_field_fn fn, void *arg);

/*
 * Items first..last of the list of the given kind (LRANGE semantics: 0 the head, -1 the
 * last), to fn. 0, STORE_ADMIN_WRONGTYPE, or -1.
 */
int store_admin_list(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                     long first, long last, store_text_fn fn, void *arg);

/* The members of the set of orgs, to fn. 0, STORE_ADMIN_WRONGTYPE, or -1. */
int store_admin_org_ids(struct store_admin *a, store_text_fn fn, void *arg);

/* A string key: 1 with *s, *len (borrowed), 0 when missing or not a string, -1. */
int store_admin_string(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                       const char **s, size_t *len);

/*
 * Every key name of the layout (SCAN; a key may come twice), to fn: on a cluster, SCAN of
 * each master in turn. 0, or -1.
 */
typedef void (*store_key_fn)(void *arg, const char *k, size_t len);
int store_admin_scan(struct store_admin *a, store_key_fn fn, void *arg);

/* Redis's clock, in ms since the epoch. 0, or -1. */
int store_admin_time(struct store_admin *a, int64_t *ms);

/* A field and its value (a list item: v only). Borrowed; also NUL-terminated. */
struct store_pair {
	const char *k, *v;
	size_t klen, vlen;
};

/* An entry of a stream: id NULL when the entry is malformed (or wrongtype). */
struct store_stream_entry {
	const char *id;
	size_t idlen;
	const struct store_pair *f;          /* its fields */
	size_t nf;
	int odd;                             /* a field without a value came last */
	unsigned part;                       /* the partition of the stream it is in */
	int wrongtype;                       /* no entry: that stream is not a stream */
};
typedef void (*store_entry_fn)(void *arg, size_t i, const struct store_stream_entry *e);

/*
 * The newest count entries of the stream of the given kind, newest first, to fn. For the
 * change feed (STORE_KEY_FEED, LAYOUT_PARTS partitions per org) the newest count entries
 * of each partition, partition by partition (i counts on across them; e->part says which
 * partition): a partition that is not a stream comes to fn as one entry with wrongtype
 * set, and the others are read all the same. 0, or -1.
 */
int store_admin_stream_newest(struct store_admin *a, enum store_key kind, const char *org,
                              size_t count, store_entry_fn fn, void *arg);

/* ---- queued reads ------------------------------------------------------------------ */

/* What load and import read of a customer before writing it. Borrowed strings. */
struct store_cust_ids {
	int stored;                          /* the hash has an id or a v field */
	int has_v;                           /* it has a v field */
	const char *val[STORE_NIDENTS];      /* stored identifiers; NULL when absent */
	size_t len[STORE_NIDENTS];
};
typedef int (*store_cust_ids_fn)(void *arg, const struct store_cust_ids *ids);
int store_admin_q_customer_ids(struct store_admin *a, const char *org, int64_t cid,
                               store_cust_ids_fn fn, void *arg);

/*
 * The holders of n identifiers of one kind, to fn once per identifier in order: holder
 * 0 when there is no entry, -1 when its value is not a customer id, else the customer id.
 */
typedef void (*store_holder_fn)(void *arg, size_t i, int64_t holder);
int store_admin_q_ix_holders(struct store_admin *a, const char *org, enum store_ident kind,
                             size_t n, const char *const *vals, const size_t *lens,
                             store_holder_fn fn, void *arg);

/*
 * Queued whole reads of a key of the given kind: the fields of a hash (HGETALL) or the
 * items of a list (in p[i].v), to fn; p is NULL when the key is of another type.
 */
typedef int (*store_pairs_fn)(void *arg, const struct store_pair *p, size_t n);
int store_admin_q_hash(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                       store_pairs_fn fn, void *arg);
int store_admin_q_list(struct store_admin *a, enum store_key kind, const char *org, int64_t id,
                       store_pairs_fn fn, void *arg);

/* ---- queued writes ----------------------------------------------------------------- */

/* Adds org to the orgs and sets its settings (cc, nlen). */
int store_admin_q_org(struct store_admin *a, const char *org, const char *cc, int nlen);

/* Hands out the org's next program id (INCR of its sequence), to fn. */
typedef int (*store_pid_fn)(void *arg, int pid);
int store_admin_q_next_pid(struct store_admin *a, const char *org, store_pid_fn fn, void *arg);

/* Sets a program's definition. */
int store_admin_q_program(struct store_admin *a, const char *org, const char *name, size_t nlen,
                          const char *val, size_t vlen);

/* Sets or removes a credential (username -> stored value). */
int store_admin_q_credential_set(struct store_admin *a, const char *user, size_t ulen,
                                 const char *val, size_t vlen);
int store_admin_q_credential_del(struct store_admin *a, const char *user, size_t ulen);

/*
 * Removes the index entry kind:val only while it names customer cid (src/lua/hdel_if.lua):
 * how an identifier the customer gives up leaves the index.
 */
int store_admin_q_ix_release(struct store_admin *a, const char *org, enum store_ident kind,
                             const char *val, size_t len, int64_t cid);

/*
 * Index entries kind:vals[i] -> cids[i]: one command per index bucket the values fall in
 * (key layout 2); the caller bounds n. Returns the number of commands queued, or -1.
 */
int store_admin_q_ix_set(struct store_admin *a, const char *org, enum store_ident kind, size_t n,
                         const char *const *vals, const size_t *lens, const int64_t *cids);

/*
 * A customer's hash brought to the identifiers val (NULL: absent) from what was read
 * (ids): a new customer gets id and v = 0; a changed identifier is set or removed; an
 * existing customer whose identifiers change gets v bumped (after the change on one
 * Redis, before it on a cluster: store_admin.c says why). Its memberships are untouched.
 * Queues nothing when nothing changes. Returns the number of commands queued, or -1.
 */
int store_admin_q_customer_write(struct store_admin *a, const char *org, int64_t cid,
                                 const struct store_cust_ids *ids,
                                 const char *const val[STORE_NIDENTS],
                                 const size_t len[STORE_NIDENTS]);

/*
 * A transaction: what is queued between store_admin_q_multi and store_admin_q_exec applies
 * at once or not at all. nqueued: the commands queued in it (their own replies only say
 * QUEUED); with none the transaction is discarded. An error reply inside it is reported
 * as "redis refused a write". Not on a cluster (no transaction spans its nodes): -1,
 * reported.
 */
int store_admin_q_multi(struct store_admin *a);
int store_admin_q_exec(struct store_admin *a, int nqueued);

/* ---- import checkpoints (pp:{ORG}:import:DIGEST) ------------------------------------ */

/* Where an import of one file stands. */
struct store_import_mark {
	uint64_t offset, line;                                /* the end of the last batch */
	uint64_t read, new, changed, unchanged, rejected;     /* the counts so far */
};

/* A checkpoint's name (for messages too) from the org and the hex digest of the file. */
struct store_import_ckpt {
	char key[128];
};
void store_import_ckpt_init(struct store_import_ckpt *c, const char *org, const char *hex);

/*
 * Reads the checkpoint: 1 with *m, 0 when there is none, -1 on an error, -2 when it is
 * not valid (a field missing or not a count).
 */
int store_admin_import_ckpt_read(struct store_admin *a, const struct store_import_ckpt *c,
                                 struct store_import_mark *m);

/* Queues the checkpoint's write, kept ttl_s seconds (2 commands). */
int store_admin_q_import_ckpt(struct store_admin *a, const struct store_import_ckpt *c,
                              const struct store_import_mark *m, long ttl_s);

/* Removes the checkpoint (one round trip). 0, or -1. */
int store_admin_import_ckpt_del(struct store_admin *a, const struct store_import_ckpt *c);

/* 1 when identifier k of the customer differs between what was read and val/len. */
int store_ident_changed(const struct store_cust_ids *ids, int k, const char *val, size_t len);

#endif
