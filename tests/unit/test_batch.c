/*
 * test_batch.c - scoring a batch of requests on one model: each request
 * of a mixed batch (different k, exclusions, positives) gets what it gets
 * alone, which for top-k is brute force; positives and exclusions never
 * come back; an unknown positive refuses that request only, naming the
 * query, the position and the id; requests of another op or scoring are
 * refused; corrected scoring that is not possible yet is FRESH_NOT_READY;
 * every request reports the version of the model that scored it; sampled
 * requests carry log-probabilities and the same draws as alone.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pool.h"
#include "testutil.h"

#define N 900
#define D 21
#define KMAX 12

struct fx {
	float s[N * D];
	uint64_t ids[N];
	struct fresh_index *idx;
	struct fresh_model *m;
	struct fresh_pool *pool;
};

static struct fresh_model *model_of(struct fx *f, size_t d_out, bool fit)
{
	struct fresh_corrector_shape sh = {FRESH_CORRECTOR_AFFINE,
					   FRESH_ACT_RELU, D, d_out, 0};
	struct fresh_corrector *c;
	struct fresh_model *m;
	struct fresh_error err;
	struct tu_rng r = {5};

	ck_assert_int_eq(fresh_corrector_create(&sh, &c, NULL), FRESH_OK);
	if (fit) {
		struct fresh_corrector_layout l =
			fresh_corrector_layout_of(&sh);
		for (size_t i = 0; i < l.total; i++)
			fresh_corrector_params(c)[i] = 0.2f * tu_normal(&r);
	}
	ck_assert_int_eq(fresh_model_build(f->idx, c, f->pool, NULL, NULL, NULL,
					   &m, &err),
			 FRESH_OK);
	fresh_model_stamp(m, 7, 0);
	return m;
}

static void fx_make(struct fx *f)
{
	struct tu_rng r = {3};

	tu_fill_normal(&r, f->s, N * D);
	for (size_t i = 0; i < N; i++)
		f->ids[i] = 1000 + 3 * i;
	ck_assert_int_eq(
		fresh_index_create(N, D, f->s, f->ids, "fx", &f->idx, NULL),
		FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(2, 0, &f->pool), FRESH_OK);
	f->m = model_of(f, D, true);
}

static void fx_free(struct fx *f)
{
	fresh_model_release(f->m);
	fresh_index_release(f->idx);
	fresh_pool_free(f->pool);
}

/* A request of b queries with its own out buffers. */
struct req {
	struct fresh_request r;
	struct fresh_hit hits[4 * KMAX];
	size_t counts[4];
	float logprob[4 * KMAX];
	float q[4 * D];
	const uint64_t *pos_lists[4], *exc_lists[4];
	size_t pos_n[4], exc_n[4];
};

static void req_init(struct req *q, enum fresh_op op, size_t b, size_t k,
		     uint64_t seed)
{
	struct tu_rng r = {seed};

	memset(q, 0, sizeof *q);
	tu_fill_normal(&r, q->q, b * D);
	q->r.op = op;
	q->r.scoring = FRESH_SCORING_CORRECTED;
	q->r.q = q->q;
	q->r.b = b;
	q->r.k = k;
	q->r.temperature = 0.7f;
	q->r.seed = seed;
	q->r.hits = q->hits;
	q->r.counts = q->counts;
	q->r.logprob = op == FRESH_OP_TOPK ? NULL : q->logprob;
}

static void set_lists(struct req *q, bool positives, size_t i,
		      const uint64_t *ids, size_t n)
{
	if (positives) {
		q->pos_lists[i] = ids;
		q->pos_n[i] = n;
		q->r.positives.lists = q->pos_lists;
		q->r.positives.counts = q->pos_n;
	} else {
		q->exc_lists[i] = ids;
		q->exc_n[i] = n;
		q->r.exclude.lists = q->exc_lists;
		q->r.exclude.counts = q->exc_n;
	}
}

