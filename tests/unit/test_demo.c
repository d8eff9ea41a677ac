/*
 * test_demo.c - the demo corpus: the same seed gives the same corpus bit
 * for bit and another seed another one; the stale index has the asked
 * shape, ids 0..n-1 and unit rows that cluster by topic (far more than
 * random unit vectors do); the fresh encoder gives unit rows, is a
 * function of the stale row, agrees between the per-row and the
 * all-rows paths, and drifts enough to change nearest neighbours.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"
#include "index.h"
#include "testutil.h"

static double dot(const float *a, const float *b, size_t d)
{
	double s = 0.0;

	for (size_t i = 0; i < d; i++)
		s += (double)a[i] * b[i];
	return s;
}

START_TEST(deterministic_for_a_seed)
{
	enum { N = 700, D = 24 };
	struct fresh_demo *a, *b, *c;
	struct fresh_index *ia, *ib, *ic;
	const float *fa, *fb, *fc;

	ck_assert_int_eq(fresh_demo_create(N, D, 42, &a), FRESH_OK);
	ck_assert_int_eq(fresh_demo_create(N, D, 42, &b), FRESH_OK);
	ck_assert_int_eq(fresh_demo_create(N, D, 43, &c), FRESH_OK);
	ia = fresh_demo_index(a);
	ib = fresh_demo_index(b);
	ic = fresh_demo_index(c);
	ck_assert_mem_eq(fresh_index_vectors(ia), fresh_index_vectors(ib),
			 N * D * sizeof(float));
	ck_assert_uint_eq(fresh_index_fingerprint(ia),
			  fresh_index_fingerprint(ib));
	ck_assert_uint_ne(fresh_index_fingerprint(ia),
			  fresh_index_fingerprint(ic));
	ck_assert(memcmp(fresh_index_vectors(ia), fresh_index_vectors(ic),
			 D * sizeof(float)) != 0);
	fa = fresh_demo_fresh_all(a);
	fb = fresh_demo_fresh_all(b);
	fc = fresh_demo_fresh_all(c);
	ck_assert_ptr_nonnull(fa);
	ck_assert_ptr_nonnull(fb);
	ck_assert_ptr_nonnull(fc);
	ck_assert_mem_eq(fa, fb, N * D * sizeof(float));
	ck_assert(memcmp(fa, fc, D * sizeof(float)) != 0);
	/* Computed once: the same array on every call. */
	ck_assert_ptr_eq(fresh_demo_fresh_all(a), fa);
	fresh_index_release(ia);
	fresh_index_release(ib);
	fresh_index_release(ic);
	fresh_demo_free(a);
	fresh_demo_free(b);
	fresh_demo_free(c);
	fresh_demo_free(NULL);
}
END_TEST

START_TEST(index_shape_ids_unit_rows)
{
	static const size_t shapes[][2] = {
		{1, 1}, {3, 2}, {500, 8}, {1200, 33}};

	for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
		size_t n = shapes[k][0], d = shapes[k][1], row;
		struct fresh_demo *demo;
		struct fresh_index *idx;
		const float *x;

		ck_assert_int_eq(fresh_demo_create(n, d, k, &demo), FRESH_OK);
		idx = fresh_demo_index(demo);
		/* The reference outlives the demo. */
		fresh_demo_free(demo);
		ck_assert_uint_eq(fresh_index_size(idx), n);
		ck_assert_uint_eq(fresh_index_dim(idx), d);
		ck_assert_str_eq(fresh_index_source(idx), "demo");
		x = fresh_index_vectors(idx);
		for (size_t i = 0; i < n; i++) {
			ck_assert_uint_eq(fresh_index_ids(idx)[i], i);
			ck_assert(fresh_index_find(idx, i, &row) && row == i);
			ck_assert_double_eq_tol(dot(x + i * d, x + i * d, d),
						1.0, 1e-5);
		}
		ck_assert(!fresh_index_find(idx, n, &row));
		fresh_index_release(idx);
	}
}
END_TEST

