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
 *   die-after-claim    on a Redis Cluster only: the process raises SIGKILL as soon as a
 *                      cluster commit's round A (the membership-id claims, claim.lua) has
 *                      been answered with at least one claim, before commit.lua is sent
 *                      (store_write.c commit_cluster). What it leaves: claims naming
 *                      customers that do not hold the ids, and those customers' locks until
 *                      their TTL (tests/integration/test_cluster_writes.py, issue 14). On one
 *                      Redis the claim is inside commit.lua (atomic: there is no moment
 *                      between claim and commit), so partnerd refuses to start with this
 *                      fault without --redis-cluster rather than run without it.
 * The linearizability check must report each of the first three as a violation on a short
 * run (tests/integration/test_faults.py).
 */
#ifndef PARTNERD_TESTFAULT_H
#define PARTNERD_TESTFAULT_H

#ifdef PARTNERD_TEST_FAULTS

#include <stddef.h>

struct http_req;

/* Reads PARTNERD_TEST_FAULT; exits with a message when it names no fault, or a fault that
 * needs a cluster (die-after-claim) and on_cluster is 0. */
void testfault_init(int on_cluster);

/* ack-before-commit: 1 when this commit is not to be sent (its customers then answer as if
 * it applied), else 0. */
int testfault_skip_commit(void);

/* die-after-claim: raises SIGKILL (does not return) when claimed (the number of claims
 * round A answered "OK") is above 0; else returns. */
void testfault_after_claims(size_t claimed);

/* lost-ack: 1 when a customer whose commit applied is to answer "not applied". */
int testfault_lose_ack(void);

/* stale-read: answers r (200) from the copy kept for (org, kind, query) when it is younger
 * than a second and returns 1; else 0. */
int testfault_stale_answer(struct http_req *r, const char *org, int kind);

/* stale-read: keeps the 200 answer body[0..len) of (org, kind, r's query). */
void testfault_stale_keep(const struct http_req *r, const char *org, int kind, const char *body, size_t len);

#endif
#endif