static void assert_same_answers(const struct req *a, const struct req *b)
{
	ck_assert_int_eq(a->r.status, FRESH_OK);
	ck_assert_int_eq(b->r.status, FRESH_OK);
	ck_assert_uint_eq(a->r.version, b->r.version);
	for (size_t i = 0; i < a->r.b; i++) {
		ck_assert_uint_eq(a->counts[i], b->counts[i]);
		for (size_t h = 0; h < a->counts[i]; h++) {
			const struct fresh_hit *x = &a->hits[i * a->r.k + h];
			const struct fresh_hit *y = &b->hits[i * b->r.k + h];
			ck_assert_uint_eq(x->id, y->id);
			ck_assert(
				!memcmp(&x->score, &y->score, sizeof x->score));
		}
		if (a->r.logprob)
			ck_assert(!memcmp(a->logprob + i * a->r.k,
					  b->logprob + i * b->r.k,
					  a->counts[i] * sizeof(float)));
	}
}

static const uint64_t pos0[] = {1000 + 3 * 5, 1000 + 3 * 77};
static const uint64_t exc1[] = {999999, 1000 + 3 * 8, 1000 + 3 * 8};

static void make_mixed(struct req *rs, enum fresh_op op)
{
	req_init(&rs[0], op, 3, 5, 41);
	req_init(&rs[1], op, 1, KMAX, 42);
	req_init(&rs[2], op, 4, 1, 43);
	set_lists(&rs[0], true, 0, pos0, 2);
	set_lists(&rs[0], false, 2, exc1, 3);
	set_lists(&rs[2], false, 1, exc1, 3);
}

static void check_mixed(enum fresh_op op)
{
	struct fx f;
	struct req together[3], alone[3];
	struct fresh_request *p[3];

	fx_make(&f);
	make_mixed(together, op);
	make_mixed(alone, op);
	for (size_t j = 0; j < 3; j++)
		p[j] = &together[j].r;
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, p, 3), 8);
	for (size_t j = 0; j < 3; j++) {
		struct fresh_request *one = &alone[j].r;
		ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, &one, 1),
				  alone[j].r.b);
		assert_same_answers(&together[j], &alone[j]);
		ck_assert_uint_eq(together[j].r.version, 7);
	}
	/* Positives and exclusions never come back. */
	for (size_t j = 0; j < 3; j++)
		for (size_t i = 0; i < together[j].r.b; i++)
			for (size_t h = 0; h < together[j].counts[i]; h++) {
				uint64_t id =
					together[j]
						.hits[i * together[j].r.k + h]
						.id;
				for (size_t t = 0; t < together[j].pos_n[i];
				     t++)
					ck_assert_uint_ne(
						id,
						together[j].pos_lists[i][t]);
				for (size_t t = 0; t < together[j].exc_n[i];
				     t++)
					ck_assert_uint_ne(
						id,
						together[j].exc_lists[i][t]);
			}
	fx_free(&f);
}

START_TEST(mixed_topk_equals_alone_and_brute_force)
{
	struct fx f;
	struct req rq;
	struct fresh_request *p = &rq.r;
	const struct fresh_corrector_shape *sh;
	float h[N * D];
	struct fresh_hit want[KMAX];

	check_mixed(FRESH_OP_TOPK);
	/* Brute force over h(S) for one plain request. */
	fx_make(&f);
	sh = fresh_corrector_shape(fresh_model_corrector(f.m));
	{
		size_t rows[N];
		for (size_t i = 0; i < N; i++)
			rows[i] = i;
		ck_assert_int_eq(fresh_model_corrected_rows(f.m, rows, N, h),
				 FRESH_OK);
	}
	req_init(&rq, FRESH_OP_TOPK, 2, KMAX, 44);
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, &p, 1), 2);
	for (size_t i = 0; i < 2; i++) {
		ck_assert_uint_eq(tu_naive_topk(h, f.ids, N, sh->d_out,
						rq.q + i * D, KMAX, NULL, 0,
						want),
				  KMAX);
		for (size_t t = 0; t < KMAX; t++)
			ck_assert_msg(
				fabsf(rq.hits[i * KMAX + t].score -
				      want[t].score) <
					1e-4f * (1 + fabsf(want[t].score)),
				"rank %zu: %g vs %g", t,
				rq.hits[i * KMAX + t].score, want[t].score);
	}
	fx_free(&f);
}
END_TEST

START_TEST(mixed_samples_equal_alone)
{
	check_mixed(FRESH_OP_SAMPLE);
	check_mixed(FRESH_OP_TOPK_LOGPROB);
}
END_TEST

