/*
 * rows.c - see rows.h.
 */
#include "rows.h"

#include <math.h>

double fresh_sq_norm(const float *v, size_t d)
{
	double s = 0.0;

	for (size_t i = 0; i < d; i++)
		s += (double)v[i] * v[i];
	return s;
}

void fresh_normalize_rows(float *y, size_t n, size_t d, float *inv,
			  int scale_rows)
{
	for (size_t i = 0; i < n; i++) {
		float *row = y + i * d;
		double ss = fresh_sq_norm(row, d);
		float s = ss > 0.0 ? (float)(1.0 / sqrt(ss)) : 0.0f;

		if (scale_rows)
			for (size_t c = 0; c < d; c++)
				row[c] *= s;
		if (inv)
			inv[i] = s;
	}
}

void fresh_normalize_backward(float *dy, const float *y, const float *inv,
			      size_t n, size_t d)
{
	for (size_t i = 0; i < n; i++) {
		float *g = dy + i * d;
		const float *u = y + i * d;
		double dot = 0.0;

		for (size_t c = 0; c < d; c++)
			dot += (double)g[c] * u[c];
		for (size_t c = 0; c < d; c++)
			g[c] = (g[c] - u[c] * (float)dot) * inv[i];
	}
}
