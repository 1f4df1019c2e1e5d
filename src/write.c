/*
 * write: the write pipeline, stage by stage (write.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sodium.h>

#include "clock.h"
#include "dates.h"
#include "idem.h"
#include "metrics.h"
#include "request.h"
#include "respond.h"
#include "write.h"
#include "write_round.h"
#include "write_state.h"
#include "xmalloc.h"

/*
 * Checks the request's headers and reads its body (capped by --max-body). Returns 0, or
 * -1 after answering 415, 411, 413 or 400.
 */
static int
read_body(const struct routes_cfg *cfg, struct http_req *r, struct routes_outcome *out)
{
	char msg[200], enc[48];
	int rc;

	if (!http_is_json(r->content_type)) {
		out->status = 415;
		http_error(r, 415, 415, "Content-Type must be application/json", NULL);
		return -1;
	}
	if (http_check_encoding(r, enc, sizeof(enc)) != 0) {
		out->status = 415;
		snprintf(msg, sizeof(msg), "Content-Encoding \"%s\" is not supported: send the request body uncompressed (no Content-Encoding, or identity)", enc);
		http_error(r, 415, 415, msg, NULL);
		return -1;
	}
	rc = http_read_body(r, cfg->max_body);
	if (rc != 0) {
		out->status = rc;
		snprintf(msg, sizeof(msg), rc == 411 ? "Content-Length is required" :
		         rc == 413 ? "the request body is larger than %zu bytes" :
		         "the request body is shorter than its Content-Length", cfg->max_body);
		http_error(r, rc, rc, msg, NULL);
		return -1;
	}
	return 0;
}

/* A busy lock: back off briefly with jitter, growing up to 16 ms. */
static void
back_off(int round)
{
	int cap = 1 << (round < 4 ? round : 4);
	struct timespec ts = { 0, (long)(1 + randombytes_uniform((uint32_t)cap)) * 1000000L };

	metrics_lock_wait();
	nanosleep(&ts, NULL);
}

/*
 * Runs rounds until every entry of w is decided, the lock wait runs out (2010), the
 * request's Idempotency-Key claim is lost, or the store fails. Returns 0, or -1 after
 * answering (503 when the store failed before anything was committed, 429 over the rate
 * limit).
 */
static int
run_rounds(struct write_request *w, struct http_req *r, struct routes_outcome *out)
{
	int64_t deadline = mono_ms() + w->cfg->lock_wait_ms;
	int round, limited, committed_any = 0;
	char hdr[48];

	for (round = 0; write_pending(w) > 0; round++) {
		limited = 0;
		if (write_round_run(w, dates_now_ms(), round == 0, &limited) != 0) {
			if (committed_any) {
				write_fail_pending(w, 2001, "the data store became unavailable; nothing of this customer was applied");
				return 0;
			}
			handler_store_unavailable(w->st, r, out, "the data store is unavailable: nothing was applied; retry shortly");
			if (w->ic != NULL)
				idem_finish(w->st, w->ic, 503, NULL, 0);
			return -1;
		}
		if (limited > 0) {
			snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", limited);
			out->status = 429;
			http_error(r, 429, 429, "too many requests for this credential: retry after the time in Retry-After", hdr);
			if (w->ic != NULL)
				idem_finish(w->st, w->ic, 429, NULL, 0);
			return -1;
		}
		committed_any = 1;
		if (w->ic != NULL && w->ic->lost) {
			/* The key belongs to another request now: nothing more is applied. */
			write_fail_pending(w, 2001, IDEM_FENCED_ITEM_MSG);
			return 0;
		}
		if (write_pending(w) == 0)
			return 0;
		if (mono_ms() >= deadline) {
			for (size_t n = write_fail_pending(w, 2010, NULL); n > 0; n--)
				metrics_lock_timeout();
			return 0;
		}
		back_off(round);
	}
	return 0;
}

/* 1 when an item of w was applied or may have been (200 or 2011). */
static int
applied_any(const struct write_request *w)
{
	size_t i, k;

	for (i = 0; i < w->n; i++)
		for (k = 0; k < w->es[i].e->nitems; k++)
			if (w->es[i].results[k].code == 200 || w->es[i].results[k].code == 2011)
				return 1;
	return 0;
}

/* Counts w's item outcomes (metrics and the log line's ok / failed). */
static void
count_items(const struct write_request *w, struct routes_outcome *out)
{
	size_t i, k;

	for (i = 0; i < w->n; i++)
		for (k = 0; k < w->es[i].e->nitems; k++) {
			int code = w->es[i].results[k].code;

			metrics_item(code);
			if (code == 200)
				out->items_ok++;
			else
				out->items_failed++;
		}
}

/*
 * Answers the decided request: 200 with every entry's outcome (stored for replays of its
 * Idempotency-Key), or 409 when its claim was lost before it applied anything. A request
 * fenced by its claim stores no response.
 */
static void
respond(struct write_request *w, struct http_req *r, struct routes_outcome *out)
{
	struct write_entry *es;
	char *body;
	size_t i, blen;

	if (w->ic != NULL && w->ic->lost && !applied_any(w)) {
		idem_answer_fenced(r, out);
		return;
	}
	/* Customers refused at customer level report their code on every item. */
	for (i = 0; i < w->n; i++) {
		es = &w->es[i];
		if (es->cust_code != 1000)
			write_entry_fail_items(es, es->cust_code, es->cust_message ? es->cust_message : rules_message(es->cust_code));
	}
	body = respond_body(w->kind, w->es, w->n, &blen);
	out->status = 200;
	out->items_ok = 0;
	out->items_failed = 0;
	count_items(w, out);
	if (w->ic != NULL && !w->ic->lost)
		idem_finish(w->st, w->ic, 200, body, blen);
	http_respond(r, 200, NULL, body, blen);
	free(body);
}

void
write_handle(const struct routes_cfg *cfg, struct store *st, struct http_req *r, int kind,
             struct routes_outcome *out)
{
	struct write_request w = { .cfg = cfg, .st = st, .kind = (enum req_kind)kind, .rid = r->request_id };
	struct auth_org org;
	struct req req;
	struct req_error err;
	struct idem_claim ic;
	size_t i;

	if (handler_authenticate(st, r, &org, out) != 0 || idem_check_key(r, out) != 0 ||
	    read_body(cfg, r, out) != 0)
		return;
	if (req_parse(r->body, r->body_len, w.kind, &req, &err) != 0) {
		out->status = err.http;
		http_error(r, err.http, err.code, err.message, NULL);
		return;
	}
	switch (idem_claim(cfg, st, r, org.org, req_names[w.kind].top, &ic, out)) {
	case IDEM_ANSWERED:
		req_free(&req);
		return;
	case IDEM_CLAIMED:
		w.ic = &ic;
		break;
	case IDEM_NONE:
		break;
	}
	w.org = &org;
	w.n = req.nentries;
	w.es = xcalloc(w.n, sizeof(*w.es));
	for (i = 0; i < w.n; i++)
		write_entry_init(&w.es[i], &req.entries[i], &org);
	http_random_hex(w.token, (sizeof(w.token) - 1) / 2);

	if (run_rounds(&w, r, out) == 0)
		respond(&w, r, out);

	for (i = 0; i < w.n; i++)
		write_entry_free(&w.es[i]);
	free(w.es);
	req_free(&req);
}
