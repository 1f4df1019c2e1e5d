/*
 * store_layout: the stored data's key layout version (see store_layout.h).
 */
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "layout.h"
#include "store_layout.h"

#define STR(x) #x
#define XSTR(x) STR(x)
#define VERSION_TEXT XSTR(LAYOUT_VERSION)

enum store_layout_state
store_layout_read(struct store *st, char *msg, size_t sz)
{
	struct store_argv cmd[2];
	redisReply **rep = NULL;
	enum store_layout_state res;
	int rc;

	store_argv_init(&cmd[0]);
	store_argv_init(&cmd[1]);
	store_argv_add(&cmd[0], "GET", 3);
	store_argv_add(&cmd[0], KEYS_LAYOUT, strlen(KEYS_LAYOUT));
	store_argv_add(&cmd[1], "EXISTS", 6);
	store_argv_add(&cmd[1], KEYS_ORGS, strlen(KEYS_ORGS));
	rc = store_pipeline(st, cmd, 2, &rep);
	store_argv_free(&cmd[0]);
	store_argv_free(&cmd[1]);
	msg[0] = '\0';
	if (rc != 0)
		return STORE_LAYOUT_DOWN;
	if (rep[0]->type == REDIS_REPLY_STRING) {
		if (strcmp(rep[0]->str, VERSION_TEXT) == 0)
			return STORE_LAYOUT_CURRENT;
		snprintf(msg, sz, "the data in Redis is of key layout \"%.20s\" (%s), this release reads "
		         "key layout " VERSION_TEXT " only: `partnerctl migrate` converts layout 1 and 2 "
		         "data (docs/OPERATIONS.md); data of a later layout needs the release that wrote it", rep[0]->str, KEYS_LAYOUT);
		res = STORE_LAYOUT_REFUSED;
	} else if (rep[0]->type != REDIS_REPLY_NIL) {
		snprintf(msg, sz, "%s in Redis is not a string (%.100s): the data's key layout is "
		         "unknown; this release reads key layout " VERSION_TEXT " only (`partnerctl "
		         "migrate` converts layout 1 and 2 data)", KEYS_LAYOUT,
		         rep[0]->type == REDIS_REPLY_ERROR ? rep[0]->str : "another reply");
		res = STORE_LAYOUT_REFUSED;
	} else if (rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer == 0) {
		res = STORE_LAYOUT_EMPTY;
	} else {
		snprintf(msg, sz, "the data in Redis is of key layout 1 (%s exists, %s does not), "
		         "this release reads key layout " VERSION_TEXT " only: convert the data with "
		         "`partnerctl migrate` (docs/OPERATIONS.md)", KEYS_ORGS, KEYS_LAYOUT);
		res = STORE_LAYOUT_REFUSED;
	}
	return res;
}

int
store_layout_mark(struct store *st)
{
	struct store_argv cmd;
	redisReply **rep = NULL;
	int rc;

	store_argv_init(&cmd);
	store_argv_add(&cmd, "SET", 3);
	store_argv_add(&cmd, KEYS_LAYOUT, strlen(KEYS_LAYOUT));
	store_argv_add(&cmd, VERSION_TEXT, strlen(VERSION_TEXT));
	store_argv_add(&cmd, "NX", 2);
	rc = store_pipeline(st, &cmd, 1, &rep);
	store_argv_free(&cmd);
	return rc == 0 && rep[0]->type != REDIS_REPLY_ERROR ? 0 : -1;
}

int
store_layout_connect_check(struct store *st, char *msg, size_t sz)
{
	return store_layout_read(st, msg, sz) == STORE_LAYOUT_REFUSED ? -1 : 0;
}
