/*
 * test_trainer.c - refits on synthetic drifts with known structure:
 * a linear drift is cut at least 10x on held-out pairs; a nonlinear drift
 * is fitted better by the MLP than by the best affine map; the publish gate
 * refuses a candidate that does not beat the published corrector; too few
 * pairs; automatic normalization; a change of width; an accepted ridge
 * fit is redone on every pair.
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "corrector.h"
#include "index.h"
#include "pairs.h"
#include "ridge.h"
#include "testutil.h"
#include "trainer.h"

struct world {
	size_t n, d, dd;
	float *s, *g; /* stale n x d, fresh n x dd */
	struct fresh_index *idx;
};

enum drift { LINEAR, NONLINEAR, WIDEN };

static void make_world(struct world *w, size_t n, size_t d, size_t dd,
		       enum drift kind, uint64_t seed)
{
	struct tu_rng r = {seed};
	float *m = malloc(dd * d * sizeof *m), *c = malloc(dd * sizeof *c);

	w->n = n;
	w->d = d;
	w->dd = dd;
	w->s = malloc(n * d * sizeof *w->s);
	w->g = malloc(n * dd * sizeof *w->g);
	tu_fill_normal(&r, w->s, n * d);
	tu_fill_normal(&r, m, dd * d);
	tu_fill_normal(&r, c, dd);
	for (size_t i = 0; i < n; i++) {
		const float *s = w->s + i * d;
		for (size_t o = 0; o < dd; o++) {
			double v = 0.0, lin = 0.0;
			for (size_t j = 0; j < d; j++)
				lin += m[o * d + j] * s[j];
			lin /= sqrt((double)d);
			switch (kind) {
			case LINEAR:
				v = s[o] + 0.3 * lin + 0.2 * c[o];
				break;
			case NONLINEAR:
				/* A smooth drift no affine map captures. */
				v = s[o] +
				    1.5 * tanh(2.0 * lin) * s[(o + 1) % d];
				break;
			case WIDEN:
				v = lin + 0.1 * c[o];
				break;
			}
			w->g[i * dd + o] = (float)v;
		}
	}
	ck_assert_int_eq(
		fresh_index_create(n, d, w->s, NULL, "world", &w->idx, NULL),
		FRESH_OK);
	free(m);
	free(c);
}

static void free_world(struct world *w)
{
	fresh_index_release(w->idx);
	free(w->s);
	free(w->g);
}

/* A snapshot of pairs for the first `count` targets. */
static void snapshot(const struct world *w, size_t count,
		     struct fresh_pairs_snapshot *snap)
{
	struct fresh_pairs *p;
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(w->dd, count, &p), FRESH_OK);
	for (size_t i = 0; i < count; i++)
		ck_assert_int_eq(fresh_pairs_put(p, i, w->g + i * w->dd, false,
						 0, i + 1, &kept),
				 FRESH_OK);
	ck_assert_int_eq(fresh_pairs_snapshot(p, 0, snap), FRESH_OK);
	fresh_pairs_free(p);
}

static struct fresh_corrector *identity(enum fresh_corrector_kind kind,
					size_t d, size_t dd, size_t hidden)
{
	struct fresh_corrector_shape s = {kind, FRESH_ACT_RELU, d, dd, hidden};
	struct fresh_corrector *c;
	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	return c;
}

START_TEST(linear_drift_cut_tenfold)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	enum fresh_corrector_kind kinds[2] = {FRESH_CORRECTOR_AFFINE,
					      FRESH_CORRECTOR_MLP};

	make_world(&w, 5000, 24, 24, LINEAR, 1);
	snapshot(&w, 1000, &snap);
	cfg.max_epochs = 30;
	for (int k = 0; k < 2; k++) {
		size_t hidden = kinds[k] == FRESH_CORRECTOR_MLP ? 32 : 0;
		struct fresh_corrector *cur =
			identity(kinds[k], 24, 24, hidden);
		struct fresh_corrector *out;
		struct fresh_refit_report rep;

		ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur,
						   &cfg, NULL, NULL, &out, &rep,
						   NULL),
				 FRESH_OK);
		ck_assert_msg(rep.accepted, "not accepted: %s", rep.reason);
		ck_assert_ptr_nonnull(out);
		ck_assert(rep.held_out > 50 && rep.held_out < 160);
		ck_assert_uint_eq(rep.train + rep.held_out, 1000);
		ck_assert(rep.holdout.stale_defined);
		ck_assert_msg(rep.holdout.corrected_mse * 10 <
				      rep.holdout.stale_mse,
			      "held-out MSE %g vs stale %g",
			      rep.holdout.corrected_mse, rep.holdout.stale_mse);
		ck_assert_double_eq_tol(rep.current_mse, rep.holdout.stale_mse,
					1e-9);
		ck_assert(rep.holdout.corrected_rel_err <
			  rep.holdout.stale_rel_err / 10);
		ck_assert(!rep.normalize);
		fresh_corrector_free(out);
		fresh_corrector_free(cur);
	}
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

