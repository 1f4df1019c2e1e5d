/* keys: the Redis key space of docs/DATA-MODEL.md, defined once (key layout 3).
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
 * where the format is printf's (%s an org id, a tag or a word, %lld a customer id, %d a
 * program id) and the trailing comment names its conversions in order as DATA-MODEL.md
 * writes them (ORG, CID, PID, HEX, TAG; KIND=a|b|c for a word that is one of a list), then
 * after ";" free text (`":X" follows`: the scripts append ":X" to the key). The comment
 * above a key starts with its Redis type, then says what it holds and who writes it. ORG is
 * validated by ident_valid_org (it never holds a brace or a colon), CID is an int64, PID an
 * int; text from clients never forms part of a key name (HEX is a hash of it).
 *
 * Layout 2 spreads an org over a Redis Cluster's masters (layout.h, docs/CLUSTER.md): a
 * TAG is one of the LAYOUT_PARTS partition tags layout_tag(p). A customer's keys and its
 * change-feed partition carry the tag of layout_part_of_cid(CID), so that one script writes
 * them all; an index entry, a membership-id claim, an Idempotency-Key and a rate window
 * carry the tag of layout_bucket_of(the value, the id or HEX). Keys of an org's reference
 * data keep the org as their tag. KEYS_LAYOUT records the layout version.
 */
#ifndef PARTNERD_KEYS_H
#define PARTNERD_KEYS_H

/* STRING: the key layout version of the data ("3", LAYOUT_VERSION); partnerctl load on an
 * empty Redis, partnerctl migrate. partnerd and partnerctl refuse data of another layout. */
#define KEYS_LAYOUT "pp:layout"
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
/* HASH: an import's checkpoint; partnerctl import-customers. */
#define KEYS_IMPORT_FMT     "pp:{%s}:import:%s"    /* ORG, HEX; of path, size, mtime */

/* HASH: one bucket of an identifier index: identifier -> customer id, for the identifiers
 * whose layout_bucket_of(value) has this TAG; partnerctl load and import-customers. */
#define KEYS_IX_FMT         "pp:{%s}:ix:%s:%s"     /* TAG, ORG, KIND=mobile|email|externalId */
/* HASH: one bucket of the membership-id claims of program PID: membership id -> customer
 * id holding it, for the ids whose layout_bucket_of(id) has this TAG; commit.lua,
 * settle.lua. */
#define KEYS_MID_FMT        "pp:{%s}:mid:%s:%d"    /* TAG, ORG, PID */
/* HASH: the customer (identifiers, version v, last writer's token w, memberships m:PID,
 * the lock while one is taken: TOKEN:EXPIRY, src/lua/lock.lua); begin.lua, commit.lua,
 * settle.lua, partnerctl load and import-customers. TAG: of the CID. */
#define KEYS_CUST_FMT       "pp:{%s}:c:%s:%lld"    /* TAG, ORG, CID */
/* STRING: key layout 2's customer lock (layout 3 keeps it in the customer hash): none in
 * layout-3 data; partnerctl migrate and check look for them, the out-of-memory probe
 * (store_refuses_writes) names one. TAG: of the CID. */
#define KEYS_LOCK_FMT       "pp:{%s}:lock:%s:%lld" /* TAG, ORG, CID */
/* LIST: the customer's history, newest first (compact activity records, activity.h; JSON
 * objects of an older partnerd); commit.lua. TAG: of the CID. */
#define KEYS_HIST_FMT       "pp:{%s}:h:%s:%lld"    /* TAG, ORG, CID */
/* STREAM: one partition of the org's change feed: the entries of the customers whose
 * layout_part_of_cid has this TAG, in commit order; commit.lua. */
#define KEYS_FEED_FMT       "pp:{%s}:feed:%s"      /* TAG, ORG */
/* STRING: requests of one credential in one minute (--rate-limit); INCR by begin.lua and
 * read.lua, which append the minute to the key partnerd passes. TAG: of HEX. */
#define KEYS_RATE_FMT       "pp:{%s}:rate:%s:%s"   /* TAG, ORG, HEX; ":MINUTE" follows */
/* HASH: an Idempotency-Key's claim and stored response; idem.lua, commit.lua (expiry).
 * TAG: of HEX. */
#define KEYS_IDEM_FMT       "pp:{%s}:idem:%s:%s"   /* TAG, ORG, HEX; of the Idempotency-Key */

/* Field of the customer hash (KEYS_CUST_FMT): one membership, compact text (DATA-MODEL.md);
 * commit.lua, settle.lua. */
#define KEYS_MEMBERSHIP_FIELD_FMT "m:%d"           /* PID */

#endif
