/*
 * test_logits.c - the logit-matching term against finite differences of a
 * double-precision reference (with and without output normalization), and
 * the query buffer: eviction, snapshots, the durable form.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corrector.h"
#include "index.h"
#include "logits.h"
#include "queries.h"
#include "testutil.h"

#define NT 6
#define NQ 3
#define D 5
#define H 4

static float stale[NT * D], fresh[NT * D], qv[NQ * D];
static uint64_t ids[NT] = {10, 11, 12, 13, 14, 15}, pos[NQ] = {10, 12, 15};

/* h(x) in double for the mlp of layout l (residual, relu). */
static void forward(const double *p, const float *x, double *y)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_GELU,
					  D, D, H};
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);

	for (int o = 0; o < D; o++) {
		y[o] = x[o] + p[l.b + o];
		for (int i = 0; i < D; i++)
			y[o] += p[l.a + o * D + i] * x[i];
	}
	for (int h = 0; h < H; h++) {
		double z = p[l.b1 + h], a;
		for (int i = 0; i < D; i++)
			z += p[l.w1 + h * D + i] * x[i];
		a = 0.5 * z * (1 + erf(z / sqrt(2.0)));
		for (int o = 0; o < D; o++)
			y[o] += p[l.w2 + o * H + h] * a;
	}
}

/* The cross-entropy of the fresh softmax against the corrected one. */
static double reference_loss(const double *p, bool norm, double tau)
{
	double hs[NT][D], loss = 0.0;

	for (int t = 0; t < NT; t++) {
		double ss = 0.0;
		forward(p, stale + t * D, hs[t]);
		for (int k = 0; k < D; k++)
			ss += hs[t][k] * hs[t][k];
		if (norm)
			for (int k = 0; k < D; k++)
				hs[t][k] /= sqrt(ss);
	}
	for (int q = 0; q < NQ; q++) {
		double zf[NT], zc[NT], mf = -1e300, mc = -1e300, sf = 0, sc = 0;
		for (int t = 0; t < NT; t++) {
			zf[t] = zc[t] = 0;
			for (int k = 0; k < D; k++) {
				zf[t] += (double)qv[q * D + k] *
					 fresh[t * D + k];
				zc[t] += qv[q * D + k] * hs[t][k];
			}
			zf[t] /= tau;
			zc[t] /= tau;
			mf = fmax(mf, zf[t]);
			mc = fmax(mc, zc[t]);
		}
		for (int t = 0; t < NT; t++) {
			sf += exp(zf[t] - mf);
			sc += exp(zc[t] - mc);
		}
		for (int t = 0; t < NT; t++)
			loss -= exp(zf[t] - mf) / sf * (zc[t] - mc - log(sc));
	}
	return loss / NQ;
}

