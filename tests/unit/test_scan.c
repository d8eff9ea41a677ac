/*
 * test_scan.c - the tiled scorer: for many (B, N, d) shapes (row counts
 * that are multiples of no block, batches around every row-block
 * threshold and beyond one query block), query sub-ranges, offsets and
 * row scales, and pools of 1 to 4 threads, every (query, row) score is
 * delivered exactly once and equals a double-precision dot product; tiles
 * respect FRESH_SCAN_TILE_ROWS, worker ids are in range and a worker's
 * tiles never overlap in time. Integer-valued inputs and power-of-two row
 * scales make the reference exact, so most comparisons are equalities.
 */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "pool.h"
#include "scan.h"
#include "testutil.h"

struct sink {
	size_t b0, nq, n, threads; /* queries [b0, b0 + nq) of the batch */
	atomic_int *count;	   /* nq x n deliveries */
	float *score;		   /* nq x n */
	atomic_int busy[8];	   /* per worker: inside a tile */
	atomic_int errors;
	atomic_size_t tiles;
};

static void tile(void *ctx, size_t worker, size_t q0, size_t nq, size_t r0,
		 size_t nr, const float *scores)
{
	struct sink *s = ctx;

	atomic_fetch_add(&s->tiles, 1);
	if (worker >= s->threads || nr == 0 || nq == 0 ||
	    nr > FRESH_SCAN_TILE_ROWS || q0 < s->b0 ||
	    q0 + nq > s->b0 + s->nq || r0 + nr > s->n) {
		atomic_fetch_add(&s->errors, 1);
		return;
	}
	if (atomic_exchange(&s->busy[worker], 1) != 0)
		atomic_fetch_add(&s->errors, 1);
	for (size_t i = 0; i < nq; i++)
		for (size_t j = 0; j < nr; j++) {
			size_t cell = (q0 - s->b0 + i) * s->n + r0 + j;
			atomic_fetch_add(&s->count[cell], 1);
			s->score[cell] = scores[i * nr + j];
		}
	atomic_store(&s->busy[worker], 0);
}

struct shape {
	size_t b, n, d;
	size_t q0, nq; /* the sub-range scanned */
	bool offset, row_scale;
};

/*
 * Scans one shape on pool; inputs are integer-valued (|x| <= 3) with
 * power-of-two row scales, so every score is exact in float as long as
 * d * 9 + |offset| < 2^24.
 */
static void check_shape(struct fresh_pool *pool, const struct shape *sh,
			uint64_t seed)
{
	size_t b = sh->b, n = sh->n, d = sh->d, nq = sh->nq;
	float *x = malloc(n * d * sizeof *x), *q = malloc(b * d * sizeof *q);
	float *off = malloc(b * sizeof *off), *rs = malloc(n * sizeof *rs);
	uint64_t *ids = malloc(n * sizeof *ids);
	struct tu_rng r = {seed};
	struct sink s;
	struct fresh_matrix m;
	struct fresh_queries qs;
	bool bad = false;
	char why[200] = "";

	tu_fill_int(&r, x, n * d, 3);
	tu_fill_int(&r, q, b * d, 3);
	tu_fill_int(&r, off, b, 100);
	for (size_t i = 0; i < n; i++) {
		rs[i] = ldexpf(1.0f, (int)(tu_next(&r) % 5) - 2);
		ids[i] = i * 3;
	}
	memset(&s, 0, sizeof s);
	s.b0 = sh->q0;
	s.nq = nq;
	s.n = n;
	s.threads = fresh_pool_threads(pool);
	s.count = calloc(nq * n, sizeof *s.count);
	s.score = calloc(nq * n, sizeof *s.score);
	m = (struct fresh_matrix){.x = x,
				  .n = n,
				  .dim = d,
				  .ids = ids,
				  .row_scale = sh->row_scale ? rs : NULL};
	qs = (struct fresh_queries){q, b, sh->offset ? off : NULL};

	ck_assert_int_eq(fresh_scan(pool, &m, &qs, sh->q0, nq, tile, &s),
			 FRESH_OK);
	ck_assert_int_eq(atomic_load(&s.errors), 0);
	/* One assertion per shape (each one costs a message to the runner);
	 * the first bad cell names what went wrong. */
	for (size_t i = 0; i < nq && !bad; i++)
		for (size_t j = 0; j < n && !bad; j++) {
			const float *qi = q + (sh->q0 + i) * d;
			double want = 0.0;
			size_t cell = i * n + j;
			for (size_t c = 0; c < d; c++)
				want += (double)qi[c] * x[j * d + c];
			if (sh->offset)
				want += off[sh->q0 + i];
			if (sh->row_scale)
				want *= rs[j];
			if (atomic_load(&s.count[cell]) != 1 ||
			    s.score[cell] != (float)want) {
				bad = true;
				snprintf(why, sizeof why,
					 "(%zu, %zu) delivered %d times, "
					 "score %g, want %g",
					 i, j, atomic_load(&s.count[cell]),
					 s.score[cell], want);
			}
		}
	ck_assert_msg(!bad, "B %zu N %zu d %zu q0 %zu nq %zu: %s", b, n, d,
		      sh->q0, nq, why);
	free(s.count);
	free(s.score);
	free(x);
	free(q);
	free(off);
	free(rs);
	free(ids);
}

