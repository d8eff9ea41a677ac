/*
 * dot.c - fixed-order inner products (see dot.h for the order).
 *
 * Design: three paths compute the same arithmetic. The vector ones hold a
 * pair's 16 lanes in one zmm (AVX-512) or two ymm (AVX2) registers and
 * register-block a few queries by a few rows, so that each chunk of a row
 * is loaded once for the block's queries; the tile loop walks rows in the
 * outer loop, so a row is brought from memory once for every query of the
 * tile. The portable path is the definition written out, one pair at a
 * time, with fmaf.
 *
 * This file is compiled with -ffp-contract=off (meson.build): the reduction
 * tree's additions must not be fused with anything. Only explicit fma is.
 * Paths are picked with per-function target attributes and a run-time CPU
 * check, not target_clones (whose resolvers run before ThreadSanitizer's
 * runtime and crash the program at load).
 */
#include "dot.h"

#include <math.h>
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define FRESH_X86 1
#include <immintrin.h>
#endif

#define LANES 16

static float reduce16(const float acc[LANES])
{
	float a8[8], a4[4], a2[2];

	for (int l = 0; l < 8; l++)
		a8[l] = acc[l] + acc[l + 8];
	for (int l = 0; l < 4; l++)
		a4[l] = a8[l] + a8[l + 4];
	for (int l = 0; l < 2; l++)
		a2[l] = a4[l] + a4[l + 2];
	return a2[0] + a2[1];
}

static float dot_portable(const float *a, const float *b, size_t d)
{
	float acc[LANES];
	size_t c = 0;

	for (int l = 0; l < LANES; l++)
		acc[l] = 0.0f;
	for (; c + LANES <= d; c += LANES)
		for (int l = 0; l < LANES; l++)
			acc[l] = fmaf(a[c + l], b[c + l], acc[l]);
	if (c < d) {
		size_t left = d - c;
		for (size_t l = 0; l < LANES; l++)
			acc[l] = fmaf(l < left ? a[c + l] : 0.0f,
				      l < left ? b[c + l] : 0.0f, acc[l]);
	}
	return reduce16(acc);
}

static void tile_portable(const float *q, size_t ldq, size_t nq, const float *x,
			  size_t ldx, size_t nr, size_t d, float *out,
			  size_t ldo)
{
	for (size_t j = 0; j < nr; j++)
		for (size_t i = 0; i < nq; i++)
			out[i * ldo + j] =
				dot_portable(q + i * ldq, x + j * ldx, d);
}

#ifdef FRESH_X86
/* The most queries and rows one register block holds. */
#define QMAX 4
#define RMAX 4

#define ALWAYS_INLINE inline __attribute__((always_inline))
/* Per function, so that GCC and clang alike compile each path for its ISA. */
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_AVX512 __attribute__((target("avx512f,avx2,fma")))

/*
 * Instantiates block(Q, R) for every Q, R in 1..QMAX, 1..RMAX from the
 * always-inline generic body, and a tile loop over them: full blocks of
 * QB x RB, then the ragged edges.
 */
#define DEFINE_TILE(name, block, QB, RB, target)                               \
	static target void name(const float *q, size_t ldq, size_t nq,         \
				const float *x, size_t ldx, size_t nr,         \
				size_t d, float *out, size_t ldo)              \
	{                                                                      \
		for (size_t j = 0; j < nr; j += RB) {                          \
			size_t r = nr - j < RB ? nr - j : RB;                  \
			const float *xj = x + j * ldx;                         \
			size_t i = 0;                                          \
			if (r == RB)                                           \
				for (; i + QB <= nq; i += QB)                  \
					block(q + i * ldq, ldq, xj, ldx, d,    \
					      out + i * ldo + j, ldo, QB, RB); \
			for (; i < nq; i += QB) {                              \
				size_t m = nq - i < QB ? nq - i : QB;          \
				block##_any(q + i * ldq, ldq, xj, ldx, d,      \
					    out + i * ldo + j, ldo, m, r);     \
			}                                                      \
		}                                                              \
	}

