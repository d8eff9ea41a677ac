/*
 * test_invariance.c - a query's answer does not depend on its batch: the
 * same query searched alone, and in every batch size from 1 to 70 at every
 * position among other queries, with pools of 1 and 2 threads, under
 * stale scoring and every corrected plan (folded affine, normalized affine,
 * materialized MLP), gets bitwise the same ids and scores; seeded samples
 * and their log-probabilities likewise; and every instruction-set path of
 * the kernel gives the same answers. Random float data (integer data
 * would hide rounding); widths that are not multiples of 16 and row
 * counts that are not multiples of any block.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corrector.h"
#include "dot.h"
#include "index.h"
#include "model.h"
#include "pool.h"
#include "testutil.h"

#define N 1201
#define D 37
#define POOL 70
#define K 7

struct plan {
	const char *name;
	enum fresh_corrector_kind kind;
	bool normalize;
	enum fresh_scoring scoring;
};

static const struct plan plans[] = {
	{"stale", FRESH_CORRECTOR_MLP, false, FRESH_SCORING_STALE},
	{"affine", FRESH_CORRECTOR_AFFINE, false, FRESH_SCORING_CORRECTED},
	{"affine+norm", FRESH_CORRECTOR_AFFINE, true, FRESH_SCORING_CORRECTED},
	{"mlp", FRESH_CORRECTOR_MLP, false, FRESH_SCORING_CORRECTED},
};

struct answer {
	struct fresh_hit hits[K];
	float logprob[K];
	size_t count;
};

struct fx {
	struct fresh_index *idx;
	struct fresh_model *model;
	struct fresh_pool *pool[2]; /* 1 and 2 threads */
	float q[POOL * D];
	float temps[POOL];
	uint64_t seeds[POOL];
};