static const struct shape shapes[] = {
	/* b, n, d, q0, nq, offset, row_scale */
	{1, 1, 1, 0, 1, false, false},
	{1, 1000, 7, 0, 1, true, true}, /* 128-row blocks */
	{2, 4099, 16, 0, 2, false, true},
	{5, 3001, 9, 1, 3, true, false}, /* 64-row blocks, sub-range */
	{8, 777, 33, 0, 8, true, true},
	{9, 2049, 5, 0, 9, true, true}, /* 32-row blocks */
	{48, 1500, 12, 0, 48, false, false},
	{49, 1031, 3, 0, 49, true, true}, /* 512-row blocks */
	{70, 5000, 4, 10, 50, true, true},
	{300, 1300, 6, 0, 300, true, true},  /* two query blocks */
	{600, 513, 2, 44, 513, true, false}, /* three, sub-range */
};

static void run_all_shapes(size_t threads)
{
	struct fresh_pool *pool;

	ck_assert_int_eq(fresh_pool_create(threads, 0, &pool), FRESH_OK);
	for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
		check_shape(pool, &shapes[i], 100 * threads + i);
	fresh_pool_free(pool);
}

START_TEST(every_score_once_one_thread)
{
	run_all_shapes(1);
}
END_TEST

START_TEST(every_score_once_two_threads)
{
	run_all_shapes(2);
}
END_TEST

START_TEST(every_score_once_three_threads)
{
	run_all_shapes(3);
}
END_TEST

START_TEST(every_score_once_four_threads)
{
	run_all_shapes(4);
}
END_TEST

START_TEST(real_values_within_tolerance)
{
	/* Gaussian inputs: sgemm's float sums against double, within
	 * d * 2^-24 of sum |q_c x_c| (the classic dot-product bound). */
	enum { B = 20, N = 2000, D = 96 };
	float *x = malloc(N * D * sizeof *x), *q = malloc(B * D * sizeof *q);
	float *rs = malloc(N * sizeof *rs), off[B];
	struct tu_rng r = {7};
	struct fresh_pool *pool;
	struct sink s;
	struct fresh_matrix m;
	struct fresh_queries qs;

	tu_fill_normal(&r, x, N * D);
	tu_fill_normal(&r, q, B * D);
	tu_fill_normal(&r, off, B);
	for (size_t i = 0; i < N; i++)
		rs[i] = tu_uniform(&r, 0.5f, 2.0f);
	memset(&s, 0, sizeof s);
	s.nq = B;
	s.n = N;
	s.count = calloc(B * N, sizeof *s.count);
	s.score = calloc(B * N, sizeof *s.score);
	ck_assert_int_eq(fresh_pool_create(2, 0, &pool), FRESH_OK);
	s.threads = 2;
	m = (struct fresh_matrix){.x = x, .n = N, .dim = D, .row_scale = rs};
	qs = (struct fresh_queries){q, B, off};
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, B, tile, &s), FRESH_OK);
	ck_assert_int_eq(atomic_load(&s.errors), 0);
	for (size_t i = 0; i < B; i++)
		for (size_t j = 0; j < N; j++) {
			double dot = 0.0, mag = 0.0, want, tol;
			for (size_t c = 0; c < D; c++) {
				dot += (double)q[i * D + c] * x[j * D + c];
				mag += fabs((double)q[i * D + c] *
					    x[j * D + c]);
			}
			want = (dot + off[i]) * rs[j];
			tol = (D * 0x1p-24 * (mag + fabs(off[i])) +
			       0x1p-23 * fabs(dot + off[i])) *
			      rs[j];
			ck_assert_int_eq(atomic_load(&s.count[i * N + j]), 1);
			ck_assert_double_eq_tol(s.score[i * N + j], want, tol);
		}
	fresh_pool_free(pool);
	free(s.count);
	free(s.score);
	free(x);
	free(q);
	free(rs);
}
END_TEST

START_TEST(empty_and_invalid)
{
	float x[4] = {1, 2, 3, 4}, q[2] = {1, 1};
	struct fresh_pool *pool;
	struct sink s;
	struct fresh_matrix m = {
		.x = x, .n = 2, .dim = 2, .ids = NULL, .row_scale = NULL};
	struct fresh_queries qs = {q, 1, NULL};

	memset(&s, 0, sizeof s);
	s.threads = 2;
	ck_assert_int_eq(fresh_pool_create(2, 0, &pool), FRESH_OK);
	/* Nothing to score: no tile. */
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, 0, tile, &s), FRESH_OK);
	m.n = 0;
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, 1, tile, &s), FRESH_OK);
	ck_assert_uint_eq(atomic_load(&s.tiles), 0);
	m.n = 2;
	/* Queries past the batch, zero or oversized width. */
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 1, 1, tile, &s),
			 FRESH_INVALID);
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, 2, tile, &s),
			 FRESH_INVALID);
	m.dim = 0;
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, 1, tile, &s),
			 FRESH_INVALID);
	m.dim = FRESH_MAX_DIM + 1;
	ck_assert_int_eq(fresh_scan(pool, &m, &qs, 0, 1, tile, &s),
			 FRESH_INVALID);
	ck_assert_uint_eq(atomic_load(&s.tiles), 0);
	fresh_pool_free(pool);
}
END_TEST

static Suite *scan_suite(void)
{
	Suite *s = suite_create("scan");
	TCase *exact = tcase_create("exact");
	TCase *misc = tcase_create("misc");

	tcase_set_timeout(exact, 60);
	tcase_add_test(exact, every_score_once_one_thread);
	tcase_add_test(exact, every_score_once_two_threads);
	tcase_add_test(exact, every_score_once_three_threads);
	tcase_add_test(exact, every_score_once_four_threads);
	tcase_add_test(misc, real_values_within_tolerance);
	tcase_add_test(misc, empty_and_invalid);
	suite_add_tcase(s, exact);
	suite_add_tcase(s, misc);
	return s;
}

int main(void)
{
	return tu_run(scan_suite());
}