static void check_gradient(bool norm)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_GELU,
					  D, D, H};
	struct fresh_corrector *c;
	struct fresh_index *idx;
	struct fresh_logit_set *set;
	struct fresh_qgroups groups;
	struct fresh_qgroup g;
	struct tu_rng r = {7};
	size_t total;
	float *grad, *scratch;
	double *p, loss;

	tu_fill_normal(&r, stale, NT * D);
	tu_fill_normal(&r, fresh, NT * D);
	tu_fill_normal(&r, qv, NQ * D);
	ck_assert_int_eq(fresh_index_create(NT, D, stale, ids, "t", &idx, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	fresh_corrector_set_normalize(c, norm);
	total = fresh_corrector_layout(c).total;
	for (size_t i = 0; i < total; i++)
		fresh_corrector_params(c)[i] = 0.3f * tu_normal(&r);
	g.n_targets = NT;
	g.n_queries = NQ;
	g.dim = D;
	g.ids = ids;
	g.targets = fresh;
	g.queries = qv;
	g.positives = pos;
	g.seq = 1;
	groups.n = 1;
	groups.g = &g;
	ck_assert_int_eq(fresh_logits_prepare(idx, &groups, 0.5f, &set),
			 FRESH_OK);
	ck_assert_uint_eq(fresh_logits_groups(set), 1);
	grad = calloc(total, sizeof *grad);
	scratch = calloc(total, sizeof *scratch);
	p = calloc(total, sizeof *p);
	loss = fresh_logits_step(set, c, 0, 1.0f,
				 FRESH_GRAD_LINEAR | FRESH_GRAD_MLP, grad,
				 scratch);
	for (size_t i = 0; i < total; i++)
		p[i] = fresh_corrector_params(c)[i];
	ck_assert_msg(fabs(loss - reference_loss(p, norm, 0.5)) < 1e-4,
		      "loss %g vs %g", loss, reference_loss(p, norm, 0.5));
	for (size_t i = 0; i < total; i++) {
		double h = 1e-5, save = p[i], fd;
		p[i] = save + h;
		fd = reference_loss(p, norm, 0.5);
		p[i] = save - h;
		fd -= reference_loss(p, norm, 0.5);
		p[i] = save;
		fd /= 2 * h;
		ck_assert_msg(fabs(grad[i] - fd) < 2e-3 * (1 + fabs(fd)),
			      "param %zu: analytic %g, finite difference %g", i,
			      grad[i], fd);
	}
	free(grad);
	free(scratch);
	free(p);
	fresh_logits_free(set);
	fresh_corrector_free(c);
	fresh_index_release(idx);
}

START_TEST(gradient_matches_finite_differences)
{
	check_gradient(false);
	check_gradient(true);
}
END_TEST

static struct fresh_update update_of(size_t nq, uint64_t *id, float *v)
{
	struct fresh_update u;

	memset(&u, 0, sizeof u);
	u.n_targets = 1;
	u.ids = id;
	u.vectors = v;
	u.dim = 2;
	u.n_queries = nq;
	u.queries = v;
	u.positives = id;
	return u;
}

START_TEST(query_buffer_evicts_oldest_groups)
{
	struct fresh_queries_buf *b;
	struct fresh_qgroups snap;
	float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint64_t id[4] = {1, 1, 1, 1};

	ck_assert_int_eq(fresh_qbuf_create(2, 5, &b), FRESH_OK);
	for (uint64_t seq = 1; seq <= 4; seq++) {
		struct fresh_update u = update_of(2, id, v);
		ck_assert_int_eq(fresh_qbuf_add(b, &u, seq), FRESH_OK);
	}
	/* 4 groups of 2 queries with room for 5: the newest two remain. */
	ck_assert_uint_eq(fresh_qbuf_groups(b), 2);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 4);
	ck_assert_int_eq(fresh_qbuf_snapshot(b, &snap), FRESH_OK);
	ck_assert_uint_eq(snap.n, 2);
	ck_assert_uint_eq(snap.g[0].seq, 3);
	ck_assert_uint_eq(snap.g[1].seq, 4);
	ck_assert_float_eq(snap.g[1].queries[3], 4.0f);
	fresh_qgroups_free(&snap);
	{
		struct fresh_update none = update_of(0, id, v);
		ck_assert_int_eq(fresh_qbuf_add(b, &none, 9), FRESH_OK);
		ck_assert_uint_eq(fresh_qbuf_groups(b), 2);
	}
	fresh_qbuf_clear(b);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 0);
	fresh_qbuf_free(b);
}
END_TEST

START_TEST(query_buffer_round_trip)
{
	struct fresh_queries_buf *a, *b;
	struct fresh_qgroups snap;
	float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint64_t id[4] = {3, 3, 3, 3};
	char dir[4096], path[4200];

	tu_tmpdir(dir, sizeof dir);
	tu_path(path, sizeof path, dir, "q.snap");
	ck_assert_int_eq(fresh_qbuf_create(2, 100, &a), FRESH_OK);
	for (uint64_t seq = 1; seq <= 3; seq++) {
		struct fresh_update u = update_of(seq, id, v);
		ck_assert_int_eq(fresh_qbuf_add(a, &u, seq * 10), FRESH_OK);
	}
	ck_assert_int_eq(fresh_qbuf_save(a, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_create(2, 100, &b), FRESH_OK);
	/* Only groups the pair snapshot covers (seq <= 20) come back. */
	ck_assert_int_eq(fresh_qbuf_load(b, path, 20, NULL), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 2);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 3);
	ck_assert_int_eq(fresh_qbuf_snapshot(b, &snap), FRESH_OK);
	ck_assert_uint_eq(snap.g[1].seq, 20);
	ck_assert_float_eq(snap.g[1].queries[1], 2.0f);
	fresh_qgroups_free(&snap);
	/* A damaged file is refused. */
	{
		FILE *f = fopen(path, "r+b");
		fseek(f, 30, SEEK_SET);
		fputc(0x55, f);
		fclose(f);
		fresh_qbuf_clear(b);
		ck_assert_int_eq(fresh_qbuf_load(b, path, 100, NULL),
				 FRESH_CHECKSUM);
	}
	fresh_qbuf_free(a);
	fresh_qbuf_free(b);
	tu_rmdir(dir);
}
END_TEST

static Suite *logits_suite(void)
{
	Suite *s = suite_create("logits");
	TCase *tc = tcase_create("logits");

	tcase_add_test(tc, gradient_matches_finite_differences);
	tcase_add_test(tc, query_buffer_evicts_oldest_groups);
	tcase_add_test(tc, query_buffer_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(logits_suite());
}
