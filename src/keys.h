/*
 * keys: the Redis key space of docs/DATA-MODEL.md, in one place. store_keys.c tables these
 * formats (type and parts of each kind) for partnerctl check: a new kind of key goes there
 * too, or check reports its keys as stray.
 */
#ifndef PARTNERD_KEYS_H
#define PARTNERD_KEYS_H

#define KEYS_ORGS  "pp:orgs"
#define KEYS_CREDS "pp:creds"

/* Failed-login counters (STRING, INCR by partnerd after a failed password check, expiring
 * AUTH_FAIL_WINDOW_S after the window's first failure); HEX is the hex BLAKE2b-128 of the
 * username, or of the client address (IPv6: its /64, auth_addr_bucket). No hash tag: they
 * belong to no org (an unknown username has none) and spread over a cluster's slots. */
#define KEYS_LOGIN_FAIL_USER_FMT "pp:login:u:%s"   /* hex BLAKE2b-128 of the username */
#define KEYS_LOGIN_FAIL_ADDR_FMT "pp:login:a:%s"   /* hex BLAKE2b-128 of the address bucket */

/* printf formats; ORG is validated by ident_valid_org, CID is an int64, PID an int. */
#define KEYS_ORG_FMT        "pp:{%s}:org"
#define KEYS_PROGS_FMT      "pp:{%s}:progs"
#define KEYS_PSEQ_FMT       "pp:{%s}:pseq"
#define KEYS_IX_FMT         "pp:{%s}:ix:%s"        /* org, "mobile"|"email"|"externalId" */
#define KEYS_MID_FMT        "pp:{%s}:mid:%d"       /* org, pid */
#define KEYS_CUST_FMT       "pp:{%s:%lld}:c"       /* org, cid */
#define KEYS_LOCK_FMT       "pp:{%s:%lld}:lock"    /* org, cid */
#define KEYS_HIST_FMT       "pp:{%s:%lld}:h"       /* org, cid */
#define KEYS_FEED_FMT       "pp:{%s}:feed"         /* org */
#define KEYS_RATE_FMT       "pp:{%s}:rate:%s"      /* org, hex BLAKE2b of the username; ":MINUTE" follows */
#define KEYS_IDEM_FMT       "pp:{%s}:idem:%s"      /* org, hex BLAKE2b of the Idempotency-Key */
#define KEYS_IMPORT_FMT     "pp:{%s}:import:%s"    /* org, hex BLAKE2b of path, size, mtime */

#define KEYS_MEMBERSHIP_FIELD_FMT "m:%d"           /* pid */

#endif
