/* keys: the Redis key space of docs/DATA-MODEL.md, defined once.
 *
 * docs/DATA-MODEL.md's key tables document exactly these keys; tests/integration/keys.py
 * builds the tests' key names from this file, and tests/keys/check (make check) fails when
 * DATA-MODEL.md, this file and the key names the scripts of src/lua build disagree. Change a
 * key here, in DATA-MODEL.md and in the scripts together; store_keys.c tables these formats
 * (type and parts of each kind) for partnerctl check: a new kind of key goes there too, or
 * check reports its keys as stray.
 *
 * Those tools read this file, so keep its shape: each key is one line
 *   #define KEYS_NAME "format"   comment naming the conversions
 * where the format is printf's (%s an org id or a word, %lld a customer id, %d a program
 * id) and the trailing comment names its conversions in order as DATA-MODEL.md writes
 * them (ORG, CID, PID, HEX; KIND=a|b|c for a word that is one of a list), then after ";"
 * free text (`":X" follows`: the scripts append ":X" to the key). The comment above a key
 * starts with its Redis type, then says what it holds and who writes it. ORG is validated
 * by ident_valid_org (it never holds a brace), CID is an int64, PID an int; text from
 * clients never forms part of a key name (HEX is a hash of it). */
#ifndef PARTNERD_KEYS_H
#define PARTNERD_KEYS_H

/* SET: the ids of the loaded orgs; partnerctl load. */
#define KEYS_ORGS  "pp:orgs"
/* HASH: API username -> {"org","hash"} (Argon2id); partnerctl load. */
#define KEYS_CREDS "pp:creds"

/* STRING: failed-login counters, INCR by partnerd (store_auth.c) after a failed password
 * check, expiring AUTH_FAIL_WINDOW_S after the window's first failure; HEX is the hex
 * BLAKE2b-128 of the username, or of the client address (IPv6: its /64, auth_addr_bucket).
 * No hash tag: they belong to no org (an unknown username has none) and spread over a
 * cluster's slots. */
#define KEYS_LOGIN_FAIL_USER_FMT "pp:login:u:%s"   /* HEX; of the username */
#define KEYS_LOGIN_FAIL_ADDR_FMT "pp:login:a:%s"   /* HEX; of the address bucket */

/* HASH: the org's settings (defaultCountryCode, nationalNumberLength); partnerctl load. */
#define KEYS_ORG_FMT        "pp:{%s}:org"          /* ORG */
/* HASH: program name -> JSON definition with its PID; partnerctl load. */
#define KEYS_PROGS_FMT      "pp:{%s}:progs"        /* ORG */
/* STRING: the last PID handed out (INCR); partnerctl load. */
#define KEYS_PSEQ_FMT       "pp:{%s}:pseq"         /* ORG */
/* HASH: identifier -> customer id; partnerctl load and import-customers. */
#define KEYS_IX_FMT         "pp:{%s}:ix:%s"        /* ORG, KIND=mobile|email|externalId */
/* HASH: membership id -> customer id holding it in program PID; commit.lua, settle.lua. */
#define KEYS_MID_FMT        "pp:{%s}:mid:%d"       /* ORG, PID */
/* HASH: the customer (identifiers, version v, last writer's token w, memberships m:PID);
 * commit.lua, settle.lua, partnerctl load and import-customers. */
#define KEYS_CUST_FMT       "pp:{%s:%lld}:c"       /* ORG, CID */
/* STRING: the customer's lock token, PX expiry; set by begin.lua, deleted by commit.lua
 * and resolve.lua. */
#define KEYS_LOCK_FMT       "pp:{%s:%lld}:lock"    /* ORG, CID */
/* LIST: the customer's history, newest first (activity JSON); commit.lua. */
#define KEYS_HIST_FMT       "pp:{%s:%lld}:h"       /* ORG, CID */
/* STREAM: the org's change feed; commit.lua. */
#define KEYS_FEED_FMT       "pp:{%s}:feed"         /* ORG */
/* STRING: requests of one credential in one minute (--rate-limit); INCR by begin.lua and
 * read.lua, which append the minute to the key partnerd passes. */
#define KEYS_RATE_FMT       "pp:{%s}:rate:%s"      /* ORG, HEX; ":MINUTE" follows */
/* HASH: an Idempotency-Key's claim and stored response; idem.lua, commit.lua (expiry). */
#define KEYS_IDEM_FMT       "pp:{%s}:idem:%s"      /* ORG, HEX; of the Idempotency-Key */
/* HASH: an import's checkpoint; partnerctl import-customers. */
#define KEYS_IMPORT_FMT     "pp:{%s}:import:%s"    /* ORG, HEX; of path, size, mtime */

/* Field of the customer hash (KEYS_CUST_FMT): one membership, compact text (DATA-MODEL.md);
 * commit.lua, settle.lua. */
#define KEYS_MEMBERSHIP_FIELD_FMT "m:%d"           /* PID */

#endif
