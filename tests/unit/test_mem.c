/*
 * test_mem.c - matrix allocation: 64-byte alignment, 2 MiB alignment from
 * a megabyte up, zero-filled fresh_calloc, NULL (not a wrapped small
 * block) when n * size overflows, a valid block for zero bytes, and the
 * overflow check itself.
 */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "mem.h"
#include "testutil.h"

START_TEST(alignment_by_size)
{
	static const size_t sizes[] = {1, 3, 64, 1000, 65536, (1 << 20) - 4};

	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		float *p = fresh_alloc(sizes[i], sizeof(float));
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % 64, 0);
		memset(p, 1, sizes[i] * sizeof(float)); /* all of it usable */
		fresh_free(p);
	}
	/* A megabyte or more: huge-page aligned. */
	for (size_t mb = 1; mb <= 5; mb += 2) {
		unsigned char *p = fresh_alloc(mb << 20, 1);
		ck_assert_ptr_nonnull(p);
		ck_assert_uint_eq((uintptr_t)p % ((size_t)2 << 20), 0);
		p[0] = 1;
		p[(mb << 20) - 1] = 2;
		fresh_free(p);
	}
	fresh_free(NULL);
}
END_TEST

START_TEST(calloc_zeroes)
{
	enum { N = 300000 };
	float *p = fresh_alloc(N, sizeof(float));
	size_t nonzero = 0;

	ck_assert_ptr_nonnull(p);
	memset(p, 0xff, N * sizeof(float));
	fresh_free(p);
	p = fresh_calloc(N, sizeof(float));
	ck_assert_ptr_nonnull(p);
	for (size_t i = 0; i < N; i++)
		nonzero += p[i] != 0.0f;
	ck_assert_uint_eq(nonzero, 0);
	fresh_free(p);
}
END_TEST

START_TEST(overflow_and_zero)
{
	void *p;
	size_t out = 7;

	ck_assert_ptr_null(fresh_alloc(SIZE_MAX / 2 + 1, 2));
	ck_assert_ptr_null(fresh_alloc((size_t)1 << 40, (size_t)1 << 40));
	ck_assert_ptr_null(fresh_calloc(SIZE_MAX, 4));
	p = fresh_alloc(0, 4);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq((uintptr_t)p % 64, 0);
	fresh_free(p);
	p = fresh_calloc(5, 0);
	ck_assert_ptr_nonnull(p);
	fresh_free(p);

	ck_assert(fresh_mul_ok(0, SIZE_MAX, &out) && out == 0);
	ck_assert(fresh_mul_ok(SIZE_MAX, 1, &out) && out == SIZE_MAX);
	ck_assert(fresh_mul_ok(SIZE_MAX, 0, &out) && out == 0);
	ck_assert(fresh_mul_ok((size_t)1 << 31, (size_t)1 << 32, &out) &&
		  out == (size_t)1 << 63);
	out = 7;
	ck_assert(!fresh_mul_ok((size_t)1 << 32, (size_t)1 << 32, &out));
	ck_assert(!fresh_mul_ok(SIZE_MAX / 3 + 1, 3, &out));
	ck_assert_uint_eq(out, 7); /* untouched on overflow */
	ck_assert(fresh_mul_ok(SIZE_MAX / 3, 3, &out) &&
		  out == SIZE_MAX / 3 * 3);
}
END_TEST

static Suite *mem_suite(void)
{
	Suite *s = suite_create("mem");
	TCase *tc = tcase_create("mem");

	tcase_add_test(tc, alignment_by_size);
	tcase_add_test(tc, calloc_zeroes);
	tcase_add_test(tc, overflow_and_zero);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(mem_suite());
}
