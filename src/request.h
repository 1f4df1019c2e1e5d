/*
 * request: JSON request bodies -> validated request structs. Pure: no I/O, no clock.
 *
 * The structure of a request is checked here; a fault in it refuses the whole request
 * (SPEC §4 "Malformed structure versus invalid items"). Field-level faults inside a
 * well-formed entry are only *recorded* here (as a field state) because the rules module
 * decides, in the order the SPEC gives, which code an item reports.
 *
 * Strings point into the parsed json-c tree owned by struct req: they live until
 * req_free(). They carry a length and may contain NUL bytes.
 */
#ifndef PARTNERD_REQUEST_H
#define PARTNERD_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#define REQ_MAX_ENTRIES 50
#define REQ_MAX_ITEMS   50
#define REQ_MAX_DEPTH   32

/*
 * Longest partnerMembershipId, partnerTierName, updatedTierName and partnerProgramName, in
 * bytes (SPEC §4 "Sizes and encodings"). A longer one fails its item with 2002; with these
 * bounds every stored value, and so every history entry and change-feed event, is bounded
 * in bytes (docs/CHANGE-FEED.md). The customer identifiers' limits are in ident.h.
 */
#define REQ_NAME_MAX 128

enum req_kind { REQ_LINK = 0, REQ_UPDATE = 1, REQ_DELINK = 2 };

struct str {
	const char *p;          /* borrowed; NULL when absent */
	size_t len;
};

/* State of one optional or required field of an item. */
enum fstate {
	F_ABSENT = 0,           /* missing, null or "" */
	F_OK,                   /* present with the right type (and, for dates, parsed) */
	F_BADTYPE,              /* present with the wrong JSON type */
	F_BADVALUE,             /* right type, invalid value (an unparsable date) */
	F_TOOLONG               /* a string over its byte limit (REQ_NAME_MAX): see too_long */
};

struct req_field {
	enum fstate st;
	struct str s;           /* the string value when st == F_OK (or F_BADVALUE text) */
	int64_t ms;             /* parsed date-time, when the field is a date and st == F_OK */
};

enum update_type {
	UPD_NONE = 0, UPD_UPGRADE, UPD_DOWNGRADE, UPD_RENEWAL, UPD_RELINK_CANCEL
};

struct req_item {
	const char *too_long;           /* static message naming the first field over its limit
	                                   (the item fails with 2002), or NULL */
	struct req_field program;       /* partnerProgramName */
	/* link */
	enum fstate reference;          /* customerPartnerReference object */
	struct req_field mid;           /* partnerMembershipId */
	struct req_field tier;          /* partnerTierName */
	struct req_field expiry;        /* partnerTierExpiryDate */
	struct req_field start;         /* membershipStartDate */
	/* update */
	struct req_field update_type;   /* raw updateType */
	enum update_type utype;         /* parsed; UPD_NONE when invalid or absent */
	enum fstate details;            /* updateDetails object */
	struct req_field new_tier;      /* updatedTierName */
	struct req_field new_expiry;    /* updatedTierExpiryDate */
};

/* Customer identifiers as sent. Normalisation needs the org's settings: see ident.h. */
struct req_customer {
	int bad;                        /* an identifier of the wrong JSON type or form, or too long */
	const char *bad_msg;            /* static message saying why, when bad (the customer's 400) */
	int has_id;
	int64_t id;
	struct str mobile;              /* digits/punctuation as sent (from a string or number) */
	char mobile_num[32];            /* backing store when mobile came as a JSON number */
	struct str email;
	struct str external_id;
	const void *echo;               /* the json-c "customer" object, for echoing back */
};

struct req_entry {
	struct req_customer customer;
	size_t nitems;
	struct req_item *items;         /* nitems of them, owned */
};

struct req {
	enum req_kind kind;
	size_t nentries;
	struct req_entry *entries;      /* nentries of them */
	void *tree;                     /* json-c root, owned */
};

/* A refusal of the whole request. */
struct req_error {
	int http;                       /* HTTP status: 400 */
	int code;                       /* 400 or 2008 */
	char message[160];
};

/* Names of a route's JSON fields: the three write routes differ only in these. */
struct req_names {
	const char *top;                /* "linkCustomers" */
	const char *items;              /* "linkToPartnerPrograms" */
	const char *item_status;        /* "partnerLinkStatus" */
};
extern const struct req_names req_names[3];

/*
 * Parses and checks body[0..len) as a request of the given kind. On success returns 0 and
 * fills *out (free with req_free). On a refusal returns -1, fills *err and leaves *out
 * empty. Dates are parsed here; nothing depends on the time of day.
 */
int req_parse(const char *body, size_t len, enum req_kind kind, struct req *out,
              struct req_error *err);
void req_free(struct req *r);
/* Frees the calling thread's JSON tokener (req_parse keeps one per thread). */
void req_thread_exit(void);

/*
 * Checks JSON text that json-c has already accepted for what json-c lets through:
 * duplicated object keys, NaN/Infinity literals, raw control characters inside strings,
 * and integers beyond 64 bits. Returns 0 when clean, else -1 with a message in msg.
 */
/* Strict UTF-8 check: the offset of the first invalid byte, or len when valid. */
size_t req_utf8_check(const char *text, size_t len);

int req_json_scan(const char *text, size_t len, const void *tree, char *msg, size_t msgsz);

#endif