START_TEST(rows_cluster_by_topic)
{
	/*
	 * Random unit vectors in 128 dimensions have cosines of standard
	 * deviation 1/sqrt(128) = 0.088: among 1500 the nearest is at about
	 * 0.3. Two members of one topic are at about 0.55, and with 1500
	 * rows over 500 topics most rows share theirs with another. So most
	 * rows should have a neighbour above 0.4, and random ones almost
	 * none.
	 */
	enum { N = 1500, D = 128 };
	struct fresh_demo *demo;
	struct fresh_index *idx;
	const float *x;
	float *rnd = malloc(N * D * sizeof *rnd);
	struct tu_rng r = {3};
	size_t close = 0, close_rnd = 0;

	ck_assert_int_eq(fresh_demo_create(N, D, 9, &demo), FRESH_OK);
	idx = fresh_demo_index(demo);
	x = fresh_index_vectors(idx);
	tu_fill_normal(&r, rnd, N * D);
	for (size_t i = 0; i < N; i++) {
		double nn = sqrt(dot(rnd + i * D, rnd + i * D, D));
		for (size_t c = 0; c < D; c++)
			rnd[i * D + c] = (float)(rnd[i * D + c] / nn);
	}
	for (size_t i = 0; i < N; i++) {
		double best = -2.0, best_rnd = -2.0;
		for (size_t j = 0; j < N; j++) {
			double c, cr;
			if (j == i)
				continue;
			c = dot(x + i * D, x + j * D, D);
			cr = dot(rnd + i * D, rnd + j * D, D);
			best = c > best ? c : best;
			best_rnd = cr > best_rnd ? cr : best_rnd;
		}
		close += best > 0.4;
		close_rnd += best_rnd > 0.4;
	}
	ck_assert_uint_gt(close, N * 8 / 10);  /* measured: 96% */
	ck_assert_uint_lt(close_rnd, N / 100); /* measured: none */
	free(rnd);
	fresh_index_release(idx);
	fresh_demo_free(demo);
}
END_TEST

START_TEST(fresh_rows_agree_and_drift)
{
	enum { N = 1500, D = 128 };
	struct fresh_demo *demo;
	struct fresh_index *idx;
	const float *x, *all;
	size_t rows[7] = {0, 1499, 3, 3, 700, 42, 1};
	float got[7 * D];
	double mean_cos = 0.0;
	size_t changed = 0;

	ck_assert_int_eq(fresh_demo_create(N, D, 11, &demo), FRESH_OK);
	idx = fresh_demo_index(demo);
	x = fresh_index_vectors(idx);
	all = fresh_demo_fresh_all(demo);
	ck_assert_ptr_nonnull(all);
	/* Some rows, in any order and repeated, as in the all-rows array
	 * (both go through sgemm, batched differently: float tolerance). */
	ck_assert_int_eq(fresh_demo_fresh(demo, rows, 7, got), FRESH_OK);
	for (size_t i = 0; i < 7; i++)
		for (size_t c = 0; c < D; c++)
			ck_assert_double_eq_tol(got[i * D + c],
						all[rows[i] * D + c], 1e-5);
	for (size_t c = 0; c < D; c++) /* row 3 twice */
		ck_assert_double_eq_tol(got[2 * D + c], got[3 * D + c], 1e-6);
	ck_assert_int_eq(fresh_demo_fresh(demo, rows, 0, got), FRESH_OK);

	for (size_t i = 0; i < N; i++) {
		double c = dot(x + i * D, all + i * D, D);
		ck_assert_double_eq_tol(dot(all + i * D, all + i * D, D), 1.0,
					1e-5);
		mean_cos += c / N;
	}
	/* Related but clearly moved (measured: 0.50 on average). */
	ck_assert_double_gt(mean_cos, 0.3);
	ck_assert_double_lt(mean_cos, 0.8);
	/* Nearest neighbours change for a good share of 300 rows
	 * (measured: a third). */
	for (size_t i = 0; i < 300; i++) {
		double bs = -2.0, bf = -2.0;
		size_t js = 0, jf = 0;
		for (size_t j = 0; j < N; j++) {
			double s, f;
			if (j == i)
				continue;
			s = dot(x + i * D, x + j * D, D);
			f = dot(all + i * D, all + j * D, D);
			if (s > bs) {
				bs = s;
				js = j;
			}
			if (f > bf) {
				bf = f;
				jf = j;
			}
		}
		changed += js != jf;
	}
	ck_assert_uint_gt(changed, 300 / 10);
	ck_assert_uint_lt(changed, 300 * 9 / 10);
	fresh_index_release(idx);
	fresh_demo_free(demo);
}
END_TEST

static Suite *demo_suite(void)
{
	Suite *s = suite_create("demo");
	TCase *tc = tcase_create("corpus");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, deterministic_for_a_seed);
	tcase_add_test(tc, index_shape_ids_unit_rows);
	tcase_add_test(tc, rows_cluster_by_topic);
	tcase_add_test(tc, fresh_rows_agree_and_drift);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(demo_suite());
}
