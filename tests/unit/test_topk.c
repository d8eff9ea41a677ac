/*
 * test_topk.c - exact top-k against a brute-force loop: random data with
 * many ties (integer-valued vectors make every score exact in float32),
 * arbitrary ids, exclusions, k > N, and batch sizes 1, 7, 64 and 1000.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "scan.h"
#include "testutil.h"
#include "topk.h"

struct fixture {
	size_t n, d;
	float *x;
	uint64_t *ids;
	struct fresh_pool *pool;
};

static void make(struct fixture *f, size_t n, size_t d, size_t threads,
		 uint64_t seed)
{
	struct tu_rng r = {seed};

	f->n = n;
	f->d = d;
	f->x = malloc(n * d * sizeof *f->x);
	f->ids = malloc(n * sizeof *f->ids);
	tu_fill_int(&r, f->x, n * d, 3);
	/* Ids in an order unrelated to rows, so ties test ids, not rows. */
	for (size_t i = 0; i < n; i++)
		f->ids[i] = ((i * 7919) % n) * 3 + 11;
	ck_assert_int_eq(fresh_pool_create(threads, 0, &f->pool), FRESH_OK);
}

static void unmake(struct fixture *f)
{
	free(f->x);
	free(f->ids);
	fresh_pool_free(f->pool);
}

static void check_batch(struct fixture *f, size_t b, size_t k, bool with_excl,
			uint64_t seed)
{
	struct tu_rng r = {seed};
	float *q = malloc(b * f->d * sizeof *q);
	struct fresh_hit *hits = malloc(b * k * sizeof *hits);
	struct fresh_hit *want = malloc((k ? k : 1) * sizeof *want);
	size_t *counts = malloc(b * sizeof *counts);
	struct fresh_exclusion *excl = NULL;
	size_t *rows = NULL;
	struct fresh_matrix m = {
		.x = f->x, .n = f->n, .dim = f->d, .ids = f->ids};
	struct fresh_queries qs = {q, b, NULL};

	tu_fill_int(&r, q, b * f->d, 2);
	if (with_excl) {
		excl = calloc(b, sizeof *excl);
		rows = malloc(b * 8 * sizeof *rows);
		for (size_t i = 0; i < b; i++) {
			size_t c = i % 5 == 0 ? 0 : 1 + i % 8;
			size_t base = (size_t)(tu_next(&r) % f->n);
			for (size_t e = 0; e < c; e++)
				rows[i * 8 + e] = (base + 3 * e) % f->n;
			/* Sorted, unique: base + 3e wraps at most once. */
			for (size_t a = 0; a < c; a++)
				for (size_t z = a + 1; z < c; z++)
					if (rows[i * 8 + z] < rows[i * 8 + a]) {
						size_t t = rows[i * 8 + z];
						rows[i * 8 + z] =
							rows[i * 8 + a];
						rows[i * 8 + a] = t;
					}
			excl[i].rows = rows + i * 8;
			excl[i].count = c;
		}
	}
	ck_assert_int_eq(fresh_topk(f->pool, &m, &qs, k, excl, hits, counts),
			 FRESH_OK);
	for (size_t i = 0; i < b; i++) {
		size_t nw =
			tu_naive_topk(f->x, f->ids, f->n, f->d, q + i * f->d, k,
				      excl ? excl[i].rows : NULL,
				      excl ? excl[i].count : 0, want);
		ck_assert_uint_eq(counts[i], nw);
		for (size_t j = 0; j < nw; j++) {
			ck_assert_msg(
				hits[i * k + j].id == want[j].id &&
					hits[i * k + j].score == want[j].score,
				"b=%zu k=%zu query %zu rank %zu: got "
				"(%llu, %g) want (%llu, %g)",
				b, k, i, j,
				(unsigned long long)hits[i * k + j].id,
				hits[i * k + j].score,
				(unsigned long long)want[j].id, want[j].score);
		}
	}
	free(q);
	free(hits);
	free(want);
	free(counts);
	free(excl);
	free(rows);
}

