/*
 * ridge.h - closed-form ridge regression with its penalty chosen by
 * leave-one-out cross-validation: the affine start of every refit.
 *
 * Fits y ≈ M x + c over n pairs (x of width p, y of width q), minimizing
 * sum ||y - M x - c||² + lambda ||M||², the intercept unpenalized.
 */
#ifndef FRESH_RIDGE_H
#define FRESH_RIDGE_H

#include <stddef.h>

#include "status.h"

struct fresh_ridge_result {
	double lambda;	/* chosen penalty */
	double loo_mse; /* its leave-one-out mean squared error per pair */
	size_t tried;	/* penalties evaluated */
};

/*
 * x is n x p, y is n x q (row-major). Writes m (q x p, row-major, so that
 * y = m x + c) and c (q). With lambda_fixed > 0 that penalty is used and no
 * search is made. Needs n >= 2.
 */
enum fresh_status fresh_ridge_fit(const float *x, const float *y, size_t n,
				  size_t p, size_t q, double lambda_fixed,
				  float *m, float *c,
				  struct fresh_ridge_result *res);

#endif
