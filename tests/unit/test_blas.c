/*
 * test_blas.c - the BLAS and LAPACK door: sgemm and sgemv in every
 * transposition with leading dimensions wider than the matrices, alpha
 * and beta, against double loops (integer-valued inputs: exact); sdot;
 * sizes beyond BLAS's int refused before any memory is touched; empty
 * products leave c alone; and ssyev's eigenpairs satisfy A v = w v with
 * orthonormal rows of v and ascending w.
 */
#include <check.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "testutil.h"

/* Element (i, j) of op(x), x stored row-major with leading dim ld. */
static double at(const float *x, size_t ld, bool trans, size_t i, size_t j)
{
	return trans ? x[j * ld + i] : x[i * ld + j];
}

/* c = 2 op(a) op(b) - c / 2 for one shape, checked element by element. */
static void check_gemm(size_t m, size_t n, size_t k, bool ta, bool tb,
		       struct tu_rng *r)
{
	/* Stored shapes, with 3 spare columns each. */
	size_t ar = ta ? k : m, ac = ta ? m : k;
	size_t br = tb ? n : k, bc = tb ? k : n;
	size_t lda = ac + 3, ldb = bc + 3, ldc = n + 3;
	float *a = malloc(ar * lda * sizeof *a);
	float *b = malloc(br * ldb * sizeof *b);
	float *c = malloc(m * ldc * sizeof *c);
	float *c0 = malloc(m * ldc * sizeof *c0);
	size_t bad = 0;

	tu_fill_int(r, a, ar * lda, 4);
	tu_fill_int(r, b, br * ldb, 4);
	tu_fill_int(r, c, m * ldc, 4);
	memcpy(c0, c, m * ldc * sizeof *c);
	ck_assert_int_eq(fresh_sgemm(ta, tb, m, n, k, 2.0f, a, lda, b, ldb,
				     -0.5f, c, ldc),
			 FRESH_OK);
	for (size_t i = 0; i < m; i++)
		for (size_t j = 0; j < ldc; j++) {
			double want = c0[i * ldc + j], d = 0.0;
			/* The spare columns must be left alone. */
			if (j < n) {
				for (size_t t = 0; t < k; t++)
					d += at(a, lda, ta, i, t) *
					     at(b, ldb, tb, t, j);
				want = 2.0 * d - 0.5 * want;
			}
			bad += c[i * ldc + j] != (float)want;
		}
	ck_assert_msg(bad == 0, "%zux%zux%zu ta %d tb %d: %zu wrong", m, n, k,
		      ta, tb, bad);
	free(a);
	free(b);
	free(c);
	free(c0);
}

START_TEST(sgemm_every_transposition)
{
	static const size_t shapes[][3] = {
		{1, 1, 1}, {3, 5, 7}, {17, 4, 33}, {64, 65, 9}, {2, 300, 5}};
	struct tu_rng r = {1};

	fresh_blas_init();
	fresh_blas_init(); /* idempotent */
	for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
		for (int ta = 0; ta < 2; ta++)
			for (int tb = 0; tb < 2; tb++)
				check_gemm(shapes[s][0], shapes[s][1],
					   shapes[s][2], ta, tb, &r);
}
END_TEST

START_TEST(sgemv_both_ways_and_sdot)
{
	enum { M = 37, NN = 23, LDA = 29 };
	float a[M * LDA], x[M], y[M], y0[M];
	struct tu_rng r = {2};

	tu_fill_int(&r, a, M * LDA, 5);
	tu_fill_int(&r, x, M, 5);
	tu_fill_int(&r, y, M, 5);
	memcpy(y0, y, sizeof y);
	/* y[M] = 3 A x + y, A stored M x NN. */
	ck_assert_int_eq(fresh_sgemv(false, M, NN, 3.0f, a, LDA, x, 1.0f, y),
			 FRESH_OK);
	for (size_t i = 0; i < M; i++) {
		double d = 0.0;
		for (size_t j = 0; j < NN; j++)
			d += (double)a[i * LDA + j] * x[j];
		ck_assert_float_eq(y[i], (float)(3.0 * d + y0[i]));
	}
	/* y[NN] = Aᵀ x. */
	memcpy(y, y0, sizeof y);
	ck_assert_int_eq(fresh_sgemv(true, M, NN, 1.0f, a, LDA, x, 0.0f, y),
			 FRESH_OK);
	for (size_t j = 0; j < NN; j++) {
		double d = 0.0;
		for (size_t i = 0; i < M; i++)
			d += (double)a[i * LDA + j] * x[i];
		ck_assert_float_eq(y[j], (float)d);
	}
	ck_assert_float_eq(y[NN], y0[NN]); /* past the output: untouched */
	{
		double d = 0.0;
		for (size_t i = 0; i < M; i++)
			d += (double)a[i] * x[i];
		ck_assert_float_eq(fresh_sdot(M, a, x), (float)d);
		ck_assert_float_eq(fresh_sdot(0, a, x), 0.0f);
	}
}
END_TEST

