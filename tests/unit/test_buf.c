/*
 * test_buf.c - the server's growable buffer: appends and printf across
 * growth keep every byte and the NUL, a first reserve gets what it asks,
 * and a failure is sticky (later appends are no-ops).
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "testutil.h"

START_TEST(append_and_printf_across_growth)
{
	struct srv_buf b = SRV_BUF_INIT;
	char want[20000];
	size_t n = 0;

	for (int i = 0; i < 2000; i++) {
		if (i % 3 == 0) {
			srv_buf_printf(&b, "%d,", i);
			n += (size_t)snprintf(want + n, sizeof want - n, "%d,",
					      i);
		} else {
			char c = (char)('a' + i % 26);
			srv_buf_append(&b, &c, 1);
			want[n++] = c;
		}
		ck_assert_uint_eq(b.len, n);
		ck_assert_int_eq(b.data[b.len], '\0');
	}
	want[n] = '\0';
	ck_assert(!b.failed);
	ck_assert_mem_eq(b.data, want, n);
	/* One printf longer than all the room left. */
	srv_buf_printf(&b, "%9000s|", "x");
	ck_assert_uint_eq(b.len, n + 9001);
	ck_assert_int_eq(b.data[b.len - 1], '|');
	ck_assert_int_eq(b.data[b.len], '\0');
	srv_buf_free(&b);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(reserve_exact_then_doubling)
{
	struct srv_buf b = SRV_BUF_INIT;

	ck_assert(srv_buf_reserve(&b, 100000));
	ck_assert_uint_eq(b.cap, 100001);
	ck_assert(srv_buf_reserve(&b, 100000)); /* fits: no move */
	ck_assert_uint_eq(b.cap, 100001);
	srv_buf_append(&b, "ab", 2);
	ck_assert(srv_buf_reserve(&b, 100000));
	ck_assert_uint_eq(b.cap, 200002);
	srv_buf_free(&b);

	ck_assert(srv_buf_reserve(&b, 0)); /* room for the NUL alone */
	ck_assert_ptr_nonnull(b.data);
	srv_buf_free(&b);
}
END_TEST

START_TEST(failure_is_sticky)
{
	struct srv_buf b = SRV_BUF_INIT;

	srv_buf_append(&b, "abc", 3);
	ck_assert(!srv_buf_reserve(&b, SIZE_MAX - 2));
	ck_assert(b.failed);
	srv_buf_append(&b, "def", 3);
	srv_buf_printf(&b, "%s", "ghi");
	ck_assert_uint_eq(b.len, 3);
	ck_assert_str_eq(b.data, "abc");
	srv_buf_free(&b);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("buf");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, append_and_printf_across_growth);
	tcase_add_test(tc, reserve_exact_then_doubling);
	tcase_add_test(tc, failure_is_sticky);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
