/*
 * http: one FastCGI request as partnerd sees it (method, path, headers, capped body)
 * and the writing of its response.
 */
#ifndef PARTNERD_HTTP_H
#define PARTNERD_HTTP_H

#include <stddef.h>

#include <fcgiapp.h>

#define HTTP_REQUEST_ID_MAX 128

struct http_req {
	FCGX_Request *fcgi;
	const char *method;             /* borrowed from the FastCGI params: valid until finish */
	const char *path;               /* DOCUMENT_URI (no query string) */
	const char *query;              /* QUERY_STRING or "" */
	const char *content_type;       /* or NULL */
	const char *content_length;     /* or NULL */
	const char *authorization;      /* or NULL */
	const char *idempotency_key;    /* Idempotency-Key header, or NULL */
	const char *remote_addr;        /* REMOTE_ADDR (the client, as nginx saw it), or NULL */
	char request_id[HTTP_REQUEST_ID_MAX + 1];  /* from X-Request-Id (sanitised) or generated */
	char *body;                     /* owned, NUL-terminated after len bytes */
	size_t body_len;
};

/* Fills the header fields of r from the FastCGI params and sets the request id. */
void http_req_init(struct http_req *r, FCGX_Request *fcgi);
void http_req_free(struct http_req *r);

/*
 * Reads the body: CONTENT_LENGTH must be digits only and at most max bytes.
 * Returns 0, or the HTTP status to answer (411 no length, 413 too large, 400 short body).
 */
int http_read_body(struct http_req *r, size_t max);

/*
 * Writes a complete response. extra_headers: "Name: value\r\n" lines or NULL.
 * Content-Type is application/json.
 */
void http_respond(struct http_req *r, int status, const char *extra_headers,
                  const char *body, size_t len);

/* Like http_respond with another Content-Type. */
void http_respond_type(struct http_req *r, int status, const char *content_type,
                       const char *extra_headers, const char *body, size_t len);

/* Writes the error envelope {"errors":[{"status":false,"code":C,"message":M}],"warnings":[]}. */
void http_error(struct http_req *r, int status, int code, const char *message,
                const char *extra_headers);

/*
 * Checks the request's Content-Encoding (SPEC §4: only identity). Every HTTP_CONTENT_ENCODING
 * param is read (a repeated header may arrive as repeated params), and each coding of its
 * comma-separated list must be "identity" in any case; empty elements are ignored. Returns 0,
 * or -1 with the first other coding in name (printable ASCII, '?' for anything else, cut to
 * namesz - 1 bytes) for the 415 message.
 */
int http_check_encoding(const struct http_req *r, char *name, size_t namesz);

/* 1 when the content type is application/json (parameters such as charset allowed). */
int http_is_json(const char *content_type);

const char *http_reason(int status);

/*
 * nbytes (at most 512) random bytes as 2 * nbytes lowercase hex digits and a NUL in out
 * (request ids, write tokens): from a per-thread pool of the kernel's random bytes
 * (libsodium's randombytes_buf), refilled when it runs short; each byte is used once.
 */
void http_random_hex(char *out, size_t nbytes);

/*
 * Finds parameter name in a query string and URL-decodes its value (%XX, '+' as space)
 * into out. Returns the decoded length, or HTTP_QP_ABSENT (-1), HTTP_QP_MALFORMED (-2: a
 * bad escape or a repeated parameter), HTTP_QP_TOO_LONG (-3: longer than outsz - 1
 * decoded bytes), HTTP_QP_NUL (-4: the value holds a NUL byte, %00). Every value below -1
 * is a refusal.
 */
#define HTTP_QP_ABSENT    (-1)
#define HTTP_QP_MALFORMED (-2)
#define HTTP_QP_TOO_LONG  (-3)
#define HTTP_QP_NUL       (-4)
int http_query_param(const char *query, const char *name, char *out, size_t outsz);

#endif
