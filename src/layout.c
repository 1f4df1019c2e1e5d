/*
 * layout: the partition math of the spread key layout (see layout.h, docs/CLUSTER.md).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cluster.h"
#include "layout.h"

#define MAX_SUFFIX 65536        /* tag suffixes tried per partition */

/*
 * SipHash-2-4's key. Fixed, and part of layout 2: a per-deployment key would make a value's
 * bucket unguessable (no one could aim many identifiers at one partition), but it would have
 * to be stored with the data and read before any key is named; one org's clients are its
 * authenticated partners, and the worst they could do by aiming is load one master more.
 */
static const unsigned char hash_key[crypto_shorthash_siphash24_KEYBYTES] = "partnerd-layout2";

int
layout_find_tag(unsigned p, unsigned np, char out[LAYOUT_TAG_MAX])
{
	unsigned w, win, lo, k;

	if (np == 0 || np > 1024 || (np & (np - 1)) != 0 || p >= np)
		return -1;
	w = CLUSTER_SLOTS / np;
	win = w / 4;                            /* the middle quarter of the range */
	lo = p * w + (w - win) / 2;
	for (k = 0; k < MAX_SUFFIX; k++) {
		int n = snprintf(out, LAYOUT_TAG_MAX, "p%u.%u", p, k);
		unsigned slot = cluster_crc16(out, (size_t)n) & (CLUSTER_SLOTS - 1);

		if (slot >= lo && slot < lo + win)
			return n;
	}
	out[0] = '\0';
	return -1;
}

static char tags[LAYOUT_PARTS][LAYOUT_TAG_MAX];
static size_t tag_len[LAYOUT_PARTS];
static char tags_text[LAYOUT_PARTS * LAYOUT_TAG_WIDTH + 1];
static pthread_once_t tags_once = PTHREAD_ONCE_INIT;

static void
tags_build(void)
{
	unsigned p;

	for (p = 0; p < LAYOUT_PARTS; p++) {
		int n = layout_find_tag(p, LAYOUT_PARTS, tags[p]);

		if (n < 0 || n > LAYOUT_TAG_WIDTH)
			abort();        /* cannot happen for 256 partitions: test_layout.c */
		tag_len[p] = (size_t)n;
		memset(tags_text + p * LAYOUT_TAG_WIDTH, ' ', LAYOUT_TAG_WIDTH);
		memcpy(tags_text + p * LAYOUT_TAG_WIDTH, tags[p], (size_t)n);
	}
	tags_text[LAYOUT_PARTS * LAYOUT_TAG_WIDTH] = '\0';
}

const char *
layout_tags_text(void)
{
	pthread_once(&tags_once, tags_build);
	return tags_text;
}

const char *
layout_tag(unsigned p, size_t *len)
{
	if (p >= LAYOUT_PARTS)
		abort();
	pthread_once(&tags_once, tags_build);
	if (len != NULL)
		*len = tag_len[p];
	return tags[p];
}

uint64_t
layout_hash(const void *buf, size_t len)
{
	unsigned char h[crypto_shorthash_siphash24_BYTES];
	uint64_t v = 0;
	int i;

	crypto_shorthash_siphash24(h, buf, len, hash_key);
	for (i = 7; i >= 0; i--)        /* little-endian, as SipHash's reference prints it */
		v = v << 8 | h[i];
	return v;
}

unsigned
layout_bucket_of(const void *value, size_t len)
{
	return (unsigned)(layout_hash(value, len) % LAYOUT_PARTS);
}

unsigned
layout_part_of_cid_text(const char *s, size_t len)
{
	unsigned h = 0;
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] >= '0' && s[i] <= '9')
			h = (h * 10 + (unsigned)(s[i] - '0')) % LAYOUT_CID_MOD;
	return h % LAYOUT_PARTS;
}

unsigned
layout_part_of_cid(int64_t cid)
{
	/* the decimal digits of cid, as layout_part_of_cid_text reads its text (the sign aside) */
	char d[24];
	size_t i = sizeof(d);
	uint64_t u = cid < 0 ? 0 - (uint64_t)cid : (uint64_t)cid;

	do {
		d[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	return layout_part_of_cid_text(d + i, sizeof(d) - i);
}

const char *
layout_tag_of_cid(int64_t cid)
{
	return layout_tag(layout_part_of_cid(cid), NULL);
}

const char *
layout_tag_of(const void *v, size_t len)
{
	return layout_tag(layout_bucket_of(v, len), NULL);
}
