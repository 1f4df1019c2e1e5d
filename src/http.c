/*
 * http: FastCGI request fields, capped body reading and responses (see http.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "buf.h"
#include "hex.h"
#include "http.h"
#include "jout.h"

/*
 * The kernel's random bytes, fetched HTTP_RANDOM_POOL at a time per thread (libsodium asks
 * the kernel 256 bytes a call: two getrandom calls a refill, so one per 8 write requests,
 * which take 32 bytes, rather than two per request; each byte is still used once).
 */
#define HTTP_RANDOM_POOL 512
static __thread unsigned char rnd_pool[HTTP_RANDOM_POOL];
static __thread size_t rnd_left;

void
http_random_hex(char *out, size_t nbytes)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	if (nbytes > HTTP_RANDOM_POOL)
		abort();
	if (rnd_left < nbytes) {
		randombytes_buf(rnd_pool, sizeof(rnd_pool));
		rnd_left = sizeof(rnd_pool);
	}
	for (i = 0; i < nbytes; i++) {
		unsigned char b = rnd_pool[sizeof(rnd_pool) - rnd_left + i];

		out[2 * i] = digits[b >> 4];
		out[2 * i + 1] = digits[b & 15];
	}
	out[2 * nbytes] = '\0';
	sodium_memzero(rnd_pool + sizeof(rnd_pool) - rnd_left, nbytes);
	rnd_left -= nbytes;
}

