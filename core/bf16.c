/*
 * bf16.c - bfloat16 conversion, norm bounds and the approximate scan
 * kernel (see bf16.h for the error bound).
 *
 * Design: the AVX-512 BF16 path register-blocks 4 queries by 4 rows like
 * the float32 kernel (dot.c) and multiplies 32 pairs of bf16 per
 * instruction (vdpbf16ps), so a row costs half the bytes and half the
 * instructions of its float32 scan. Without that instruction, rows are
 * widened to float32 (exactly: a bf16 is a float32's upper half) into a
 * scratch tile and scored by the float32 kernel; that path reads half the
 * bytes from memory too. Neither path's order matters: the bound holds for
 * any, and the answers come from exact rescoring (topk_bounded.c).
 */
#include "bf16.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "dot.h"

#if defined(__x86_64__)
#define FRESH_X86 1
#include <immintrin.h>
#endif

static inline uint32_t f32_bits(float x)
{
	uint32_t u;

	memcpy(&u, &x, sizeof u);
	return u;
}

bool fresh_bf16_from_f32(float x, uint16_t *out)
{
	uint32_t u = f32_bits(x);
	uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;

	*out = (uint16_t)r;
	/* Finite in, infinite out: the value rounds past bf16's largest. */
	return (u & 0x7f800000u) == 0x7f800000u || (r & 0x7f80u) != 0x7f80u;
}

size_t fresh_bf16_convert(const float *src, uint16_t *dst, size_t n)
{
	uint32_t inf = 0;

	/* A branch-free pass the compiler vectorizes; rescan on a miss. */
	for (size_t i = 0; i < n; i++) {
		uint32_t u = f32_bits(src[i]);
		uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
		dst[i] = (uint16_t)r;
		inf |= (uint32_t)((r & 0x7f80u) == 0x7f80u &&
				  (u & 0x7f800000u) != 0x7f800000u);
	}
	if (!inf)
		return (size_t)-1;
	for (size_t i = 0; i < n; i++)
		if (!fresh_bf16_from_f32(src[i], &dst[i]))
			return i;
	return (size_t)-1;
}

/* The least float >= v (v >= 0, finite or not). */
static float float_up(double v)
{
	float f = (float)v;

	if ((double)f < v)
		f = nextafterf(f, INFINITY);
	return f;
}

float fresh_norm_bound(const float *x, size_t d)
{
	double acc[8] = {0}, s = 0.0;
	size_t i = 0;

	/* Eight lanes, so that the loop vectorizes; squares of floats are
	 * exact in double and d additions lose far less than 2^-30. */
	for (; i + 8 <= d; i += 8)
		for (size_t l = 0; l < 8; l++)
			acc[l] += (double)x[i + l] * (double)x[i + l];
	for (; i < d; i++)
		s += (double)x[i] * (double)x[i];
	for (size_t l = 0; l < 8; l++)
		s += acc[l];
	return float_up(sqrt(s) * (1.0 + 0x1p-30));
}

float fresh_bf16_slope(const float *q, size_t d)
{
	const double u = 0x1p-8, eps = 0x1p-24;
	double n = (double)d + 32.0;
	double gamma = n * eps / (1.0 - n * eps);
	double rel = 2.0 * u + u * u + gamma * (1.0 + (1.0 + u) * (1.0 + u)) +
		     0x1p-18;

	return float_up(rel * (double)fresh_norm_bound(q, d));
}

float fresh_bf16_floor(const float *q, size_t d, float max_norm)
{
	double qn = (double)fresh_norm_bound(q, d);
	double e = 0x1p-126 * (sqrt((double)d) * (qn + (double)max_norm) +
			       3.0 * (double)d + 16.0);

	return float_up(e * (1.0 + 0x1p-10));
}

static void tile_widen(const float *q, size_t ldq, size_t nq, const uint16_t *x,
		       size_t ldx, size_t nr, size_t d, float *out, size_t ldo,
		       float *scratch)
{
	for (size_t j = 0; j < nr; j++)
		for (size_t c = 0; c < d; c++)
			scratch[j * d + c] = fresh_bf16_to_f32(x[j * ldx + c]);
	fresh_dot_tile(q, ldq, nq, scratch, d, nr, d, out, ldo);
}

#ifdef FRESH_X86
#define QMAX 4
#define RMAX 4
#define ALWAYS_INLINE inline __attribute__((always_inline))
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))

