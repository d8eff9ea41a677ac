/*
 * test_hash.c - fresh_mix64 (splitmix64's finalizer: its known outputs, an
 * explicit inverse, avalanche), fresh_unit_open's open interval, and the
 * streaming hasher: the digest does not depend on how the input is split
 * into updates, and a flipped bit, a longer input or another seed changes
 * it. Index fingerprints are stored in pair snapshots, so a pinned digest
 * guards against a silent change of the function.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "testutil.h"

/* x * inv == 1 mod 2^64 for odd x (Newton: each step doubles the bits). */
static uint64_t mul_inverse(uint64_t x)
{
	uint64_t inv = x; /* correct to 3 bits for odd x */

	for (int i = 0; i < 5; i++)
		inv *= 2 - x * inv;
	return inv;
}

/* Undoes x ^= x >> s. */
static uint64_t unshift(uint64_t y, int s)
{
	uint64_t x = y;

	for (int i = 0; i < 64 / s + 1; i++)
		x = y ^ (x >> s);
	return x;
}

static uint64_t unmix64(uint64_t x)
{
	x = unshift(x, 31);
	x *= mul_inverse(UINT64_C(0x94d049bb133111eb));
	x = unshift(x, 27);
	x *= mul_inverse(UINT64_C(0xbf58476d1ce4e5b9));
	return unshift(x, 30);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

START_TEST(mix64_known_values)
{
	/* splitmix64 seeded with 0: its first outputs are the finalizer of
	 * 1, 2, 3 times the golden gamma. */
	const uint64_t g = UINT64_C(0x9e3779b97f4a7c15);

	ck_assert_uint_eq(fresh_mix64(0), 0);
	ck_assert_uint_eq(fresh_mix64(g), UINT64_C(0xe220a8397b1dcdaf));
	ck_assert_uint_eq(fresh_mix64(2 * g), UINT64_C(0x6e789e6aa1b965f4));
	ck_assert_uint_eq(fresh_mix64(3 * g), UINT64_C(0x06c45d188009454f));
}
END_TEST

START_TEST(mix64_is_a_bijection)
{
	enum { N = 1 << 16 };
	uint64_t *out = malloc(N * sizeof *out);
	struct tu_rng r = {1};

	ck_assert_uint_eq(mul_inverse(3) * 3, 1);
	/* An explicit inverse proves injectivity on whatever we try... */
	for (int i = 0; i < 100000; i++) {
		uint64_t x = tu_next(&r);
		ck_assert_uint_eq(unmix64(fresh_mix64(x)), x);
	}
	for (uint64_t x = 0; x < 1000; x++)
		ck_assert_uint_eq(unmix64(fresh_mix64(x)), x);
	/* ... and consecutive inputs (ids) never collide. */
	for (uint64_t x = 0; x < N; x++)
		out[x] = fresh_mix64(x);
	qsort(out, N, sizeof *out, cmp_u64);
	for (size_t i = 1; i < N; i++)
		ck_assert_uint_ne(out[i], out[i - 1]);
	free(out);
}
END_TEST

START_TEST(mix64_avalanche)
{
	/* Flipping input bit i flips output bit j with probability 1/2 for
	 * every (i, j). With 4000 samples a frequency has standard deviation
	 * 0.008; 0.44..0.56 is more than 7 of them, so 4096 pairs pass by
	 * chance with a good mixer and a weak one (e.g. one round) fails. */
	enum { SAMPLES = 4000 };
	static unsigned flips[64][64];
	struct tu_rng r = {2};

	memset(flips, 0, sizeof flips);
	for (int s = 0; s < SAMPLES; s++) {
		uint64_t x = tu_next(&r), h = fresh_mix64(x);
		for (int i = 0; i < 64; i++) {
			uint64_t d = h ^ fresh_mix64(x ^ (UINT64_C(1) << i));
			for (int j = 0; j < 64; j++)
				flips[i][j] += (unsigned)((d >> j) & 1);
		}
	}
	for (int i = 0; i < 64; i++)
		for (int j = 0; j < 64; j++) {
			double p = (double)flips[i][j] / SAMPLES;
			ck_assert_msg(p > 0.44 && p < 0.56,
				      "input bit %d -> output bit %d: %.3f", i,
				      j, p);
		}
}
END_TEST

START_TEST(unit_open_interval)
{
	struct tu_rng r = {4};
	double sum = 0.0;

	/* The extremes: the smallest words and the largest (where a half
	 * step added near 1 can round up to 1 itself). */
	ck_assert_double_eq(fresh_unit_open(0), 0.5 / 9007199254740992.0);
	for (uint64_t i = 0; i < 4096; i++) {
		ck_assert_double_gt(fresh_unit_open(i), 0.0);
		ck_assert_double_lt(fresh_unit_open(UINT64_MAX - i), 1.0);
		ck_assert_double_lt(fresh_unit_open(UINT64_MAX - i * 2048),
				    1.0);
	}
	for (int i = 0; i < 100000; i++) {
		double u = fresh_unit_open(tu_next(&r));
		ck_assert(u > 0.0 && u < 1.0);
		sum += u;
	}
	/* Mean 1/2, standard error 0.0009. */
	ck_assert_double_eq_tol(sum / 100000, 0.5, 0.005);
}
END_TEST

static uint64_t digest(const void *p, size_t len, uint64_t seed)
{
	struct fresh_hasher h;

	fresh_hasher_init(&h, seed);
	fresh_hasher_update(&h, p, len);
	return fresh_hasher_final(&h);
}

/* The digest of p fed in random pieces (some empty). */
static uint64_t digest_split(const unsigned char *p, size_t len, uint64_t seed,
			     struct tu_rng *r)
{
	struct fresh_hasher h;
	size_t off = 0;

	fresh_hasher_init(&h, seed);
	while (off < len) {
		size_t step;
		switch (tu_next(r) % 4) {
		case 0:
			step = 0;
			break;
		case 1:
			step = tu_next(r) % 8;
			break;
		case 2:
			step = 28 + tu_next(r) % 10; /* around a stripe */
			break;
		default:
			step = tu_next(r) % 300;
		}
		if (step > len - off)
			step = len - off;
		fresh_hasher_update(&h, p + off, step);
		off += step;
	}
	return fresh_hasher_final(&h);
}

START_TEST(hasher_pinned_digests)
{
	unsigned char buf[100];

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)i;
	ck_assert_uint_eq(digest(buf, 0, 0), UINT64_C(0xf9f6ea50b085eb53));
	ck_assert_uint_eq(digest(buf, 1, 0), UINT64_C(0xab21f8e1e635bc9a));
	ck_assert_uint_eq(digest(buf, 32, 0), UINT64_C(0xe92e2dd1bd7e3479));
	ck_assert_uint_eq(digest(buf, 100, 7), UINT64_C(0x6b470e06de92edd8));
}
END_TEST

