/*
 * test_npy.c - the .npy header parser.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"
#include "testutil.h"

static size_t make(unsigned char *buf, int version, const char *dict)
{
	size_t len = strlen(dict), pre = version == 1 ? 10 : 12;

	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (unsigned char)version;
	buf[7] = 0;
	buf[8] = (unsigned char)(len & 0xff);
	buf[9] = (unsigned char)(len >> 8);
	if (version != 1) {
		buf[10] = 0;
		buf[11] = 0;
	}
	memcpy(buf + pre, dict, len);
	return pre + len;
}

START_TEST(parses_numpy_header)
{
	unsigned char buf[256];
	struct fresh_npy_header h;
	size_t n = make(buf, 1,
			"{'descr': '<f4', 'fortran_order': False, 'shape': "
			"(1000, 768), }          \n");

	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_OK);
	ck_assert_str_eq(h.descr, "<f4");
	ck_assert(!h.fortran_order);
	ck_assert_uint_eq(h.ndim, 2);
	ck_assert_uint_eq(h.shape[0], 1000);
	ck_assert_uint_eq(h.shape[1], 768);
	ck_assert_uint_eq(h.data_offset, n);
}
END_TEST

START_TEST(parses_version_2_and_key_order)
{
	unsigned char buf[256];
	struct fresh_npy_header h;
	size_t n = make(buf, 2,
			"{'shape': (5,), 'fortran_order': True, 'descr': "
			"'<i8'}\n");

	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_OK);
	ck_assert_str_eq(h.descr, "<i8");
	ck_assert(h.fortran_order);
	ck_assert_uint_eq(h.ndim, 1);
	ck_assert_uint_eq(h.shape[0], 5);
	ck_assert_uint_eq(h.data_offset, n);
}
END_TEST

START_TEST(parses_scalar_and_3d_shapes)
{
	unsigned char buf[256];
	struct fresh_npy_header h;
	size_t n =
		make(buf, 1,
		     "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
	size_t count;

	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_OK);
	ck_assert_uint_eq(h.ndim, 0);
	ck_assert(fresh_npy_count(&h, &count));
	ck_assert_uint_eq(count, 1);
	n = make(
		buf, 1,
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4)}");
	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_OK);
	ck_assert_uint_eq(h.ndim, 3);
	ck_assert(fresh_npy_count(&h, &count));
	ck_assert_uint_eq(count, 24);
}
END_TEST

START_TEST(refuses_malformed_headers)
{
	static const char *bad[] = {
		"{'descr': '<f4', 'fortran_order': False}",
		"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': "
		"1}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (a,)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}",
		"['descr', '<f4']",
		"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
		"'shape': (1,)}",
		"{'descr': '<f4', 'fortran_order': False, 'shape': "
		"(99999999999999999999999,)}",
		"{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}",
	};
	unsigned char buf[256];
	struct fresh_npy_header h;
	struct fresh_error err;

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		size_t n = make(buf, 1, bad[i]);
		err.msg[0] = '\0';
		ck_assert_msg(fresh_npy_parse(buf, n, &h, &err) == FRESH_FORMAT,
			      "accepted: %s", bad[i]);
		ck_assert(strlen(err.msg) > 0);
	}
}
END_TEST

START_TEST(refuses_bad_magic_version_and_truncation)
{
	unsigned char buf[256];
	struct fresh_npy_header h;
	size_t n =
		make(buf, 1,
		     "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}");

	ck_assert_int_eq(fresh_npy_parse(buf, n - 5, &h, NULL), FRESH_FORMAT);
	ck_assert_int_eq(fresh_npy_parse(buf, 5, &h, NULL), FRESH_FORMAT);
	buf[6] = 9;
	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_FORMAT);
	buf[6] = 1;
	buf[1] = 'X';
	ck_assert_int_eq(fresh_npy_parse(buf, n, &h, NULL), FRESH_FORMAT);
}
END_TEST

START_TEST(count_detects_overflow)
{
	struct fresh_npy_header h;
	size_t count;

	memset(&h, 0, sizeof h);
	h.ndim = 2;
	h.shape[0] = (size_t)1 << 40;
	h.shape[1] = (size_t)1 << 40;
	ck_assert(!fresh_npy_count(&h, &count));
}
END_TEST

static Suite *npy_suite(void)
{
	Suite *s = suite_create("npy");
	TCase *ok = tcase_create("accepts");
	TCase *bad = tcase_create("refuses");

	tcase_add_test(ok, parses_numpy_header);
	tcase_add_test(ok, parses_version_2_and_key_order);
	tcase_add_test(ok, parses_scalar_and_3d_shapes);
	tcase_add_test(bad, refuses_malformed_headers);
	tcase_add_test(bad, refuses_bad_magic_version_and_truncation);
	tcase_add_test(bad, count_detects_overflow);
	suite_add_tcase(s, ok);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return tu_run(npy_suite());
}
