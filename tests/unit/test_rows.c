/*
 * test_rows.c - row helpers: squared norms against a double loop (and
 * beyond float's range, which is why they accumulate in double), rows
 * scaled to unit length with their inverse norms (a zero row stays zero),
 * and the backward pass of y = h / ||h|| against central finite
 * differences of the scalar loss L(h) = sum(c * normalize(h)).
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rows.h"
#include "testutil.h"

static double naive_sq(const float *v, size_t d)
{
	double s = 0.0;

	for (size_t i = 0; i < d; i++)
		s += (double)v[i] * (double)v[i];
	return s;
}

START_TEST(sq_norm_matches_double_loop)
{
	static const size_t dims[] = {0, 1, 2, 3, 7, 8, 31, 64, 1000, 4097};
	float *v = malloc(4097 * sizeof *v);
	struct tu_rng r = {1};

	for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
		double want;
		tu_fill_normal(&r, v, dims[k]);
		want = naive_sq(v, dims[k]);
		ck_assert_double_eq_tol(fresh_sq_norm(v, dims[k]), want,
					1e-12 * (want + 1.0));
	}
	/* Integers: exact. */
	tu_fill_int(&r, v, 1000, 50);
	ck_assert_double_eq(fresh_sq_norm(v, 1000), naive_sq(v, 1000));
	free(v);
}
END_TEST

START_TEST(sq_norm_in_double_range)
{
	/* Squares that overflow and underflow float are fine in double. */
	float big[4] = {1e30f, -1e30f, 2e30f, 0.0f};
	float tiny[3] = {1e-30f, 1e-30f, -1e-30f};

	ck_assert_double_eq_tol(fresh_sq_norm(big, 4), 6e60, 6e60 * 1e-6);
	ck_assert(fresh_sq_norm(big, 4) > (double)FLT_MAX);
	ck_assert_double_eq_tol(fresh_sq_norm(tiny, 3), 3e-60, 3e-60 * 1e-6);
	ck_assert(fresh_sq_norm(tiny, 3) > 0.0);
}
END_TEST

START_TEST(normalize_rows_unit_length)
{
	enum { N = 40, D = 13 };
	float x[N * D], y[N * D], inv[N];
	struct tu_rng r = {2};

	tu_fill_normal(&r, x, N * D);
	for (size_t c = 0; c < D; c++) {
		x[5 * D + c] = 0.0f;			   /* zero row */
		x[7 * D + c] = 1e-25f * (float)(c + 1);	   /* tiny row */
		x[9 * D + c] = 1e25f * (float)(c % 3 + 1); /* huge row */
	}
	memcpy(y, x, sizeof x);
	fresh_normalize_rows(y, N, D, inv, 1);
	for (size_t i = 0; i < N; i++) {
		double norm = sqrt(naive_sq(x + i * D, D));
		if (i == 5) {
			ck_assert_float_eq(inv[i], 0.0f);
			for (size_t c = 0; c < D; c++)
				ck_assert_float_eq(y[i * D + c], 0.0f);
			continue;
		}
		/* Float rounding of d products: a few ulps of 1. */
		ck_assert_double_eq_tol(sqrt(naive_sq(y + i * D, D)), 1.0,
					1e-6);
		ck_assert_double_eq_tol(inv[i], 1.0 / norm, 1e-6 / norm);
		for (size_t c = 0; c < D; c++)
			ck_assert_double_eq_tol(y[i * D + c],
						x[i * D + c] / norm, 1e-6);
	}
}
END_TEST

START_TEST(normalize_rows_inv_only)
{
	enum { N = 6, D = 4 };
	float x[N * D], y[N * D], inv[N], inv2[N];
	struct tu_rng r = {3};

	tu_fill_normal(&r, x, N * D);
	memset(x + 2 * D, 0, D * sizeof *x);
	memcpy(y, x, sizeof x);
	fresh_normalize_rows(y, N, D, inv, 0);
	ck_assert_mem_eq(y, x, sizeof x); /* rows untouched */
	for (size_t i = 0; i < N; i++)
		ck_assert_double_eq_tol(
			inv[i],
			i == 2 ? 0.0 : 1.0 / sqrt(naive_sq(x + i * D, D)),
			1e-6);
	/* inv NULL: just the scaling; same rows as with inv. */
	fresh_normalize_rows(y, N, D, NULL, 1);
	memcpy(x, y, sizeof x);
	memcpy(y, x, sizeof x);
	fresh_normalize_rows(y, N, D, inv2, 1);
	for (size_t i = 0; i < N; i++)
		ck_assert_double_eq_tol(inv2[i], i == 2 ? 0.0 : 1.0, 1e-6);
}
END_TEST

