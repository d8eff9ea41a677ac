/*
 * hash.c - the streaming fingerprint hash.
 *
 * Design: 32-byte stripes feed four lanes (multiply, rotate, multiply), so
 * the four dependency chains run in parallel; a partial stripe waits in
 * tail[] for the next update, which makes the result independent of how the
 * input was split into calls.
 */
#include "hash.h"

#include <string.h>

#define P1 UINT64_C(0x9e3779b185ebca87)
#define P2 UINT64_C(0xc2b2ae3d27d4eb4f)

static inline uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t round64(uint64_t acc, uint64_t w)
{
	acc += w * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t w;
	memcpy(&w, p, sizeof w);
	return w;
}

static void stripe(uint64_t lane[4], const unsigned char *p)
{
	lane[0] = round64(lane[0], load64(p));
	lane[1] = round64(lane[1], load64(p + 8));
	lane[2] = round64(lane[2], load64(p + 16));
	lane[3] = round64(lane[3], load64(p + 24));
}

void fresh_hasher_init(struct fresh_hasher *h, uint64_t seed)
{
	memset(h, 0, sizeof *h);
	h->lane[0] = seed + P1 + P2;
	h->lane[1] = seed + P2;
	h->lane[2] = seed;
	h->lane[3] = seed - P1;
}

void fresh_hasher_update(struct fresh_hasher *h, const void *data, size_t len)
{
	const unsigned char *p = data;

	h->total += len;
	if (h->ntail > 0) {
		size_t take = 32 - h->ntail;
		if (take > len)
			take = len;
		memcpy(h->tail + h->ntail, p, take);
		h->ntail += take;
		p += take;
		len -= take;
		if (h->ntail < 32)
			return;
		stripe(h->lane, h->tail);
		h->ntail = 0;
	}
	for (; len >= 32; p += 32, len -= 32)
		stripe(h->lane, p);
	memcpy(h->tail, p, len);
	h->ntail = len;
}

uint64_t fresh_hasher_final(const struct fresh_hasher *h)
{
	uint64_t acc = rotl(h->lane[0], 1) + rotl(h->lane[1], 7) +
		       rotl(h->lane[2], 12) + rotl(h->lane[3], 18);

	for (size_t i = 0; i < h->ntail; i++)
		acc = fresh_mix64(acc ^ h->tail[i]);
	return fresh_mix64(acc ^ h->total);
}
