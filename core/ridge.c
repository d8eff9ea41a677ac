/*
 * ridge.c - ridge regression by eigen-decomposition (see ridge.h).
 *
 * Design: center x and y; decompose the Gram matrix XᵀX = Eᵀ diag(e) E once
 * (LAPACK ssyevd). In that basis every penalty costs two GEMMs:
 *   Z = X Eᵀ (n x p), R = Zᵀ Y (p x q),
 *   prediction Ŷ(λ) = Z diag(1/(e+λ)) R, hat diagonal
 *   h_ii(λ) = 1/n + Σ_j Z_ij² / (e_j + λ),
 * and the exact leave-one-out residual of pair i is (y_i - ŷ_i)/(1 - h_ii).
 * Penalties are tried on a log grid relative to the mean eigenvalue, the
 * one with the least leave-one-out error wins, and M = Eᵀ diag(1/(e+λ)) R.
 * Sums that decide the choice are accumulated in double.
 */
#include "ridge.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "mem.h"

/* Penalties tried: mean eigenvalue times 10^(k/2), k in [-10, 4]. */
#define GRID_LO (-10)
#define GRID_HI 4

struct ws {
	float *xc, *yc, *gram, *eig, *z, *r, *zs, *pred;
};

static void ws_free(struct ws *w)
{
	fresh_free(w->xc);
	fresh_free(w->yc);
	fresh_free(w->gram);
	fresh_free(w->eig);
	fresh_free(w->z);
	fresh_free(w->r);
	fresh_free(w->zs);
	fresh_free(w->pred);
}

static void center(const float *a, size_t n, size_t w, float *out, float *mean)
{
	for (size_t j = 0; j < w; j++) {
		double s = 0.0;
		for (size_t i = 0; i < n; i++)
			s += a[i * w + j];
		mean[j] = (float)(s / (double)n);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < w; j++)
			out[i * w + j] = a[i * w + j] - mean[j];
}

/* Leave-one-out MSE (per pair, summed over outputs) of penalty lambda. */
static enum fresh_status loo_error(struct ws *w, size_t n, size_t p, size_t q,
				   double lambda, double *out)
{
	double total = 0.0;
	enum fresh_status st;

	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < p; j++)
			w->zs[i * p + j] = w->z[i * p + j] /
					   (float)((double)w->eig[j] + lambda);
	st = fresh_sgemm(false, false, n, q, p, 1.0f, w->zs, p, w->r, q, 0.0f,
			 w->pred, q);
	if (st != FRESH_OK)
		return st;
	for (size_t i = 0; i < n; i++) {
		double h = 1.0 / (double)n, e2 = 0.0, denom;
		for (size_t j = 0; j < p; j++) {
			double zij = w->z[i * p + j];
			h += zij * zij / ((double)w->eig[j] + lambda);
		}
		for (size_t k = 0; k < q; k++) {
			double e = (double)w->yc[i * q + k] -
				   (double)w->pred[i * q + k];
			e2 += e * e;
		}
		denom = 1.0 - h;
		if (denom < 1e-6)
			denom = 1e-6;
		total += e2 / (denom * denom);
	}
	*out = total / (double)n;
	return FRESH_OK;
}

enum fresh_status fresh_ridge_fit(const float *x, const float *y, size_t n,
				  size_t p, size_t q, double lambda_fixed,
				  float *m, float *c,
				  struct fresh_ridge_result *res)
{
	struct ws w;
	float *xmean = NULL, *ymean = NULL;
	double mean_eig = 0.0, best = DBL_MAX, best_lambda = 0.0;
	enum fresh_status st = FRESH_NOMEM;
	size_t tried = 0;

	memset(&w, 0, sizeof w);
	if (n < 2 || p == 0 || q == 0)
		return FRESH_INVALID;
	xmean = malloc(p * sizeof *xmean);
	ymean = malloc(q * sizeof *ymean);
	w.xc = fresh_alloc(n, p * sizeof(float));
	w.yc = fresh_alloc(n, q * sizeof(float));
	w.gram = fresh_alloc(p, p * sizeof(float));
	w.eig = fresh_alloc(p, sizeof(float));
	w.z = fresh_alloc(n, p * sizeof(float));
	w.r = fresh_alloc(p, q * sizeof(float));
	w.zs = fresh_alloc(n, p * sizeof(float));
	w.pred = fresh_alloc(n, q * sizeof(float));
	if (!xmean || !ymean || !w.xc || !w.yc || !w.gram || !w.eig || !w.z ||
	    !w.r || !w.zs || !w.pred)
		goto out;

	center(x, n, p, w.xc, xmean);
	center(y, n, q, w.yc, ymean);
	/* Gram = Xcᵀ Xc; rows of gram become the eigenvectors E. */
	st = fresh_sgemm(true, false, p, p, n, 1.0f, w.xc, p, w.xc, p, 0.0f,
			 w.gram, p);
	if (st == FRESH_OK)
		st = fresh_ssyev(p, w.gram, w.eig);
	if (st != FRESH_OK)
		goto out;
	for (size_t j = 0; j < p; j++) {
		if (w.eig[j] < 0.0f) /* rounding on a singular Gram matrix */
			w.eig[j] = 0.0f;
		mean_eig += w.eig[j];
	}
	mean_eig /= (double)p;
	if (mean_eig <= 0.0)
		mean_eig = 1.0;
	/* Z = Xc Eᵀ, R = Zᵀ Yc. */
	st = fresh_sgemm(false, true, n, p, p, 1.0f, w.xc, p, w.gram, p, 0.0f,
			 w.z, p);
	if (st == FRESH_OK)
		st = fresh_sgemm(true, false, p, q, n, 1.0f, w.z, p, w.yc, q,
				 0.0f, w.r, q);
	if (st != FRESH_OK)
		goto out;

	if (lambda_fixed > 0.0) {
		best_lambda = lambda_fixed;
		st = loo_error(&w, n, p, q, best_lambda, &best);
		tried = 1;
	} else {
		for (int g = GRID_LO; g <= GRID_HI && st == FRESH_OK; g++) {
			double lambda = mean_eig * pow(10.0, g / 2.0), e = 0.0;
			st = loo_error(&w, n, p, q, lambda, &e);
			tried++;
			if (st == FRESH_OK && e < best) {
				best = e;
				best_lambda = lambda;
			}
		}
	}
	if (st != FRESH_OK)
		goto out;

	/* M (q x p) = (Eᵀ diag(1/(e+λ)) R)ᵀ = Rᵀ diag(1/(e+λ)) E. */
	for (size_t j = 0; j < p; j++)
		for (size_t k = 0; k < q; k++)
			w.r[j * q + k] /=
				(float)((double)w.eig[j] + best_lambda);
	st = fresh_sgemm(true, false, q, p, p, 1.0f, w.r, q, w.gram, p, 0.0f, m,
			 p);
	if (st != FRESH_OK)
		goto out;
	/* c = ȳ - M x̄. */
	memcpy(c, ymean, q * sizeof *c);
	st = fresh_sgemv(false, q, p, -1.0f, m, p, xmean, 1.0f, c);
	if (res) {
		res->lambda = best_lambda;
		res->loo_mse = best;
		res->tried = tried;
	}
out:
	free(xmean);
	free(ymean);
	ws_free(&w);
	return st;
}
