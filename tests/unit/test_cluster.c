/*
 * Unit tests for the pure parts of src/cluster.c: CRC16 and key slots (the Redis Cluster
 * spec's vector and hash-tag cases), seed lists, the CLUSTER SLOTS parser (fed a reply
 * built by hiredis's protocol reader from RESP text, no server) and the error replies.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cluster.h"
#include "test.h"

#define KS(s) cluster_key_slot((s), strlen(s))

/* One reply parsed by hiredis's reader from RESP text (freed with freeReplyObject). */
static redisReply *resp(const char *text)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	if (redisReaderFeed(rd, text, strlen(text)) != REDIS_OK ||
	    redisReaderGetReply(rd, &r) != REDIS_OK)
		r = NULL;
	redisReaderFree(rd);
	return r;
}

/* 1 when spec fails to parse with a message that contains want. */
static int seeds_refused(const char *spec, const char *want)
{
	struct cluster_seeds s;
	char err[300] = "";

	if (cluster_parse_seeds(spec, &s, err, sizeof err) != -1) {
		printf("  \"%s\" was accepted\n", spec);
		return 0;
	}
	if (strstr(err, want) == NULL) {
		printf("  \"%s\": message \"%s\" lacks \"%s\"\n", spec, err, want);
		return 0;
	}
	return 1;
}