/* L(h) = sum_c c[c] * h[c] / ||h||, in double. */
static double loss(const double *h, const float *c, size_t d)
{
	double ss = 0.0, dot = 0.0;

	for (size_t i = 0; i < d; i++) {
		ss += h[i] * h[i];
		dot += (double)c[i] * h[i];
	}
	return dot / sqrt(ss);
}

START_TEST(backward_matches_finite_differences)
{
	/*
	 * Central differences of L in double with step eps = 1e-5 * ||h||:
	 * truncation error ~ eps^2 |L'''| ~ 1e-10 ||c|| / ||h||, rounding
	 * error ~ 1e-16 |L| / eps ~ 1e-11 ||c|| / ||h||; both far below the
	 * float error of the analytic gradient (float y, float products),
	 * which is a few 1e-7 of its scale ||c|| / ||h||. Tolerance 1e-5 of
	 * that scale: ~30x margin over the float error, while a wrong term
	 * (a dropped projection, a missing inv) is off by order 1.
	 */
	static const size_t dims[] = {1, 2, 5, 16, 100};
	struct tu_rng r = {4};

	for (size_t k = 0; k < sizeof dims / sizeof *dims; k++) {
		size_t d = dims[k], n = 3;
		float *h = malloc(n * d * sizeof *h), *y = malloc(n * d * 4);
		float *dy = malloc(n * d * sizeof *dy), inv[3];
		float *c = malloc(n * d * sizeof *c);
		double *hd = malloc(d * sizeof *hd);

		tu_fill_normal(&r, h, n * d);
		tu_fill_normal(&r, c, n * d);
		for (size_t i = 0; i < n * d; i++)
			h[i] *= (float)(1 + (i / d) * 10); /* norms vary */
		memcpy(y, h, n * d * sizeof *h);
		fresh_normalize_rows(y, n, d, inv, 1);
		memcpy(dy, c, n * d * sizeof *c); /* dL/dy = c */
		fresh_normalize_backward(dy, y, inv, n, d);
		for (size_t i = 0; i < n; i++) {
			const float *hi = h + i * d, *ci = c + i * d;
			double norm = sqrt(naive_sq(hi, d));
			double scale = sqrt(naive_sq(ci, d)) / norm;
			double eps = 1e-5 * norm, along = 0.0;

			for (size_t j = 0; j < d; j++) {
				double fd;
				for (size_t t = 0; t < d; t++)
					hd[t] = hi[t];
				hd[j] = hi[j] + eps;
				fd = loss(hd, ci, d);
				hd[j] = hi[j] - eps;
				fd = (fd - loss(hd, ci, d)) / (2 * eps);
				ck_assert_msg(fabs(dy[i * d + j] - fd) <=
						      1e-5 * scale,
					      "d %zu row %zu col %zu: %g vs %g",
					      d, i, j, dy[i * d + j], fd);
				along += (double)dy[i * d + j] * hi[j];
			}
			/* L is scale-invariant: no gradient along h. */
			ck_assert_double_eq_tol(along, 0.0,
						1e-5 * scale * norm);
		}
		free(h);
		free(y);
		free(dy);
		free(c);
		free(hd);
	}
}
END_TEST

START_TEST(backward_zero_row)
{
	/* A zero row's output is constant zero: no gradient flows. */
	float y[3] = {0, 0, 0}, inv[1] = {0}, dy[3] = {1, -2, 3};

	fresh_normalize_backward(dy, y, inv, 1, 3);
	for (int i = 0; i < 3; i++)
		ck_assert_float_eq(dy[i], 0.0f);
}
END_TEST

static Suite *rows_suite(void)
{
	Suite *s = suite_create("rows");
	TCase *norms = tcase_create("norms");
	TCase *grad = tcase_create("backward");

	tcase_add_test(norms, sq_norm_matches_double_loop);
	tcase_add_test(norms, sq_norm_in_double_range);
	tcase_add_test(norms, normalize_rows_unit_length);
	tcase_add_test(norms, normalize_rows_inv_only);
	tcase_add_test(grad, backward_matches_finite_differences);
	tcase_add_test(grad, backward_zero_row);
	suite_add_tcase(s, norms);
	suite_add_tcase(s, grad);
	return s;
}

int main(void)
{
	return tu_run(rows_suite());
}
