/*
 * test_status.c - the status list: every code has its own name and
 * message from the one X-macro list, codes out of range get a fixed
 * fallback, and fresh_fail formats into the caller's error (truncating
 * safely) and passes the status through, with or without an error.
 */
#include <check.h>
#include <string.h>

#include "status.h"
#include "testutil.h"

START_TEST(names_and_messages)
{
	ck_assert_int_eq(FRESH_OK, 0);
	ck_assert_str_eq(fresh_status_name(FRESH_OK), "OK");
	ck_assert_str_eq(fresh_status_str(FRESH_OK), "ok");
	ck_assert_str_eq(fresh_status_name(FRESH_NOMEM), "NOMEM");
	ck_assert_str_eq(fresh_status_str(FRESH_NOMEM), "out of memory");
	ck_assert_str_eq(fresh_status_name(FRESH_NOT_FOUND), "NOT_FOUND");
	ck_assert_str_eq(fresh_status_str(FRESH_CHECKSUM), "checksum mismatch");
	ck_assert_str_eq(fresh_status_name(FRESH_CANCELLED), "CANCELLED");
	ck_assert_str_eq(fresh_status_str(FRESH_CANCELLED), "cancelled");
	ck_assert_str_eq(fresh_status_name(FRESH_NO_SPACE), "NO_SPACE");
	/* Every code: a name and a message, all distinct. */
	for (int a = 0; a < FRESH_STATUS_COUNT; a++) {
		ck_assert_uint_gt(strlen(fresh_status_name(a)), 0);
		ck_assert_uint_gt(strlen(fresh_status_str(a)), 0);
		for (int b = 0; b < a; b++) {
			ck_assert_str_ne(fresh_status_name(a),
					 fresh_status_name(b));
			ck_assert_str_ne(fresh_status_str(a),
					 fresh_status_str(b));
		}
	}
	ck_assert_int_eq(FRESH_STATUS_COUNT, 13);
}
END_TEST

START_TEST(out_of_range)
{
	ck_assert_str_eq(fresh_status_name(FRESH_STATUS_COUNT), "UNKNOWN");
	ck_assert_str_eq(fresh_status_str(FRESH_STATUS_COUNT),
			 "unknown status");
	ck_assert_str_eq(fresh_status_name((enum fresh_status) - 1), "UNKNOWN");
	ck_assert_str_eq(fresh_status_str((enum fresh_status)1000),
			 "unknown status");
}
END_TEST

START_TEST(fail_formats_and_returns)
{
	struct fresh_error err;
	char big[2000];

	memset(err.msg, 'x', sizeof err.msg);
	ck_assert_int_eq(fresh_fail(&err, FRESH_FORMAT, "%s: row %d of %zu",
				    "a.npy", 7, (size_t)9),
			 FRESH_FORMAT);
	ck_assert_str_eq(err.msg, "a.npy: row 7 of 9");
	ck_assert_int_eq(fresh_fail(NULL, FRESH_IO, "ignored %d", 1), FRESH_IO);
	/* Longer than msg: cut, and still terminated. */
	memset(big, 'y', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ck_assert_int_eq(fresh_fail(&err, FRESH_TOO_LARGE, "%s", big),
			 FRESH_TOO_LARGE);
	ck_assert_uint_eq(strlen(err.msg), sizeof err.msg - 1);
	ck_assert_int_eq(err.msg[0], 'y');
}
END_TEST

static Suite *status_suite(void)
{
	Suite *s = suite_create("status");
	TCase *tc = tcase_create("status");

	tcase_add_test(tc, names_and_messages);
	tcase_add_test(tc, out_of_range);
	tcase_add_test(tc, fail_formats_and_returns);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(status_suite());
}