/* The bitwise CRC16-XMODEM, a bit per step: the reference cluster_crc16's table must equal. */
static uint16_t crc16_bitwise(const char *buf, size_t len)
{
	uint16_t crc = 0;
	size_t i;
	int b;

	for (i = 0; i < len; i++) {
		crc ^= (uint16_t)((unsigned char)buf[i] << 8);
		for (b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

static int classify(const char *e, struct cluster_redirect *rd)
{
	return (int)cluster_classify(e, strlen(e), rd);
}

int main(void)
{
	TEST("CRC16 of \"123456789\" is 0x31C3 (the Redis Cluster spec's test vector)") {
		CHECK_EQ_INT(cluster_crc16("123456789", 9), 0x31C3);
		CHECK_EQ_INT(cluster_crc16("", 0), 0);
	}

	TEST("CRC16 by table equals the bitwise CRC16 on every byte and 200000 keys of 0..64 bytes") {
		char key[64];
		unsigned seed = 12345, bad = 0;
		size_t i, k, len;

		for (i = 0; i < 256; i++) {
			key[0] = (char)i;
			bad += cluster_crc16(key, 1) != crc16_bitwise(key, 1);
		}
		for (k = 0; k < 200000; k++) {
			len = (k * 7) % (sizeof key + 1);
			for (i = 0; i < len; i++) {
				seed = seed * 1103515245u + 12345u;     /* any bytes, NUL and 0xff too */
				key[i] = (char)(seed >> 16);
			}
			if (cluster_crc16(key, len) != crc16_bitwise(key, len) && bad++ < 3)
				printf("  key %zu (%zu bytes): table %04x, bitwise %04x\n", k, len,
				       cluster_crc16(key, len), crc16_bitwise(key, len));
		}
		CHECK_EQ_INT(bad, 0);
	}

	TEST("a key without a hash tag hashes whole: slots agree with CLUSTER KEYSLOT") {
		/* values from redis-server 7.0's CLUSTER KEYSLOT */
		CHECK_EQ_INT(KS("foo"), 12182);
		CHECK_EQ_INT(KS("bar"), 5061);
		CHECK_EQ_INT(KS("123456789"), 0x31C3 % 16384);
		CHECK_EQ_INT(KS(""), 0);
	}

	TEST("hash tags as the spec says: first '{', the next '}', an empty tag hashes the whole key") {
		/* {user1000}.following and {user1000}.followers: both hash "user1000" */
		CHECK_EQ_INT(KS("{user1000}.following"), KS("user1000"));
		CHECK_EQ_INT(KS("{user1000}.followers"), KS("user1000"));
		/* foo{}{bar}: the first tag is empty, so the whole key is hashed */
		CHECK_EQ_INT(KS("foo{}{bar}"), cluster_crc16("foo{}{bar}", 10) % 16384);
		CHECK(KS("foo{}{bar}") != KS("bar"));
		/* foo{{bar}}zap: the tag is "{bar" (from the first '{' to the next '}') */
		CHECK_EQ_INT(KS("foo{{bar}}zap"), KS("{bar"));
		/* foo{bar}{zap}: only the first tag counts */
		CHECK_EQ_INT(KS("foo{bar}{zap}"), KS("bar"));
		/* an unclosed '{' hashes the whole key; a tag may hold NUL bytes */
		CHECK_EQ_INT(KS("foo{bar"), cluster_crc16("foo{bar", 7) % 16384);
		CHECK_EQ_INT(cluster_key_slot("a{\0b}c", 6), cluster_crc16("\0b", 2) % 16384);
	}

	TEST("seeds: HOST:PORT lists, IPv6 in [], and redis-cluster:// URLs with a password") {
		struct cluster_seeds s;
		char err[300];

		CHECK_EQ_INT(cluster_parse_seeds("127.0.0.1:7000", &s, err, sizeof err), 0);
		CHECK_EQ_INT(s.n, 1);
		CHECK_EQ_STR(s.addr[0].host, "127.0.0.1");
		CHECK_EQ_INT(s.addr[0].port, 7000);
		CHECK_EQ_INT(cluster_parse_seeds("a:1,[::1]:7001,b.example:65535", &s, err, sizeof err), 0);
		CHECK_EQ_INT(s.n, 3);
		CHECK_EQ_STR(s.addr[1].host, "::1");
		CHECK_EQ_INT(s.addr[1].port, 7001);
		CHECK_EQ_INT(s.addr[2].port, 65535);
		CHECK_EQ_STR(s.password, "");
		CHECK_EQ_INT(cluster_parse_seeds("redis-cluster://app:p%40ss%2C1@h1:7000,h2:7001/", &s,
		                                 err, sizeof err), 0);
		CHECK_EQ_INT(s.n, 2);
		CHECK_EQ_STR(s.user, "app");
		CHECK_EQ_STR(s.password, "p@ss,1");
		CHECK_EQ_STR(s.addr[1].host, "h2");
		CHECK_EQ_INT(cluster_parse_seeds("redis-cluster://:secret@h1:7000", &s, err, sizeof err), 0);
		CHECK_EQ_STR(s.user, "");
		CHECK_EQ_STR(s.password, "secret");
	}

	TEST("seeds: every fault is refused with a message that names it") {
		CHECK(seeds_refused("", "none given"));
		CHECK(seeds_refused(NULL, "none given"));
		CHECK(seeds_refused("127.0.0.1", "has no port"));
		CHECK(seeds_refused("h1:7000,h2", "\"h2\" has no port"));
		CHECK(seeds_refused("h1:", "has no port"));
		CHECK(seeds_refused("[::1]", "has no port"));
		CHECK(seeds_refused("h1:7000,,h2:7001", "empty seed"));
		CHECK(seeds_refused("h1:7000,", "empty seed"));
		CHECK(seeds_refused("h1:0", "bad port"));
		CHECK(seeds_refused("h1:70000", "bad port"));
		CHECK(seeds_refused("h1:70x", "bad port"));
		CHECK(seeds_refused(":7000", "missing host"));
		CHECK(seeds_refused("redis://h1:7000", "the only URL scheme for a cluster is redis-cluster://"));
		CHECK(seeds_refused("redis-cluster://h1:7000/2", "no database but 0"));
		CHECK(seeds_refused("redis-cluster://secret@h1:7000", "[user]:password"));
		CHECK(seeds_refused("redis-cluster://:bad%zz@h1:7000", "bad user or password encoding"));
		CHECK(seeds_refused("h1:7000,u:p@h2:7001", "a user and password go once, first"));
		CHECK(seeds_refused("1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9,10:10,11:11,12:12,13:13,14:14,"
		                    "15:15,16:16,17:17", "more than 16 seeds"));
	}

	TEST("CLUSTER SLOTS: ranges and primaries parsed, replicas skipped, empty host = the asked node") {
		struct cluster_addr asked = { .host = "10.0.0.9", .port = 7005 };
		struct cluster_range *rs = NULL;
		size_t n = 0;
		char err[300];
		redisReply *r = resp(
			"*3\r\n"
			/* 0-5460 on 127.0.0.1:7000 (id a...), one replica */
			"*4\r\n:0\r\n:5460\r\n"
			"*4\r\n$9\r\n127.0.0.1\r\n:7000\r\n$40\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n*0\r\n"
			"*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$40\r\ndddddddddddddddddddddddddddddddddddddddd\r\n"
			/* 5461-10922 on an empty host: the node that answered */
			"*3\r\n:5461\r\n:10922\r\n*2\r\n$0\r\n\r\n:7001\r\n"
			/* 10923-16383 on ::1:7002 */
			"*3\r\n:10923\r\n:16383\r\n*3\r\n$3\r\n::1\r\n:7002\r\n$1\r\nc\r\n");

		CHECK(r != NULL);
		CHECK_EQ_INT(cluster_parse_slots(r, &asked, &rs, &n, err, sizeof err), 0);
		CHECK_EQ_INT(n, 3);
		if (n == 3) {
			CHECK_EQ_INT(rs[0].lo, 0);
			CHECK_EQ_INT(rs[0].hi, 5460);
			CHECK_EQ_STR(rs[0].primary.host, "127.0.0.1");
			CHECK_EQ_INT(rs[0].primary.port, 7000);
			CHECK_EQ_STR(rs[0].id, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
			CHECK_EQ_STR(rs[1].primary.host, "10.0.0.9");
			CHECK_EQ_INT(rs[1].primary.port, 7001);
			CHECK_EQ_STR(rs[1].id, "");
			CHECK_EQ_INT(rs[2].lo, 10923);
			CHECK_EQ_INT(rs[2].hi, 16383);
			CHECK_EQ_STR(rs[2].primary.host, "::1");
		}
		free(rs);
		freeReplyObject(r);
	}

	TEST("CLUSTER SLOTS: a null host (Redis 7, unknown-endpoint) is the node that answered") {
		struct cluster_addr asked = { .host = "10.0.0.9", .port = 7005 };
		struct cluster_range *rs = NULL;
		size_t n = 0;
		char err[300];
		redisReply *r = resp("*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$-1\r\n:7001\r\n");

		CHECK(r != NULL);
		CHECK_EQ_INT(cluster_parse_slots(r, &asked, &rs, &n, err, sizeof err), 0);
		CHECK_EQ_INT(n, 1);
		if (n == 1) {
			CHECK_EQ_STR(rs[0].primary.host, "10.0.0.9");
			CHECK_EQ_INT(rs[0].primary.port, 7001);
		}
		free(rs);
		freeReplyObject(r);
	}

	TEST("CLUSTER SLOTS: malformed replies and errors are refused with a message") {
		static const char *const bad[] = {
			"-ERR This instance has cluster support disabled\r\n",
			"*0\r\n",
			"$3\r\nfoo\r\n",
			"*1\r\n*2\r\n:0\r\n:10\r\n",                                  /* no node */
			"*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",           /* hi < lo */
			"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",        /* past 16383 */
			"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n",            /* port 0 */
			"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n$4\r\n7000\r\n",    /* port a string */
		};
		size_t i;

		for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			redisReply *r = resp(bad[i]);
			struct cluster_range *rs = (void *)1;
			size_t n = 9;
			char err[300] = "";

			CHECK(r != NULL);
			CHECK_EQ_INT(cluster_parse_slots(r, NULL, &rs, &n, err, sizeof err), -1);
			CHECK(rs == NULL && n == 0);
			CHECK(strncmp(err, "CLUSTER SLOTS", 13) == 0);
			freeReplyObject(r);
		}
		{
			/* an empty host needs the node that answered */
			redisReply *r = resp("*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$0\r\n\r\n:1\r\n");
			struct cluster_range *rs;
			size_t n;
			char err[300];

			CHECK_EQ_INT(cluster_parse_slots(r, NULL, &rs, &n, err, sizeof err), -1);
			freeReplyObject(r);
		}
	}

	TEST("MOVED and ASK parse slot, host and port; IPv6 hosts keep their colons") {
		struct cluster_redirect rd;

		CHECK_EQ_INT(classify("MOVED 3999 127.0.0.1:6381", &rd), CLUSTER_MOVED);
		CHECK_EQ_INT(rd.slot, 3999);
		CHECK_EQ_STR(rd.to.host, "127.0.0.1");
		CHECK_EQ_INT(rd.to.port, 6381);
		CHECK_EQ_INT(classify("ASK 16383 ::1:7002", &rd), CLUSTER_ASK);
		CHECK_EQ_INT(rd.slot, 16383);
		CHECK_EQ_STR(rd.to.host, "::1");
		CHECK_EQ_INT(rd.to.port, 7002);
		CHECK_EQ_INT(classify("MOVED 0 :7000", &rd), CLUSTER_MOVED);  /* no host: the sender's */
		CHECK_EQ_STR(rd.to.host, "");
		CHECK_EQ_INT(rd.to.port, 7000);
	}

	TEST("malformed MOVED/ASK are the command's own errors; TRYAGAIN, CLUSTERDOWN, NOSCRIPT known") {
		struct cluster_redirect rd;

		CHECK_EQ_INT(classify("MOVED", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("MOVED 16384 h:1", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("MOVED 12 h", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("MOVED 12 h:", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("MOVED 12 h:65536", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("MOVED x h:1", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("ASK 1 h:1x", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("ASKING", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("TRYAGAIN Multiple keys request during rehashing of slot", &rd),
		             CLUSTER_TRYAGAIN);
		CHECK_EQ_INT(classify("CLUSTERDOWN The cluster is down", &rd), CLUSTER_CLUSTERDOWN);
		CHECK_EQ_INT(classify("CLUSTERDOWN Hash slot not served", &rd), CLUSTER_CLUSTERDOWN);
		CHECK_EQ_INT(classify("NOSCRIPT No matching script. Please use EVAL.", &rd),
		             CLUSTER_NOSCRIPT);
		CHECK_EQ_INT(classify("ERR unknown command", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("CROSSSLOT Keys in request don't hash to the same slot", &rd),
		             CLUSTER_REPLY);
		CHECK_EQ_INT(classify("TRYAGAINX", &rd), CLUSTER_REPLY);
	}

	TEST("LOADING, MASTERDOWN and READONLY (Redis's exact texts) are known; lookalikes are not") {
		struct cluster_redirect rd;

		CHECK_EQ_INT(classify("LOADING Redis is loading the dataset in memory", &rd),
		             CLUSTER_LOADING);
		CHECK_EQ_INT(classify("MASTERDOWN Link with MASTER is down and replica-serve-stale-data "
		                      "is set to 'no'.", &rd), CLUSTER_MASTERDOWN);
		CHECK_EQ_INT(classify("READONLY You can't write against a read only replica.", &rd),
		             CLUSTER_READONLY);
		/* a script's write refused on a replica (Redis 7 keeps the error code) */
		CHECK_EQ_INT(classify("READONLY You can't write against a read only replica. script: "
		                      "e0e1f9fabfc9d4800c877a703b823ac0578ff8db, on @user_script:1.", &rd),
		             CLUSTER_READONLY);
		CHECK_EQ_INT(classify("READONLY", &rd), CLUSTER_READONLY);
		CHECK_EQ_INT(classify("LOADINGX", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("ERR READONLY", &rd), CLUSTER_REPLY);
		CHECK_EQ_INT(classify("loading", &rd), CLUSTER_REPLY);
	}

	TEST("CLUSTER SHARDS: each shard's slot pairs to its master; endpoint, else ip, else the asked node") {
		struct cluster_addr asked = { .host = "10.0.0.9", .port = 7005 };
		struct cluster_range *rs = NULL;
		size_t n = 0;
		char err[300];
		/* as redis-server 7.0 sends it (RESP2: maps are flat arrays), fields in its order */
		redisReply *r = resp(
			"*4\r\n"
			/* shard 1: slots 0-99 and 200-5460; its replica listed first, a tls-port */
			"*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:200\r\n:5460\r\n"
			"$5\r\nnodes\r\n*2\r\n"
			"*16\r\n$2\r\nid\r\n$40\r\ndddddddddddddddddddddddddddddddddddddddd\r\n"
			"$4\r\nport\r\n:7003\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
			"$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n"
			"$18\r\nreplication-offset\r\n:100\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
			"$8\r\nhostname\r\n$2\r\nr1\r\n"
			"*18\r\n$2\r\nid\r\n$40\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
			"$4\r\nport\r\n:7000\r\n$8\r\ntls-port\r\n:8000\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n"
			"$8\r\nendpoint\r\n$11\r\nm1.internal\r\n$4\r\nrole\r\n$6\r\nmaster\r\n"
			"$18\r\nreplication-offset\r\n:100\r\n$6\r\nhealth\r\n$6\r\nonline\r\n"
			"$8\r\nhostname\r\n$2\r\nm1\r\n"
			/* shard 2: 5461-10922; endpoint "?" (unknown): its ip */
			"*4\r\n$5\r\nslots\r\n*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n*1\r\n"
			"*8\r\n$4\r\nport\r\n:7001\r\n$2\r\nip\r\n$3\r\n::1\r\n$8\r\nendpoint\r\n$1\r\n?\r\n"
			"$4\r\nrole\r\n$6\r\nmaster\r\n"
			/* shard 3: 10923-16383; endpoint and ip empty: the node that answered */
			"*4\r\n$5\r\nnodes\r\n*1\r\n"
			"*8\r\n$2\r\nip\r\n$0\r\n\r\n$8\r\nendpoint\r\n$0\r\n\r\n$4\r\nport\r\n:7002\r\n"
			"$4\r\nrole\r\n$6\r\nmaster\r\n"
			"$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n"
			/* shard 4: a master without slots: skipped */
			"*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*1\r\n"
			"*6\r\n$4\r\nport\r\n:7009\r\n$2\r\nip\r\n$1\r\nx\r\n$4\r\nrole\r\n$6\r\nmaster\r\n");

		CHECK(r != NULL);
		CHECK_EQ_INT(cluster_parse_shards(r, &asked, &rs, &n, err, sizeof err), 0);
		CHECK_EQ_INT(n, 4);
		if (n == 4) {
			CHECK_EQ_INT(rs[0].lo, 0);
			CHECK_EQ_INT(rs[0].hi, 99);
			CHECK_EQ_INT(rs[1].lo, 200);
			CHECK_EQ_INT(rs[1].hi, 5460);
			CHECK_EQ_STR(rs[0].primary.host, "m1.internal");
			CHECK_EQ_INT(rs[0].primary.port, 7000);
			CHECK_EQ_STR(rs[1].primary.host, "m1.internal");
			CHECK_EQ_STR(rs[0].id, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
			CHECK_EQ_INT(rs[2].lo, 5461);
			CHECK_EQ_INT(rs[2].hi, 10922);
			CHECK_EQ_STR(rs[2].primary.host, "::1");
			CHECK_EQ_INT(rs[2].primary.port, 7001);
			CHECK_EQ_STR(rs[2].id, "");
			CHECK_EQ_INT(rs[3].lo, 10923);
			CHECK_EQ_INT(rs[3].hi, 16383);
			CHECK_EQ_STR(rs[3].primary.host, "10.0.0.9");
			CHECK_EQ_INT(rs[3].primary.port, 7002);
		}
		free(rs);
		freeReplyObject(r);
	}

	TEST("CLUSTER SHARDS: malformed replies, errors and no master anywhere are refused") {
		static const char *const bad[] = {
			"-ERR unknown subcommand 'shards'. Try CLUSTER HELP.\r\n",
			"*0\r\n",                                                          /* no shard */
			"$3\r\nfoo\r\n",
			"*1\r\n*3\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n",                 /* odd map */
			"*1\r\n*2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n",                    /* no nodes */
			"*1\r\n*4\r\n$5\r\nslots\r\n*1\r\n:0\r\n$5\r\nnodes\r\n*0\r\n",     /* odd slots */
			/* hi < lo; past 16383; no port; port 0 */
			"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:9\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
			"*4\r\n$4\r\nport\r\n:1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n",
			"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16384\r\n$5\r\nnodes\r\n*1\r\n"
			"*4\r\n$4\r\nport\r\n:1\r\n$4\r\nrole\r\n$6\r\nmaster\r\n",
			"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
			"*2\r\n$4\r\nrole\r\n$6\r\nmaster\r\n",
			"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
			"*4\r\n$4\r\nport\r\n:0\r\n$4\r\nrole\r\n$6\r\nmaster\r\n",
			/* slots served by a shard whose only node is a replica: nothing assigned */
			"*1\r\n*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:1\r\n$5\r\nnodes\r\n*1\r\n"
			"*4\r\n$4\r\nport\r\n:1\r\n$4\r\nrole\r\n$7\r\nreplica\r\n",
		};
		size_t i;

		for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			redisReply *r = resp(bad[i]);
			struct cluster_range *rs = (void *)1;
			size_t n = 9;
			char err[300] = "";

			CHECK(r != NULL);
			if (r == NULL)
				continue;
			if (cluster_parse_shards(r, NULL, &rs, &n, err, sizeof err) != -1)
				printf("  case %zu was accepted\n", i);
			CHECK(rs == NULL && n == 0);
			CHECK(strncmp(err, "CLUSTER SHARDS", 14) == 0);
			freeReplyObject(r);
		}
	}

	TEST_MAIN_END();
}
