/*
 * blas.h - the core's only door to OpenBLAS and LAPACK.
 *
 * All matrices are row-major. Dimensions are size_t everywhere in freshd;
 * these wrappers check them against BLAS's int before the cast and refuse
 * (FRESH_TOO_LARGE) rather than truncate. Callers split large matrices into
 * row blocks, so in practice only a caller's bug can trip the check.
 *
 * Threads: freshd owns the cores (core/pool.c); OpenBLAS is told to run each
 * call on the calling thread only, so that concurrent calls from our
 * workers never wake a second pool that would spin against ours.
 */
#ifndef FRESH_BLAS_H
#define FRESH_BLAS_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Makes every later BLAS call single-threaded. Idempotent, thread-safe. */
void fresh_blas_init(void);

/* c[m x n] = alpha * op(a) * op(b) + beta * c, op(x) = x or xᵀ. */
enum fresh_status fresh_sgemm(bool trans_a, bool trans_b, size_t m, size_t n,
			      size_t k, float alpha, const float *a, size_t lda,
			      const float *b, size_t ldb, float beta, float *c,
			      size_t ldc);

/* y[m] = alpha * op(a) * x + beta * y, with a stored as m x n. */
enum fresh_status fresh_sgemv(bool trans, size_t m, size_t n, float alpha,
			      const float *a, size_t lda, const float *x,
			      float beta, float *y);

/* Dot product of two contiguous float vectors, accumulated by BLAS. */
float fresh_sdot(size_t n, const float *x, const float *y);

/*
 * Eigen-decomposition of the symmetric n x n matrix a (both triangles
 * valid): on success the rows of a are orthonormal eigenvectors and w their
 * eigenvalues, ascending. On failure a is clobbered.
 */
enum fresh_status fresh_ssyev(size_t n, float *a, float *w);

#endif