/*
 * Once accepted, a ridge-only candidate is fitted again on every pair
 * (held-out ones too) with the penalty cross-validation chose.
 */
START_TEST(accepted_ridge_is_refit_on_every_pair)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur, *out;
	struct fresh_refit_report rep;
	struct fresh_ridge_result rr;
	struct fresh_corrector_layout l;
	enum { PAIRS = 300, DIM = 12 };
	float *y = malloc(PAIRS * DIM * sizeof *y);
	float *a = malloc(DIM * DIM * sizeof *a), b[DIM];
	const float *p;

	make_world(&w, 2000, DIM, DIM, NONLINEAR, 4);
	snapshot(&w, PAIRS, &snap);
	cur = identity(FRESH_CORRECTOR_AFFINE, DIM, DIM, 0);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert_msg(rep.accepted, "not accepted: %s", rep.reason);
	ck_assert(rep.refit_on_all);
	ck_assert(rep.lambda > 0.0);
	for (size_t i = 0; i < PAIRS * DIM; i++)
		y[i] = w.g[i] - w.s[i];
	ck_assert_int_eq(
		fresh_ridge_fit(w.s, y, PAIRS, DIM, DIM, rep.lambda, a, b, &rr),
		FRESH_OK);
	l = fresh_corrector_layout(out);
	p = fresh_corrector_params_const(out);
	for (size_t i = 0; i < DIM * DIM; i++)
		ck_assert_float_eq_tol(p[l.a + i], a[i], 1e-4);
	for (size_t i = 0; i < DIM; i++)
		ck_assert_float_eq_tol(p[l.b + i], b[i], 1e-4);
	fresh_corrector_free(cur);
	fresh_corrector_free(out);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
	free(y);
	free(a);
}
END_TEST

/* On a drift ridge captures exactly, the MLP cannot be clearly better. */
START_TEST(mlp_not_clearly_better_is_dropped)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur, *out;
	struct fresh_refit_report rep;

	make_world(&w, 3000, 16, 16, LINEAR, 6);
	snapshot(&w, 600, &snap);
	cfg.max_epochs = 20;
	cur = identity(FRESH_CORRECTOR_MLP, 16, 16, 32);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert_msg(rep.accepted, "not accepted: %s", rep.reason);
	ck_assert(rep.mlp_dropped);
	ck_assert_str_eq(rep.method, "ridge");
	ck_assert(rep.refit_on_all);
	fresh_corrector_free(cur);
	fresh_corrector_free(out);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

START_TEST(nonlinear_drift_mlp_beats_best_affine)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *mlp0 =
		identity(FRESH_CORRECTOR_MLP, 16, 16, 128);
	struct fresh_corrector *aff0 =
		identity(FRESH_CORRECTOR_AFFINE, 16, 16, 0);
	struct fresh_corrector *mlp, *aff;
	struct fresh_refit_report rm, ra;

	make_world(&w, 20000, 16, 16, NONLINEAR, 2);
	snapshot(&w, 8000, &snap);
	cfg.lr = 3e-3f;
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, aff0, &cfg, NULL,
					   NULL, &aff, &ra, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, mlp0, &cfg, NULL,
					   NULL, &mlp, &rm, NULL),
			 FRESH_OK);
	ck_assert(ra.accepted && rm.accepted);
	ck_assert_str_eq(rm.method, "ridge+mlp");
	/* The affine refit is the best affine map (ridge, CV penalty). */
	ck_assert_msg(rm.holdout.corrected_mse < 0.7 * ra.holdout.corrected_mse,
		      "mlp %g vs best affine %g (stale %g), %zu epochs",
		      rm.holdout.corrected_mse, ra.holdout.corrected_mse,
		      rm.holdout.stale_mse, rm.epochs);
	fresh_corrector_free(mlp);
	fresh_corrector_free(aff);
	fresh_corrector_free(mlp0);
	fresh_corrector_free(aff0);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