/* A dispatch from run-time (Q, R) to the constant-shape blocks. */
#define DEFINE_ANY(block, target)                                       \
	static target void block##_any(                                 \
		const float *q, size_t ldq, const float *x, size_t ldx, \
		size_t d, float *out, size_t ldo, size_t Q, size_t R)   \
	{                                                               \
		switch (Q * 8 + R) {                                    \
		case 8 + 1:                                             \
			block(q, ldq, x, ldx, d, out, ldo, 1, 1);       \
			break;                                          \
		case 8 + 2:                                             \
			block(q, ldq, x, ldx, d, out, ldo, 1, 2);       \
			break;                                          \
		case 8 + 3:                                             \
			block(q, ldq, x, ldx, d, out, ldo, 1, 3);       \
			break;                                          \
		case 8 + 4:                                             \
			block(q, ldq, x, ldx, d, out, ldo, 1, 4);       \
			break;                                          \
		case 16 + 1:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 2, 1);       \
			break;                                          \
		case 16 + 2:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 2, 2);       \
			break;                                          \
		case 16 + 3:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 2, 3);       \
			break;                                          \
		case 16 + 4:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 2, 4);       \
			break;                                          \
		case 24 + 1:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 3, 1);       \
			break;                                          \
		case 24 + 2:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 3, 2);       \
			break;                                          \
		case 24 + 3:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 3, 3);       \
			break;                                          \
		case 24 + 4:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 3, 4);       \
			break;                                          \
		case 32 + 1:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 4, 1);       \
			break;                                          \
		case 32 + 2:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 4, 2);       \
			break;                                          \
		case 32 + 3:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 4, 3);       \
			break;                                          \
		case 32 + 4:                                            \
			block(q, ldq, x, ldx, d, out, ldo, 4, 4);       \
			break;                                          \
		default:                                                \
			break;                                          \
		}                                                       \
	}

/* ---- AVX2 + FMA: two ymm hold a pair's 16 lanes (0-7, 8-15). ---- */

/* The tree from a8 (lanes l + l + 8) down to one float (see dot.h). */
static ALWAYS_INLINE TARGET_AVX2 float reduce8_avx2(__m256 a8)
{
	__m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8),
			       _mm256_extractf128_ps(a8, 1));
	__m128 a2 = _mm_add_ps(a4, _mm_movehl_ps(a4, a4));
	__m128 a1 = _mm_add_ss(a2, _mm_shuffle_ps(a2, a2, 1));

	return _mm_cvtss_f32(a1);
}

static ALWAYS_INLINE TARGET_AVX2 void block256(const float *q, size_t ldq,
					       const float *x, size_t ldx,
					       size_t d, float *out, size_t ldo,
					       const size_t Q, const size_t R)
{
	__m256 lo[QMAX][RMAX], hi[QMAX][RMAX];
	size_t c = 0;

	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			lo[i][r] = hi[i][r] = _mm256_setzero_ps();
	for (; c + LANES <= d; c += LANES) {
		__m256 xl[RMAX], xh[RMAX];
		for (size_t r = 0; r < R; r++) {
			xl[r] = _mm256_loadu_ps(x + r * ldx + c);
			xh[r] = _mm256_loadu_ps(x + r * ldx + c + 8);
		}
		for (size_t i = 0; i < Q; i++) {
			__m256 ql = _mm256_loadu_ps(q + i * ldq + c);
			__m256 qh = _mm256_loadu_ps(q + i * ldq + c + 8);
			for (size_t r = 0; r < R; r++) {
				lo[i][r] = _mm256_fmadd_ps(ql, xl[r], lo[i][r]);
				hi[i][r] = _mm256_fmadd_ps(qh, xh[r], hi[i][r]);
			}
		}
	}
	if (c < d) {
		/* Lane l of the chunk exists when c + l < d. */
		__m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
		__m256i left = _mm256_set1_epi32((int)(d - c));
		__m256i ml = _mm256_cmpgt_epi32(left, idx);
		__m256i mh = _mm256_cmpgt_epi32(
			left, _mm256_add_epi32(idx, _mm256_set1_epi32(8)));
		__m256 xl[RMAX], xh[RMAX];
		for (size_t r = 0; r < R; r++) {
			xl[r] = _mm256_maskload_ps(x + r * ldx + c, ml);
			xh[r] = _mm256_maskload_ps(x + r * ldx + c + 8, mh);
		}
		for (size_t i = 0; i < Q; i++) {
			__m256 ql = _mm256_maskload_ps(q + i * ldq + c, ml);
			__m256 qh = _mm256_maskload_ps(q + i * ldq + c + 8, mh);
			for (size_t r = 0; r < R; r++) {
				lo[i][r] = _mm256_fmadd_ps(ql, xl[r], lo[i][r]);
				hi[i][r] = _mm256_fmadd_ps(qh, xh[r], hi[i][r]);
			}
		}
	}
	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			out[i * ldo + r] =
				reduce8_avx2(_mm256_add_ps(lo[i][r], hi[i][r]));
}

