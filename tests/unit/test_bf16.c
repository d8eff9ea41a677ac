/*
 * test_bf16.c - the bf16 store: rounding, the error bound of the
 * approximate kernel on adversarial data, and top-k from the bf16 scan
 * bitwise equal to the float32 scan (planted near-ties that bf16 cannot
 * separate, exclusions, offsets, row scales, both kernel paths, 1 and 2
 * threads); loading an index with --store bf16.
 */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "dot.h"
#include "index.h"
#include "pool.h"
#include "scan.h"
#include "testutil.h"
#include "topk.h"

START_TEST(rounds_to_nearest_even)
{
	uint16_t h;

	ck_assert(fresh_bf16_from_f32(1.0f, &h));
	ck_assert_uint_eq(h, 0x3f80);
	/* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1). */
	ck_assert(fresh_bf16_from_f32(1.0f + 0x1p-8f, &h));
	ck_assert_uint_eq(h, 0x3f80);
	/* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even. */
	ck_assert(fresh_bf16_from_f32(1.0f + 3 * 0x1p-8f, &h));
	ck_assert_uint_eq(h, 0x3f82);
	ck_assert(fresh_bf16_from_f32(1.0f + 0x1p-8f + 0x1p-20f, &h));
	ck_assert_uint_eq(h, 0x3f81);
	ck_assert(fresh_bf16_from_f32(-2.5f, &h));
	ck_assert(fresh_bf16_to_f32(h) == -2.5f);
	/* The largest floats round past bf16's largest: refused. */
	ck_assert(!fresh_bf16_from_f32(FLT_MAX, &h));
	ck_assert(fresh_bf16_from_f32(3.0e38f, &h));
	/* Every rounding within relative 2^-8. */
	{
		struct tu_rng r = {1};
		for (int i = 0; i < 100000; i++) {
			float x = tu_normal(&r) *
				  ldexpf(1.0f, (int)(tu_next(&r) % 80) - 40);
			ck_assert(fresh_bf16_from_f32(x, &h));
			ck_assert(fabsf(fresh_bf16_to_f32(h) - x) <=
				  fabsf(x) * 0x1p-8f);
		}
	}
}
END_TEST

START_TEST(norm_bound_is_an_upper_bound)
{
	struct tu_rng r = {2};
	float x[333];

	for (int t = 0; t < 200; t++) {
		double s = 0.0;
		size_t d = 1 + (size_t)(tu_next(&r) % 333);
		tu_fill_normal(&r, x, d);
		for (size_t i = 0; i < d; i++) {
			x[i] *= ldexpf(1.0f, (int)(tu_next(&r) % 40) - 20);
			s += (double)x[i] * x[i];
		}
		ck_assert((double)fresh_norm_bound(x, d) >= sqrt(s));
		ck_assert((double)fresh_norm_bound(x, d) <= sqrt(s) * 1.000001);
	}
}
END_TEST