START_TEST(matches_brute_force_across_batch_sizes)
{
	static const size_t bs[] = {1, 7, 64, 1000};
	static const size_t ks[] = {1, 10, 100};
	struct fixture f;

	make(&f, 3001, 16, 2, 1);
	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < 3; j++)
			check_batch(&f, bs[i], ks[j], false, 100 + i * 3 + j);
	unmake(&f);
}
END_TEST

START_TEST(matches_brute_force_with_exclusions)
{
	struct fixture f;

	make(&f, 2500, 12, 3, 2);
	check_batch(&f, 1, 5, true, 7);
	check_batch(&f, 7, 10, true, 8);
	check_batch(&f, 64, 1, true, 9);
	check_batch(&f, 300, 20, true, 10);
	unmake(&f);
}
END_TEST

START_TEST(k_larger_than_n_returns_everything)
{
	struct fixture f;

	make(&f, 37, 5, 2, 3);
	check_batch(&f, 3, 1000, false, 11);
	check_batch(&f, 4, 37, true, 12);
	unmake(&f);
}
END_TEST

START_TEST(max_k_on_a_large_batch)
{
	struct fixture f;

	make(&f, 4000, 8, 2, 4);
	check_batch(&f, 20, FRESH_MAX_K, false, 13);
	unmake(&f);
}
END_TEST

START_TEST(single_thread_equals_many)
{
	struct fixture f1, f4;
	struct tu_rng r = {5};
	size_t b = 9, k = 25;
	float q[9 * 32];
	struct fresh_hit h1[9 * 25], h4[9 * 25];
	size_t c1[9], c4[9];

	make(&f1, 5000, 32, 1, 6);
	make(&f4, 5000, 32, 4, 6);
	tu_fill_normal(&r, q, b * 32);
	{
		struct fresh_matrix m1 = {
			.x = f1.x, .n = f1.n, .dim = f1.d, .ids = f1.ids};
		struct fresh_matrix m4 = {
			.x = f4.x, .n = f4.n, .dim = f4.d, .ids = f4.ids};
		struct fresh_queries qs = {q, b, NULL};
		ck_assert_int_eq(fresh_topk(f1.pool, &m1, &qs, k, NULL, h1, c1),
				 FRESH_OK);
		ck_assert_int_eq(fresh_topk(f4.pool, &m4, &qs, k, NULL, h4, c4),
				 FRESH_OK);
	}
	ck_assert_mem_eq(c1, c4, sizeof c1);
	for (size_t i = 0; i < b; i++)
		tu_assert_hits_eq(h1 + i * k, h4 + i * k, c1[i]);
	unmake(&f1);
	unmake(&f4);
}
END_TEST

