/*
 * blas.c - OpenBLAS and LAPACK behind size-checked wrappers.
 *
 * Design: the only translation unit that includes <cblas.h> or declares a
 * LAPACK symbol, so that the numeric backend is swappable in one place and
 * every int cast is checked here. LAPACK is column-major; a symmetric
 * matrix is its own transpose, which is why ssyev needs no copy.
 */
#include "blas.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

#include <pthread.h>

/* LAPACK, from OpenBLAS's bundled reference implementation. */
extern void ssyevd_(const char *jobz, const char *uplo, const int *n, float *a,
		    const int *lda, float *w, float *work, const int *lwork,
		    int *iwork, const int *liwork, int *info);

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_threads(void)
{
	openblas_set_num_threads(1);
}

void fresh_blas_init(void)
{
	pthread_once(&init_once, init_threads);
}

static bool fits(size_t x)
{
	return x <= (size_t)INT_MAX;
}

enum fresh_status fresh_sgemm(bool trans_a, bool trans_b, size_t m, size_t n,
			      size_t k, float alpha, const float *a, size_t lda,
			      const float *b, size_t ldb, float beta, float *c,
			      size_t ldc)
{
	if (!fits(m) || !fits(n) || !fits(k) || !fits(lda) || !fits(ldb) ||
	    !fits(ldc))
		return FRESH_TOO_LARGE;
	if (m == 0 || n == 0)
		return FRESH_OK;
	fresh_blas_init();
	cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
		    trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
		    alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
	return FRESH_OK;
}

enum fresh_status fresh_sgemv(bool trans, size_t m, size_t n, float alpha,
			      const float *a, size_t lda, const float *x,
			      float beta, float *y)
{
	if (!fits(m) || !fits(n) || !fits(lda))
		return FRESH_TOO_LARGE;
	if (m == 0 || n == 0)
		return FRESH_OK;
	fresh_blas_init();
	cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, (int)m,
		    (int)n, alpha, a, (int)lda, x, 1, beta, y, 1);
	return FRESH_OK;
}

float fresh_sdot(size_t n, const float *x, const float *y)
{
	/* Long vectors are summed in int-sized pieces. */
	float sum = 0.0f;
	fresh_blas_init();
	while (n > 0) {
		size_t part = fits(n) ? n : (size_t)INT_MAX;
		sum += cblas_sdot((int)part, x, 1, y, 1);
		x += part;
		y += part;
		n -= part;
	}
	return sum;
}

enum fresh_status fresh_ssyev(size_t n, float *a, float *w)
{
	enum fresh_status st = FRESH_OK;
	float *work = NULL;
	int *iwork = NULL;
	int nn, info = 0, lwork = -1, liwork = -1, iwq = 0;
	float wq = 0.0f;

	if (!fits(n))
		return FRESH_TOO_LARGE;
	if (n == 0)
		return FRESH_OK;
	fresh_blas_init();
	nn = (int)n;
	/* Workspace query, then the real call. */
	ssyevd_("V", "U", &nn, a, &nn, w, &wq, &lwork, &iwq, &liwork, &info);
	if (info != 0)
		return FRESH_INVALID;
	lwork = (int)wq + 1;
	liwork = iwq;
	work = malloc(sizeof *work * (size_t)lwork);
	iwork = malloc(sizeof *iwork * (size_t)liwork);
	if (!work || !iwork) {
		st = FRESH_NOMEM;
		goto out;
	}
	ssyevd_("V", "U", &nn, a, &nn, w, work, &lwork, iwork, &liwork, &info);
	if (info != 0)
		st = FRESH_INVALID;
out:
	free(work);
	free(iwork);
	return st;
}