/* Rows and queries of wildly mixed scales, and dimensions with tails. */
static void check_bound(size_t d, bool native, uint64_t seed)
{
	enum { NQ = 5, NR = 37 };
	struct tu_rng r = {seed};
	float *q = malloc(NQ * d * sizeof *q), *x = malloc(NR * d * sizeof *x);
	uint16_t *qh = malloc(NQ * d * sizeof *qh),
		 *xh = malloc(NR * d * sizeof *xh);
	float *scratch = malloc(NR * d * sizeof *scratch);
	float out[NQ * NR], norms[NR], maxn = 0.0f;

	fresh_bf16_use_native(native);
	tu_fill_normal(&r, q, NQ * d);
	tu_fill_normal(&r, x, NR * d);
	for (size_t i = 0; i < NQ * d; i++)
		q[i] *= ldexpf(1.0f, (int)(tu_next(&r) % 24) - 12);
	for (size_t i = 0; i < NR * d; i++) {
		int e = (int)(tu_next(&r) % 24) - 12;
		/* Some rows all tiny: near bf16's smallest normals. */
		if ((i / d) % 11 == 3)
			e = -125 + (int)(tu_next(&r) % 4);
		x[i] *= ldexpf(1.0f, e);
	}
	ck_assert_uint_eq(fresh_bf16_convert(q, qh, NQ * d), (size_t)-1);
	ck_assert_uint_eq(fresh_bf16_convert(x, xh, NR * d), (size_t)-1);
	for (size_t j = 0; j < NR; j++) {
		norms[j] = fresh_norm_bound(x + j * d, d);
		if (norms[j] > maxn)
			maxn = norms[j];
	}
	fresh_bf16_tile(q, qh, d, NQ, xh, d, NR, d, out, NR, scratch);
	for (size_t i = 0; i < NQ; i++) {
		float slope = fresh_bf16_slope(q + i * d, d);
		float fl = fresh_bf16_floor(q + i * d, d, maxn);
		for (size_t j = 0; j < NR; j++) {
			float s = fresh_dot(q + i * d, x + j * d, d);
			float a = out[i * NR + j];
			float e = slope * norms[j] + fl;
			ck_assert_msg(a - e <= s && s <= a + e,
				      "d %zu q %zu row %zu: exact %.9g, "
				      "approx %.9g, bound %.3g",
				      d, i, j, (double)s, (double)a, (double)e);
		}
	}
	fresh_bf16_use_native(true);
	free(q);
	free(x);
	free(qh);
	free(xh);
	free(scratch);
}

START_TEST(bound_holds_on_both_paths)
{
	size_t dims[] = {1, 7, 31, 32, 33, 100, 768, 1000};

	for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
		check_bound(dims[i], true, 10 + i);
		check_bound(dims[i], false, 10 + i);
	}
}
END_TEST

/*
 * The worst case of rounding: every element of q and x just below a bf16
 * midpoint, so that all round down by almost u; the error then reaches
 * nearly the bound (which must still hold), on the path that rounds q.
 */
START_TEST(bound_is_nearly_tight_and_holds)
{
	enum { D = 768 };
	float q[D], x[D], out, scratch[D];
	uint16_t qh[D], xh[D];

	for (size_t i = 0; i < D; i++)
		q[i] = x[i] = 1.0f + 0x1p-8f - 0x1p-20f;
	ck_assert_uint_eq(fresh_bf16_convert(q, qh, D), (size_t)-1);
	ck_assert_uint_eq(fresh_bf16_convert(x, xh, D), (size_t)-1);
	for (int native = 1; native >= 0; native--) {
		float s = fresh_dot(q, x, D), e;

		fresh_bf16_use_native(native);
		if (native && !fresh_bf16_native())
			continue;
		fresh_bf16_tile(q, qh, D, 1, xh, D, 1, D, &out, 1, scratch);
		e = fresh_bf16_slope(q, D) * fresh_norm_bound(x, D) +
		    fresh_bf16_floor(q, D, fresh_norm_bound(x, D));
		ck_assert(s - out <= e);
		/* q and x both rounded: 2u of 2u + u^2 + 2 gamma. */
		if (native)
			ck_assert_msg(s - out >= 0.9f * e, "error %g, bound %g",
				      (double)(s - out), (double)e);
		else
			ck_assert(s - out >= 0.45f * e);
	}
	fresh_bf16_use_native(true);
}
END_TEST

struct data {
	size_t n, d;
	float *x;
	uint64_t *ids;
	uint16_t *xh;
	float *norms, maxn;
};

/*
 * Random normal rows, and groups of near-duplicates: copies of a row
 * moved by less than bf16 can see, so that their bf16 scores tie or
 * invert while their float32 scores differ. Also exact duplicates (true
 * ties, broken by id) and rows far from everything.
 */
