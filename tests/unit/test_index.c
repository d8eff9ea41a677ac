/*
 * test_index.c - loading and building the stale index: .npy, .fvecs,
 * snapshots, id files, and every malformed case refused with a message.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "testutil.h"

static char dir[4096];

static void setup(void)
{
	tu_tmpdir(dir, sizeof dir);
}

static void teardown(void)
{
	tu_rmdir(dir);
}

static float *random_matrix(size_t n, size_t d, uint64_t seed)
{
	struct tu_rng r = {seed};
	float *x = malloc(n * d * sizeof *x);
	tu_fill_normal(&r, x, n * d);
	return x;
}

/* Loading must fail with status st and a message containing want. */
static void expect_refused(const char *path, const char *ids,
			   enum fresh_status st, const char *want)
{
	struct fresh_index *idx = NULL;
	struct fresh_error err;

	err.msg[0] = '\0';
	ck_assert_int_eq(fresh_index_load(path, ids, &idx, &err), st);
	ck_assert_ptr_null(idx);
	ck_assert_msg(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'",
		      err.msg, want);
}

START_TEST(loads_npy_with_default_ids)
{
	char path[4200];
	float *x = random_matrix(100, 16, 1);
	struct fresh_index *idx;
	size_t row;

	tu_path(path, sizeof path, dir, "x.npy");
	tu_write_npy_f32(path, x, 100, 16);
	ck_assert_int_eq(fresh_index_load(path, NULL, &idx, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_index_size(idx), 100);
	ck_assert_uint_eq(fresh_index_dim(idx), 16);
	ck_assert_mem_eq(fresh_index_vectors(idx), x, 100 * 16 * 4);
	ck_assert(fresh_index_find(idx, 42, &row));
	ck_assert_uint_eq(row, 42);
	ck_assert(!fresh_index_find(idx, 100, &row));
	ck_assert_uint_eq(((uintptr_t)fresh_index_vectors(idx)) % 64, 0);
	ck_assert_str_eq(fresh_index_source(idx), path);
	fresh_index_release(idx);
	free(x);
}
END_TEST

START_TEST(loads_ids_signed_and_unsigned)
{
	char path[4200], ids_path[4200];
	float *x = random_matrix(50, 8, 2);
	uint64_t ids[50];
	struct fresh_index *idx;
	size_t row;

	for (size_t i = 0; i < 50; i++)
		ids[i] = 1000 + 7 * (49 - i);
	ids[3] = UINT64_MAX - 1; /* only valid as uint64 */
	tu_path(path, sizeof path, dir, "x.npy");
	tu_path(ids_path, sizeof ids_path, dir, "ids.npy");
	tu_write_npy_f32(path, x, 50, 8);
	tu_write_npy_ids(ids_path, ids, 50, false);
	ck_assert_int_eq(fresh_index_load(path, ids_path, &idx, NULL),
			 FRESH_OK);
	for (size_t i = 0; i < 50; i++) {
		ck_assert(fresh_index_find(idx, ids[i], &row));
		ck_assert_uint_eq(row, i);
		ck_assert_uint_eq(fresh_index_ids(idx)[i], ids[i]);
	}
	ck_assert(!fresh_index_find(idx, 1001, &row));
	fresh_index_release(idx);

	ids[3] = 5;
	tu_write_npy_ids(ids_path, ids, 50, true);
	ck_assert_int_eq(fresh_index_load(path, ids_path, &idx, NULL),
			 FRESH_OK);
	ck_assert(fresh_index_find(idx, 5, &row));
	ck_assert_uint_eq(row, 3);
	fresh_index_release(idx);
	free(x);
}
END_TEST

START_TEST(loads_fvecs)
{
	char path[4200];
	size_t n = 30, d = 12;
	float *x = random_matrix(n, d, 3);
	unsigned char *buf = malloc(n * (4 + 4 * d));
	struct fresh_index *idx;

	for (size_t i = 0; i < n; i++) {
		int32_t dd = (int32_t)d;
		memcpy(buf + i * (4 + 4 * d), &dd, 4);
		memcpy(buf + i * (4 + 4 * d) + 4, x + i * d, 4 * d);
	}
	tu_path(path, sizeof path, dir, "x.fvecs");
	tu_write_file(path, buf, n * (4 + 4 * d));
	ck_assert_int_eq(fresh_index_load(path, NULL, &idx, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_index_size(idx), n);
	ck_assert_uint_eq(fresh_index_dim(idx), d);
	ck_assert_mem_eq(fresh_index_vectors(idx), x, n * d * 4);
	fresh_index_release(idx);

	/* A record of another dimension, named by row. */
	{
		int32_t other = 11;
		memcpy(buf + 7 * (4 + 4 * d), &other, 4);
		tu_write_file(path, buf, n * (4 + 4 * d));
		expect_refused(path, NULL, FRESH_FORMAT, "row 7: dimension 11");
	}
	/* Truncated. */
	tu_write_file(path, buf, n * (4 + 4 * d) - 3);
	expect_refused(path, NULL, FRESH_FORMAT, "not a multiple");
	free(buf);
	free(x);
}
END_TEST

START_TEST(snapshot_round_trip_and_damage)
{
	char path[4200], snap[4200];
	float *x = random_matrix(64, 10, 4);
	uint64_t ids[64];
	struct fresh_index *a, *b;
	size_t row;

	for (size_t i = 0; i < 64; i++)
		ids[i] = i * 3 + 1;
	ck_assert_int_eq(fresh_index_create(64, 10, x, ids, "mem", &a, NULL),
			 FRESH_OK);
	tu_path(snap, sizeof snap, dir, "index.snap");
	ck_assert_int_eq(fresh_index_save(a, snap, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_index_load(snap, NULL, &b, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_index_fingerprint(a),
			  fresh_index_fingerprint(b));
	ck_assert_mem_eq(fresh_index_vectors(b), x, 64 * 10 * 4);
	ck_assert(fresh_index_find(b, 28, &row));
	ck_assert_uint_eq(row, 9);
	fresh_index_release(b);

	/* Flip one byte of the vectors: the fingerprint no longer matches. */
	{
		FILE *f = fopen(snap, "r+b");
		unsigned char c;
		fseek(f, 64 + 64 * 8 + 100, SEEK_SET);
		c = (unsigned char)fgetc(f);
		fseek(f, 64 + 64 * 8 + 100, SEEK_SET);
		fputc(c ^ 0x01, f);
		fclose(f);
	}
	expect_refused(snap, NULL, FRESH_CHECKSUM, "fingerprint mismatch");
	(void)path;
	fresh_index_release(a);
	free(x);
}
END_TEST

START_TEST(fingerprint_depends_on_vectors_and_ids)
{
	float *x = random_matrix(20, 4, 5);
	uint64_t ids[20];
	struct fresh_index *a, *b, *c;

	for (size_t i = 0; i < 20; i++)
		ids[i] = i + 100;
	ck_assert_int_eq(fresh_index_create(20, 4, x, NULL, "a", &a, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_index_create(20, 4, x, ids, "b", &b, NULL),
			 FRESH_OK);
	x[17] += 1.0f;
	ck_assert_int_eq(fresh_index_create(20, 4, x, NULL, "c", &c, NULL),
			 FRESH_OK);
	ck_assert_uint_ne(fresh_index_fingerprint(a),
			  fresh_index_fingerprint(b));
	ck_assert_uint_ne(fresh_index_fingerprint(a),
			  fresh_index_fingerprint(c));
	fresh_index_release(a);
	fresh_index_release(b);
	fresh_index_release(c);
	free(x);
}
END_TEST

START_TEST(refuses_malformed_npy)
{
	char path[4200];
	float x[12] = {0};

	tu_path(path, sizeof path, dir, "bad.npy");
	tu_write_npy_raw(
		path,
		"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
		x, 48);
	expect_refused(path, NULL, FRESH_FORMAT, "dtype '<f8'");
	tu_write_npy_raw(
		path,
		"{'descr': '>f4', 'fortran_order': False, 'shape': (3, 2), }",
		x, 24);
	expect_refused(path, NULL, FRESH_FORMAT, "dtype '>f4'");
	tu_write_npy_raw(
		path,
		"{'descr': '<f4', 'fortran_order': True, 'shape': (3, 2), }", x,
		24);
	expect_refused(path, NULL, FRESH_FORMAT, "Fortran order");
	tu_write_npy_raw(
		path,
		"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", x,
		24);
	expect_refused(path, NULL, FRESH_FORMAT, "1 dimensions, expected 2");
	tu_write_npy_raw(path,
			 "{'descr': '<f4', 'fortran_order': False, 'shape': "
			 "(3, 2, 1), }",
			 x, 24);
	expect_refused(path, NULL, FRESH_FORMAT, "3 dimensions");
	tu_write_npy_raw(
		path,
		"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
		x, 20);
	expect_refused(path, NULL, FRESH_FORMAT, "truncated");
	tu_write_npy_raw(
		path,
		"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }",
		x, 28);
	expect_refused(path, NULL, FRESH_FORMAT, "unexpected bytes");
	tu_write_npy_raw(
		path,
		"{'descr': '<f4', 'fortran_order': False, 'shape': (0, 2), }",
		x, 0);
	expect_refused(path, NULL, FRESH_FORMAT, "empty index");
	tu_write_file(path, "\x93NUMPY\x01", 7);
	expect_refused(path, NULL, FRESH_FORMAT, "bad.npy");
	tu_path(path, sizeof path, dir, "missing.npy");
	expect_refused(path, NULL, FRESH_IO, "missing.npy");
	tu_path(path, sizeof path, dir, "weird.bin");
	tu_write_file(path, "hello world", 11);
	expect_refused(path, NULL, FRESH_FORMAT, "unknown format");
}
END_TEST

START_TEST(refuses_non_finite_values)
{
	char path[4200];
	float x[12] = {0};

	x[7] = 1.0f / 0.0f;
	tu_path(path, sizeof path, dir, "inf.npy");
	tu_write_npy_f32(path, x, 4, 3);
	expect_refused(path, NULL, FRESH_FORMAT, "row 2, column 1");
	x[7] = 0.0f;
	x[11] = __builtin_nanf("");
	tu_write_npy_f32(path, x, 4, 3);
	expect_refused(path, NULL, FRESH_FORMAT, "row 3, column 2");
}
END_TEST

START_TEST(refuses_malformed_ids)
{
	char path[4200], ids_path[4200];
	float *x = random_matrix(10, 4, 6);
	uint64_t ids[11];

	for (size_t i = 0; i < 11; i++)
		ids[i] = i * 10;
	tu_path(path, sizeof path, dir, "x.npy");
	tu_path(ids_path, sizeof ids_path, dir, "ids.npy");
	tu_write_npy_f32(path, x, 10, 4);

	tu_write_npy_ids(ids_path, ids, 11, true);
	expect_refused(path, ids_path, FRESH_FORMAT,
		       "11 ids, the index has 10");
	tu_write_npy_ids(ids_path, ids, 9, true);
	expect_refused(path, ids_path, FRESH_FORMAT, "9 ids");
	ids[6] = ids[2];
	tu_write_npy_ids(ids_path, ids, 10, false);
	expect_refused(path, ids_path, FRESH_FORMAT,
		       "duplicate id 20 at rows 2 and 6");
	ids[6] = 60;
	ids[4] = (uint64_t)-5;
	tu_write_npy_ids(ids_path, ids, 10, true);
	expect_refused(path, ids_path, FRESH_FORMAT, "row 4: negative id -5");
	tu_write_npy_raw(
		ids_path,
		"{'descr': '<i4', 'fortran_order': False, 'shape': (10,), }",
		ids, 40);
	expect_refused(path, ids_path, FRESH_FORMAT, "dtype '<i4'");
	tu_write_npy_raw(
		ids_path,
		"{'descr': '<i8', 'fortran_order': False, 'shape': (10,), }",
		ids, 72);
	expect_refused(path, ids_path, FRESH_FORMAT, "expected 80");
	free(x);
}
END_TEST

START_TEST(create_refuses_bad_input)
{
	float x[6] = {1, 2, 3, 4, 5, 6};
	uint64_t ids[3] = {1, 2, 1};
	struct fresh_index *idx = NULL;
	struct fresh_error err;

	ck_assert_int_eq(fresh_index_create(3, 2, x, ids, "m", &idx, &err),
			 FRESH_FORMAT);
	ck_assert_ptr_null(idx);
	ck_assert(strstr(err.msg, "duplicate id 1") != NULL);
	ck_assert_int_eq(fresh_index_create(0, 2, x, NULL, "m", &idx, &err),
			 FRESH_FORMAT);
	ck_assert_int_eq(fresh_index_create(3, FRESH_MAX_DIM + 1, x, NULL, "m",
					    &idx, &err),
			 FRESH_FORMAT);
}
END_TEST

START_TEST(large_ids_hash_lookup)
{
	size_t n = 100000, d = 2, row;
	float *x = calloc(n * d, sizeof *x);
	uint64_t *ids = malloc(n * sizeof *ids);
	struct fresh_index *idx;
	struct tu_rng r = {77};

	for (size_t i = 0; i < n; i++)
		ids[i] = (tu_next(&r) & ~UINT64_C(0xffff)) | i; /* unique */
	ck_assert_int_eq(fresh_index_create(n, d, x, ids, "m", &idx, NULL),
			 FRESH_OK);
	for (size_t i = 0; i < n; i += 97) {
		ck_assert(fresh_index_find(idx, ids[i], &row));
		ck_assert_uint_eq(row, i);
		ck_assert(!fresh_index_find(idx, ids[i] ^ 0x10000, &row) ||
			  fresh_index_ids(idx)[row] == (ids[i] ^ 0x10000));
	}
	fresh_index_release(idx);
	free(x);
	free(ids);
}
END_TEST

static Suite *index_suite(void)
{
	Suite *s = suite_create("index");
	TCase *load = tcase_create("load");
	TCase *bad = tcase_create("malformed");
	TCase *mem = tcase_create("memory");

	tcase_add_checked_fixture(load, setup, teardown);
	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_test(load, loads_npy_with_default_ids);
	tcase_add_test(load, loads_ids_signed_and_unsigned);
	tcase_add_test(load, loads_fvecs);
	tcase_add_test(load, snapshot_round_trip_and_damage);
	tcase_add_test(bad, refuses_malformed_npy);
	tcase_add_test(bad, refuses_non_finite_values);
	tcase_add_test(bad, refuses_malformed_ids);
	tcase_add_test(mem, fingerprint_depends_on_vectors_and_ids);
	tcase_add_test(mem, create_refuses_bad_input);
	tcase_add_test(mem, large_ids_hash_lookup);
	suite_add_tcase(s, load);
	suite_add_tcase(s, bad);
	suite_add_tcase(s, mem);
	return s;
}

int main(void)
{
	return tu_run(index_suite());
}