/* Request ids are echoed in headers and logs: keep printable ASCII without spaces. */
static void
set_request_id(struct http_req *r, const char *given)
{
	size_t i, n = 0;

	if (given != NULL) {
		for (i = 0; given[i] != '\0' && n < HTTP_REQUEST_ID_MAX; i++) {
			unsigned char ch = (unsigned char)given[i];

			if (ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\')
				r->request_id[n++] = (char)ch;
		}
	}
	if (n == 0) {
		http_random_hex(r->request_id, 16);
		return;
	}
	r->request_id[n] = '\0';
}

/* The params http_req_init reads, found in one pass over the environment. */
enum { P_METHOD, P_URI, P_SCRIPT, P_QUERY, P_CTYPE, P_CLEN, P_AUTH, P_IDEM, P_RID, P_ADDR, P_N };
static const struct { const char *name; size_t len; } wanted[P_N] = {
#define W(s) { s "=", sizeof(s) }
	[P_METHOD] = W("REQUEST_METHOD"), [P_URI] = W("DOCUMENT_URI"),
	[P_SCRIPT] = W("SCRIPT_NAME"), [P_QUERY] = W("QUERY_STRING"),
	[P_CTYPE] = W("CONTENT_TYPE"), [P_CLEN] = W("CONTENT_LENGTH"),
	[P_AUTH] = W("HTTP_AUTHORIZATION"), [P_IDEM] = W("HTTP_IDEMPOTENCY_KEY"),
	[P_RID] = W("HTTP_X_REQUEST_ID"), [P_ADDR] = W("REMOTE_ADDR"),
#undef W
};

/*
 * The first value of each wanted param, as FCGX_GetParam would give it (it returns the
 * first "NAME=" entry), with one pass instead of one per name.
 */
static void
params(FCGX_Request *f, const char **v)
{
	char **env;
	size_t k;

	for (k = 0; k < P_N; k++)
		v[k] = NULL;
	if (f == NULL || f->envp == NULL)
		return;
	for (env = f->envp; *env != NULL; env++) {
		const char *e = *env;

		for (k = 0; k < P_N; k++) {
			if (v[k] == NULL && e[0] == wanted[k].name[0] &&
			    strncmp(e, wanted[k].name, wanted[k].len) == 0) {
				v[k] = e + wanted[k].len;
				break;
			}
		}
	}
}

void
http_req_init(struct http_req *r, FCGX_Request *fcgi)
{
	const char *v[P_N];

	memset(r, 0, sizeof(*r));
	r->fcgi = fcgi;
	params(fcgi, v);
	r->method = v[P_METHOD] != NULL ? v[P_METHOD] : "";
	r->path = v[P_URI] != NULL ? v[P_URI] : v[P_SCRIPT] != NULL ? v[P_SCRIPT] : "";
	r->query = v[P_QUERY] != NULL ? v[P_QUERY] : "";
	r->content_type = v[P_CTYPE];
	r->content_length = v[P_CLEN];
	r->authorization = v[P_AUTH];
	r->idempotency_key = v[P_IDEM];
	r->remote_addr = v[P_ADDR];
	set_request_id(r, v[P_RID]);
}

void
http_req_free(struct http_req *r)
{
	free(r->body);
	r->body = NULL;
}

int
http_read_body(struct http_req *r, size_t max)
{
	const char *cl = r->content_length;
	size_t want = 0, got = 0;
	int n;

	if (cl == NULL || *cl == '\0')
		return 411;
	for (; *cl != '\0'; cl++) {
		if (*cl < '0' || *cl > '9')
			return 400;
		if (want > (max + 1) / 10 + 1)
			return 413;
		want = want * 10 + (size_t)(*cl - '0');
	}
	if (want > max)
		return 413;
	r->body = malloc(want + 1);
	if (r->body == NULL)
		abort();
	while (got < want) {
		n = FCGX_GetStr(r->body + got, (int)(want - got), r->fcgi->in);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	r->body[got] = '\0';
	r->body_len = got;
	return got == want ? 0 : 400;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

void
http_respond(struct http_req *r, int status, const char *extra_headers, const char *body,
             size_t len)
{
	http_respond_type(r, status, "application/json", extra_headers, body, len);
}

/* Appends s (n bytes) to head at *at; aborts past HEAD_MAX (our own headers: a bug). */
#define HEAD_MAX 1024
static void
head_put(char *head, size_t *at, const char *s, size_t n)
{
	if (n >= HEAD_MAX - *at)
		abort();
	memcpy(head + *at, s, n);
	*at += n;
}

static void
head_cstr(char *head, size_t *at, const char *s)
{
	head_put(head, at, s, strlen(s));
}

/* v in decimal (a minus sign first when negative). */
static void
head_num(char *head, size_t *at, long long v)
{
	char d[BUF_DEC_LEN];
	const char *s = buf_dec(d, v);

	head_put(head, at, s, (size_t)(d + BUF_DEC_LEN - s));
}

#define HEAD_LIT(h, at, lit) head_put((h), (at), (lit), sizeof(lit) - 1)

void
http_respond_type(struct http_req *r, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len)
{
	char head[HEAD_MAX];
	size_t n = 0;

	/* Status, Content-Type, Content-Length, X-Request-Id, the extra lines, a blank line. */
	HEAD_LIT(head, &n, "Status: ");
	head_num(head, &n, status);
	HEAD_LIT(head, &n, " ");
	head_cstr(head, &n, http_reason(status));
	HEAD_LIT(head, &n, "\r\nContent-Type: ");
	head_cstr(head, &n, content_type);
	HEAD_LIT(head, &n, "\r\nContent-Length: ");
	head_num(head, &n, (long long)len);
	HEAD_LIT(head, &n, "\r\nX-Request-Id: ");
	head_cstr(head, &n, r->request_id);
	HEAD_LIT(head, &n, "\r\n");
	if (extra_headers != NULL)
		head_cstr(head, &n, extra_headers);
	HEAD_LIT(head, &n, "\r\n");
	FCGX_PutStr(head, (int)n, r->fcgi->out);
	FCGX_PutStr(body, (int)len, r->fcgi->out);
}

void
http_error(struct http_req *r, int status, int code, const char *message,
           const char *extra_headers)
{
	struct buf b;

	/* No cap: the message is ours (at most quoting a bounded piece of the request). */
	buf_init(&b, (size_t)-1 / 2);
	JOUT_LIT(&b, "{\"errors\":[{\"status\":false,\"code\":");
	jout_i64(&b, code);
	JOUT_LIT(&b, ",\"message\":");
	jout_cstr(&b, message);
	JOUT_LIT(&b, "}],\"warnings\":[]}");
	http_respond(r, status, extra_headers, b.p, b.len);
	buf_free(&b);
}

int
http_is_json(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL)
		return 0;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, "application/json", n) != 0)
		return 0;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

int
http_check_encoding(const struct http_req *r, char *name, size_t namesz)
{
	static const char key[] = "HTTP_CONTENT_ENCODING=";
	char **env;

	if (r->fcgi == NULL || r->fcgi->envp == NULL)
		return 0;
	for (env = r->fcgi->envp; *env != NULL; env++) {
		const char *p;

		if (strncmp(*env, key, sizeof(key) - 1) != 0)
			continue;
		for (p = *env + sizeof(key) - 1; *p != '\0';) {
			size_t n, i;

			while (*p == ' ' || *p == '\t' || *p == ',')
				p++;
			n = strcspn(p, ",");
			/* the coding without trailing blanks */
			i = n;
			while (i > 0 && (p[i - 1] == ' ' || p[i - 1] == '\t'))
				i--;
			if (i > 0 && !(i == 8 && strncasecmp(p, "identity", 8) == 0)) {
				size_t k;

				for (k = 0; k < i && k + 1 < namesz; k++)
					name[k] = p[k] > 0x20 && p[k] < 0x7f ? p[k] : '?';
				if (namesz > 0)
					name[k] = '\0';
				return -1;
			}
			p += n;
		}
	}
	return 0;
}

int
http_query_param(const char *q, const char *name, char *out, size_t outsz)
{
	size_t nlen = strlen(name);
	int found = -1;

	while (q != NULL && *q != '\0') {
		const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);

		if ((size_t)(end - q) > nlen && strncmp(q, name, nlen) == 0 && q[nlen] == '=') {
			const char *p = q + nlen + 1;

			if (found >= 0)
				return HTTP_QP_MALFORMED;
			found = hex_pct_decode(p, (size_t)(end - p), 1, out, outsz);
			if (found == HEX_NUL)
				return HTTP_QP_NUL;
			if (found == HEX_TOO_LONG)
				return HTTP_QP_TOO_LONG;
			if (found < 0)
				return HTTP_QP_MALFORMED;
		} else if ((size_t)(end - q) == nlen && strncmp(q, name, nlen) == 0) {
			if (found >= 0)
				return HTTP_QP_MALFORMED;
			out[0] = '\0';
			found = 0;
		}
		q = amp ? amp + 1 : end;
	}
	return found;
}
