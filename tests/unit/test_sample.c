/*
 * test_sample.c - Gumbel-top-k sampling: first-draw frequencies match the
 * softmax (chi-square), log-probabilities equal a direct computation,
 * draws are distinct and never excluded, results do not depend on the
 * thread count, and n beyond what remains returns all of it.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "sample.h"
#include "testutil.h"

#define N 20
#define D 4

static float x[N * D];
static uint64_t ids[N];

static void make(void)
{
	struct tu_rng r = {3};
	tu_fill_normal(&r, x, N * D);
	for (size_t i = 0; i < N; i++)
		ids[i] = 100 + 3 * i;
}

/* Exact softmax of score / t over rows not in excl. */
static void softmax(const float *q, float t, const bool *excluded, double *p)
{
	double z[N], m = -INFINITY, s = 0.0;

	for (size_t i = 0; i < N; i++) {
		double sc = 0.0;
		for (size_t c = 0; c < D; c++)
			sc += (double)q[c] * x[i * D + c];
		z[i] = sc / t;
		if (!excluded[i] && z[i] > m)
			m = z[i];
	}
	for (size_t i = 0; i < N; i++)
		if (!excluded[i])
			s += exp(z[i] - m);
	for (size_t i = 0; i < N; i++)
		p[i] = excluded[i] ? 0.0 : exp(z[i] - m) / s;
}

static size_t row_of(uint64_t id)
{
	return (size_t)(id - 100) / 3;
}

/* Draws `draws` single samples with seeds 0.. and returns chi-square. */
static double chi_square(struct fresh_pool *pool, const float *q, float t,
			 const struct fresh_exclusion *ex, const bool *excluded,
			 size_t draws)
{
	struct fresh_matrix m = {.x = x, .n = N, .dim = D, .ids = ids};
	size_t b = 500, got[N] = {0};
	float *qs = malloc(b * D * sizeof *qs),
	      *temps = malloc(b * sizeof *temps);
	uint64_t *seeds = malloc(b * sizeof *seeds);
	struct fresh_hit *hits = malloc(b * sizeof *hits);
	float *lp = malloc(b * sizeof *lp);
	size_t *counts = malloc(b * sizeof *counts);
	struct fresh_exclusion *exs = malloc(b * sizeof *exs);
	double p[N], chi = 0.0;

	softmax(q, t, excluded, p);
	for (size_t i = 0; i < b; i++) {
		memcpy(qs + i * D, q, D * sizeof *q);
		temps[i] = t;
		exs[i] = ex ? *ex : (struct fresh_exclusion){NULL, 0};
	}
	for (size_t done = 0; done < draws; done += b) {
		struct fresh_queries batch = {qs, b, NULL};
		for (size_t i = 0; i < b; i++)
			seeds[i] = fresh_sample_seed(12345, done + i);
		ck_assert_int_eq(fresh_sample(pool, &m, &batch, 1, true, exs,
					      temps, seeds, hits, lp, counts),
				 FRESH_OK);
		for (size_t i = 0; i < b; i++) {
			size_t r = row_of(hits[i].id);
			ck_assert_uint_eq(counts[i], 1);
			ck_assert(!excluded[r]);
			/* logprob is the exact softmax log-probability. */
			ck_assert_msg(fabs(lp[i] - log(p[r])) < 1e-4,
				      "logprob %g vs %g", lp[i], log(p[r]));
			got[r]++;
		}
	}
	for (size_t i = 0; i < N; i++) {
		double want = p[i] * (double)draws;
		if (excluded[i])
			continue;
		chi += (got[i] - want) * (got[i] - want) / want;
	}
	free(qs);
	free(temps);
	free(seeds);
	free(hits);
	free(lp);
	free(counts);
	free(exs);
	return chi;
}

