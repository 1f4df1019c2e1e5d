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

static const char *
param(FCGX_Request *f, const char *name)
{
	return FCGX_GetParam(name, f->envp);
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
		unsigned char rnd[16];

		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(r->request_id, sizeof(r->request_id), rnd, sizeof(rnd));
		return;
	}
	r->request_id[n] = '\0';
}

void
http_req_init(struct http_req *r, FCGX_Request *fcgi)
{
	memset(r, 0, sizeof(*r));
	r->fcgi = fcgi;
	r->method = param(fcgi, "REQUEST_METHOD");
	if (r->method == NULL)
		r->method = "";
	r->path = param(fcgi, "DOCUMENT_URI");
	if (r->path == NULL)
		r->path = param(fcgi, "SCRIPT_NAME");
	if (r->path == NULL)
		r->path = "";
	r->query = param(fcgi, "QUERY_STRING");
	if (r->query == NULL)
		r->query = "";
	r->content_type = param(fcgi, "CONTENT_TYPE");
	r->content_length = param(fcgi, "CONTENT_LENGTH");
	r->authorization = param(fcgi, "HTTP_AUTHORIZATION");
	r->idempotency_key = param(fcgi, "HTTP_IDEMPOTENCY_KEY");
	set_request_id(r, param(fcgi, "HTTP_X_REQUEST_ID"));
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

void
http_respond_type(struct http_req *r, int status, const char *content_type,
                  const char *extra_headers, const char *body, size_t len)
{
	char head[1024];
	int n;

	/* libfcgi's own FCGX_FPrintF knows no %zu: format here, write bytes. */
	n = snprintf(head, sizeof(head),
	             "Status: %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "X-Request-Id: %s\r\n%s\r\n",
	             status, http_reason(status), content_type, len, r->request_id,
	             extra_headers ? extra_headers : "");
	if (n < 0 || (size_t)n >= sizeof(head))
		abort();
	FCGX_PutStr(head, n, r->fcgi->out);
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