static void make_data(struct data *t, size_t n, size_t d, uint64_t seed)
{
	struct tu_rng r = {seed};

	t->n = n;
	t->d = d;
	t->x = malloc(n * d * sizeof *t->x);
	t->ids = malloc(n * sizeof *t->ids);
	t->xh = malloc(n * d * sizeof *t->xh);
	t->norms = malloc(n * sizeof *t->norms);
	tu_fill_normal(&r, t->x, n * d);
	for (size_t i = 0; i < n; i++)
		t->ids[i] = (i * 7919) % n + 5;
	for (size_t g = 0; g + 8 <= n; g += 97) {
		for (size_t c = 1; c < 8; c++) {
			float *dst = t->x + (g + c) * d;
			memcpy(dst, t->x + g * d, d * sizeof *dst);
			if (c < 6)
				for (size_t i = 0; i < d; i++)
					dst[i] *= 1.0f +
						  0x1p-12f * (tu_uniform(&r, -1,
									 1));
		}
	}
	t->maxn = 0.0f;
	ck_assert_uint_eq(fresh_bf16_convert(t->x, t->xh, n * d), (size_t)-1);
	for (size_t i = 0; i < n; i++) {
		t->norms[i] = fresh_norm_bound(t->x + i * d, d);
		if (t->norms[i] > t->maxn)
			t->maxn = t->norms[i];
	}
}

static void free_data(struct data *t)
{
	free(t->x);
	free(t->ids);
	free(t->xh);
	free(t->norms);
}

/*
 * Queries near the planted groups, so that their top-k is decided among
 * near-duplicates.
 */
static void make_queries(const struct data *t, float *q, size_t b,
			 uint64_t seed)
{
	struct tu_rng r = {seed};

	for (size_t i = 0; i < b; i++) {
		size_t g = (i * 97) % (t->n - 8);
		g -= g % 97;
		for (size_t c = 0; c < t->d; c++)
			q[i * t->d + c] =
				t->x[g * t->d + c] + 0.05f * tu_normal(&r);
	}
}

static void compare(const struct data *t, size_t threads, size_t b, size_t k,
		    bool excl_on, bool offsets, bool scaled, bool native)
{
	struct fresh_pool *pool;
	float *q = malloc(b * t->d * sizeof *q);
	float *off = malloc(b * sizeof *off), *rs = NULL;
	struct fresh_hit *h1 = malloc(b * k * sizeof *h1);
	struct fresh_hit *h2 = malloc(b * k * sizeof *h2);
	size_t *c1 = malloc(b * sizeof *c1), *c2 = malloc(b * sizeof *c2);
	struct fresh_exclusion *ex = NULL;
	size_t *rows = malloc(b * 4 * sizeof *rows);
	struct tu_rng r = {b * 31 + k};

	ck_assert_int_eq(fresh_pool_create(threads, 0, &pool), FRESH_OK);
	make_queries(t, q, b, b + k);
	for (size_t i = 0; i < b; i++)
		off[i] = tu_normal(&r);
	if (scaled) {
		rs = malloc(t->n * sizeof *rs);
		for (size_t i = 0; i < t->n; i++)
			rs[i] = 1.0f / t->norms[i];
	}
	if (excl_on) {
		ex = calloc(b, sizeof *ex);
		for (size_t i = 0; i < b; i++) {
			/* The query's own group head and two of its copies. */
			size_t g = (i * 97) % (t->n - 8);
			g -= g % 97;
			rows[i * 4] = g;
			rows[i * 4 + 1] = g + 2;
			rows[i * 4 + 2] = g + 5;
			ex[i].rows = rows + i * 4;
			ex[i].count = i % 3 == 0 ? 0 : 3;
		}
	}
	{
		struct fresh_matrix m = {.x = t->x,
					 .n = t->n,
					 .dim = t->d,
					 .ids = t->ids,
					 .row_scale = rs};
		struct fresh_queries qs = {q, b, offsets ? off : NULL};
		ck_assert_int_eq(fresh_topk_f32(pool, &m, &qs, k, ex, h1, c1),
				 FRESH_OK);
		m.xh = t->xh;
		m.row_norm = t->norms;
		m.max_norm = t->maxn;
		fresh_bf16_use_native(native);
		ck_assert_int_eq(fresh_topk(pool, &m, &qs, k, ex, h2, c2),
				 FRESH_OK);
		fresh_bf16_use_native(true);
	}
	for (size_t i = 0; i < b; i++) {
		ck_assert_uint_eq(c1[i], c2[i]);
		for (size_t j = 0; j < c1[i]; j++) {
			const struct fresh_hit *a = &h1[i * k + j];
			const struct fresh_hit *z = &h2[i * k + j];
			ck_assert_msg(
				a->id == z->id && memcmp(&a->score, &z->score,
							 sizeof a->score) == 0,
				"b %zu k %zu query %zu rank %zu: f32 "
				"%llu %.9g, bf16 %llu %.9g",
				b, k, i, j, (unsigned long long)a->id,
				(double)a->score, (unsigned long long)z->id,
				(double)z->score);
		}
	}
	fresh_pool_free(pool);
	free(q);
	free(off);
	free(rs);
	free(h1);
	free(h2);
	free(c1);
	free(c2);
	free(ex);
	free(rows);
}

