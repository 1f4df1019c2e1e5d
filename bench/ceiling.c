/*
 * ceiling: the minimal FastCGI responders scripts/bench measures partnerd against.
 * Not part of partnerd, not installed. No JSON parsing, no rules, no auth.
 *
 *   ceiling --mode fcgi|rt1|floor|contract --socket PATH [--threads N] [--redis HOST:PORT]
 *           [--org ORG]
 *
 * Every mode reads the whole request body and answers a fixed small JSON.
 *   fcgi   nothing else: the FastCGI hop (ceiling 2).
 *   rt1    plus one pipelined Redis round trip on one customer: HGETALL + HSET of
 *          pp-ceiling copy `pc:{ORG:CID}:c` (ceiling 3).
 *   floor  the lock protocol alone (ceiling 4): for the customers named in the query
 *          string (`c=ID` or `c=ID,ID,...`, up to 50), ONE pipelined round trip of
 *          `SET pc:{ORG:CID}:lock TOKEN NX PX 5000` + `HGETALL pc:{ORG:CID}:c` per
 *          customer, then ONE EVALSHA covering all of them that, per customer, checks
 *          the token and the version read, writes one membership field, bumps `v` and
 *          releases the lock. One customer in the query: the single form; 50: the batch.
 *          Customers found locked are retried (both round trips again, for them only)
 *          after a random 1-16 ms back-off, for up to 1 s: as partnerd does.
 *   contract the floor plus the Redis work partnerd's contract requires (the "contract
 *          floor", 4c): still no JSON parsing and no rules, but the customers are found
 *          through the mobile index and every write leaves its history and change-feed
 *          event, as partnerd's begin.lua and commit.lua do. Its own keys (`pk:` copies of
 *          partnerd's `pp:` data, made by bench/bench.py). Round trip 1: ONE EVALSHA
 *          (begin) that reads the program definition once (`HGET pk:{ORG}:progs
 *          UpdProg`), then per customer resolves its mobile (917 + the id on 9 digits)
 *          with `HGET pk:{ORG}:ix:mobile`, reads `HGETALL pk:{ORG:CID}:c` and takes
 *          `SET pk:{ORG:CID}:lock TOKEN NX PX 5000`, returning the snapshot. Round trip 2:
 *          ONE EVALSHA (commit) that per customer checks the token and the version, writes
 *          the membership field and the new `v` (one HSET), LPUSHes an UPDATE event (the
 *          JSON partnerd writes for a RENEWAL, ~580 bytes) on `pk:{ORG:CID}:h`, LTRIMs it
 *          to 100 entries when longer, XADDs the event to `pk:{ORG}:feed` (MAXLEN ~ 100000,
 *          fields v, type, customerId, event) and releases the lock. Same retries as the
 *          floor. What (4c) costs over (4) is what the contract costs in Redis; what
 *          partnerd costs over (4c) is partnerd's own.
 *
 * Threads: N threads accept on the one socket (FCGX_Accept_r), each with its own
 * hiredis connection. SIGTERM/SIGINT: the main thread (sigwait) exits the process.
 * Build: cc -O2 -g bench/ceiling.c -o ceiling -lfcgi -lhiredis -lpthread
 */
#include <errno.h>
#include <fcgiapp.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXC 50

enum mode { M_FCGI, M_RT1, M_FLOOR, M_CONTRACT };

/* contract: partnerd's defaults of --history-max and --feed-max; the longest event. */
#define HISTORY_MAX 100
#define FEED_MAX 100000
#define EVENT_MAX 768
#define STR_(x) #x
#define STR(x) STR_(x)

static enum mode mode;
static int listen_fd;
static const char *redis_host = "127.0.0.1";
static int redis_port = 6379;
static const char *org = "bench";

/* The fenced commit of the floor: per customer ck, lk, version_read, field, value. */
static const char commit_lua[] =
	"local token = ARGV[1]\n"
	"local n = tonumber(ARGV[2])\n"
	"local out = {}\n"
	"for c = 1, n do\n"
	"  local b = 3 + (c - 1) * 5\n"
	"  local ck, lk, ver = ARGV[b], ARGV[b + 1], ARGV[b + 2]\n"
	"  if redis.call('GET', lk) ~= token then\n"
	"    out[c] = 'FENCED'\n"
	"  elseif (redis.call('HGET', ck, 'v') or '') ~= ver then\n"
	"    redis.call('DEL', lk)\n"
	"    out[c] = 'FENCED'\n"
	"  else\n"
	"    redis.call('HSET', ck, ARGV[b + 3], ARGV[b + 4])\n"
	"    redis.call('HINCRBY', ck, 'v', 1)\n"
	"    redis.call('DEL', lk)\n"
	"    out[c] = 'OK'\n"
	"  end\n"
	"end\n"
	"return out\n";