static ALWAYS_INLINE TARGET_BF16 void block_bf16(const uint16_t *q, size_t ldq,
						 const uint16_t *x, size_t ldx,
						 size_t d, float *out,
						 size_t ldo, const size_t Q,
						 const size_t R)
{
	__m512 acc[QMAX][RMAX];
	size_t c = 0;

	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			acc[i][r] = _mm512_setzero_ps();
	for (; c + 32 <= d; c += 32) {
		__m512bh xv[RMAX];
		for (size_t r = 0; r < R; r++) {
			xv[r] = (__m512bh)_mm512_loadu_si512(x + r * ldx + c);
			_mm_prefetch((const char *)(x + (r + R) * ldx + c),
				     _MM_HINT_T0);
		}
		for (size_t i = 0; i < Q; i++) {
			__m512bh qv =
				(__m512bh)_mm512_loadu_si512(q + i * ldq + c);
			for (size_t r = 0; r < R; r++)
				acc[i][r] =
					_mm512_dpbf16_ps(acc[i][r], qv, xv[r]);
		}
	}
	if (c < d) {
		__mmask32 k = (__mmask32)((1ull << (d - c)) - 1u);
		__m512bh xv[RMAX];
		for (size_t r = 0; r < R; r++)
			xv[r] = (__m512bh)_mm512_maskz_loadu_epi16(
				k, x + r * ldx + c);
		for (size_t i = 0; i < Q; i++) {
			__m512bh qv = (__m512bh)_mm512_maskz_loadu_epi16(
				k, q + i * ldq + c);
			for (size_t r = 0; r < R; r++)
				acc[i][r] =
					_mm512_dpbf16_ps(acc[i][r], qv, xv[r]);
		}
	}
	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			out[i * ldo + r] = _mm512_reduce_add_ps(acc[i][r]);
}

static TARGET_BF16 void block_bf16_any(const uint16_t *q, size_t ldq,
				       const uint16_t *x, size_t ldx, size_t d,
				       float *out, size_t ldo, size_t Q,
				       size_t R)
{
	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			block_bf16(q + i * ldq, ldq, x + r * ldx, ldx, d,
				   out + i * ldo + r, ldo, 1, 1);
}

static TARGET_BF16 void tile_bf16(const uint16_t *q, size_t ldq, size_t nq,
				  const uint16_t *x, size_t ldx, size_t nr,
				  size_t d, float *out, size_t ldo)
{
	for (size_t j = 0; j < nr; j += RMAX) {
		size_t r = nr - j < RMAX ? nr - j : RMAX;
		const uint16_t *xj = x + j * ldx;
		size_t i = 0;

		if (r == RMAX)
			for (; i + QMAX <= nq; i += QMAX)
				block_bf16(q + i * ldq, ldq, xj, ldx, d,
					   out + i * ldo + j, ldo, QMAX, RMAX);
		if (i == nq)
			continue;
		if (r < RMAX) {
			block_bf16_any(q + i * ldq, ldq, xj, ldx, d,
				       out + i * ldo + j, ldo, nq - i, r);
			continue;
		}
		/* A small batch (B < 4) lands here: keep 4 rows a block. */
		switch (nq - i) {
		case 1:
			block_bf16(q + i * ldq, ldq, xj, ldx, d,
				   out + i * ldo + j, ldo, 1, RMAX);
			break;
		case 2:
			block_bf16(q + i * ldq, ldq, xj, ldx, d,
				   out + i * ldo + j, ldo, 2, RMAX);
			break;
		default:
			block_bf16(q + i * ldq, ldq, xj, ldx, d,
				   out + i * ldo + j, ldo, 3, RMAX);
			break;
		}
	}
}
#endif /* FRESH_X86 */

/* -1: not probed yet; 0 off; 1 on. */
static atomic_int native = -1;

bool fresh_bf16_native(void)
{
	int on = atomic_load_explicit(&native, memory_order_relaxed);

	if (on < 0) {
#ifdef FRESH_X86
		on = __builtin_cpu_supports("avx512bf16") &&
		     __builtin_cpu_supports("avx512bw");
#else
		on = 0;
#endif
		atomic_store_explicit(&native, on, memory_order_relaxed);
	}
	return on == 1;
}

void fresh_bf16_use_native(bool on)
{
	int want = 0;

#ifdef FRESH_X86
	want = on && __builtin_cpu_supports("avx512bf16") &&
	       __builtin_cpu_supports("avx512bw");
#else
	(void)on;
#endif
	atomic_store_explicit(&native, want, memory_order_relaxed);
}

void fresh_bf16_tile(const float *q, const uint16_t *qh, size_t ldq, size_t nq,
		     const uint16_t *x, size_t ldx, size_t nr, size_t d,
		     float *out, size_t ldo, float *scratch)
{
	if (nq == 0 || nr == 0)
		return;
#ifdef FRESH_X86
	if (fresh_bf16_native()) {
		tile_bf16(qh, ldq, nq, x, ldx, nr, d, out, ldo);
		return;
	}
#endif
	(void)qh;
	tile_widen(q, ldq, nq, x, ldx, nr, d, out, ldo, scratch);
}
