/*
 * ctl: what partnerctl's verbs share: the command table entry points, messages, the store
 * session (store_admin.h: partnerctl reaches Redis only through it), JSON helpers and the
 * customer objects load and import take. Stored memberships and programs are read by
 * rules_codec.h's strict readers.
 */
#ifndef PARTNERD_CTL_H
#define PARTNERD_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ident.h"
#include "store_admin.h"

/* rules_codec.h's types, used here by pointer only */
struct rules_membership;
struct rules_program;

#define CTL_EXIT_OK    0
#define CTL_EXIT_FAIL  1   /* the data is wrong, or an operation failed */
#define CTL_EXIT_USAGE 2   /* bad command line, or Redis unreachable */

#define CTL_REDIS_TIMEOUT_MS 30000   /* generous: HGETALL of a big index is slow */

/* What every verb gets: the global options (a verb may also take --redis itself). */
struct ctl {
	const char *redis_url; /* --redis, $PARTNERD_REDIS_URL, or the default */
};

/*
 * A verb's entry point: argv[0] is the verb, getopt is reset (optind = 0) so the verb can
 * parse its own options with getopt_long. Returns a CTL_EXIT_* code.
 */
int ctl_load_main(struct ctl *ctl, int argc, char **argv);
int ctl_show_main(struct ctl *ctl, int argc, char **argv);
int ctl_check_main(struct ctl *ctl, int argc, char **argv);
int ctl_import_main(struct ctl *ctl, int argc, char **argv);
int ctl_migrate_main(struct ctl *ctl, int argc, char **argv);

/* Prints the usage of one verb ("usage: partnerctl [--redis URL] ...") to f. */
void ctl_verb_usage(FILE *f, const char *verb);

/* Prints "partnerctl: " + message + newline on stderr. */
void ctl_errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Opens the store session of a verb (store_admin.h) on ctl->redis_url with
 * CTL_REDIS_TIMEOUT_MS; failures found in its pipeline are printed as ctl_errf does. On
 * failure prints why (never the password) and returns NULL. Close with store_admin_close.
 */
struct store_admin *ctl_store_open(const struct ctl *ctl);

/*
 * Quotes s[0..len) for a message: at most 80 bytes shown, non-printable bytes as \xNN, in
 * double quotes. Returns a pointer into one of 4 rotating static buffers, so up to 4
 * quotes may appear in one printf.
 */
const char *ctl_quote(const char *s, size_t len);

/* ---- stored values ------------------------------------------------------------------- */

/*
 * Parses stored JSON s[0..len) strictly (UTF-8 validated, whole input consumed). Returns
 * a new tree (caller puts) or NULL.
 */
json_object *ctl_json_parse(const char *s, size_t len);

/*
 * The same with a tokener the caller made once (json_tokener_new_ex(32)) and reuses for
 * many values (it is reset before each parse): saves an allocation per value.
 */
json_object *ctl_json_parse_tok(json_tokener *tok, const char *s, size_t len);

/*
 * Looks key up in obj: returns 1 when present (*val borrowed; NULL for a JSON null), 0 when
 * absent or obj is not an object.
 */
int ctl_json_member(json_object *obj, const char *key, json_object **val);

/* 1 when o is a JSON integer (not a double, string or bool). */
int ctl_json_is_int(json_object *o);

/* Serialises o compactly with '/' unescaped: the form written to Redis. Borrowed string. */
const char *ctl_json_plain(json_object *o, size_t *len);

/*
 * Checks a decoded membership against program p: tiers valid for p, lk and up set, a
 * pending relink only on a SUPPLEMENTARY program. Returns 0, or -1 with the reason in why.
 */
int ctl_mship_validate(const struct rules_membership *m, const struct rules_program *p,
                       char *why, size_t whysz);

/* ---- customers as load and import-customers take them (SPEC §3) ---------------------- */

/* The identifiers, in the order of the customer hash fields and index key names. */
enum ctl_ident { CTL_IDENT_MOBILE = STORE_IDENT_MOBILE, CTL_IDENT_EMAIL = STORE_IDENT_EMAIL,
                 CTL_IDENT_EXTERNAL_ID = STORE_IDENT_EXTERNAL_ID, CTL_NIDENTS = STORE_NIDENTS };

/* "mobile", "email", "externalId": the keys of a customer object (store_ident_name). */
#define ctl_ident_name store_ident_name

/* One customer object, validated; see ctl_cust_parse. */
struct ctl_cust_in {
	int64_t id;                      /* > 0; 0 while the id is missing or invalid */
	const char *val[CTL_NIDENTS];    /* NULL: absent; else borrowed from the JSON object,
	                                    or mob for the mobile */
	size_t len[CTL_NIDENTS];
	char mob[IDENT_MOBILE_MAX + 16 + 1]; /* the normalised mobile */
};

/* Receives one problem of a customer object (msg has no context; cu->id is set once the
   id was valid, 0 before). */
typedef void (*ctl_cust_problem_fn)(void *arg, const struct ctl_cust_in *cu, const char *msg);

/*
 * Validates a customer object exactly as `partnerctl load` does: an object with only the
 * keys id, mobile, email, externalId; id a JSON integer 1..INT64_MAX; mobile a string or a JSON
 * integer, normalised (ident_normalize_mobile) with the org's defaultCountryCode cc and
 * nationalNumberLength nlen; email and externalId strings without NUL bytes, of at most
 * IDENT_EMAIL_MAX and IDENT_EXTERNAL_ID_MAX bytes (what partnerd accepts); "" and null
 * count as absent. Every problem is handed to fn, in that order. The strings in cu are
 * borrowed from o (and cu->mob): o must outlive their use, and cu must not be copied
 * while val[CTL_IDENT_MOBILE] points into it. Returns the number of problems (0: cu is
 * complete and valid).
 */
int ctl_cust_parse(json_object *o, const char *cc, int nlen, struct ctl_cust_in *cu,
                   ctl_cust_problem_fn fn, void *arg);

#endif