START_TEST(hasher_independent_of_splits)
{
	enum { MAX = 200000 };
	/* Around the 8-byte words and 32-byte stripes, and large. */
	static const size_t lens[] = {0,  1,  7,  8,  31,  32,	 33,   63, 64,
				      65, 95, 96, 97, 127, 1000, 4099, MAX};
	unsigned char *buf = malloc(MAX);
	struct tu_rng r = {8};

	for (size_t i = 0; i < MAX; i++)
		buf[i] = (unsigned char)tu_next(&r);
	for (size_t l = 0; l < sizeof lens / sizeof *lens; l++) {
		uint64_t whole = digest(buf, lens[l], 99);
		int trials = lens[l] > 10000 ? 5 : 50;
		for (int t = 0; t < trials; t++)
			ck_assert_uint_eq(digest_split(buf, lens[l], 99, &r),
					  whole);
	}
	/* Every split point of a short input, one byte at a time too. */
	for (size_t len = 0; len <= 70; len++) {
		uint64_t whole = digest(buf, len, 5);
		struct fresh_hasher h;
		for (size_t cut = 0; cut <= len; cut++) {
			fresh_hasher_init(&h, 5);
			fresh_hasher_update(&h, buf, cut);
			fresh_hasher_update(&h, buf + cut, len - cut);
			ck_assert_uint_eq(fresh_hasher_final(&h), whole);
		}
		fresh_hasher_init(&h, 5);
		for (size_t i = 0; i < len; i++)
			fresh_hasher_update(&h, buf + i, 1);
		ck_assert_uint_eq(fresh_hasher_final(&h), whole);
	}
	free(buf);
}
END_TEST

START_TEST(hasher_final_does_not_consume)
{
	unsigned char buf[50];
	struct fresh_hasher h;
	uint64_t first;

	memset(buf, 0x5a, sizeof buf);
	fresh_hasher_init(&h, 1);
	fresh_hasher_update(&h, buf, 20);
	first = fresh_hasher_final(&h);
	ck_assert_uint_eq(fresh_hasher_final(&h), first);
	/* A prefix's digest, then the rest: the whole one. */
	fresh_hasher_update(&h, buf + 20, 30);
	ck_assert_uint_eq(fresh_hasher_final(&h), digest(buf, 50, 1));
}
END_TEST

START_TEST(hasher_sees_every_bit_length_and_seed)
{
	enum { LEN = 257 };
	unsigned char buf[LEN + 1];
	struct tu_rng r = {9};
	uint64_t base;

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)tu_next(&r);
	/* Lengths that end in a stripe, in the tail, and on a boundary. */
	for (size_t len = 1; len <= LEN; len += len < 70 ? 1 : 31) {
		base = digest(buf, len, 0);
		for (size_t bit = 0; bit < 8 * len; bit++) {
			buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
			ck_assert_uint_ne(digest(buf, len, 0), base);
			buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		}
		ck_assert_uint_eq(digest(buf, len, 0), base);
		ck_assert_uint_ne(digest(buf, len, 1), base);
		ck_assert_uint_ne(digest(buf, len - 1, 0), base);
	}
	/* Zero bytes appended are not invisible (the length is mixed in). */
	memset(buf, 0, sizeof buf);
	for (size_t len = 0; len < 100; len++)
		ck_assert_uint_ne(digest(buf, len, 0), digest(buf, len + 1, 0));
}
END_TEST

static Suite *hash_suite(void)
{
	Suite *s = suite_create("hash");
	TCase *mix = tcase_create("mix64");
	TCase *stream = tcase_create("hasher");

	tcase_add_test(mix, mix64_known_values);
	tcase_add_test(mix, mix64_is_a_bijection);
	tcase_add_test(mix, mix64_avalanche);
	tcase_add_test(mix, unit_open_interval);
	tcase_add_test(stream, hasher_pinned_digests);
	tcase_add_test(stream, hasher_independent_of_splits);
	tcase_add_test(stream, hasher_final_does_not_consume);
	tcase_add_test(stream, hasher_sees_every_bit_length_and_seed);
	suite_add_tcase(s, mix);
	suite_add_tcase(s, stream);
	return s;
}

int main(void)
{
	return tu_run(hash_suite());
}
