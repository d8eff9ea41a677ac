/*
 * test_dot.c - the fixed-order inner product: every path the CPU has
 * (AVX-512, AVX2+FMA, portable) gives the same bits as a scalar loop that
 * spells out dot.h's order, for widths around every multiple of 16, every
 * register-block shape and its ragged edges, and strided operands; the
 * result is a dot product (against double precision); one pair alone and
 * the same pair inside any tile give the same bits. Random float data
 * throughout: integer-valued data would hide rounding.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dot.h"
#include "testutil.h"

/* The definition in dot.h, element by element. */
static float spelled_out(const float *a, const float *b, size_t d)
{
	float acc[16] = {0};
	size_t chunks = (d + 15) / 16;

	for (size_t c = 0; c < chunks; c++)
		for (size_t l = 0; l < 16; l++) {
			size_t i = 16 * c + l;
			acc[l] = fmaf(i < d ? a[i] : 0.0f, i < d ? b[i] : 0.0f,
				      acc[l]);
		}
	float a8[8], a4[4], a2[2];
	for (size_t l = 0; l < 8; l++)
		a8[l] = acc[l] + acc[l + 8];
	for (size_t l = 0; l < 4; l++)
		a4[l] = a8[l] + a8[l + 4];
	for (size_t l = 0; l < 2; l++)
		a2[l] = a4[l] + a4[l + 2];
	return a2[0] + a2[1];
}

static bool same_bits(float a, float b)
{
	return memcmp(&a, &b, sizeof a) == 0;
}

static const enum fresh_isa isas[] = {FRESH_ISA_PORTABLE, FRESH_ISA_AVX2,
				      FRESH_ISA_AVX512};

START_TEST(every_path_gives_the_defined_bits)
{
	static const size_t dims[] = {1,  2,  7,  15, 16,  17,	31,  32,
				      33, 47, 48, 63, 100, 129, 768, 769};
	struct tu_rng r = {11};
	size_t tested = 0;

	for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
		size_t d = dims[di], ld = d + 3; /* strided rows */
		size_t nq = 1 + tu_next(&r) % 9, nr = 1 + tu_next(&r) % 11;
		float *q = malloc(nq * ld * sizeof *q);
		float *x = malloc(nr * ld * sizeof *x);
		float *out = malloc(nq * nr * sizeof *out);

		tu_fill_normal(&r, q, nq * ld);
		tu_fill_normal(&r, x, nr * ld);
		for (size_t k = 0; k < 3; k++) {
			if (!fresh_dot_use(isas[k]))
				continue;
			tested++;
			fresh_dot_tile(q, ld, nq, x, ld, nr, d, out, nr);
			for (size_t i = 0; i < nq; i++)
				for (size_t j = 0; j < nr; j++) {
					float want = spelled_out(q + i * ld,
								 x + j * ld, d);
					ck_assert_msg(
						same_bits(out[i * nr + j],
							  want),
						"%s d=%zu (%zu,%zu): %a vs %a",
						fresh_isa_name(isas[k]), d, i,
						j, out[i * nr + j], want);
					ck_assert(same_bits(
						fresh_dot(q + i * ld,
							  x + j * ld, d),
						want));
				}
		}
		free(q);
		free(x);
		free(out);
	}
	/* The portable path at least, and every vector path this CPU has. */
	ck_assert_uint_ge(tested, sizeof dims / sizeof *dims);
	(void)(fresh_dot_use(FRESH_ISA_AVX512) ||
	       fresh_dot_use(FRESH_ISA_AVX2));
}
END_TEST

/* Every (queries, rows) tile shape up to twice the largest block. */
START_TEST(every_tile_shape_matches_single_pairs)
{
	size_t d = 53;
	struct tu_rng r = {12};
	float q[9 * 53], x[9 * 53], out[81];

	tu_fill_normal(&r, q, sizeof q / sizeof *q);
	tu_fill_normal(&r, x, sizeof x / sizeof *x);
	for (size_t k = 0; k < 3; k++) {
		if (!fresh_dot_use(isas[k]))
			continue;
		for (size_t nq = 1; nq <= 9; nq++)
			for (size_t nr = 1; nr <= 9; nr++) {
				fresh_dot_tile(q, d, nq, x, d, nr, d, out, 9);
				for (size_t i = 0; i < nq; i++)
					for (size_t j = 0; j < nr; j++)
						ck_assert(same_bits(
							out[i * 9 + j],
							spelled_out(q + i * d,
								    x + j * d,
								    d)));
			}
	}
	(void)(fresh_dot_use(FRESH_ISA_AVX512) ||
	       fresh_dot_use(FRESH_ISA_AVX2));
}
END_TEST

START_TEST(is_a_dot_product)
{
	struct tu_rng r = {13};
	size_t d = 768;
	float a[768], b[768];

	for (size_t t = 0; t < 50; t++) {
		double ref = 0.0, mag = 0.0;
		tu_fill_normal(&r, a, d);
		tu_fill_normal(&r, b, d);
		for (size_t i = 0; i < d; i++) {
			ref += (double)a[i] * b[i];
			mag += fabs((double)a[i] * b[i]);
		}
		/* Float summation: error within a few ulps of the magnitude. */
		ck_assert_msg(fabs(fresh_dot(a, b, d) - ref) < 1e-5 * mag,
			      "%g vs %g", (double)fresh_dot(a, b, d), ref);
	}
	/* Signed zeros and exact cases. */
	a[0] = 3.0f;
	b[0] = -0.5f;
	ck_assert(fresh_dot(a, b, 1) == -1.5f);
}
END_TEST

START_TEST(picks_the_best_path)
{
	enum fresh_isa isa = fresh_dot_isa();

	ck_assert(fresh_isa_supported(isa));
	if (isa != FRESH_ISA_AVX512)
		ck_assert(!fresh_isa_supported(FRESH_ISA_AVX512));
	ck_assert(!fresh_dot_use((enum fresh_isa)99));
	ck_assert(fresh_dot_isa() == isa);
	ck_assert_str_eq(fresh_isa_name(FRESH_ISA_PORTABLE), "portable");
}
END_TEST

static Suite *dot_suite(void)
{
	Suite *s = suite_create("dot");
	TCase *t = tcase_create("order");

	tcase_add_test(t, picks_the_best_path);
	tcase_add_test(t, every_path_gives_the_defined_bits);
	tcase_add_test(t, every_tile_shape_matches_single_pairs);
	tcase_add_test(t, is_a_dot_product);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return tu_run(dot_suite());
}