START_TEST(unknown_positive_refuses_that_request_only)
{
	static const uint64_t bad[] = {1000, 4242};
	struct fx f;
	struct req rs[2];
	struct fresh_request *p[2] = {&rs[0].r, &rs[1].r};

	fx_make(&f);
	req_init(&rs[0], FRESH_OP_SAMPLE, 3, 4, 51);
	req_init(&rs[1], FRESH_OP_SAMPLE, 2, 4, 52);
	set_lists(&rs[0], true, 2, bad, 2);
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, p, 2), 2);
	ck_assert_int_eq(rs[0].r.status, FRESH_NOT_FOUND);
	ck_assert_uint_eq(rs[0].r.missing_query, 2);
	ck_assert_uint_eq(rs[0].r.missing_index, 1);
	ck_assert_uint_eq(rs[0].r.missing_id, 4242);
	ck_assert_int_eq(rs[1].r.status, FRESH_OK);
	ck_assert_uint_eq(rs[1].counts[0], 4);
	fx_free(&f);
}
END_TEST

START_TEST(other_op_or_scoring_is_refused)
{
	struct fx f;
	struct req rs[3];
	struct fresh_request *p[3] = {&rs[0].r, &rs[1].r, &rs[2].r};

	fx_make(&f);
	req_init(&rs[0], FRESH_OP_TOPK, 1, 3, 61);
	req_init(&rs[1], FRESH_OP_SAMPLE, 1, 3, 62);
	req_init(&rs[2], FRESH_OP_TOPK, 1, 3, 63);
	rs[2].r.scoring = FRESH_SCORING_STALE;
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, p, 3), 1);
	ck_assert_int_eq(rs[0].r.status, FRESH_OK);
	ck_assert_int_eq(rs[1].r.status, FRESH_INVALID);
	ck_assert_int_eq(rs[2].r.status, FRESH_INVALID);
	/* A bad k or temperature is refused too. */
	req_init(&rs[0], FRESH_OP_TOPK, 1, 0, 64);
	req_init(&rs[1], FRESH_OP_TOPK, 1, FRESH_MAX_K + 1, 65);
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, p, 2), 0);
	ck_assert_int_eq(rs[0].r.status, FRESH_INVALID);
	ck_assert_int_eq(rs[1].r.status, FRESH_INVALID);
	req_init(&rs[0], FRESH_OP_SAMPLE, 1, 3, 66);
	rs[0].r.temperature = 0.0f;
	ck_assert_uint_eq(fresh_batch_score(f.m, f.pool, p, 1), 0);
	ck_assert_int_eq(rs[0].r.status, FRESH_INVALID);
	fx_free(&f);
}
END_TEST

START_TEST(corrected_not_ready_without_a_fit)
{
	struct fx f;
	struct fresh_model *wide;
	struct req rs[2];
	struct fresh_request *p[1] = {&rs[0].r};

	fx_make(&f);
	wide = model_of(&f, D + 3, false); /* fresh width differs, no fit */
	req_init(&rs[0], FRESH_OP_TOPK, 1, 3, 71);
	ck_assert_uint_eq(fresh_batch_score(wide, f.pool, p, 1), 0);
	ck_assert_int_eq(rs[0].r.status, FRESH_NOT_READY);
	ck_assert_uint_eq(rs[0].r.version, 7);
	/* Stale scoring still works on it. */
	req_init(&rs[0], FRESH_OP_TOPK, 1, 3, 72);
	rs[0].r.scoring = FRESH_SCORING_STALE;
	ck_assert_uint_eq(fresh_batch_score(wide, f.pool, p, 1), 1);
	ck_assert_int_eq(rs[0].r.status, FRESH_OK);
	fresh_model_release(wide);
	fx_free(&f);
}
END_TEST

static Suite *batch_suite(void)
{
	Suite *s = suite_create("batch");
	TCase *t = tcase_create("requests");

	tcase_add_test(t, mixed_topk_equals_alone_and_brute_force);
	tcase_add_test(t, mixed_samples_equal_alone);
	tcase_add_test(t, unknown_positive_refuses_that_request_only);
	tcase_add_test(t, other_op_or_scoring_is_refused);
	tcase_add_test(t, corrected_not_ready_without_a_fit);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return tu_run(batch_suite());
}