static void fx_make(struct fx *f, const struct plan *p)
{
	struct tu_rng r = {21};
	float *s = malloc((size_t)N * D * sizeof *s);
	uint64_t *ids = malloc(N * sizeof *ids);
	struct fresh_corrector_shape sh = {p->kind, FRESH_ACT_GELU, D, D,
					   p->kind == FRESH_CORRECTOR_MLP ? 16
									  : 0};
	struct fresh_corrector *c;
	struct fresh_error err;

	tu_fill_normal(&r, s, (size_t)N * D);
	for (size_t i = 0; i < N; i++)
		ids[i] = 7 * i + 1;
	ck_assert_int_eq(fresh_index_create(N, D, s, ids, "fx", &f->idx, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(1, 0, &f->pool[0]), FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(2, 0, &f->pool[1]), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_create(&sh, &c, NULL), FRESH_OK);
	{
		struct fresh_corrector_layout l =
			fresh_corrector_layout_of(&sh);
		for (size_t i = 0; i < l.total; i++)
			fresh_corrector_params(c)[i] = 0.3f * tu_normal(&r);
	}
	fresh_corrector_set_normalize(c, p->normalize);
	ck_assert_int_eq(fresh_model_build(f->idx, c, f->pool[1], NULL, NULL,
					   NULL, &f->model, &err),
			 FRESH_OK);
	tu_fill_normal(&r, f->q, POOL * D);
	for (size_t i = 0; i < POOL; i++) {
		f->temps[i] = 0.05f + 0.5f * tu_uniform(&r, 0.0f, 1.0f);
		f->seeds[i] = tu_next(&r);
	}
	free(s);
	free(ids);
}

static void fx_free(struct fx *f)
{
	fresh_model_release(f->model);
	fresh_index_release(f->idx);
	fresh_pool_free(f->pool[0]);
	fresh_pool_free(f->pool[1]);
}

/*
 * Answers for the batch of queries order[0..b) of the pool: top-k when
 * sample is false, else seeded Gumbel samples with log-probabilities.
 */
static void run_batch(struct fx *f, const struct plan *p,
		      struct fresh_pool *pool, const size_t *order, size_t b,
		      bool sample, struct answer *out)
{
	float q[POOL * D], temps[POOL], logprob[POOL * K];
	uint64_t seeds[POOL];
	struct fresh_hit hits[POOL * K];
	size_t counts[POOL];

	for (size_t i = 0; i < b; i++) {
		memcpy(q + i * D, f->q + order[i] * D, D * sizeof *q);
		temps[i] = f->temps[order[i]];
		seeds[i] = f->seeds[order[i]];
	}
	enum fresh_status st;

	if (sample)
		st = fresh_model_sample(f->model, pool, p->scoring, q, b, K,
					true, NULL, temps, seeds, hits, logprob,
					counts, NULL);
	else
		st = fresh_model_search(f->model, pool, p->scoring, q, b, K,
					NULL, hits, counts);
	if (st != FRESH_OK)
		ck_abort_msg("batch of %zu: %s", b, fresh_status_str(st));
	for (size_t i = 0; i < b; i++) {
		out[i].count = counts[i];
		memcpy(out[i].hits, hits + i * K, sizeof out[i].hits);
		if (sample)
			memcpy(out[i].logprob, logprob + i * K,
			       sizeof out[i].logprob);
		else
			memset(out[i].logprob, 0, sizeof out[i].logprob);
	}
}

/*
 * Plain comparisons, and a Check call only on a mismatch: Check reports
 * every assertion through a pipe, and there are millions here.
 */
static void assert_same(const struct answer *got, const struct answer *want,
			const char *what, size_t b, size_t pos)
{
	if (got->count != want->count)
		ck_abort_msg("%s: batch %zu position %zu: %zu hits, alone %zu",
			     what, b, pos, got->count, want->count);
	for (size_t j = 0; j < want->count; j++) {
		if (got->hits[j].id == want->hits[j].id &&
		    !memcmp(&got->hits[j].score, &want->hits[j].score,
			    sizeof(float)) &&
		    !memcmp(&got->logprob[j], &want->logprob[j], sizeof(float)))
			continue;
		ck_abort_msg("%s: batch %zu position %zu rank %zu: id %llu "
			     "score %a logprob %a, alone id %llu score %a "
			     "logprob %a",
			     what, b, pos, j,
			     (unsigned long long)got->hits[j].id,
			     got->hits[j].score, got->logprob[j],
			     (unsigned long long)want->hits[j].id,
			     want->hits[j].score, want->logprob[j]);
	}
}

/*
 * For each batch size b in 1..POOL and each rotation, the batch holds
 * pool queries (rot + i) mod POOL at positions i: every query meets every
 * position of every batch size it fits in.
 */
static void check_plan(const struct plan *p, bool sample)
{
	struct fx f;
	struct answer alone[POOL], got[POOL];
	size_t order[POOL];
	char what[96];

	fx_make(&f, p);
	for (size_t i = 0; i < POOL; i++) {
		order[0] = i;
		run_batch(&f, p, f.pool[0], order, 1, sample, &alone[i]);
		ck_assert_uint_eq(alone[i].count, K);
	}
	for (size_t t = 0; t < 2; t++)
		for (size_t b = 1; b <= POOL; b++)
			for (size_t rot = 0; rot < b; rot++) {
				for (size_t i = 0; i < b; i++)
					order[i] = (rot + i) % POOL;
				run_batch(&f, p, f.pool[t], order, b, sample,
					  got);
				snprintf(what, sizeof what, "%s %s %zu thr",
					 p->name, sample ? "sample" : "search",
					 t + 1);
				for (size_t i = 0; i < b; i++)
					assert_same(&got[i], &alone[order[i]],
						    what, b, i);
			}
	fx_free(&f);
}

START_TEST(search_is_batch_invariant)
{
	check_plan(&plans[_i], false);
}
END_TEST

START_TEST(sample_is_batch_invariant)
{
	check_plan(&plans[_i], true);
}
END_TEST

/* Each vector path gives the portable path's answers, bit for bit. */
START_TEST(every_isa_gives_the_same_answers)
{
	const struct plan *p = &plans[_i];
	enum fresh_isa best = fresh_dot_isa();
	static const enum fresh_isa isas[] = {FRESH_ISA_PORTABLE,
					      FRESH_ISA_AVX2, FRESH_ISA_AVX512};
	struct answer want[2][POOL], got[POOL];
	size_t order[POOL];
	struct fx f;

	for (size_t i = 0; i < POOL; i++)
		order[i] = i;
	fx_make(&f, p);
	ck_assert(fresh_dot_use(FRESH_ISA_PORTABLE));
	run_batch(&f, p, f.pool[1], order, POOL, false, want[0]);
	run_batch(&f, p, f.pool[1], order, POOL, true, want[1]);
	for (size_t k = 1; k < 3; k++) {
		if (!fresh_dot_use(isas[k]))
			continue;
		for (int s = 0; s < 2; s++) {
			run_batch(&f, p, f.pool[1], order, POOL, s, got);
			for (size_t i = 0; i < POOL; i++)
				assert_same(&got[i], &want[s][i],
					    fresh_isa_name(isas[k]), POOL, i);
		}
	}
	fresh_dot_use(best);
	fx_free(&f);
}
END_TEST

static Suite *invariance_suite(void)
{
	Suite *s = suite_create("invariance");
	TCase *t = tcase_create("batch");
	int n = (int)(sizeof plans / sizeof *plans);

	tcase_set_timeout(t, 600);
	tcase_add_loop_test(t, search_is_batch_invariant, 0, n);
	tcase_add_loop_test(t, sample_is_batch_invariant, 0, n);
	tcase_add_loop_test(t, every_isa_gives_the_same_answers, 0, n);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return tu_run(invariance_suite());
}