static char commit_sha[41];

/*
 * The contract's begin: ARGV org, token, ttl_ms, program, n, then n mobiles. Returns
 * {program definition or false, {per customer: {"OK", cid, {hgetall}} | {"BUSY", cid} |
 * {"NOTFOUND"}}}. As in partnerd's begin.lua, the reads come before the lock.
 */
static const char cbegin_lua[] =
	"local org, token, ttl = ARGV[1], ARGV[2], ARGV[3]\n"
	"local n = tonumber(ARGV[5])\n"
	"local pre = 'pk:{' .. org .. '}:'\n"
	"local def = redis.call('HGET', pre .. 'progs', ARGV[4])\n"
	"local ix = pre .. 'ix:mobile'\n"
	"local out = {}\n"
	"for e = 1, n do\n"
	"  local cid = redis.call('HGET', ix, ARGV[5 + e])\n"
	"  if not cid then\n"
	"    out[e] = {'NOTFOUND'}\n"
	"  else\n"
	"    local tag = 'pk:{' .. org .. ':' .. cid .. '}:'\n"
	"    local snap = redis.call('HGETALL', tag .. 'c')\n"
	"    if redis.call('SET', tag .. 'lock', token, 'NX', 'PX', ttl) then\n"
	"      out[e] = {'OK', cid, snap}\n"
	"    else\n"
	"      out[e] = {'BUSY', cid}\n"
	"    end\n"
	"  end\n"
	"end\n"
	"return {def, out}\n";
static char cbegin_sha[41];

/*
 * The contract's commit: ARGV token, n, history_max, feed_key, feed_max, then per
 * customer ck, lk, version_read, cid, history_key, field, value, type, event.
 */
static const char ccommit_lua[] =
	"local token, n = ARGV[1], tonumber(ARGV[2])\n"
	"local hmax, feed, fmax = tonumber(ARGV[3]), ARGV[4], ARGV[5]\n"
	"local out = {}\n"
	"for c = 1, n do\n"
	"  local b = 6 + (c - 1) * 9\n"
	"  local ck, lk, ver = ARGV[b], ARGV[b + 1], ARGV[b + 2]\n"
	"  if redis.call('GET', lk) ~= token then\n"
	"    out[c] = 'FENCED'\n"
	"  elseif (redis.call('HGET', ck, 'v') or '') ~= ver then\n"
	"    redis.call('DEL', lk)\n"
	"    out[c] = 'FENCED'\n"
	"  else\n"
	"    local hk, ev = ARGV[b + 4], ARGV[b + 8]\n"
	"    redis.call('HSET', ck, 'v', (tonumber(ver) or 0) + 1, ARGV[b + 5], ARGV[b + 6])\n"
	"    if redis.call('LPUSH', hk, ev) > hmax then redis.call('LTRIM', hk, 0, hmax - 1) end\n"
	"    redis.call('XADD', feed, 'MAXLEN', '~', fmax, '*', 'v', '1', 'type', ARGV[b + 7],\n"
	"               'customerId', ARGV[b + 3], 'event', ev)\n"
	"    redis.call('DEL', lk)\n"
	"    out[c] = 'OK'\n"
	"  end\n"
	"end\n"
	"return out\n";
static char ccommit_sha[41];

static const char answer[] =
	"Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{\"ok\":true}\n";
static const char answer_err[] =
	"Status: 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"ok\":false}\n";

struct worker {
	redisContext *rc;
	uint64_t rng;
	char *body;
	size_t bodycap;
	char rid[33];           /* contract: the request id its events carry */
};

static uint64_t
xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static int
load_script(struct worker *w, const char *text, char *sha)
{
	redisReply *r = redisCommand(w->rc, "SCRIPT LOAD %s", text);

	if (r == NULL || r->type != REDIS_REPLY_STRING) {
		fprintf(stderr, "ceiling: SCRIPT LOAD failed\n");
		if (r)
			freeReplyObject(r);
		return -1;
	}
	snprintf(sha, 41, "%s", r->str);
	freeReplyObject(r);
	return 0;
}

