/*
 * testfault: deliberately broken builds, for the tests only (issue 15). Compiled into
 * tests/faults/partnerd-faulty (check_PROGRAMS, -DPARTNERD_TEST_FAULTS), never into the
 * installed partnerd: without PARTNERD_TEST_FAULTS this header declares nothing and the
 * call sites compile to nothing.
 *
 * The fault is named by the environment variable PARTNERD_TEST_FAULT, read once at start
 * (testfault_init):
 *   ack-before-commit  one commit in 4 is not sent: its customers answer as if it applied
 *                      (200 with the decided items), nothing is written, the lock stays
 *   lost-ack           one applied commit in 4 answers its items 2001 ("nothing of it was
 *                      applied") although it was written
 *   stale-read         the read routes answer from a copy kept in the process for a second
 *                      (per org, route and query string)
 * The linearizability check must report each of them as a violation on a short run
 * (tests/integration/test_faults.py).
 */
#ifndef PARTNERD_TESTFAULT_H
#define PARTNERD_TESTFAULT_H

#ifdef PARTNERD_TEST_FAULTS

#include <stddef.h>

struct http_req;
struct routes_outcome;

/* Reads PARTNERD_TEST_FAULT; exits with a message when it names no fault. */
void testfault_init(void);

/* ack-before-commit: 1 when this commit is not to be sent (its customers then answer as if
 * it applied), else 0. */
int testfault_skip_commit(void);

/* lost-ack: 1 when a customer whose commit applied is to answer "not applied". */
int testfault_lose_ack(void);

/* stale-read: answers r from the copy kept for (org, kind, query) when it is younger than a
 * second (out->status 200) and returns 1; else 0. */
int testfault_stale_answer(struct http_req *r, const char *org, int kind, struct routes_outcome *out);

/* stale-read: keeps the 200 answer body[0..len) of (org, kind, r's query). */
void testfault_stale_keep(const struct http_req *r, const char *org, int kind, const char *body, size_t len);

#endif
#endif
