/*
 * Unit tests for src/layout.c, the partition math of the spread key layout: every tag's
 * slot lies in its partition's range, the partitions split evenly over the masters of a
 * default cluster, values spread evenly over the partitions, and known vectors pin the
 * tags and the hash (a stored layout depends on them: if one of these vectors changes,
 * the layout changed, and data written by the old one would be looked for in the wrong
 * partition).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cluster.h"
#include "layout.h"
#include "test.h"

/*
 * The first slot of each master when redis-cli --cluster create splits the slots over n
 * masters (clusterManagerCommandCreate: last = lround(cursor + 16384/n - 1)).
 */
static void default_split(int n, int first[])
{
	float per = (float)CLUSTER_SLOTS / (float)n, cursor = 0.0f;
	long lo = 0;
	int i;

	for (i = 0; i < n; i++) {
		long last = (long)((double)(cursor + per - 1) + 0.5);    /* lround, for x > 0 */

		if (last > CLUSTER_SLOTS || i == n - 1)
			last = CLUSTER_SLOTS - 1;
		first[i] = (int)lo;
		lo = last + 1;
		cursor += per;
	}
	first[n] = CLUSTER_SLOTS;
}

/* max/min of the partitions each of n masters owns under the default split (printed). */
static double share_ratio(int n, int print)
{
	int first[65], count[64] = { 0 }, i, mx = 0, mn = 1 << 30;
	unsigned p;

	default_split(n, first);
	for (p = 0; p < LAYOUT_PARTS; p++) {
		const char *t = layout_tag(p, NULL);
		int slot = (int)cluster_key_slot(t, strlen(t));

		for (i = 0; i < n; i++)
			if (slot >= first[i] && slot < first[i + 1])
				count[i]++;
	}
	if (print)
		printf("  %d masters (default split), partitions per master:", n);
	for (i = 0; i < n; i++) {
		if (print)
			printf(" %d", count[i]);
		mx = count[i] > mx ? count[i] : mx;
		mn = count[i] < mn ? count[i] : mn;
	}
	if (print)
		printf("  max/min %.3f\n", mn ? (double)mx / mn : 1e9);
	return mn ? (double)mx / mn : 1e9;
}

