/*
 * bf16.h - bfloat16 rows and approximate inner products with a proven
 * error bound: what `--store bf16` scans before the exact rescoring.
 *
 * A bf16 value is the upper half of a float32 (8 significant bits), here
 * rounded to nearest even. For a row x (float32) held as x~ = bf16(x) and a
 * query q (float32), the approximate product a = fresh_bf16_tile(q, x~)
 * and the exact one s = fresh_dot(q, x) (dot.h, the bits clients get)
 * satisfy
 *
 *     |s - a| <= fresh_bf16_slope(q) * norm(x) + fresh_bf16_floor(q, max)
 *
 * where norm(x) >= ||x||2 is the row's stored norm bound and max bounds
 * every row's norm. Why: every term of both sums is within relative
 * u = 2^-8 of q_i x_i per rounded operand (q is rounded to bf16 too on the
 * AVX-512 BF16 path), so the two real sums differ by at most
 * (2u + u^2) sum |q_i x_i|; each computed sum is within gamma_d =
 * d 2^-24 / (1 - d 2^-24) times the sum of its terms' magnitudes of its
 * real sum (any order of additions, fused or not); and sum |q_i x_i| <=
 * ||q|| ||x|| (Cauchy-Schwarz). The BF16 instructions treat subnormal
 * inputs as zero and flush subnormal results, an absolute error of at most
 * 2^-126 per operand or operation: the floor. The slope carries a margin
 * of 2^-18 ||q|| for the float roundings of the bound's own arithmetic
 * (a - E and a + E), so that comparisons made in float stay on the safe
 * side; monotone roundings afterwards (adding a query's offset, a row's
 * positive scale) keep it.
 */
#ifndef FRESH_BF16_H
#define FRESH_BF16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* x rounded to the nearest bf16 (ties to even); false when it overflows. */
bool fresh_bf16_from_f32(float x, uint16_t *out);
static inline float fresh_bf16_to_f32(uint16_t h)
{
	union {
		uint32_t u;
		float f;
	} v = {(uint32_t)h << 16};
	return v.f;
}

/*
 * Converts n floats; returns the index of the first one out of bf16's
 * range (it would round to infinity), or (size_t)-1.
 */
size_t fresh_bf16_convert(const float *src, uint16_t *dst, size_t n);

/* An upper bound of ||x||2 over d floats, as a float. */
float fresh_norm_bound(const float *x, size_t d);

/* The bound's per-query terms (see above); d is the dimension. */
float fresh_bf16_slope(const float *q, size_t d);
float fresh_bf16_floor(const float *q, size_t d, float max_norm);

/*
 * out[i * ldo + j] ~ <q[i], x[j]> for i < nq, j < nr: q[i] (float32) at
 * q + i * ldq, its bf16 rounding at qh + i * ldq (fresh_bf16_convert of
 * the same floats; read by the BF16 path only), x[j] (bf16) at x + j * ldx.
 * The order of additions is unspecified (the bound holds for any);
 * scratch holds nr x d floats for the path without BF16 instructions.
 */
void fresh_bf16_tile(const float *q, const uint16_t *qh, size_t ldq, size_t nq,
		     const uint16_t *x, size_t ldx, size_t nr, size_t d,
		     float *out, size_t ldo, float *scratch);

/* Whether this CPU has the AVX-512 BF16 dot product instruction. */
bool fresh_bf16_native(void);
/* For tests: false makes fresh_bf16_tile take the portable path. */
void fresh_bf16_use_native(bool on);

#endif