DEFINE_ANY(block256, TARGET_AVX2)
DEFINE_TILE(tile_avx2, block256, 2, 2, TARGET_AVX2)

static TARGET_AVX2 float dot_avx2(const float *a, const float *b, size_t d)
{
	float out;

	block256(a, 0, b, 0, d, &out, 0, 1, 1);
	return out;
}

/* ---- AVX-512F: one zmm holds a pair's 16 lanes. ---- */

static ALWAYS_INLINE TARGET_AVX512 float reduce16_avx512(__m512 v)
{
	__m256 lo = _mm512_castps512_ps256(v);
	__m256 hi = _mm256_castpd_ps(
		_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));

	return reduce8_avx2(_mm256_add_ps(lo, hi));
}

/*
 * The tree of dot.h for 16 pairs at once: each step adds the same lanes
 * as reduce16_avx512 (l and l + 8, then + 4, + 2, + 1), with shuffles that
 * pack two, four, eight, then all sixteen pairs' partial sums into one
 * register. Pair p = 4 i + r ends in lane 4 r + i.
 */
static ALWAYS_INLINE TARGET_AVX512 void reduce4x4_avx512(__m512 acc[QMAX][RMAX],
							 float *out, size_t ldo)
{
	__m512 w[8], z[4], t[2], s;

	for (int k = 0; k < 8; k++) {
		__m512 u = acc[(2 * k) / 4][(2 * k) % 4];
		__m512 v = acc[(2 * k + 1) / 4][(2 * k + 1) % 4];
		/* lanes 0-7: u's l + (l + 8); lanes 8-15: v's */
		w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(u, v, 0x44),
				     _mm512_shuffle_f32x4(u, v, 0xEE));
	}
	for (int m = 0; m < 4; m++) /* quarter j: pair 4m + j's a4 */
		z[m] = _mm512_add_ps(
			_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0x88),
			_mm512_shuffle_f32x4(w[2 * m], w[2 * m + 1], 0xDD));
	for (int n = 0; n < 2; n++) /* quarter j: a2 of 8n + j, 8n + 4 + j */
		t[n] = _mm512_add_ps(
			_mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0x44),
			_mm512_shuffle_ps(z[2 * n], z[2 * n + 1], 0xEE));
	/* quarter j: the sums of pairs j, 4 + j, 8 + j, 12 + j */
	s = _mm512_add_ps(_mm512_shuffle_ps(t[0], t[1], 0x88),
			  _mm512_shuffle_ps(t[0], t[1], 0xDD));
	/* lane 4r + i holds (i, r): transpose to rows of queries */
	s = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2,
						    6, 10, 14, 3, 7, 11, 15),
				  s);
	_mm_storeu_ps(out, _mm512_castps512_ps128(s));
	_mm_storeu_ps(out + ldo, _mm512_extractf32x4_ps(s, 1));
	_mm_storeu_ps(out + 2 * ldo, _mm512_extractf32x4_ps(s, 2));
	_mm_storeu_ps(out + 3 * ldo, _mm512_extractf32x4_ps(s, 3));
}