int main(void)
{
	TEST("every one of the 256 tags hashes into the middle 16 of its partition's 64 slots") {
		unsigned p, bad = 0;
		size_t len;

		for (p = 0; p < LAYOUT_PARTS; p++) {
			const char *t = layout_tag(p, &len);
			unsigned slot = cluster_key_slot(t, len);

			if (slot < p * 64 + 24 || slot >= p * 64 + 40 || len != strlen(t) ||
			    strchr(t, '{') != NULL || strchr(t, '}') != NULL) {
				if (bad++ < 3)
					printf("  partition %u: tag \"%s\" has slot %u\n", p, t, slot);
			}
			/* as a hash tag in a key, the tag alone routes it */
			{
				char key[64];
				int n = snprintf(key, sizeof key, "pp:{%s}:c:acme:42", t);

				bad += cluster_key_slot(key, (size_t)n) != slot;
			}
			if (p > 0)
				bad += strcmp(t, layout_tag(p - 1, NULL)) == 0;
		}
		CHECK_EQ_INT(bad, 0);
	}

	TEST("the tag search finds a tag in the middle quarter for every partition of 256 and 1024") {
		char t[LAYOUT_TAG_MAX];
		unsigned p, bad = 0, np;

		for (np = 256; np <= 1024; np *= 4)
			for (p = 0; p < np; p++) {
				int n = layout_find_tag(p, np, t);
				unsigned w = CLUSTER_SLOTS / np, slot = n > 0 ? cluster_crc16(t, (size_t)n) % 16384 : 0;

				bad += n < 0 || slot < p * w + 3 * w / 8 || slot >= p * w + 5 * w / 8;
			}
		CHECK_EQ_INT(bad, 0);
		CHECK_EQ_INT(layout_find_tag(256, 256, t), -1);
		CHECK_EQ_INT(layout_find_tag(0, 0, t), -1);
		CHECK_EQ_INT(layout_find_tag(0, 100, t), -1);       /* not a power of two */
		CHECK_EQ_INT(layout_find_tag(0, 2048, t), -1);
	}

	TEST("3 masters of a default cluster own 85-86 partitions each; 2..32 masters differ by 1 at most") {
		int first[33], n;

		CHECK(share_ratio(3, 1) <= 1.2);
		for (n = 2; n <= 32; n++) {
			/* the tags in the middle of their ranges: each master owns its share of 256
			 * rounded down or up (a boundary cuts no middle quarter here) */
			double r = share_ratio(n, n == 10 || n == 30), lo = 256 / n;

			CHECK(r <= (lo + (256 % n != 0)) / lo + 1e-9);
			CHECK(r <= 1.2);
		}
		default_split(3, first);
		CHECK_EQ_INT(first[1], 5461);
		CHECK_EQ_INT(first[2], 10923);
	}

	TEST("customers and values spread evenly over the partitions (sequential ids, emails)") {
		static unsigned cnt[LAYOUT_PARTS];
		unsigned p, mx, mn;
		int64_t cid;
		char v[64];
		int i, n;

		/* 4 x 65521 sequential customer ids, and as many in steps of 256 and of 1000 (an
		 * import's pattern that CID mod 256 would put in one partition): as 65521 is
		 * prime, every 65521 consecutive multiples of a step cover each residue once, so
		 * each partition gets 4 x 256 (p < 241) or 4 x 255 ids. (A shorter run of ids in
		 * steps of 256 is less even: the first 255 all fall in partition 0.) */
		static const int64_t step[3] = { 1, 256, 1000 };

		for (i = 0; i < 3; i++) {
			memset(cnt, 0, sizeof cnt);
			for (cid = 1; cid <= 4 * 65521; cid++)
				cnt[layout_part_of_cid(cid * step[i])]++;
			for (mx = 0, mn = ~0u, p = 0; p < LAYOUT_PARTS; p++) {
				mx = cnt[p] > mx ? cnt[p] : mx;
				mn = cnt[p] < mn ? cnt[p] : mn;
			}
			printf("  customer ids in steps of %d: per partition min %u max %u\n",
			       (int)step[i], mn, mx);
			CHECK(mn == 1020 && mx == 1024);
		}
		memset(cnt, 0, sizeof cnt);
		for (i = 0; i < 256000; i++) {
			n = snprintf(v, sizeof v, "user%d@example.com", i);
			cnt[layout_bucket_of(v, (size_t)n)]++;
		}
		for (mx = 0, mn = ~0u, p = 0; p < LAYOUT_PARTS; p++) {
			mx = cnt[p] > mx ? cnt[p] : mx;
			mn = cnt[p] < mn ? cnt[p] : mn;
		}
		printf("  emails: per partition min %u max %u\n", mn, mx);
		CHECK(mn >= 850 && mx <= 1150);
	}

	TEST("known vectors: the tags, SipHash-2-4 and the partitions of ids and values do not drift") {
		uint64_t fp = 0;
		unsigned p;

		/* SipHash-2-4's own test vector (key 00..0f, empty message): the primitive */
		{
			unsigned char k[16], h[8];
			int i;

			for (i = 0; i < 16; i++)
				k[i] = (unsigned char)i;
			crypto_shorthash_siphash24(h, (const unsigned char *)"", 0, k);
			CHECK(memcmp(h, "\x31\x0e\x0e\xdd\x47\xdb\x6f\x72", 8) == 0);
		}
		/* every tag, through a fingerprint of the whole table, and a few by name */
		for (p = 0; p < LAYOUT_PARTS; p++) {
			size_t len;
			const char *t = layout_tag(p, &len);

			fp = fp * 1000003u ^ layout_hash(t, len);
		}
		printf("  tags fingerprint 0x%016" PRIx64 "; p0 %s, p1 %s, p255 %s\n", fp,
		       layout_tag(0, NULL), layout_tag(1, NULL), layout_tag(255, NULL));
		CHECK_EQ_STR(layout_tag(0, NULL), "p0.239");
		CHECK_EQ_STR(layout_tag(1, NULL), "p1.1118");
		CHECK_EQ_STR(layout_tag(255, NULL), "p255.353");
		CHECK(fp == UINT64_C(0xc6e7766cefdc6fe2));
		printf("  hash(\"\") 0x%016" PRIx64 ", hash(\"acme\") 0x%016" PRIx64 "\n",
		       layout_hash("", 0), layout_hash("acme", 4));
		CHECK(layout_hash("", 0) == UINT64_C(0xcf80bb4c18fdfbc2));
		CHECK(layout_hash("acme", 4) == UINT64_C(0xb847bec72dcde7d9));
		printf("  parts: cid 1 %u, cid 42 %u, cid 9223372036854775807 %u; "
		       "\"+31612345678\" %u, \"a@b.nl\" %u\n",
		       layout_part_of_cid(1), layout_part_of_cid(42), layout_part_of_cid(INT64_MAX), layout_bucket_of("+31612345678", 12),
		       layout_bucket_of("a@b.nl", 6));
		/* (CID mod 65521) mod 256, the same in Lua (tags.lua) and Python (keys.py) */
		CHECK_EQ_INT(layout_part_of_cid(1), 1);
		CHECK_EQ_INT(layout_part_of_cid(42), 42);
		CHECK_EQ_INT(layout_part_of_cid(382741349), 164);
		CHECK_EQ_INT(layout_part_of_cid(65520), 240);
		CHECK_EQ_INT(layout_part_of_cid(65521), 0);
		CHECK_EQ_INT(layout_part_of_cid(INT64_MAX), 216);
		CHECK_EQ_INT(layout_part_of_cid(-42), 42);
		CHECK_EQ_INT(layout_part_of_cid(INT64_MIN), 217);
		CHECK_EQ_INT(layout_bucket_of("+31612345678", 12), 45);
		CHECK_EQ_INT(layout_bucket_of("a@b.nl", 6), 131);
		/* a value with a NUL byte hashes all its bytes */
		CHECK(layout_hash("a\0b", 3) != layout_hash("a", 1));
	}

	TEST("part_of_cid is (CID mod 65521) mod 256 over the id's text; the tags text slices to the tags") {
		const char *tt = layout_tags_text();
		unsigned bad = 0, p;
		int64_t cid;

		for (cid = -70000; cid <= 200000; cid += 7)
			bad += layout_part_of_cid(cid) != (unsigned)((cid < 0 ? -cid : cid) % 65521 % 256);
		bad += layout_part_of_cid_text("-65563", 6) != 42;
		CHECK_EQ_INT(bad, 0);
		CHECK_EQ_INT((int)strlen(tt), LAYOUT_PARTS * LAYOUT_TAG_WIDTH);
		for (p = 0; p < LAYOUT_PARTS; p++) {
			size_t len;
			const char *t = layout_tag(p, &len);

			bad += memcmp(tt + p * LAYOUT_TAG_WIDTH, t, len) != 0 ||
			       strspn(tt + p * LAYOUT_TAG_WIDTH + len, " ") != LAYOUT_TAG_WIDTH - len;
		}
		CHECK_EQ_INT(bad, 0);
	}

	TEST_MAIN_END();
}
