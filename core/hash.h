/*
 * hash.h - small non-cryptographic hashes shared by the core.
 *
 * fresh_mix64 is the splitmix64 finalizer, a bijection on 64-bit words with
 * good avalanche: used for id -> bucket, the holdout split and counter-based
 * random numbers. fresh_hasher is a streaming 64-bit hash with four
 * independent lanes (so that it runs near memory speed), used for index
 * fingerprints; it is not a checksum against an adversary.
 */
#ifndef FRESH_HASH_H
#define FRESH_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t fresh_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

/*
 * A uniform float in (0, 1), never exactly 0 or 1, from a 64-bit word.
 * (2^53 - 1) + 0.5 rounds to 2^53, so the top word would give 1 itself:
 * it gets the largest double below 1 instead.
 */
static inline double fresh_unit_open(uint64_t x)
{
	double u = ((double)(x >> 11) + 0.5) * (1.0 / 9007199254740992.0);

	return u < 1.0 ? u : 0x1.fffffffffffffp-1;
}

struct fresh_hasher {
	uint64_t lane[4];
	uint64_t total;
	unsigned char tail[32];
	size_t ntail;
};

void fresh_hasher_init(struct fresh_hasher *h, uint64_t seed);
void fresh_hasher_update(struct fresh_hasher *h, const void *data, size_t len);
uint64_t fresh_hasher_final(const struct fresh_hasher *h);

#endif