START_TEST(first_draw_follows_softmax)
{
	struct fresh_pool *pool;
	float q[D] = {0.9f, -0.4f, 0.3f, 0.7f};
	bool none[N] = {false};
	double chi;

	make();
	ck_assert_int_eq(fresh_pool_create(2, 0, &pool), FRESH_OK);
	/* 19 degrees of freedom: P(chi2 > 43.8) = 0.001. */
	chi = chi_square(pool, q, 1.0f, NULL, none, 20000);
	ck_assert_msg(chi < 43.8, "chi-square %g at T=1", chi);
	chi = chi_square(pool, q, 0.5f, NULL, none, 20000);
	ck_assert_msg(chi < 43.8, "chi-square %g at T=0.5", chi);
	fresh_pool_free(pool);
}
END_TEST

START_TEST(exclusions_are_never_drawn)
{
	struct fresh_pool *pool;
	float q[D] = {0.5f, 0.5f, -0.2f, 0.1f};
	size_t rows[3] = {2, 7, 11};
	struct fresh_exclusion ex = {rows, 3};
	bool excluded[N] = {false};
	double chi;

	make();
	excluded[2] = excluded[7] = excluded[11] = true;
	ck_assert_int_eq(fresh_pool_create(3, 0, &pool), FRESH_OK);
	/* 16 degrees of freedom: P(chi2 > 39.3) = 0.001. */
	chi = chi_square(pool, q, 1.0f, &ex, excluded, 20000);
	ck_assert_msg(chi < 39.3, "chi-square %g", chi);
	fresh_pool_free(pool);
}
END_TEST

START_TEST(draws_distinct_reproducible_thread_independent)
{
	struct fresh_pool *p1, *p3;
	struct fresh_matrix m = {.x = x, .n = N, .dim = D, .ids = ids};
	float q[2 * D] = {1, 0, 0, 0, 0, 1, 1, 0}, temps[2] = {1.0f, 2.0f};
	uint64_t seeds[2] = {7, 8};
	struct fresh_queries qs = {q, 2, NULL};
	struct fresh_hit a[2 * 25], b[2 * 25];
	float la[2 * 25], lb[2 * 25];
	size_t ca[2], cb[2];

	make();
	ck_assert_int_eq(fresh_pool_create(1, 0, &p1), FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(3, 0, &p3), FRESH_OK);
	ck_assert_int_eq(fresh_sample(p1, &m, &qs, 25, true, NULL, temps, seeds,
				      a, la, ca),
			 FRESH_OK);
	ck_assert_int_eq(fresh_sample(p3, &m, &qs, 25, true, NULL, temps, seeds,
				      b, lb, cb),
			 FRESH_OK);
	/* n beyond N: everything, each once. */
	ck_assert_uint_eq(ca[0], N);
	ck_assert_uint_eq(ca[1], N);
	ck_assert_mem_eq(ca, cb, sizeof ca);
	for (size_t q2 = 0; q2 < 2; q2++) {
		bool seen[N] = {false};
		double total = 0.0;
		for (size_t i = 0; i < N; i++) {
			size_t r = row_of(a[q2 * 25 + i].id);
			ck_assert(!seen[r]);
			seen[r] = true;
			ck_assert_uint_eq(a[q2 * 25 + i].id, b[q2 * 25 + i].id);
			ck_assert_float_eq(la[q2 * 25 + i], lb[q2 * 25 + i]);
			total += exp(la[q2 * 25 + i]);
		}
		/* Over all targets the probabilities sum to one. */
		ck_assert_double_eq_tol(total, 1.0, 1e-5);
	}
	fresh_pool_free(p1);
	fresh_pool_free(p3);
}
END_TEST

START_TEST(refuses_bad_arguments)
{
	struct fresh_pool *pool;
	struct fresh_matrix m = {.x = x, .n = N, .dim = D, .ids = ids};
	float q[D] = {0}, t = 0.0f;
	uint64_t seed = 1;
	struct fresh_queries qs = {q, 1, NULL};
	struct fresh_hit h[1];
	float lp[1];
	size_t c[1];

	make();
	ck_assert_int_eq(fresh_pool_create(1, 0, &pool), FRESH_OK);
	ck_assert_int_eq(
		fresh_sample(pool, &m, &qs, 1, true, NULL, &t, &seed, h, lp, c),
		FRESH_INVALID);
	t = 1.0f;
	ck_assert_int_eq(
		fresh_sample(pool, &m, &qs, 0, true, NULL, &t, &seed, h, lp, c),
		FRESH_INVALID);
	fresh_pool_free(pool);
}
END_TEST