START_TEST(planted_near_ties_defeat_bf16_alone)
{
	/* The test data must be hard: ranked by bf16 scores alone, some
	 * query's top 8 differs from the float32 one. */
	struct data t;
	size_t b = 40, k = 8, differ = 0;
	float *q;

	make_data(&t, 3000, 96, 3);
	q = malloc(b * t.d * sizeof *q);
	make_queries(&t, q, b, b + k);
	for (size_t i = 0; i < b; i++) {
		struct fresh_hit a[8], z[8];
		size_t na = 0, nz = 0;
		for (size_t r = 0; r < t.n; r++) {
			float s = fresh_dot(q + i * t.d, t.x + r * t.d, t.d);
			float sh = 0.0f;
			for (size_t c = 0; c < t.d; c++)
				sh += q[i * t.d + c] *
				      fresh_bf16_to_f32(t.xh[r * t.d + c]);
			fresh_heap_offer(a, &na, k,
					 (struct fresh_hit){t.ids[r], s});
			fresh_heap_offer(z, &nz, k,
					 (struct fresh_hit){t.ids[r], sh});
		}
		fresh_heap_sort(a, na);
		fresh_heap_sort(z, nz);
		for (size_t j = 0; j < k; j++)
			if (a[j].id != z[j].id) {
				differ++;
				break;
			}
	}
	ck_assert_msg(differ >= b / 4, "only %zu of %zu queries differ", differ,
		      b);
	free(q);
	free_data(&t);
}
END_TEST

START_TEST(bounded_topk_equals_f32_bitwise)
{
	struct data t;
	size_t bs[] = {1, 2, 3, 7, 64, 130};
	size_t ks[] = {1, 8, 100};

	make_data(&t, 3000, 96, 4);
	for (size_t bi = 0; bi < sizeof bs / sizeof *bs; bi++)
		for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
			for (int v = 0; v < 4; v++)
				compare(&t, 1 + (size_t)(v & 1), bs[bi], ks[ki],
					v & 2, v & 1, v >= 2,
					(bi + ki + (size_t)v) % 2 == 0);
	free_data(&t);
}
END_TEST

START_TEST(bounded_topk_edges)
{
	struct data t;

	/* k > N; a dimension with a tail; k = 1000. */
	make_data(&t, 300, 45, 5);
	compare(&t, 2, 5, 1000, true, true, true, true);
	compare(&t, 2, 5, 1000, true, false, false, false);
	compare(&t, 1, 33, 10, false, false, false, true);
	free_data(&t);
	make_data(&t, 20000, 768, 6);
	compare(&t, 2, 32, 10, true, false, false, true);
	compare(&t, 2, 4, 10, false, true, true, false);
	free_data(&t);
}
END_TEST