static ALWAYS_INLINE TARGET_AVX512 void block512(const float *q, size_t ldq,
						 const float *x, size_t ldx,
						 size_t d, float *out,
						 size_t ldo, const size_t Q,
						 const size_t R)
{
	__m512 acc[QMAX][RMAX];
	size_t c = 0;

	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			acc[i][r] = _mm512_setzero_ps();
	for (; c + LANES <= d; c += LANES) {
		__m512 xv[RMAX];
		for (size_t r = 0; r < R; r++) {
			xv[r] = _mm512_loadu_ps(x + r * ldx + c);
			/* The same line of the next block's rows. */
			_mm_prefetch((const char *)(x + (r + R) * ldx + c),
				     _MM_HINT_T0);
		}
		for (size_t i = 0; i < Q; i++) {
			__m512 qv = _mm512_loadu_ps(q + i * ldq + c);
			for (size_t r = 0; r < R; r++)
				acc[i][r] =
					_mm512_fmadd_ps(qv, xv[r], acc[i][r]);
		}
	}
	if (c < d) {
		__mmask16 k = (__mmask16)((1u << (d - c)) - 1u);
		__m512 xv[RMAX];
		for (size_t r = 0; r < R; r++)
			xv[r] = _mm512_maskz_loadu_ps(k, x + r * ldx + c);
		for (size_t i = 0; i < Q; i++) {
			__m512 qv = _mm512_maskz_loadu_ps(k, q + i * ldq + c);
			for (size_t r = 0; r < R; r++)
				acc[i][r] =
					_mm512_fmadd_ps(qv, xv[r], acc[i][r]);
		}
	}
	if (Q == 4 && R == 4) {
		reduce4x4_avx512(acc, out, ldo);
		return;
	}
	for (size_t i = 0; i < Q; i++)
		for (size_t r = 0; r < R; r++)
			out[i * ldo + r] = reduce16_avx512(acc[i][r]);
}

DEFINE_ANY(block512, TARGET_AVX512)
DEFINE_TILE(tile_avx512, block512, 4, 4, TARGET_AVX512)

static TARGET_AVX512 float dot_avx512(const float *a, const float *b, size_t d)
{
	float out;

	block512(a, 0, b, 0, d, &out, 0, 1, 1);
	return out;
}

#endif /* FRESH_X86 */

/* -1 until the first call picks the best path. */
static atomic_int current = -1;

bool fresh_isa_supported(enum fresh_isa isa)
{
	switch (isa) {
	case FRESH_ISA_PORTABLE:
		return true;
#ifdef FRESH_X86
	case FRESH_ISA_AVX2:
		return __builtin_cpu_supports("avx2") &&
		       __builtin_cpu_supports("fma");
	case FRESH_ISA_AVX512:
		return __builtin_cpu_supports("avx512f");
#endif
	default:
		return false;
	}
}

const char *fresh_isa_name(enum fresh_isa isa)
{
	switch (isa) {
	case FRESH_ISA_AVX512:
		return "avx512";
	case FRESH_ISA_AVX2:
		return "avx2";
	default:
		return "portable";
	}
}

enum fresh_isa fresh_dot_isa(void)
{
	int isa = atomic_load_explicit(&current, memory_order_relaxed);

	if (isa < 0) {
		isa = fresh_isa_supported(FRESH_ISA_AVX512) ? FRESH_ISA_AVX512
		      : fresh_isa_supported(FRESH_ISA_AVX2)
			      ? FRESH_ISA_AVX2
			      : FRESH_ISA_PORTABLE;
		atomic_store_explicit(&current, isa, memory_order_relaxed);
	}
	return (enum fresh_isa)isa;
}

bool fresh_dot_use(enum fresh_isa isa)
{
	if (!fresh_isa_supported(isa))
		return false;
	atomic_store_explicit(&current, (int)isa, memory_order_relaxed);
	return true;
}

float fresh_dot(const float *a, const float *b, size_t d)
{
	switch (fresh_dot_isa()) {
#ifdef FRESH_X86
	case FRESH_ISA_AVX512:
		return dot_avx512(a, b, d);
	case FRESH_ISA_AVX2:
		return dot_avx2(a, b, d);
#endif
	default:
		return dot_portable(a, b, d);
	}
}

void fresh_dot_tile(const float *q, size_t ldq, size_t nq, const float *x,
		    size_t ldx, size_t nr, size_t d, float *out, size_t ldo)
{
	if (nq == 0 || nr == 0)
		return;
	switch (fresh_dot_isa()) {
#ifdef FRESH_X86
	case FRESH_ISA_AVX512:
		tile_avx512(q, ldq, nq, x, ldx, nr, d, out, ldo);
		break;
	case FRESH_ISA_AVX2:
		tile_avx2(q, ldq, nq, x, ldx, nr, d, out, ldo);
		break;
#endif
	default:
		tile_portable(q, ldq, nq, x, ldx, nr, d, out, ldo);
		break;
	}
}
