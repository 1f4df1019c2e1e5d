/* handler: authentication answers and the store-unavailable answer (handler.h). */
#include <stdio.h>
#include <string.h>

#include "handler.h"
#include "store_write.h"

void
handler_store_unavailable(struct store *st, struct http_req *r, struct routes_outcome *out,
                          const char *message)
{
	out->status = 503;
	/* data of another key layout (store_layout.h): its message names partnerctl migrate */
	if (store_check_refused(st))
		message = store_error(st);
	http_error(r, 503, 503, store_out_of_memory(st) ?
	           "the data store is out of memory (Redis maxmemory reached) and refuses writes; nothing was applied: retry later (an operator must free memory or raise maxmemory)" :
	           message, "Retry-After: 1\r\n");
}

/*
 * The answers of a refused login, by auth_check's result. headers NULL: Retry-After with
 * the time auth_check gave (1 s at least).
 */
static const struct {
	int status;
	const char *message;
	const char *headers;
} auth_refused[] = {
	[AUTH_DENIED] = { 401, "missing or wrong credentials: use HTTP Basic auth with your API username and password",
	                  "WWW-Authenticate: Basic realm=\"partnerProgram\"\r\n" },
	[AUTH_LIMITED_USER] = { 429, "too many failed logins for this username: retry after the time in Retry-After, "
	                        "with the right password", NULL },
	[AUTH_LIMITED_ADDR] = { 429, "too many failed logins from this client address: retry after the time in "
	                        "Retry-After, with the right password", NULL },
	[AUTH_BUSY] = { 503, "too many password checks at once: retry after the time in Retry-After", NULL },
};

int
handler_authenticate(struct store *st, struct http_req *r, struct auth_org *org,
                     struct routes_outcome *out)
{
	int retry_after = 0;
	enum auth_result rc = auth_check(st, r->authorization, r->remote_addr, org, &retry_after);
	char hdr[48];

	if (rc == AUTH_OK) {
		size_t n = strnlen(org->org, sizeof(out->org) - 1);

		memcpy(out->org, org->org, n);  /* cut as snprintf cut it */
		out->org[n] = '\0';
		return 0;
	}
	if ((size_t)rc >= sizeof(auth_refused) / sizeof(auth_refused[0]) || auth_refused[rc].status == 0) {
		handler_store_unavailable(st, r, out, "the data store is unavailable: retry shortly");
		return -1;
	}
	snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", retry_after > 0 ? retry_after : 1);
	out->status = auth_refused[rc].status;
	http_error(r, out->status, out->status, auth_refused[rc].message,
	           auth_refused[rc].headers != NULL ? auth_refused[rc].headers : hdr);
	return -1;
}