START_TEST(index_loads_in_bf16)
{
	char dir[256], npy[512], fv[512];
	struct fresh_index *a, *b;
	struct fresh_error err;
	struct tu_rng r = {7};
	size_t n = 500, d = 40;
	float *x = malloc(n * d * sizeof *x);

	tu_tmpdir(dir, sizeof dir);
	tu_path(npy, sizeof npy, dir, "x.npy");
	tu_path(fv, sizeof fv, dir, "x.fvecs");
	tu_fill_normal(&r, x, n * d);
	tu_write_npy_f32(npy, x, n, d);
	ck_assert_int_eq(
		fresh_index_load_store(npy, NULL, FRESH_STORE_F32, &a, &err),
		FRESH_OK);
	ck_assert_int_eq(
		fresh_index_load_store(npy, NULL, FRESH_STORE_BF16, &b, &err),
		FRESH_OK);
	ck_assert_int_eq(fresh_index_store(b), FRESH_STORE_BF16);
	ck_assert_ptr_null(fresh_index_bf16(a));
	ck_assert_ptr_nonnull(fresh_index_bf16(b));
	ck_assert_uint_eq(fresh_index_fingerprint(a),
			  fresh_index_fingerprint(b));
	ck_assert_mem_eq(fresh_index_vectors(a), fresh_index_vectors(b),
			 n * d * sizeof(float));
	for (size_t i = 0; i < n * d; i++) {
		uint16_t h;
		fresh_bf16_from_f32(x[i], &h);
		ck_assert_uint_eq(fresh_index_bf16(b)[i], h);
	}
	for (size_t i = 0; i < n; i++)
		ck_assert(fresh_index_norms(b)[i] <= fresh_index_max_norm(b));
	ck_assert(fresh_index_resident_bytes(b) <
		  fresh_index_resident_bytes(a) * 2 / 3);
	fresh_index_release(a);
	fresh_index_release(b);

	/* .fvecs cannot be mapped as one matrix: a clear refusal. */
	{
		FILE *f = fopen(fv, "wb");
		int32_t dd = (int32_t)d;
		for (size_t i = 0; i < n; i++) {
			fwrite(&dd, 4, 1, f);
			fwrite(x + i * d, 4, d, f);
		}
		fclose(f);
	}
	ck_assert_int_eq(
		fresh_index_load_store(fv, NULL, FRESH_STORE_BF16, &b, &err),
		FRESH_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.msg, "convert it to .npy"));
	/* A value beyond bf16's range: refused, naming row and column. */
	x[3 * d + 7] = FLT_MAX;
	tu_write_npy_f32(npy, x, n, d);
	ck_assert_int_eq(
		fresh_index_load_store(npy, NULL, FRESH_STORE_BF16, &b, &err),
		FRESH_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.msg, "row 3, column 7"));
	/* Also in the rows the loader's second thread rounds. */
	x[3 * d + 7] = 0.5f;
	x[(n - 2) * d + 1] = -FLT_MAX;
	tu_write_npy_f32(npy, x, n, d);
	ck_assert_int_eq(
		fresh_index_load_store(npy, NULL, FRESH_STORE_BF16, &b, &err),
		FRESH_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.msg, "row 498, column 1"));
	ck_assert_int_eq(
		fresh_index_load_store(npy, NULL, FRESH_STORE_F32, &a, &err),
		FRESH_OK);
	fresh_index_release(a);
	free(x);
	tu_rmdir(dir);
}
END_TEST

static Suite *bf16_suite(void)
{
	Suite *s = suite_create("bf16");
	TCase *num = tcase_create("numerics");
	TCase *top = tcase_create("topk");

	tcase_set_timeout(top, 240);
	tcase_add_test(num, rounds_to_nearest_even);
	tcase_add_test(num, norm_bound_is_an_upper_bound);
	tcase_add_test(num, bound_holds_on_both_paths);
	tcase_add_test(num, bound_is_nearly_tight_and_holds);
	tcase_add_test(top, planted_near_ties_defeat_bf16_alone);
	tcase_add_test(top, bounded_topk_equals_f32_bitwise);
	tcase_add_test(top, bounded_topk_edges);
	tcase_add_test(top, index_loads_in_bf16);
	suite_add_tcase(s, num);
	suite_add_tcase(s, top);
	return s;
}

int main(void)
{
	return tu_run(bf16_suite());
}