static int
connect_redis(struct worker *w)
{
	struct timeval tv = { 2, 0 };

	if (w->rc != NULL)
		redisFree(w->rc);
	w->rc = redisConnectWithTimeout(redis_host, redis_port, tv);
	if (w->rc == NULL || w->rc->err) {
		fprintf(stderr, "ceiling: redis: %s\n", w->rc ? w->rc->errstr : "oom");
		if (w->rc)
			redisFree(w->rc);
		w->rc = NULL;
		return -1;
	}
	redisSetTimeout(w->rc, tv);
	if (mode == M_FLOOR)
		return load_script(w, commit_lua, commit_sha);
	if (mode == M_CONTRACT)
		return load_script(w, cbegin_lua, cbegin_sha) | load_script(w, ccommit_lua, ccommit_sha);
	return 0;
}

/* Reads the whole body (CONTENT_LENGTH bytes, or to EOF). */
static void
read_body(struct worker *w, FCGX_Request *fr)
{
	size_t len = 0;
	int n;

	for (;;) {
		if (w->bodycap - len < 4096) {
			w->bodycap = w->bodycap ? w->bodycap * 2 : 65536;
			w->body = realloc(w->body, w->bodycap);
			if (w->body == NULL)
				abort();
		}
		n = FCGX_GetStr(w->body + len, (int)(w->bodycap - len), fr->in);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
}

/* Customer ids from the query string: c=1,2,3 */
static int
parse_ids(const char *qs, long *ids)
{
	int n = 0;
	const char *p;

	if (qs == NULL || (p = strstr(qs, "c=")) == NULL)
		return 0;
	p += 2;
	while (*p && n < MAXC) {
		char *end;
		long v = strtol(p, &end, 10);

		if (end == p)
			break;
		ids[n++] = v;
		p = end;
		if (*p != ',')
			break;
		p++;
	}
	return n;
}

static void
membership_value(struct worker *w, char *out, size_t outsz)
{
	/*
	 * The shape partnerd stores (docs/DATA-MODEL.md, compact value): membership id, tier,
	 * a new expiry, start = linked = 1700000000000, no end, updated 1700000000000; times
	 * in base 36. Same size as partnerd's value, so the hash keeps its encoding alike.
	 */
	long long exp = 1893456000000LL + (long long)(xorshift(&w->rng) % 157680000) * 1000;
	char e[16], *p = e + sizeof(e);

	*--p = '\0';
	do {
		*--p = "0123456789abcdefghijklmnopqrstuvwxyz"[exp % 36];
		exp /= 36;
	} while (exp > 0);
	/* 1700000000000 in base 36 is "loyw3v28" */
	snprintf(out, outsz, "7:U-bench,6:Silver,%s,,,loyw3v28,loyw3v28", p);
}

static int
do_rt1(struct worker *w, long cid)
{
	char key[128], val[256];
	void *r;
	int ok = 0;

	snprintf(key, sizeof(key), "pc:{%s:%ld}:c", org, cid);
	membership_value(w, val, sizeof(val));
	redisAppendCommand(w->rc, "HGETALL %s", key);
	redisAppendCommand(w->rc, "HSET %s m:1 %s", key, val);
	for (int i = 0; i < 2; i++) {
		if (redisGetReply(w->rc, &r) != REDIS_OK)
			return -1;
		freeReplyObject(r);
	}
	return ok;
}

/* One round of the protocol over ids[0..n-1]; the busy ones are left in busy[0..*nbusy-1]. */
static int
floor_round(struct worker *w, const long *ids, int n, long *busy, int *nbusy)
{
	char keys[MAXC][2][96], vers[MAXC][24], vals[MAXC][256], token[33];
	const char *argv[3 + 2 + MAXC * 5];
	size_t lens[3 + 2 + MAXC * 5];
	char nbuf[16];
	int locked[MAXC], nl = 0, argc = 0;
	redisReply *r;

	snprintf(token, sizeof(token), "%016llx%016llx", (unsigned long long)xorshift(&w->rng),
		 (unsigned long long)xorshift(&w->rng));
	/* Round trip 1: lock + snapshot of every customer, pipelined. */
	for (int i = 0; i < n; i++) {
		snprintf(keys[i][0], sizeof(keys[i][0]), "pc:{%s:%ld}:c", org, ids[i]);
		snprintf(keys[i][1], sizeof(keys[i][1]), "pc:{%s:%ld}:lock", org, ids[i]);
		redisAppendCommand(w->rc, "SET %s %s NX PX 5000", keys[i][1], token);
		redisAppendCommand(w->rc, "HGETALL %s", keys[i][0]);
	}
	for (int i = 0; i < n; i++) {
		redisReply *set, *all;

		if (redisGetReply(w->rc, (void **)&set) != REDIS_OK)
			return -1;
		if (redisGetReply(w->rc, (void **)&all) != REDIS_OK) {
			freeReplyObject(set);
			return -1;
		}
		locked[i] = set->type == REDIS_REPLY_STATUS;
		strcpy(vers[i], "");
		if (all->type == REDIS_REPLY_ARRAY)
			for (size_t k = 0; k + 1 < all->elements; k += 2)
				if (strcmp(all->element[k]->str, "v") == 0) {
					snprintf(vers[i], sizeof(vers[i]), "%s", all->element[k + 1]->str);
					break;
				}
		freeReplyObject(set);
		freeReplyObject(all);
	}
	/* Round trip 2: one fenced commit for every locked customer. */
	argv[argc++] = "EVALSHA";
	argv[argc++] = commit_sha;
	argv[argc++] = "0";
	argv[argc++] = token;
	argc++;         /* n, filled below */
	for (int i = 0; i < n; i++) {
		if (!locked[i]) {
			busy[(*nbusy)++] = ids[i];      /* retried after a short back-off */
			continue;
		}
		membership_value(w, vals[i], sizeof(vals[i]));
		argv[argc++] = keys[i][0];
		argv[argc++] = keys[i][1];
		argv[argc++] = vers[i];
		argv[argc++] = "m:1";
		argv[argc++] = vals[i];
		nl++;
	}
	if (nl == 0)
		return 0;
	snprintf(nbuf, sizeof(nbuf), "%d", nl);
	argv[4] = nbuf;
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	r = redisCommandArgv(w->rc, argc, argv, lens);
	if (r == NULL)
		return -1;
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(r);
		return -1;      /* reconnect reloads the script */
	}
	freeReplyObject(r);
	return 0;
}