START_TEST(gate_refuses_no_improvement)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur =
		identity(FRESH_CORRECTOR_AFFINE, 12, 12, 0);
	struct fresh_corrector *first, *second;
	struct fresh_refit_report rep;

	make_world(&w, 3000, 12, 12, LINEAR, 3);
	snapshot(&w, 800, &snap);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &first, &rep, NULL),
			 FRESH_OK);
	ck_assert(rep.accepted);
	/* The same data again: the candidate equals the published one. */
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, first, &cfg,
					   NULL, NULL, &second, &rep, NULL),
			 FRESH_OK);
	ck_assert(!rep.accepted);
	ck_assert_ptr_null(second);
	ck_assert(strstr(rep.reason, "does not beat the published") != NULL);
	fresh_corrector_free(first);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

/*
 * With serve_fresh_rows, an accepted refit carries its pairs' rows; the
 * same pairs again publish nothing; new rows whose network does not beat
 * the published one publish that network with the new rows
 * ("fresh-rows").
 */
START_TEST(fresh_rows_ride_with_the_refit)
{
	struct world w;
	struct fresh_pairs_snapshot snap, more;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur = identity(FRESH_CORRECTOR_MLP, 12, 12, 8);
	struct fresh_corrector *first, *second, *third;
	struct fresh_refit_report rep;
	const uint64_t *ids;
	const float *rows;

	cfg.serve_fresh_rows = true;
	cfg.max_epochs = 20;
	make_world(&w, 3000, 12, 12, LINEAR, 13);
	snapshot(&w, 800, &snap);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &first, &rep, NULL),
			 FRESH_OK);
	ck_assert(rep.accepted);
	ck_assert_uint_eq(fresh_corrector_fresh_rows(first, &ids, &rows), 800);
	for (size_t i = 0; i < 800; i++) {
		ck_assert_uint_eq(ids[i], i);
		ck_assert_mem_eq(rows + i * 12, w.g + i * 12,
				 12 * sizeof(float));
	}
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, first, &cfg,
					   NULL, NULL, &second, &rep, NULL),
			 FRESH_OK);
	ck_assert(!rep.accepted);
	ck_assert_ptr_null(second);
	/* One more pair: its network does not beat the serving one, which
	 * is kept and published with the new rows. */
	snapshot(&w, 801, &more);
	ck_assert_int_eq(fresh_refit_train(w.idx, &more, NULL, first, &cfg,
					   NULL, NULL, &third, &rep, NULL),
			 FRESH_OK);
	ck_assert(rep.accepted);
	ck_assert_uint_eq(fresh_corrector_fresh_rows(third, NULL, NULL), 801);
	/* (Training is deterministic: this network does not beat it.) */
	ck_assert_str_eq(rep.method, "fresh-rows");
	ck_assert_mem_eq(fresh_corrector_params(third),
			 fresh_corrector_params(first),
			 fresh_corrector_layout(first).total * sizeof(float));
	fresh_corrector_free(first);
	fresh_corrector_free(third);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	fresh_pairs_snapshot_free(&more);
	free_world(&w);
}
END_TEST

START_TEST(too_few_pairs)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur = identity(FRESH_CORRECTOR_MLP, 8, 8, 8);
	struct fresh_corrector *out;
	struct fresh_refit_report rep;

	make_world(&w, 200, 8, 8, LINEAR, 4);
	snapshot(&w, 40, &snap);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert(!rep.accepted);
	ck_assert_ptr_null(out);
	ck_assert(strstr(rep.reason, "40 pairs buffered") != NULL);
	ck_assert(strstr(rep.reason, "at least 64") != NULL);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

