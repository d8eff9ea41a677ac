/*
 * rows.h - row-wise helpers on row-major float matrices: squared norms
 * (accumulated in double) and scaling rows to unit length, as scoring with
 * normalized output and the trainer's normalized loss need them.
 */
#ifndef FRESH_ROWS_H
#define FRESH_ROWS_H

#include <stddef.h>

/* Sum of squares of v[0..d), in double. */
double fresh_sq_norm(const float *v, size_t d);

/*
 * Scales each of n rows of y (width d) to unit length (a zero row stays
 * zero); writes 1/||row|| (0 for a zero row) to inv[i] when inv is not
 * NULL. With scale_rows false only inv is written.
 */
void fresh_normalize_rows(float *y, size_t n, size_t d, float *inv,
			  int scale_rows);

/*
 * Back through y = h / ||h||: given dL/dy in dy, the unit rows y and
 * inv = 1 / ||h|| per row, writes dL/dh = (dy - y (y . dy)) * inv into dy.
 */
void fresh_normalize_backward(float *dy, const float *y, const float *inv,
			      size_t n, size_t d);

#endif
