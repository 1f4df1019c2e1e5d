/*
 * store_layout: the key layout version of the stored data (keys.h KEYS_LAYOUT, issue 14).
 * partnerd and partnerctl read key layout 3 only (LAYOUT_VERSION): data of layout 1
 * (pp:orgs without pp:layout, what releases before layout 2 wrote), of layout 2 (locks as
 * keys of their own) or of another version is refused with a message that names
 * `partnerctl migrate`, which converts layouts 1 and 2.
 *
 * partnerd checks every new Redis connection (store_layout_connect_check, given to
 * store_set_connect_check): on refused data the connection is dropped and requests are
 * answered 503 with the message, and partnerd does not start when the data is refused at
 * start-up (partnerd.c). partnerctl's verbs check once per run (store_admin_layout).
 */
#ifndef PARTNERD_STORE_LAYOUT_H
#define PARTNERD_STORE_LAYOUT_H

#include <stddef.h>

#include "store.h"

enum store_layout_state {
	STORE_LAYOUT_CURRENT,           /* pp:layout is LAYOUT_VERSION */
	STORE_LAYOUT_EMPTY,             /* neither pp:layout nor pp:orgs: nothing loaded yet */
	STORE_LAYOUT_REFUSED,           /* layout 1 data, or another pp:layout: msg */
	STORE_LAYOUT_DOWN               /* Redis did not answer (store_error) */
};

/* Reads the stored layout (one round trip); msg gets the refusal's text. */
enum store_layout_state store_layout_read(struct store *st, char *msg, size_t sz);

/* Records LAYOUT_VERSION on an empty Redis (SET pp:layout 3 NX). 0, or -1 (store_error). */
int store_layout_mark(struct store *st);

/* store.c's connection check (store_check_fn): 0 unless the data is refused (-1, msg). */
int store_layout_connect_check(struct store *st, char *msg, size_t sz);

#endif
