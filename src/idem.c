/*
 * idem: the Idempotency-Key policy (idem.h); the store's side is in store_write.c.
 */
#include "idem.h"

#define IDEM_KEY_MAX 255
#define IDEM_RUNNING_TTL_MS 30000             /* a claim whose worker died frees itself
                                                (plus --lock-wait-ms: see idem_claim) */
#define IDEM_DONE_TTL_MS (24LL * 3600 * 1000)  /* SPEC §6: replays within 24 h */

static int
key_valid(const char *k)
{
	size_t n = 0;

	for (; k[n] != '\0'; n++)
		if ((unsigned char)k[n] < 0x20 || (unsigned char)k[n] > 0x7e)
			return 0;
	return n >= 1 && n <= IDEM_KEY_MAX;
}

int
idem_check_key(struct http_req *r, struct routes_outcome *out)
{
	if (r->idempotency_key == NULL || key_valid(r->idempotency_key))
		return 0;
	out->status = 400;
	http_error(r, 400, 400, "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL);
	return -1;
}

enum idem_state
idem_claim(const struct routes_cfg *cfg, struct store *st, struct http_req *r, const char *org,
           const char *route, struct idem_claim *ic, struct routes_outcome *out)
{
	const char *resp = NULL;
	size_t resp_len = 0;
	int status = 0;

	if (r->idempotency_key == NULL)
		return IDEM_NONE;
	ic->lost = 0;
	switch (store_idem_claim(st, org, r->idempotency_key, route, r->body, r->body_len,
	                         IDEM_RUNNING_TTL_MS + cfg->lock_wait_ms, &ic->s, &status, &resp, &resp_len)) {
	case STORE_IDEM_NEW:
		return IDEM_CLAIMED;
	case STORE_IDEM_ERROR:
		handler_store_unavailable(st, r, out, "the data store is unavailable: nothing was applied; retry shortly");
		break;
	case STORE_IDEM_MISMATCH:
		out->status = 422;
		http_error(r, 422, 422, "this Idempotency-Key was already used with another request body or route", NULL);
		break;
	case STORE_IDEM_RUNNING:
		out->status = 409;
		http_error(r, 409, 409, "the first request with this Idempotency-Key is still being processed: retry shortly",
		           "Retry-After: 1\r\n");
		break;
	case STORE_IDEM_DONE:
		out->status = status;
		http_respond(r, out->status, "Idempotent-Replayed: true\r\n", resp, resp_len);
		break;
	case STORE_IDEM_UNREADABLE:
	default:
		out->status = 503;
		http_error(r, 503, 503, "the stored response of this Idempotency-Key is unreadable; retry shortly",
		           "Retry-After: 1\r\n");
		break;
	}
	return IDEM_ANSWERED;
}

void
idem_finish(struct store *st, const struct idem_claim *ic, int status, const char *body, size_t len)
{
	store_idem_finish(st, &ic->s, status, body, len, IDEM_DONE_TTL_MS);
}

void
idem_answer_fenced(struct http_req *r, struct routes_outcome *out)
{
	out->status = 409;
	http_error(r, 409, 409, "this request's Idempotency-Key claim expired or was taken over by a repeat of the request before its changes were stored; nothing was applied: repeat the request with the same Idempotency-Key to get its outcome",
	           "Retry-After: 1\r\n");
}
