/*
 * rowage.c - the chain of affine maps that keeps served fresh rows up to
 * date (rowage.h).
 */
#include "rowage.h"

#include <math.h>
#include <string.h>

#include "blas.h"
#include "mem.h"
#include "ridge.h"

/* Where id sits among the n ascending ids, or n. */
static size_t find_id(const uint64_t *ids, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && ids[lo] == id ? lo : n;
}

size_t fresh_rowage_min_pairs(size_t d, size_t min_pairs)
{
	size_t need = 2 * (d + 1);

	return min_pairs > need ? min_pairs : need;
}

bool fresh_rowage_changed(const struct fresh_corrector *current,
			  const struct fresh_pairs_snapshot *pairs)
{
	const uint64_t *ids;
	const float *rows;
	const uint64_t *seqs = fresh_corrector_fresh_row_seqs(current);
	size_t n = fresh_corrector_fresh_rows(current, &ids, &rows);
	size_t d = pairs->dim;

	if (n != pairs->n)
		return true;
	for (size_t i = 0; i < pairs->n; i++) {
		size_t k = find_id(ids, n, pairs->ids[i]);
		if (k == n)
			return true;
		if (seqs && pairs->seqs ? seqs[k] != pairs->seqs[i]
					: memcmp(rows + k * d, pairs->g + i * d,
						 d * sizeof *rows) != 0)
			return true;
	}
	return false;
}

/* y = x + m x + c for each of the n rows (y may not alias x), then scaled
 * to unit norm or to x's norm. */
static enum fresh_status move_rows(const float *x, size_t n, size_t d,
				   const float *m, const float *c,
				   bool normalize, float *y)
{
	enum fresh_status st =
		fresh_sgemm(false, true, n, d, d, 1.0f, x, d, m, d, 0.0f, y, d);

	if (st != FRESH_OK)
		return st;
	for (size_t i = 0; i < n; i++) {
		const float *xi = x + i * d;
		float *yi = y + i * d;
		double nx = 0.0, ny = 0.0;

		for (size_t k = 0; k < d; k++) {
			yi[k] += xi[k] + c[k];
			nx += (double)xi[k] * xi[k];
			ny += (double)yi[k] * yi[k];
		}
		if (!(ny > 0.0) || !isfinite(ny)) {
			memcpy(yi, xi, d * sizeof *yi); /* nothing to scale */
			continue;
		}
		double s = (normalize ? 1.0 : sqrt(nx)) / sqrt(ny);
		for (size_t k = 0; k < d; k++)
			yi[k] = (float)(yi[k] * s);
	}
	return FRESH_OK;
}

enum fresh_status fresh_rowage_apply(const struct fresh_corrector *current,
				     const struct fresh_pairs_snapshot *pairs,
				     size_t min_pairs, bool normalize,
				     float *out,
				     struct fresh_rowage_report *rep)
{
	const uint64_t *ids;
	const float *rows;
	const uint64_t *seqs = fresh_corrector_fresh_row_seqs(current);
	size_t n = fresh_corrector_fresh_rows(current, &ids, &rows);
	size_t d = pairs->dim, np = pairs->n, nre = 0, nkeep = 0;
	size_t *served = NULL; /* pair i's row among current's, or n */
	float *x = NULL, *y = NULL, *m = NULL, *c = NULL;
	struct fresh_ridge_result rr;
	enum fresh_status st = FRESH_NOMEM;

	memset(rep, 0, sizeof *rep);
	memcpy(out, pairs->g, np * d * sizeof *out);
	if (!seqs || !pairs->seqs || !n || !np) {
		/* Nothing known to be served: rows as sent. */
		for (size_t i = 0; i < np; i++)
			rep->added += find_id(ids, n, pairs->ids[i]) == n;
		return FRESH_OK;
	}
	served = fresh_alloc(np, sizeof *served);
	if (!served)
		return FRESH_NOMEM;
	for (size_t i = 0; i < np; i++) {
		size_t k = find_id(ids, n, pairs->ids[i]);
		served[i] = k;
		if (k == n)
			rep->added++;
		else if (seqs[k] != pairs->seqs[i])
			nre++;
		else
			nkeep++;
	}
	rep->replaced = nre;
	/* Rows not replaced stay as served until a map moves them. */
	for (size_t i = 0; i < np; i++)
		if (served[i] != n && seqs[served[i]] == pairs->seqs[i])
			memcpy(out + i * d, rows + served[i] * d,
			       d * sizeof *out);
	if (!nkeep || nre < fresh_rowage_min_pairs(d, min_pairs)) {
		st = FRESH_OK;
		goto done;
	}
	/* Fit g - r ≈ m r + c on the replaced rows r and their new rows g. */
	x = fresh_alloc(nre > nkeep ? nre : nkeep, d * sizeof *x);
	y = fresh_alloc(nre > nkeep ? nre : nkeep, d * sizeof *y);
	m = fresh_alloc(d, d * sizeof *m);
	c = fresh_alloc(d, sizeof *c);
	if (!x || !y || !m || !c)
		goto done;
	for (size_t i = 0, j = 0; i < np; i++) {
		size_t k = served[i];
		if (k == n || seqs[k] == pairs->seqs[i])
			continue;
		memcpy(x + j * d, rows + k * d, d * sizeof *x);
		for (size_t t = 0; t < d; t++)
			y[j * d + t] = pairs->g[i * d + t] - rows[k * d + t];
		j++;
	}
	st = fresh_ridge_fit(x, y, nre, d, d, 0.0, m, c, &rr);
	if (st != FRESH_OK) {
		/* No map (an eigensolver failure): the rows as served. */
		if (st != FRESH_NOMEM)
			st = FRESH_OK;
		goto done;
	}
	/* Move the rows kept: gathered, moved, scattered back. */
	for (size_t i = 0, j = 0; i < np; i++) {
		size_t k = served[i];
		if (k != n && seqs[k] == pairs->seqs[i])
			memcpy(x + j++ * d, rows + k * d, d * sizeof *x);
	}
	st = move_rows(x, nkeep, d, m, c, normalize, y);
	if (st != FRESH_OK)
		goto done;
	for (size_t i = 0, j = 0; i < np; i++) {
		size_t k = served[i];
		if (k != n && seqs[k] == pairs->seqs[i])
			memcpy(out + i * d, y + j++ * d, d * sizeof *out);
	}
	rep->fitted = true;
	rep->lambda = rr.lambda;
	rep->aged = nkeep;
done:
	fresh_free(served);
	fresh_free(x);
	fresh_free(y);
	fresh_free(m);
	fresh_free(c);
	return st;
}