/*
 * The UPDATE event partnerd writes for a RENEWAL of UpdProg (src/respond.c respond_event:
 * the same keys, values of the same sizes); the customer, the new expiry and the request
 * id vary. ~580 bytes.
 */
static void
event_json(struct worker *w, char *out, size_t outsz, const char *cid)
{
	unsigned y = 2030 + (unsigned)(xorshift(&w->rng) % 6);
	unsigned m = 1 + (unsigned)(xorshift(&w->rng) % 12), d = 1 + (unsigned)(xorshift(&w->rng) % 28);

	snprintf(out, outsz,
		 "{\"activityType\":\"UPDATE\",\"activityDate\":\"2026-11-23T09:42:25.331Z\","
		 "\"partnerProgramName\":\"UpdProg\",\"updateType\":\"RENEWAL\","
		 "\"before\":{\"partnerMembershipId\":\"UpdProg-%s\",\"partnerTierName\":\"Silver\","
		 "\"partnerTierExpiryDate\":\"2030-12-31T18:29:59.000Z\","
		 "\"membershipStartDate\":\"2026-11-23T09:42:25.329Z\",\"membershipEndDate\":null},"
		 "\"after\":{\"partnerMembershipId\":\"UpdProg-%s\",\"partnerTierName\":\"Silver\","
		 "\"partnerTierExpiryDate\":\"%04u-%02u-%02uT18:30:00.000Z\","
		 "\"membershipStartDate\":\"2026-11-23T09:42:25.329Z\",\"membershipEndDate\":null},"
		 "\"requestId\":\"%s\",\"customerId\":%s}", cid, cid, y, m, d, w->rid, cid);
}

/* A script's error reply: logged (the ceiling's log), the request answers 503. */
static int
script_failed(redisReply *r, const char *what)
{
	if (r->type != REDIS_REPLY_ERROR)
		return 0;
	fprintf(stderr, "ceiling: %s: %s\n", what, r->str);
	freeReplyObject(r);
	return 1;
}

/*
 * One round of the contract floor over ids[0..n-1] (two EVALSHAs); the busy ones are
 * left in busy[0..*nbusy-1]. A customer the index does not know fails the request.
 */