START_TEST(unit_norm_pairs_turn_normalization_on)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur =
		identity(FRESH_CORRECTOR_AFFINE, 10, 10, 0);
	struct fresh_corrector *out;
	struct fresh_refit_report rep;

	make_world(&w, 2000, 10, 10, LINEAR, 5);
	for (size_t i = 0; i < w.n; i++) {
		double ss = 0.0;
		for (size_t o = 0; o < 10; o++)
			ss += w.g[i * 10 + o] * w.g[i * 10 + o];
		for (size_t o = 0; o < 10; o++)
			w.g[i * 10 + o] /= (float)sqrt(ss);
	}
	snapshot(&w, 500, &snap);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert(rep.accepted);
	ck_assert(rep.normalize);
	ck_assert(fresh_corrector_normalize(out));
	fresh_corrector_free(out);
	cfg.normalize = FRESH_NORMALIZE_OFF;
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert(!rep.normalize);
	fresh_corrector_free(out);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

START_TEST(learns_a_change_of_width)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur = identity(FRESH_CORRECTOR_MLP, 16, 24, 16);
	struct fresh_corrector *out;
	struct fresh_refit_report rep;
	struct fresh_holdout ho;

	make_world(&w, 3000, 16, 24, WIDEN, 6);
	snapshot(&w, 600, &snap);
	cfg.max_epochs = 20;
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   NULL, &out, &rep, NULL),
			 FRESH_OK);
	ck_assert_msg(rep.accepted, "%s", rep.reason);
	ck_assert(!rep.holdout.stale_defined);
	/* Relative error on targets it never saw is small. */
	ck_assert_int_eq(fresh_refit_evaluate(out, w.s + 2000 * 16,
					      w.g + 2000 * 24, 1000, &ho),
			 FRESH_OK);
	ck_assert_msg(ho.corrected_rel_err < 0.01, "rel err %g",
		      ho.corrected_rel_err);
	fresh_corrector_free(out);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

START_TEST(holdout_split_is_stable_and_about_ten_percent)
{
	size_t held = 0;

	for (uint64_t id = 0; id < 100000; id++)
		held += fresh_refit_is_holdout(id, 100);
	ck_assert(held > 9500 && held < 10500);
	ck_assert(fresh_refit_is_holdout(12345, 100) ==
		  fresh_refit_is_holdout(12345, 100));
}
END_TEST

START_TEST(cancel_stops_training)
{
	struct world w;
	struct fresh_pairs_snapshot snap;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_corrector *cur = identity(FRESH_CORRECTOR_MLP, 8, 8, 8);
	struct fresh_corrector *out;
	struct fresh_refit_report rep;
	atomic_bool cancel;

	atomic_init(&cancel, true);
	make_world(&w, 1000, 8, 8, LINEAR, 7);
	snapshot(&w, 500, &snap);
	ck_assert_int_eq(fresh_refit_train(w.idx, &snap, NULL, cur, &cfg, NULL,
					   &cancel, &out, &rep, NULL),
			 FRESH_CANCELLED);
	ck_assert_ptr_null(out);
	fresh_corrector_free(cur);
	fresh_pairs_snapshot_free(&snap);
	free_world(&w);
}
END_TEST

static Suite *trainer_suite(void)
{
	Suite *s = suite_create("trainer");
	TCase *fit = tcase_create("fit");
	TCase *gate = tcase_create("gate");

	tcase_set_timeout(fit, 240);
	tcase_add_test(fit, linear_drift_cut_tenfold);
	tcase_add_test(fit, nonlinear_drift_mlp_beats_best_affine);
	tcase_add_test(fit, accepted_ridge_is_refit_on_every_pair);
	tcase_add_test(fit, mlp_not_clearly_better_is_dropped);
	tcase_add_test(fit, learns_a_change_of_width);
	tcase_add_test(gate, gate_refuses_no_improvement);
	tcase_add_test(gate, fresh_rows_ride_with_the_refit);
	tcase_add_test(gate, too_few_pairs);
	tcase_add_test(gate, unit_norm_pairs_turn_normalization_on);
	tcase_add_test(gate, holdout_split_is_stable_and_about_ten_percent);
	tcase_add_test(gate, cancel_stops_training);
	suite_add_tcase(s, fit);
	suite_add_tcase(s, gate);
	return s;
}

int main(void)
{
	return tu_run(trainer_suite());
}