START_TEST(offset_and_row_scale_transform_scores)
{
	struct fixture f;
	size_t b = 3, k = 8;
	float q[3 * 6], off[3] = {1.5f, -2.0f, 0.0f};
	float *scale;
	struct fresh_hit hits[3 * 8];
	size_t counts[3];
	struct tu_rng r = {9};

	make(&f, 400, 6, 2, 8);
	scale = malloc(f.n * sizeof *scale);
	for (size_t i = 0; i < f.n; i++)
		scale[i] = 0.25f * (float)(1 + i % 4);
	tu_fill_int(&r, q, b * 6, 2);
	{
		struct fresh_matrix m = {.x = f.x,
					 .n = f.n,
					 .dim = f.d,
					 .ids = f.ids,
					 .row_scale = scale};
		struct fresh_queries qs = {q, b, off};
		ck_assert_int_eq(
			fresh_topk(f.pool, &m, &qs, k, NULL, hits, counts),
			FRESH_OK);
	}
	for (size_t i = 0; i < b; i++) {
		/* Brute force of (<q, x> + off) * scale. */
		float best[8];
		uint64_t best_id[8];
		size_t nb = 0;
		for (size_t rr = 0; rr < f.n; rr++) {
			float s = 0.0f;
			for (size_t c = 0; c < 6; c++)
				s += q[i * 6 + c] * f.x[rr * 6 + c];
			s = (s + off[i]) * scale[rr];
			/* insertion into a sorted top-8 */
			size_t pos = nb;
			while (pos > 0 && (s > best[pos - 1] ||
					   (s == best[pos - 1] &&
					    f.ids[rr] < best_id[pos - 1])))
				pos--;
			if (pos < 8) {
				size_t end = nb < 8 ? nb : 7;
				memmove(best + pos + 1, best + pos,
					(end - pos) * sizeof *best);
				memmove(best_id + pos + 1, best_id + pos,
					(end - pos) * sizeof *best_id);
				best[pos] = s;
				best_id[pos] = f.ids[rr];
				if (nb < 8)
					nb++;
			}
		}
		ck_assert_uint_eq(counts[i], 8);
		for (size_t j = 0; j < 8; j++) {
			ck_assert_uint_eq(hits[i * k + j].id, best_id[j]);
			ck_assert_float_eq(hits[i * k + j].score, best[j]);
		}
	}
	free(scale);
	unmake(&f);
}
END_TEST

START_TEST(refuses_bad_k)
{
	struct fixture f;
	float q[4] = {0};
	struct fresh_hit hits[1];
	size_t counts[1];

	make(&f, 10, 4, 1, 10);
	{
		struct fresh_matrix m = {
			.x = f.x, .n = f.n, .dim = f.d, .ids = f.ids};
		struct fresh_queries qs = {q, 1, NULL};
		ck_assert_int_eq(
			fresh_topk(f.pool, &m, &qs, 0, NULL, hits, counts),
			FRESH_INVALID);
		ck_assert_int_eq(fresh_topk(f.pool, &m, &qs, FRESH_MAX_K + 1,
					    NULL, hits, counts),
				 FRESH_INVALID);
	}
	unmake(&f);
}
END_TEST

START_TEST(heap_sorts_ties_by_id)
{
	struct fresh_hit h[5];
	size_t n = 0;
	struct fresh_hit in[] = {{9, 1.0f}, {3, 2.0f}, {7, 1.0f}, {1, 1.0f},
				 {5, 2.0f}, {2, 0.5f}, {4, 1.0f}};

	for (size_t i = 0; i < sizeof in / sizeof *in; i++)
		fresh_heap_offer(h, &n, 5, in[i]);
	fresh_heap_sort(h, n);
	ck_assert_uint_eq(n, 5);
	ck_assert_uint_eq(h[0].id, 3);
	ck_assert_uint_eq(h[1].id, 5);
	ck_assert_uint_eq(h[2].id, 1);
	ck_assert_uint_eq(h[3].id, 4);
	ck_assert_uint_eq(h[4].id, 7);
}
END_TEST

static Suite *topk_suite(void)
{
	Suite *s = suite_create("topk");
	TCase *exact = tcase_create("exact");
	TCase *edge = tcase_create("edges");

	tcase_set_timeout(exact, 120);
	tcase_add_test(exact, matches_brute_force_across_batch_sizes);
	tcase_add_test(exact, matches_brute_force_with_exclusions);
	tcase_add_test(exact, single_thread_equals_many);
	tcase_add_test(exact, offset_and_row_scale_transform_scores);
	tcase_add_test(edge, k_larger_than_n_returns_everything);
	tcase_add_test(edge, max_k_on_a_large_batch);
	tcase_add_test(edge, refuses_bad_k);
	tcase_add_test(edge, heap_sorts_ties_by_id);
	suite_add_tcase(s, exact);
	suite_add_tcase(s, edge);
	return s;
}

int main(void)
{
	return tu_run(topk_suite());
}
