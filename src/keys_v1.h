/* keys_v1: the Redis key space of key layout 1 (every release before layout 2), read
 * only by `partnerctl migrate` (store_migrate.c), which moves data of this layout to the
 * layout of keys.h. Nothing else may include it: partnerd and the other verbs know only
 * keys.h, and tests/keys/check does not read this file.
 *
 * The formats are keys.h's of layout 1, verbatim, renamed KEYS_V1_*; the shape is keys.h's
 * (one `#define KEYS_V1_NAME "format"  ARGS comment` a line), so that
 * tests/integration/keys.py's parse_header reads it (test_migrate.py writes layout-1 data
 * with it). In layout 1 an org's index, membership-id index, feed, rate windows and
 * Idempotency-Keys carry the tag {ORG}, and a customer's keys the tag {ORG:CID}.
 * What moves where: docs/OPERATIONS.md "Upgrading the key layout".
 */
#ifndef PARTNERD_KEYS_V1_H
#define PARTNERD_KEYS_V1_H

/* SET: the ids of the loaded orgs (as in layout 2). */
#define KEYS_V1_ORGS  "pp:orgs"
/* HASH: API username -> {"org","hash"} (as in layout 2). */
#define KEYS_V1_CREDS "pp:creds"

/* STRING: failed-login counters (as in layout 2). */
#define KEYS_V1_LOGIN_FAIL_USER_FMT "pp:login:u:%s"   /* HEX; of the username */
#define KEYS_V1_LOGIN_FAIL_ADDR_FMT "pp:login:a:%s"   /* HEX; of the address bucket */

/* HASH: the org's settings (as in layout 2). */
#define KEYS_V1_ORG_FMT        "pp:{%s}:org"          /* ORG */
/* HASH: program name -> JSON definition with its PID (as in layout 2). */
#define KEYS_V1_PROGS_FMT      "pp:{%s}:progs"        /* ORG */
/* STRING: the last PID handed out (as in layout 2). */
#define KEYS_V1_PSEQ_FMT       "pp:{%s}:pseq"         /* ORG */
/* HASH: identifier -> customer id, one hash per org and kind; split into buckets. */
#define KEYS_V1_IX_FMT         "pp:{%s}:ix:%s"        /* ORG, KIND=mobile|email|externalId */
/* HASH: membership id -> customer id holding it in program PID; split into buckets. */
#define KEYS_V1_MID_FMT        "pp:{%s}:mid:%d"       /* ORG, PID */
/* HASH: the customer; renamed. */
#define KEYS_V1_CUST_FMT       "pp:{%s:%lld}:c"       /* ORG, CID */
/* STRING: the customer's lock token, PX expiry: while one exists a partnerd is serving,
 * and migrate refuses to run. */
#define KEYS_V1_LOCK_FMT       "pp:{%s:%lld}:lock"    /* ORG, CID */
/* LIST: the customer's history; renamed. */
#define KEYS_V1_HIST_FMT       "pp:{%s:%lld}:h"       /* ORG, CID */
/* STREAM: the org's change feed, one stream; its entries go to the partition of their
 * customerId, with their ids. */
#define KEYS_V1_FEED_FMT       "pp:{%s}:feed"         /* ORG */
/* STRING: requests of one credential in one minute; renamed (with its expiry). */
#define KEYS_V1_RATE_FMT       "pp:{%s}:rate:%s"      /* ORG, HEX; ":MINUTE" follows */
/* HASH: an Idempotency-Key's claim and stored response; renamed (with its expiry). */
#define KEYS_V1_IDEM_FMT       "pp:{%s}:idem:%s"      /* ORG, HEX; of the Idempotency-Key */
/* HASH: an import's checkpoint (as in layout 2). */
#define KEYS_V1_IMPORT_FMT     "pp:{%s}:import:%s"    /* ORG, HEX; of path, size, mtime */

/* Field of the customer hash: one membership (as in layout 2). */
#define KEYS_V1_MEMBERSHIP_FIELD_FMT "m:%d"           /* PID */

#endif