START_TEST(greedy_mode_is_exact_top_n_with_logprobs)
{
	struct fresh_pool *pool;
	struct fresh_matrix m = {.x = x, .n = N, .dim = D, .ids = ids};
	float q[D] = {0.3f, -0.2f, 0.8f, 0.1f}, t = 0.7f, lp[5];
	uint64_t seed = 3;
	struct fresh_queries qs = {q, 1, NULL};
	struct fresh_hit h[5], want[5];
	size_t c, rows[2] = {4, 9};
	struct fresh_exclusion ex = {rows, 2};
	bool excluded[N] = {false};
	double p[N];

	make();
	excluded[4] = excluded[9] = true;
	softmax(q, t, excluded, p);
	ck_assert_int_eq(fresh_pool_create(2, 0, &pool), FRESH_OK);
	ck_assert_int_eq(fresh_sample(pool, &m, &qs, 5, false, &ex, &t, &seed,
				      h, lp, &c),
			 FRESH_OK);
	ck_assert_uint_eq(c, 5);
	ck_assert_uint_eq(tu_naive_topk(x, ids, N, D, q, 5, rows, 2, want), 5);
	for (size_t i = 0; i < 5; i++) {
		ck_assert_uint_eq(h[i].id, want[i].id);
		ck_assert_double_eq_tol(lp[i], log(p[row_of(h[i].id)]), 1e-4);
	}
	fresh_pool_free(pool);
}
END_TEST

/*
 * On an index big enough that almost every row is ruled out by the fast
 * vectorized pass, the draw is exactly the n largest Gumbel keys
 * z - log(-log U(seed, id)) computed row by row in double. Integer-valued
 * vectors make the scores exact, so the reference sees the same z.
 */
#define BIG_N 6007
#define BIG_D 8
#define BIG_K 16

struct keyed {
	double key;
	uint64_t id;
	size_t row;
};

static int keyed_desc(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? 1 : -1;
	return x->id < y->id ? -1 : x->id > y->id;
}

START_TEST(large_draw_equals_row_by_row_gumbel_top_n)
{
	static float bx[BIG_N * BIG_D];
	static uint64_t bids[BIG_N];
	static struct keyed keys[BIG_N];
	float temps[4] = {0.05f, 0.5f, 2.0f, 40.0f}, q[4 * BIG_D],
	      lp[4 * BIG_K];
	uint64_t seeds[4] = {11, 12, 13, 14};
	size_t rows[3] = {5, 77, 4000}, counts[4];
	struct fresh_exclusion ex[4] = {
		{NULL, 0}, {rows, 3}, {NULL, 0}, {rows, 3}};
	struct fresh_matrix m = {
		.x = bx, .n = BIG_N, .dim = BIG_D, .ids = bids};
	struct fresh_queries qs = {q, 4, NULL};
	struct fresh_hit h[4 * BIG_K];
	struct fresh_pool *pool;
	struct tu_rng r = {9};

	for (size_t i = 0; i < BIG_N * BIG_D; i++)
		bx[i] = (float)(tu_next(&r) % 7) - 3.0f;
	for (size_t i = 0; i < 4 * BIG_D; i++)
		q[i] = (float)(tu_next(&r) % 5) - 2.0f;
	for (size_t i = 0; i < BIG_N; i++)
		bids[i] = tu_next(&r) >> 8; /* arbitrary, distinct whp */
	ck_assert_int_eq(fresh_pool_create(2, 0, &pool), FRESH_OK);
	ck_assert_int_eq(fresh_sample(pool, &m, &qs, BIG_K, true, ex, temps,
				      seeds, h, lp, counts),
			 FRESH_OK);
	for (size_t t = 0; t < 4; t++) {
		double mz = -INFINITY, sz = 0.0;
		size_t n = 0;

		for (size_t i = 0; i < BIG_N; i++) {
			double sc = 0.0, z;
			if (fresh_excluded(&ex[t], i))
				continue;
			for (size_t c = 0; c < BIG_D; c++)
				sc += (double)q[t * BIG_D + c] *
				      bx[i * BIG_D + c];
			z = sc * (1.0 / (double)temps[t]);
			keys[n].key = z - log(-log(fresh_sample_uniform(
						  seeds[t], bids[i])));
			keys[n].id = bids[i];
			keys[n].row = i;
			n++;
			mz = z > mz ? z : mz;
		}
		for (size_t i = 0; i < BIG_N; i++) {
			double sc = 0.0;
			if (fresh_excluded(&ex[t], i))
				continue;
			for (size_t c = 0; c < BIG_D; c++)
				sc += (double)q[t * BIG_D + c] *
				      bx[i * BIG_D + c];
			sz += exp(sc / (double)temps[t] - mz);
		}
		qsort(keys, n, sizeof *keys, keyed_desc);
		ck_assert_uint_eq(counts[t], BIG_K);
		for (size_t i = 0; i < BIG_K; i++) {
			const struct fresh_hit *g = &h[t * BIG_K + i];
			double z = (double)g->score / (double)temps[t];
			ck_assert_msg(g->id == keys[i].id,
				      "query %zu draw %zu: id %llu, want %llu",
				      t, i, (unsigned long long)g->id,
				      (unsigned long long)keys[i].id);
			ck_assert_double_eq_tol(lp[t * BIG_K + i],
						z - mz - log(sz),
						1e-4 * fmax(1.0, fabs(z - mz)));
		}
	}
	fresh_pool_free(pool);
}
END_TEST

