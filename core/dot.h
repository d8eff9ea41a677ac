/*
 * dot.h - inner products in one fixed order: the bits of every score a
 * client sees.
 *
 * <q, x> over d floats is defined as:
 *   16 lanes, acc[l] = +0; for each chunk c = 0, 1, .. of 16 elements,
 *     acc[l] = fma(q[16c + l], x[16c + l], acc[l])   (missing elements = 0)
 *   then a fixed tree: a8[l] = acc[l] + acc[l + 8]   (l < 8)
 *                      a4[l] = a8[l] + a8[l + 4]     (l < 4)
 *                      a2[l] = a4[l] + a4[l + 2]     (l < 2)
 *                      <q, x> = a2[0] + a2[1]
 * The result depends on q, x and d only: not on how many queries or rows
 * are scored together, where they sit in a tile, the thread count or the
 * instruction set. The AVX-512, AVX2+FMA and portable paths compute
 * exactly this order (one rounding per fma, IEEE round-to-nearest), so
 * their bits are equal; the path is chosen once, by the CPU.
 *
 * OpenBLAS's sgemm is not used here: its blocking and edge kernels change
 * with the shape of the call, and so do the last bits of a row's result.
 */
#ifndef FRESH_DOT_H
#define FRESH_DOT_H

#include <stdbool.h>
#include <stddef.h>

enum fresh_isa {
	FRESH_ISA_PORTABLE = 0,
	FRESH_ISA_AVX2 = 1,   /* AVX2 + FMA */
	FRESH_ISA_AVX512 = 2, /* AVX-512F */
};

/* The path in use (the best this CPU has, unless a test chose another). */
enum fresh_isa fresh_dot_isa(void);
const char *fresh_isa_name(enum fresh_isa isa);
/* Whether this CPU can run the path. */
bool fresh_isa_supported(enum fresh_isa isa);
/*
 * For tests and benchmarks: makes later calls use isa; false (and no
 * change) when the CPU cannot run it. Not to be called while other
 * threads score.
 */
bool fresh_dot_use(enum fresh_isa isa);

/* <a, b> over d floats, in the order above. */
float fresh_dot(const float *a, const float *b, size_t d);

/*
 * out[i * ldo + j] = <q[i], x[j]> for i < nq, j < nr, where q[i] starts at
 * q + i * ldq and x[j] at x + j * ldx (each d floats). Rows of x are read
 * once for every block of a few queries; keep nq x d of queries near the
 * core (a few hundred KB) for speed.
 */
void fresh_dot_tile(const float *q, size_t ldq, size_t nq, const float *x,
		    size_t ldx, size_t nr, size_t d, float *out, size_t ldo);

#endif
