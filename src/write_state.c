/*
 * write_state: the entries of a write request: identify, fail, free (write_state.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ident.h"
#include "write_state.h"
#include "xmalloc.h"

/* Validates and normalises the entry's identifiers; decides 400 when one is bad. */
static void
entry_identify(struct write_entry *es, const struct auth_org *org)
{
	const struct req_customer *c = &es->e->customer;
	int n;

	es->in.e = es->e;
	if (c->bad) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = c->bad_msg;
		return;
	}
	if (c->has_id) {
		snprintf(es->ident_val_buf[es->in.nidents], sizeof(es->ident_val_buf[0]), "%lld",
		         (long long)c->id);
		es->in.kind[es->in.nidents] = STORE_IDENT_ID;
		es->in.val[es->in.nidents] = es->ident_val_buf[es->in.nidents];
		es->in.len[es->in.nidents] = strlen(es->ident_val_buf[es->in.nidents]);
		es->in.nidents++;
	}
	if (c->mobile.p != NULL) {
		n = ident_normalize_mobile(c->mobile.p, c->mobile.len, org->country_code,
		                           org->national_len, es->ident_val_buf[es->in.nidents],
		                           sizeof(es->ident_val_buf[0]));
		if (n < 0) {
			es->decided = 1;
			es->cust_code = 400;
			es->cust_message = "mobile is not a valid mobile number: 6 to 15 digits, optionally with spaces, +, -, ., ( and )";
			return;
		}
		es->in.kind[es->in.nidents] = STORE_IDENT_MOBILE;
		es->in.val[es->in.nidents] = es->ident_val_buf[es->in.nidents];
		es->in.len[es->in.nidents] = (size_t)n;
		es->in.nidents++;
	}
	if (c->email.p != NULL) {
		es->in.kind[es->in.nidents] = STORE_IDENT_EMAIL;
		es->in.val[es->in.nidents] = c->email.p;
		es->in.len[es->in.nidents] = c->email.len;
		es->in.nidents++;
	}
	if (c->external_id.p != NULL) {
		es->in.kind[es->in.nidents] = STORE_IDENT_EXTERNAL;
		es->in.val[es->in.nidents] = c->external_id.p;
		es->in.len[es->in.nidents] = c->external_id.len;
		es->in.nidents++;
	}
	if (es->in.nidents == 0) {
		es->decided = 1;
		es->cust_code = 400;
		es->cust_message = "no customer identifier given: send one of id, mobile, email or externalId";
	}
}

void
write_entry_init(struct write_entry *es, const struct req_entry *e, const struct auth_org *org)
{
	es->e = e;
	es->results = xcalloc(e->nitems, sizeof(*es->results));
	entry_identify(es, org);
}

void
write_entry_free(struct write_entry *es)
{
	size_t k;

	for (k = 0; k < es->e->nitems; k++)
		rules_result_free(&es->results[k]);
	free(es->results);
	for (k = 0; k < 4; k++)
		free(es->stored[k]);
}

void
write_entry_fail_items(struct write_entry *es, int code, const char *message)
{
	size_t k;

	for (k = 0; k < es->e->nitems; k++) {
		rules_result_free(&es->results[k]);
		es->results[k].code = code;
		es->results[k].message = message ? message : rules_message(code);
	}
}

void
write_entry_fail_applied(struct write_entry *es, int code, const char *message)
{
	size_t it;

	for (it = 0; it < es->e->nitems; it++)
		if (es->results[it].code == 200) {
			rules_result_free(&es->results[it]);
			es->results[it].code = code;
			es->results[it].message = message;
		}
}

size_t
write_pending(const struct write_request *w)
{
	size_t i, pending = 0;

	for (i = 0; i < w->n; i++)
		if (!w->es[i].decided)
			pending++;
	return pending;
}

size_t
write_fail_pending(struct write_request *w, int code, const char *message)
{
	size_t i, failed = 0;

	for (i = 0; i < w->n; i++) {
		if (w->es[i].decided)
			continue;
		w->es[i].decided = 1;
		w->es[i].cust_code = 1000;
		write_entry_fail_items(&w->es[i], code, message);
		failed++;
	}
	return failed;
}