/*
 * Workers take scan tasks in whatever order they come to them; the
 * log-probabilities must not depend on it, to the last bit.
 */
START_TEST(same_call_gives_the_same_bits)
{
	enum { ROWS = 40000, DIM = 16, B = 64, K = 4, RUNS = 20 };
	static float bx[ROWS * DIM];
	static uint64_t bids[ROWS];
	float temps[B], q[B * DIM], lp[B * K], lp0[B * K];
	uint64_t seeds[B];
	size_t counts[B];
	struct fresh_matrix m = {.x = bx, .n = ROWS, .dim = DIM, .ids = bids};
	struct fresh_queries qs = {q, B, NULL};
	struct fresh_hit h[B * K], h0[B * K];
	struct fresh_pool *pool;
	struct tu_rng r = {5};

	tu_fill_normal(&r, bx, ROWS * DIM);
	tu_fill_normal(&r, q, B * DIM);
	for (size_t i = 0; i < ROWS; i++)
		bids[i] = i;
	for (size_t i = 0; i < B; i++) {
		temps[i] = 0.05f * (float)(i + 1);
		seeds[i] = i;
	}
	ck_assert_int_eq(fresh_pool_create(4, 0, &pool), FRESH_OK);
	for (int run = 0; run < RUNS; run++) {
		ck_assert_int_eq(fresh_sample(pool, &m, &qs, K, true, NULL,
					      temps, seeds, h, lp, counts),
				 FRESH_OK);
		if (run == 0) {
			memcpy(h0, h, sizeof h);
			memcpy(lp0, lp, sizeof lp);
			continue;
		}
		for (size_t i = 0; i < B * K; i++) {
			ck_assert_uint_eq(h[i].id, h0[i].id);
			ck_assert_msg(
				memcmp(&lp[i], &lp0[i], sizeof *lp) == 0,
				"run %d draw %zu: logprob %.9g, first %.9g",
				run, i, (double)lp[i], (double)lp0[i]);
		}
	}
	fresh_pool_free(pool);
}
END_TEST

static Suite *sample_suite(void)
{
	Suite *s = suite_create("sample");
	TCase *tc = tcase_create("gumbel");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, first_draw_follows_softmax);
	tcase_add_test(tc, exclusions_are_never_drawn);
	tcase_add_test(tc, draws_distinct_reproducible_thread_independent);
	tcase_add_test(tc, refuses_bad_arguments);
	tcase_add_test(tc, greedy_mode_is_exact_top_n_with_logprobs);
	tcase_add_test(tc, large_draw_equals_row_by_row_gumbel_top_n);
	tcase_add_test(tc, same_call_gives_the_same_bits);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(sample_suite());
}