START_TEST(sizes_checked_before_the_cast)
{
	size_t big = (size_t)INT_MAX + 1;
	float c[4] = {1, 2, 3, 4};

	/* NULL matrices: a refused call must not touch them. */
	ck_assert_int_eq(fresh_sgemm(false, false, big, 1, 1, 1.0f, NULL, 1,
				     NULL, 1, 0.0f, NULL, 1),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_sgemm(false, false, 1, big, 1, 1.0f, NULL, 1,
				     NULL, 1, 0.0f, NULL, 1),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_sgemm(false, false, 1, 1, big, 1.0f, NULL, 1,
				     NULL, 1, 0.0f, NULL, 1),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_sgemm(false, false, 1, 1, 1, 1.0f, NULL, big,
				     NULL, 1, 0.0f, NULL, 1),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_sgemm(false, false, 1, 1, 1, 1.0f, NULL, 1, NULL,
				     big, 0.0f, NULL, 1),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_sgemm(false, false, 1, 1, 1, 1.0f, NULL, 1, NULL,
				     1, 0.0f, NULL, big),
			 FRESH_TOO_LARGE);
	ck_assert_int_eq(
		fresh_sgemv(false, big, 1, 1.0f, NULL, 1, NULL, 0.0f, NULL),
		FRESH_TOO_LARGE);
	ck_assert_int_eq(
		fresh_sgemv(true, 1, big, 1.0f, NULL, 1, NULL, 0.0f, NULL),
		FRESH_TOO_LARGE);
	ck_assert_int_eq(
		fresh_sgemv(false, 1, 1, 1.0f, NULL, big, NULL, 0.0f, NULL),
		FRESH_TOO_LARGE);
	ck_assert_int_eq(fresh_ssyev(big, NULL, NULL), FRESH_TOO_LARGE);
	/* INT_MAX itself fits; empty products are no-ops. */
	ck_assert_int_eq(fresh_sgemm(false, false, 0, INT_MAX, 1, 1.0f, NULL, 1,
				     NULL, INT_MAX, 0.0f, NULL, INT_MAX),
			 FRESH_OK);
	ck_assert_int_eq(fresh_sgemm(false, false, 2, 0, 3, 1.0f, NULL, 3, NULL,
				     1, 0.0f, c, 2),
			 FRESH_OK);
	ck_assert_int_eq(fresh_sgemv(false, 0, 4, 1.0f, NULL, 4, NULL, 0.0f, c),
			 FRESH_OK);
	ck_assert_int_eq(fresh_ssyev(0, NULL, NULL), FRESH_OK);
	for (int i = 0; i < 4; i++)
		ck_assert_float_eq(c[i], (float)(i + 1));
}
END_TEST

START_TEST(ssyev_eigenpairs)
{
	static const size_t sizes[] = {1, 2, 5, 40};
	struct tu_rng r = {3};

	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		size_t n = sizes[s];
		float *g = malloc(n * n * sizeof *g);
		float *a = malloc(n * n * sizeof *a),
		      *w = malloc(n * sizeof *w);
		double scale = 0.0;

		/* A symmetric matrix G + Gᵀ, kept for the check. */
		tu_fill_normal(&r, g, n * n);
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++)
				a[i * n + j] = g[i * n + j] + g[j * n + i];
		memcpy(g, a, n * n * sizeof *g);
		for (size_t i = 0; i < n * n; i++)
			scale += (double)g[i] * g[i];
		scale = sqrt(scale); /* Frobenius norm >= |every eigenvalue| */
		ck_assert_int_eq(fresh_ssyev(n, a, w), FRESH_OK);
		for (size_t i = 1; i < n; i++)
			ck_assert_float_le(w[i - 1], w[i]);
		/*
		 * Float LAPACK: residuals and orthogonality are O(n eps) of
		 * the norm; 1e-4 is generous at n = 40 (n eps = 5e-6) and
		 * still far below what a wrong vector or a row/column mix-up
		 * would give (order 1).
		 */
		for (size_t k = 0; k < n; k++) {
			const float *v = a + k * n;
			for (size_t i = 0; i < n; i++) {
				double av = 0.0;
				for (size_t j = 0; j < n; j++)
					av += (double)g[i * n + j] * v[j];
				ck_assert_double_eq_tol(av, (double)w[k] * v[i],
							1e-4 * scale);
			}
			for (size_t l = 0; l <= k; l++) {
				double d = 0.0;
				for (size_t i = 0; i < n; i++)
					d += (double)v[i] * a[l * n + i];
				ck_assert_double_eq_tol(d, l == k ? 1.0 : 0.0,
							1e-4);
			}
		}
		free(g);
		free(a);
		free(w);
	}
}
END_TEST

static Suite *blas_suite(void)
{
	Suite *s = suite_create("blas");
	TCase *tc = tcase_create("blas");

	tcase_add_test(tc, sgemm_every_transposition);
	tcase_add_test(tc, sgemv_both_ways_and_sdot);
	tcase_add_test(tc, sizes_checked_before_the_cast);
	tcase_add_test(tc, ssyev_eigenpairs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(blas_suite());
}
