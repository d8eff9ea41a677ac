/*
 * test_ridge.c - closed-form ridge: recovers a known affine map, and its
 * closed-form leave-one-out error equals n refits with one pair left out.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ridge.h"
#include "testutil.h"

START_TEST(recovers_affine_map)
{
	size_t n = 400, p = 10, q = 6;
	struct tu_rng r = {1};
	float *x = malloc(n * p * sizeof *x), *y = malloc(n * q * sizeof *y);
	float m_true[6 * 10], c_true[6], m[6 * 10], c[6];
	struct fresh_ridge_result res;

	tu_fill_normal(&r, x, n * p);
	tu_fill_normal(&r, m_true, q * p);
	tu_fill_normal(&r, c_true, q);
	for (size_t i = 0; i < n; i++)
		for (size_t o = 0; o < q; o++) {
			double v = c_true[o];
			for (size_t j = 0; j < p; j++)
				v += m_true[o * p + j] * x[i * p + j];
			y[i * q + o] = (float)v;
		}
	ck_assert_int_eq(fresh_ridge_fit(x, y, n, p, q, 0.0, m, c, &res),
			 FRESH_OK);
	ck_assert_uint_eq(res.tried, 15);
	/* Noiseless: the smallest penalty wins and the map is recovered. */
	for (size_t i = 0; i < q * p; i++)
		ck_assert_float_eq_tol(m[i], m_true[i], 2e-3f);
	for (size_t o = 0; o < q; o++)
		ck_assert_float_eq_tol(c[o], c_true[o], 2e-3f);
	ck_assert(res.loo_mse < 1e-4);
	free(x);
	free(y);
}
END_TEST

START_TEST(loo_formula_equals_refits)
{
	size_t n = 30, p = 5, q = 3;
	double lambda = 2.5, brute = 0.0;
	struct tu_rng r = {2};
	float *x = malloc(n * p * sizeof *x), *y = malloc(n * q * sizeof *y);
	float *xs = malloc(n * p * sizeof *xs),
	      *ys = malloc(n * q * sizeof *ys);
	float m[3 * 5], c[3];
	struct fresh_ridge_result res;

	tu_fill_normal(&r, x, n * p);
	tu_fill_normal(&r, y, n * q);
	for (size_t i = 0; i < n * q; i++)
		y[i] += 0.5f * x[(i / q) * p + i % q];
	ck_assert_int_eq(fresh_ridge_fit(x, y, n, p, q, lambda, m, c, &res),
			 FRESH_OK);
	for (size_t out = 0; out < n; out++) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (i == out)
				continue;
			memcpy(xs + k * p, x + i * p, p * sizeof *x);
			memcpy(ys + k * q, y + i * q, q * sizeof *y);
			k++;
		}
		ck_assert_int_eq(fresh_ridge_fit(xs, ys, n - 1, p, q, lambda, m,
						 c, NULL),
				 FRESH_OK);
		for (size_t o = 0; o < q; o++) {
			double pred = c[o];
			for (size_t j = 0; j < p; j++)
				pred += m[o * p + j] * x[out * p + j];
			brute += (y[out * q + o] - pred) *
				 (y[out * q + o] - pred);
		}
	}
	brute /= (double)n;
	ck_assert_msg(fabs(brute - res.loo_mse) < 1e-3 * brute,
		      "closed form %g, refits %g", res.loo_mse, brute);
	free(x);
	free(y);
	free(xs);
	free(ys);
}
END_TEST

START_TEST(penalty_shrinks_toward_zero)
{
	size_t n = 20, p = 40, q = 2; /* more features than pairs */
	struct tu_rng r = {3};
	float *x = malloc(n * p * sizeof *x), *y = malloc(n * q * sizeof *y);
	float m_small[2 * 40], m_big[2 * 40], c[2];
	double ns = 0.0, nb = 0.0;

	tu_fill_normal(&r, x, n * p);
	tu_fill_normal(&r, y, n * q);
	ck_assert_int_eq(fresh_ridge_fit(x, y, n, p, q, 0.1, m_small, c, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_ridge_fit(x, y, n, p, q, 1000.0, m_big, c, NULL),
			 FRESH_OK);
	for (size_t i = 0; i < q * p; i++) {
		ck_assert(isfinite(m_small[i]) && isfinite(m_big[i]));
		ns += m_small[i] * m_small[i];
		nb += m_big[i] * m_big[i];
	}
	ck_assert(nb < 0.1 * ns);
	ck_assert_int_eq(fresh_ridge_fit(x, y, 1, p, q, 0.0, m_big, c, NULL),
			 FRESH_INVALID);
	free(x);
	free(y);
}
END_TEST

static Suite *ridge_suite(void)
{
	Suite *s = suite_create("ridge");
	TCase *tc = tcase_create("fit");

	tcase_add_test(tc, recovers_affine_map);
	tcase_add_test(tc, loo_formula_equals_refits);
	tcase_add_test(tc, penalty_shrinks_toward_zero);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(ridge_suite());
}
