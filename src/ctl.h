/*
 * ctl: what partnerctl's verbs share: the command table entry points, messages, the store
 * session (store_admin.h: partnerctl reaches Redis only through it), and parsers for the
 * stored values of docs/DATA-MODEL.md.
 */
#ifndef PARTNERD_CTL_H
#define PARTNERD_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "ident.h"
#include "store_admin.h"

struct rules_membership;   /* rules.h (not included here: its F_OK clashes with unistd.h) */

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

enum ctl_prog_type { CTL_PROG_EXTERNAL = 1, CTL_PROG_SUPPLEMENTARY = 2 };

/* A program definition as stored in pp:{ORG}:progs. */
struct ctl_prog {
	char *name;               /* field name (owned, NUL-terminated; may not hold NUL) */
	size_t name_len;
	int pid;                  /* > 0 */
	enum ctl_prog_type type;
	json_object *def;         /* the parsed value (owned): tiers, cycle, expiresAt */
};

/*
 * Parses a stored program value: exactly the keys pid, type, tiers, cycle, expiresAt with
 * the types of docs/DATA-MODEL.md. Fills pid, type and def (on success the caller owns
 * def); on failure returns -1 with the reason in why.
 */
int ctl_prog_parse(const char *s, size_t len, struct ctl_prog *p, char *why, size_t whysz);

/* 1 when tier (len bytes) is one of p's tiers. */
int ctl_prog_has_tier(const struct ctl_prog *p, const char *tier, size_t len);

/* Frees what ctl_prog_parse and the caller stored in p (name and def). */
void ctl_prog_free(struct ctl_prog *p);

/*
 * Decodes a stored membership value (docs/DATA-MODEL.md): the compact format, or the JSON
 * of an older partnerd, which must then also be strict JSON with exactly the keys mid,
 * tier, exp, start, end, lk, up, rl and their types. tok: a reusable tokener, or NULL.
 * Returns 0 with m filled (free it with rules_membership_free); -1 when the value decodes
 * as neither format, -2 when it is JSON of the wrong shape (the reason in why); m is
 * empty then.
 */
int ctl_mship_decode(json_tokener *tok, const char *val, size_t len, struct rules_membership *m,
                     char *why, size_t whysz);

/*
 * Checks a decoded membership against program p: tiers valid for p, lk and up set, a
 * pending relink only on a SUPPLEMENTARY program. Returns 0, or -1 with the reason in why.
 */
int ctl_mship_validate(const struct rules_membership *m, const struct ctl_prog *p, char *why,
                       size_t whysz);

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