static int
contract_round(struct worker *w, const long *ids, int n, long *busy, int *nbusy)
{
	char mobiles[MAXC][16], keys[MAXC][3][96], cids[MAXC][24], vers[MAXC][24];
	char vals[MAXC][256], evs[MAXC][EVENT_MAX], token[33], nbuf[16], feed[96];
	const char *argv[8 + MAXC * 9];
	size_t lens[8 + MAXC * 9];
	int argc = 0, nl = 0, missing = 0;
	redisReply *r, *out;

	snprintf(token, sizeof(token), "%016llx%016llx", (unsigned long long)xorshift(&w->rng),
		 (unsigned long long)xorshift(&w->rng));
	snprintf(nbuf, sizeof(nbuf), "%d", n);
	/* Round trip 1: resolve, read and lock every customer in one script call. */
	argv[argc++] = "EVALSHA";
	argv[argc++] = cbegin_sha;
	argv[argc++] = "0";
	argv[argc++] = org;
	argv[argc++] = token;
	argv[argc++] = "5000";
	argv[argc++] = "UpdProg";
	argv[argc++] = nbuf;
	for (int i = 0; i < n; i++) {
		snprintf(mobiles[i], sizeof(mobiles[i]), "917%09ld", ids[i]);
		argv[argc++] = mobiles[i];
	}
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	r = redisCommandArgv(w->rc, argc, argv, lens);
	if (r == NULL || script_failed(r, "begin"))
		return -1;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    (out = r->element[1])->type != REDIS_REPLY_ARRAY || out->elements != (size_t)n) {
		fprintf(stderr, "ceiling: begin: unexpected reply\n");
		freeReplyObject(r);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		redisReply *e = out->element[i], *all;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) {
			missing = 1;
			continue;
		}
		if (strcmp(e->element[0]->str, "OK") != 0) {
			busy[(*nbusy)++] = ids[i];      /* retried after a short back-off */
			continue;
		}
		if (e->elements != 3 || e->element[1]->type != REDIS_REPLY_STRING) {
			missing = 1;
			continue;
		}
		snprintf(cids[nl], sizeof(cids[nl]), "%s", e->element[1]->str);
		strcpy(vers[nl], "");
		all = e->element[2];
		for (size_t k = 0; k + 1 < all->elements; k += 2)
			if (strcmp(all->element[k]->str, "v") == 0) {
				snprintf(vers[nl], sizeof(vers[nl]), "%s", all->element[k + 1]->str);
				break;
			}
		nl++;
	}
	freeReplyObject(r);
	if (nl == 0)
		return missing ? -1 : 0;
	/* Round trip 2: one fenced commit with history and change feed for every locked one. */
	argc = 0;
	snprintf(nbuf, sizeof(nbuf), "%d", nl);
	snprintf(feed, sizeof(feed), "pk:{%s}:feed", org);
	argv[argc++] = "EVALSHA";
	argv[argc++] = ccommit_sha;
	argv[argc++] = "0";
	argv[argc++] = token;
	argv[argc++] = nbuf;
	argv[argc++] = STR(HISTORY_MAX);
	argv[argc++] = feed;
	argv[argc++] = STR(FEED_MAX);
	for (int i = 0; i < nl; i++) {
		snprintf(keys[i][0], sizeof(keys[i][0]), "pk:{%s:%s}:c", org, cids[i]);
		snprintf(keys[i][1], sizeof(keys[i][1]), "pk:{%s:%s}:lock", org, cids[i]);
		snprintf(keys[i][2], sizeof(keys[i][2]), "pk:{%s:%s}:h", org, cids[i]);
		membership_value(w, vals[i], sizeof(vals[i]));
		event_json(w, evs[i], sizeof(evs[i]), cids[i]);
		argv[argc++] = keys[i][0];
		argv[argc++] = keys[i][1];
		argv[argc++] = vers[i];
		argv[argc++] = cids[i];
		argv[argc++] = keys[i][2];
		argv[argc++] = "m:1";
		argv[argc++] = vals[i];
		argv[argc++] = "UPDATE";
		argv[argc++] = evs[i];
	}
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	r = redisCommandArgv(w->rc, argc, argv, lens);
	if (r == NULL || script_failed(r, "commit"))
		return -1;
	freeReplyObject(r);
	return missing ? -1 : 0;
}

/*
 * The floor (and the contract floor): the protocol round over every customer, then the
 * busy ones again after a random 1-16 ms back-off until 1 s has passed (what partnerd
 * does, docs/CONSISTENCY.md).
 */
