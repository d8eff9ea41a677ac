/*
 * test_crc32c.c - CRC-32C: the published check values (the catalogue's
 * "123456789" and the iSCSI vectors of RFC 3720 appendix B.4), agreement
 * with a bit-at-a-time reference for every length and alignment, and
 * continuing a CRC over pieces equals one pass over the whole.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "testutil.h"

/* The definition: reflected, polynomial 0x82f63b78, one bit at a time. */
static uint32_t crc_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int b = 0; b < 8; b++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

START_TEST(check_value)
{
	ck_assert_uint_eq(fresh_crc32c(0, "123456789", 9), 0xe3069283u);
	ck_assert_uint_eq(fresh_crc32c(0, "", 0), 0);
	ck_assert_uint_eq(fresh_crc32c(0, "a", 1), 0xc1d04330u);
}
END_TEST

START_TEST(rfc3720_vectors)
{
	/* RFC 3720 B.4: 32 zeros, 32 ones, ascending, descending, and an
	 * iSCSI read command PDU. */
	static const unsigned char pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00,
		0x00, 0x18, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	unsigned char b[32];

	memset(b, 0, sizeof b);
	ck_assert_uint_eq(fresh_crc32c(0, b, 32), 0x8a9136aau);
	memset(b, 0xff, sizeof b);
	ck_assert_uint_eq(fresh_crc32c(0, b, 32), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	ck_assert_uint_eq(fresh_crc32c(0, b, 32), 0x46dd794eu);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	ck_assert_uint_eq(fresh_crc32c(0, b, 32), 0x113fdb5cu);
	ck_assert_uint_eq(fresh_crc32c(0, pdu, sizeof pdu), 0xd9963a56u);
}
END_TEST

START_TEST(matches_bitwise_every_length_and_alignment)
{
	enum { MAX = 300 };
	unsigned char buf[MAX + 8];
	struct tu_rng r = {3};

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)tu_next(&r);
	/* Lengths across the 8-byte word loop and its tail; every start
	 * offset within a word; a nonzero starting CRC too. */
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len <= MAX; len++) {
			uint32_t seed = (uint32_t)(len * 2654435761u);
			ck_assert_uint_eq(fresh_crc32c(0, buf + off, len),
					  crc_bitwise(0, buf + off, len));
			ck_assert_uint_eq(fresh_crc32c(seed, buf + off, len),
					  crc_bitwise(seed, buf + off, len));
		}
}
END_TEST

START_TEST(incremental_equals_one_shot)
{
	enum { LEN = 5000 };
	unsigned char *buf = malloc(LEN);
	struct tu_rng r = {17};

	for (size_t i = 0; i < LEN; i++)
		buf[i] = (unsigned char)tu_next(&r);
	for (int trial = 0; trial < 200; trial++) {
		size_t len = tu_next(&r) % (LEN + 1), off = 0;
		uint32_t whole = fresh_crc32c(0, buf, len), crc = 0;

		while (off < len) {
			/* Mostly short pieces, now and then a long one. */
			size_t step = tu_next(&r) % 4 == 0 ? tu_next(&r) % 700
							   : tu_next(&r) % 13;
			if (step > len - off)
				step = len - off;
			crc = fresh_crc32c(crc, buf + off, step);
			off += step;
		}
		ck_assert_uint_eq(crc, whole);
	}
	free(buf);
}
END_TEST

START_TEST(one_bit_changes_the_crc)
{
	unsigned char buf[64];
	struct tu_rng r = {5};
	uint32_t base;

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)tu_next(&r);
	base = fresh_crc32c(0, buf, sizeof buf);
	/* A CRC detects every single-bit error. */
	for (size_t bit = 0; bit < 8 * sizeof buf; bit++) {
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		ck_assert_uint_ne(fresh_crc32c(0, buf, sizeof buf), base);
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	ck_assert_uint_eq(fresh_crc32c(0, buf, sizeof buf), base);
}
END_TEST

static Suite *crc32c_suite(void)
{
	Suite *s = suite_create("crc32c");
	TCase *known = tcase_create("known");
	TCase *ref = tcase_create("reference");

	tcase_add_test(known, check_value);
	tcase_add_test(known, rfc3720_vectors);
	tcase_add_test(ref, matches_bitwise_every_length_and_alignment);
	tcase_add_test(ref, incremental_equals_one_shot);
	tcase_add_test(ref, one_bit_changes_the_crc);
	suite_add_tcase(s, known);
	suite_add_tcase(s, ref);
	return s;
}

int main(void)
{
	return tu_run(crc32c_suite());
}