static int
do_floor(struct worker *w, const long *ids, int n,
	 int (*round)(struct worker *, const long *, int, long *, int *))
{
	long cur[MAXC], busy[MAXC];
	struct timespec t0, t1;
	int nbusy;

	memcpy(cur, ids, (size_t)n * sizeof(*ids));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		nbusy = 0;
		if (round(w, cur, n, busy, &nbusy) != 0)
			return -1;
		if (nbusy == 0)
			return 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > 1000)
			return 0;
		{
			struct timespec ts = { 0, (long)(1 + xorshift(&w->rng) % 16) * 1000000L };

			nanosleep(&ts, NULL);
		}
		memcpy(cur, busy, (size_t)nbusy * sizeof(*busy));
		n = nbusy;
	}
}

static void *
worker_main(void *arg)
{
	struct worker w = { 0 };
	FCGX_Request fr;
	long ids[MAXC];

	(void)arg;
	w.rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)&w ^ 0x9e3779b97f4a7c15ULL;
	if (mode != M_FCGI)
		connect_redis(&w);
	FCGX_InitRequest(&fr, listen_fd, 0);
	while (FCGX_Accept_r(&fr) >= 0) {
		int rc = 0;

		read_body(&w, &fr);
		if (mode != M_FCGI) {
			int n = parse_ids(FCGX_GetParam("QUERY_STRING", fr.envp), ids);

			if (w.rc == NULL && connect_redis(&w) != 0)
				rc = -1;
			else if (n > 0 && mode == M_RT1)
				rc = do_rt1(&w, ids[0]);
			else if (n > 0 && mode == M_FLOOR)
				rc = do_floor(&w, ids, n, floor_round);
			else if (n > 0) {
				snprintf(w.rid, sizeof(w.rid), "%016llx%016llx",
					 (unsigned long long)xorshift(&w.rng),
					 (unsigned long long)xorshift(&w.rng));
				rc = do_floor(&w, ids, n, contract_round);
			}
			if (rc != 0)
				connect_redis(&w);
		}
		FCGX_PutStr(rc == 0 ? answer : answer_err,
			    (int)(rc == 0 ? sizeof(answer) : sizeof(answer_err)) - 1, fr.out);
		FCGX_Finish_r(&fr);
	}
	return NULL;
}

int
main(int argc, char **argv)
{
	const char *sock = NULL, *m = "fcgi";
	int threads = 64, sig;
	sigset_t set;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL) {
			fprintf(stderr, "ceiling: %s needs a value\n", a);
			return 2;
		}
		if (strcmp(a, "--mode") == 0)
			m = v;
		else if (strcmp(a, "--socket") == 0)
			sock = v;
		else if (strcmp(a, "--threads") == 0)
			threads = atoi(v);
		else if (strcmp(a, "--org") == 0)
			org = v;
		else if (strcmp(a, "--redis") == 0) {
			static char host[256];
			const char *colon = strrchr(v, ':');

			snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - v) : (int)strlen(v), v);
			redis_host = host;
			if (colon)
				redis_port = atoi(colon + 1);
		} else {
			fprintf(stderr, "usage: ceiling --mode fcgi|rt1|floor|contract --socket PATH "
				"[--threads N] [--redis HOST:PORT] [--org ORG]\n");
			return 2;
		}
		i++;
	}
	if (strcmp(m, "fcgi") == 0)
		mode = M_FCGI;
	else if (strcmp(m, "rt1") == 0)
		mode = M_RT1;
	else if (strcmp(m, "floor") == 0)
		mode = M_FLOOR;
	else if (strcmp(m, "contract") == 0)
		mode = M_CONTRACT;
	else {
		fprintf(stderr, "ceiling: unknown mode %s\n", m);
		return 2;
	}
	if (sock == NULL || threads < 1) {
		fprintf(stderr, "ceiling: --socket is required\n");
		return 2;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (FCGX_Init() != 0)
		return 1;
	listen_fd = FCGX_OpenSocket(sock, 1024);
	if (listen_fd < 0) {
		fprintf(stderr, "ceiling: cannot open %s: %s\n", sock, strerror(errno));
		return 1;
	}
	chmod(sock, 0666);
	for (int i = 0; i < threads; i++) {
		pthread_t t;

		if (pthread_create(&t, NULL, worker_main, NULL) != 0)
			return 1;
		pthread_detach(t);
	}
	fprintf(stderr, "ceiling: mode %s, %d threads on %s\n", m, threads, sock);
	do {
		if (sigwait(&set, &sig) != 0)
			sig = SIGTERM;
	} while (sig == SIGPIPE);
	unlink(sock);
	_exit(0);
}
