/*
 * test_rowage.c - aging the served fresh rows (rowage.h): the map and the
 * moved rows against a naive double-precision ridge on random float rows;
 * a common drift of the encoder is undone for the rows it did not
 * re-encode; rows as sent without records or with too few replacements;
 * what counts as a change; the records through the trainer's publishes
 * and a checkpoint (not kept).
 */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "corrector.h"
#include "pairs.h"
#include "rowage.h"
#include "testutil.h"
#include "trainer.h"

enum { D = 12, SERVED = 2000, REPLACED = 600, ADDED = 50 };

/*
 * Served rows: ids 7 i + 3 (i < SERVED), record i + 1, unit-norm random
 * rows. The snapshot holds every served id (the first REPLACED with a new
 * record and row tgt(served)) and ADDED new ids; the kept ids carry their
 * record and a raw row different from the served one (the row as sent,
 * before any aging), so that a kept row as served is told from it.
 */
struct world {
	struct fresh_corrector *cur;
	float *served; /* SERVED x D, by index i */
	float m[D * D], c[D];
	struct fresh_pairs_snapshot snap;
};

static void unit(float *x, size_t d)
{
	double s = 0;
	for (size_t k = 0; k < d; k++)
		s += (double)x[k] * x[k];
	for (size_t k = 0; k < d; k++)
		x[k] = (float)(x[k] / sqrt(s));
}

/* y = normalize(x + m x + c) + noise * N(0, 1). */
static void drift(const struct world *w, const float *x, float *y, float noise,
		  struct tu_rng *r)
{
	for (size_t o = 0; o < D; o++) {
		double a = x[o] + w->c[o];
		for (size_t k = 0; k < D; k++)
			a += (double)w->m[o * D + k] * x[k];
		y[o] = (float)a;
	}
	unit(y, D);
	for (size_t o = 0; o < D; o++)
		y[o] += noise * tu_normal(r);
}

static void make_world(struct world *w, size_t replaced, float noise,
		       bool records)
{
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  D, D, 8};
	struct tu_rng r = {41};
	uint64_t *ids = malloc(SERVED * sizeof *ids);
	uint64_t *seqs = malloc(SERVED * sizeof *seqs);
	size_t n = SERVED + ADDED;

	w->served = malloc(SERVED * D * sizeof *w->served);
	tu_fill_normal(&r, w->served, SERVED * D);
	for (size_t i = 0; i < SERVED; i++) {
		unit(w->served + i * D, D);
		ids[i] = 7 * (SERVED - 1 - i) + 3; /* not sorted */
		seqs[i] = i + 1;
	}
	/* The ids were given descending: index i is served at SERVED-1-i. */
	ck_assert_int_eq(fresh_corrector_create(&s, &w->cur, NULL), FRESH_OK);
	fresh_corrector_set_normalize(w->cur, true);
	ck_assert_int_eq(
		fresh_corrector_set_fresh_rows_seqs(
			w->cur, ids, w->served, records ? seqs : NULL, SERVED),
		FRESH_OK);
	for (size_t k = 0; k < D * D; k++)
		w->m[k] = 0.15f * tu_normal(&r);
	for (size_t k = 0; k < D; k++)
		w->c[k] = 0.05f * tu_normal(&r);

	memset(&w->snap, 0, sizeof w->snap);
	w->snap.n = n;
	w->snap.dim = D;
	w->snap.ids = malloc(n * sizeof *w->snap.ids);
	w->snap.g = malloc(n * D * sizeof *w->snap.g);
	w->snap.steps = calloc(n, sizeof *w->snap.steps);
	w->snap.has_step = calloc(n, sizeof *w->snap.has_step);
	w->snap.seqs = malloc(n * sizeof *w->snap.seqs);
	/* Arrival order: the kept ids first, then replaced, then added. */
	for (size_t j = 0; j < n; j++) {
		size_t i = (j + replaced) % SERVED; /* j < SERVED */
		float *g = w->snap.g + j * D;
		if (j >= SERVED) {
			w->snap.ids[j] = 7 * (j + 10) + 5; /* never served */
			w->snap.seqs[j] = 100000 + j;
			tu_fill_normal(&r, g, D);
			unit(g, D);
		} else if (i < replaced) {
			w->snap.ids[j] = ids[i];
			w->snap.seqs[j] = 50000 + j;
			drift(w, w->served + i * D, g, noise, &r);
		} else {
			w->snap.ids[j] = ids[i];
			w->snap.seqs[j] = seqs[i];
			tu_fill_normal(&r, g, D); /* the row as first sent */
			unit(g, D);
		}
	}
	free(ids);
	free(seqs);
}

static void free_world(struct world *w)
{
	fresh_corrector_free(w->cur);
	free(w->served);
	fresh_pairs_snapshot_free(&w->snap);
}

/* The served index of snapshot entry j (< SERVED). */
static size_t served_of(size_t j, size_t replaced)
{
	return (j + replaced) % SERVED;
}

/* Solves a x = b in place (a n x n, b n x q, double, partial pivoting). */
static void solve(double *a, double *b, size_t n, size_t q)
{
	for (size_t col = 0; col < n; col++) {
		size_t piv = col;
		for (size_t r = col + 1; r < n; r++)
			if (fabs(a[r * n + col]) > fabs(a[piv * n + col]))
				piv = r;
		for (size_t k = 0; k < n; k++) {
			double t = a[col * n + k];
			a[col * n + k] = a[piv * n + k];
			a[piv * n + k] = t;
		}
		for (size_t k = 0; k < q; k++) {
			double t = b[col * q + k];
			b[col * q + k] = b[piv * q + k];
			b[piv * q + k] = t;
		}
		for (size_t r = 0; r < n; r++) {
			if (r == col)
				continue;
			double f = a[r * n + col] / a[col * n + col];
			for (size_t k = 0; k < n; k++)
				a[r * n + k] -= f * a[col * n + k];
			for (size_t k = 0; k < q; k++)
				b[r * q + k] -= f * b[col * q + k];
		}
	}
	for (size_t r = 0; r < n; r++)
		for (size_t k = 0; k < q; k++)
			b[r * q + k] /= a[r * n + r];
}

/*
 * The naive reference: ridge of (g - r) on r with intercept at penalty
 * lambda over the replaced rows, then each kept row r moved to
 * normalize(r + M r + c).
 */
START_TEST(moves_kept_rows_as_a_naive_ridge_would)
{
	struct world w;
	struct fresh_rowage_report rep;
	double xm[D] = {0}, ym[D] = {0}, a[D * D] = {0}, b[D * D] = {0};
	float *out;
	size_t nre = 0;

	make_world(&w, REPLACED, 0.02f, true);
	out = malloc(w.snap.n * D * sizeof *out);
	ck_assert_int_eq(
		fresh_rowage_apply(w.cur, &w.snap, 64, true, out, &rep),
		FRESH_OK);
	ck_assert(rep.fitted);
	ck_assert_uint_eq(rep.replaced, REPLACED);
	ck_assert_uint_eq(rep.added, ADDED);
	ck_assert_uint_eq(rep.aged, SERVED - REPLACED);
	ck_assert(rep.lambda > 0);

	for (size_t j = 0; j < SERVED; j++) {
		size_t i = served_of(j, REPLACED);
		if (i >= REPLACED)
			continue;
		for (size_t k = 0; k < D; k++) {
			xm[k] += w.served[i * D + k];
			ym[k] += w.snap.g[j * D + k] - w.served[i * D + k];
		}
		nre++;
	}
	for (size_t k = 0; k < D; k++) {
		xm[k] /= (double)nre;
		ym[k] /= (double)nre;
	}
	/* (Xcᵀ Xc + lambda I) Mᵀ = Xcᵀ Yc */
	for (size_t j = 0; j < SERVED; j++) {
		size_t i = served_of(j, REPLACED);
		if (i >= REPLACED)
			continue;
		for (size_t p = 0; p < D; p++) {
			double xp = w.served[i * D + p] - xm[p];
			for (size_t q = 0; q < D; q++) {
				a[p * D + q] +=
					xp * (w.served[i * D + q] - xm[q]);
				b[p * D + q] +=
					xp * (w.snap.g[j * D + q] -
					      w.served[i * D + q] - ym[q]);
			}
		}
	}
	for (size_t p = 0; p < D; p++)
		a[p * D + p] += rep.lambda;
	solve(a, b, D, D); /* b = Mᵀ */
	for (size_t j = 0; j < w.snap.n; j++) {
		const float *got = out + j * D;
		size_t i = served_of(j, REPLACED);
		if (j >= SERVED || i < REPLACED) { /* new rows: as sent */
			ck_assert_mem_eq(got, w.snap.g + j * D,
					 D * sizeof *got);
			continue;
		}
		double want[D], norm = 0;
		for (size_t o = 0; o < D; o++) {
			double c = ym[o];
			for (size_t k = 0; k < D; k++)
				c -= b[k * D + o] * xm[k];
			want[o] = w.served[i * D + o] + c;
			for (size_t k = 0; k < D; k++)
				want[o] += b[k * D + o] * w.served[i * D + k];
			norm += want[o] * want[o];
		}
		for (size_t o = 0; o < D; o++)
			ck_assert_msg(fabs(got[o] - want[o] / sqrt(norm)) <
					      1e-4,
				      "entry %zu, %zu: %g vs %g", j, o, got[o],
				      want[o] / sqrt(norm));
	}
	free(out);
	free_world(&w);
}
END_TEST

/* The kept rows end far closer to where the drift took them than the
 * served rows were, and at unit norm. */
START_TEST(undoes_a_common_drift)
{
	struct world w;
	struct fresh_rowage_report rep;
	struct tu_rng r = {5};
	float *out, y[D];
	double before = 0, after = 0;

	make_world(&w, REPLACED, 0.02f, true);
	out = malloc(w.snap.n * D * sizeof *out);
	ck_assert_int_eq(
		fresh_rowage_apply(w.cur, &w.snap, 64, true, out, &rep),
		FRESH_OK);
	for (size_t j = 0; j < SERVED; j++) {
		size_t i = served_of(j, REPLACED);
		double nn = 0;
		if (i < REPLACED)
			continue;
		drift(&w, w.served + i * D, y, 0.0f, &r);
		for (size_t k = 0; k < D; k++) {
			double e0 = y[k] - w.served[i * D + k];
			double e1 = y[k] - out[j * D + k];
			before += e0 * e0;
			after += e1 * e1;
			nn += (double)out[j * D + k] * out[j * D + k];
		}
		ck_assert_double_eq_tol(nn, 1.0, 1e-5);
	}
	ck_assert_msg(after < before / 10, "distance %g, was %g", after,
		      before);
	free(out);
	free_world(&w);
}
END_TEST

/* Without records the rows are served as sent; with too few replaced
 * rows for a fit, kept rows as served and the others as sent. */
START_TEST(no_records_or_too_few_replaced_rows)
{
	struct world w;
	struct fresh_rowage_report rep;
	float *out;

	make_world(&w, REPLACED, 0.02f, false);
	out = malloc(w.snap.n * D * sizeof *out);
	ck_assert_int_eq(
		fresh_rowage_apply(w.cur, &w.snap, 64, true, out, &rep),
		FRESH_OK);
	ck_assert(!rep.fitted);
	ck_assert_mem_eq(out, w.snap.g, w.snap.n * D * sizeof *out);
	free(out);
	free_world(&w);

	ck_assert_uint_eq(fresh_rowage_min_pairs(D, 10), 2 * (D + 1));
	ck_assert_uint_eq(fresh_rowage_min_pairs(D, 64), 64);
	make_world(&w, 2 * (D + 1) - 1, 0.02f, true);
	out = malloc(w.snap.n * D * sizeof *out);
	ck_assert_int_eq(
		fresh_rowage_apply(w.cur, &w.snap, 10, true, out, &rep),
		FRESH_OK);
	ck_assert(!rep.fitted);
	ck_assert_uint_eq(rep.replaced, 2 * (D + 1) - 1);
	ck_assert_uint_eq(rep.aged, 0);
	for (size_t j = 0; j < w.snap.n; j++) {
		size_t i = served_of(j, 2 * (D + 1) - 1);
		const float *want = j < SERVED && i >= 2 * (D + 1) - 1
					    ? w.served + i * D
					    : w.snap.g + j * D;
		ck_assert_mem_eq(out + j * D, want, D * sizeof *out);
	}
	free(out);
	free_world(&w);
}
END_TEST

/* A change is a new or replaced pair or a served row whose pair is gone;
 * the rows' values do not count when records are known. */
START_TEST(what_counts_as_a_change)
{
	struct world w;

	make_world(&w, 0, 0.0f, true);
	w.snap.n = SERVED; /* no added ids; every kept row's raw g differs */
	ck_assert(!fresh_rowage_changed(w.cur, &w.snap));
	w.snap.seqs[17]++;
	ck_assert(fresh_rowage_changed(w.cur, &w.snap));
	w.snap.seqs[17]--;
	w.snap.n = SERVED - 1;
	ck_assert(fresh_rowage_changed(w.cur, &w.snap));
	w.snap.n = SERVED + 1;
	ck_assert(fresh_rowage_changed(w.cur, &w.snap));
	w.snap.n = SERVED + ADDED;
	free_world(&w);

	/* Without records, the rows themselves. */
	make_world(&w, 0, 0.0f, false);
	w.snap.n = SERVED;
	ck_assert(fresh_rowage_changed(w.cur, &w.snap));
	for (size_t j = 0; j < SERVED; j++)
		memcpy(w.snap.g + j * D, w.served + served_of(j, 0) * D,
		       D * sizeof(float));
	ck_assert(!fresh_rowage_changed(w.cur, &w.snap));
	w.snap.n = SERVED + ADDED;
	free_world(&w);
}
END_TEST

/*
 * Through the trainer's rows-only publish: the records ride with the
 * published corrector and its clones, the second publish ages the rows
 * kept, and a corrector read back from its checkpoint has no records, so
 * its next publish serves the rows as sent.
 */
START_TEST(records_through_publishes_and_a_checkpoint)
{
	struct world w;
	struct fresh_refit_config cfg = fresh_refit_config_default();
	struct fresh_refit_report rep;
	struct fresh_corrector *pub, *again, *back, *raw;
	const uint64_t *ids;
	const float *rows;
	void *buf;
	size_t len, n;

	make_world(&w, REPLACED, 0.02f, true);
	cfg.serve_fresh_rows = cfg.rows_only = cfg.age_fresh_rows = true;
	/* A network that maps at all: rows_only refuses an all-zero one. */
	fresh_corrector_params(w.cur)[fresh_corrector_layout(w.cur).a] = 0.1f;
	ck_assert_int_eq(
		fresh_refit_rows(w.cur, &w.snap, &cfg, &pub, &rep, NULL),
		FRESH_OK);
	ck_assert(rep.accepted);
	ck_assert(rep.rowage.fitted);
	ck_assert_uint_eq(rep.rowage.aged, SERVED - REPLACED);
	ck_assert_ptr_nonnull(fresh_corrector_fresh_row_seqs(pub));
	ck_assert_int_eq(fresh_corrector_clone(pub, &again), FRESH_OK);
	n = fresh_corrector_fresh_rows(again, &ids, &rows);
	ck_assert_uint_eq(n, SERVED + ADDED);
	ck_assert_mem_eq(fresh_corrector_fresh_row_seqs(again),
			 fresh_corrector_fresh_row_seqs(pub),
			 n * sizeof(uint64_t));
	/* Nothing new since: nothing to publish. */
	fresh_corrector_free(again);
	memset(&rep, 0, sizeof rep); /* it fills only what it publishes */
	ck_assert_int_eq(
		fresh_refit_rows(pub, &w.snap, &cfg, &again, &rep, NULL),
		FRESH_OK);
	ck_assert(!rep.accepted);
	ck_assert_ptr_null(again);

	ck_assert_int_eq(fresh_corrector_serialize(pub, &buf, &len), FRESH_OK);
	ck_assert_int_eq(fresh_corrector_deserialize(buf, len, &back, NULL),
			 FRESH_OK);
	free(buf);
	ck_assert_ptr_null(fresh_corrector_fresh_row_seqs(back));
	/* Its aged rows differ from the raw ones: a publish, rows as sent. */
	memset(&rep, 0, sizeof rep);
	ck_assert_int_eq(
		fresh_refit_rows(back, &w.snap, &cfg, &raw, &rep, NULL),
		FRESH_OK);
	ck_assert(rep.accepted);
	ck_assert(!rep.rowage.fitted);
	n = fresh_corrector_fresh_rows(raw, &ids, &rows);
	for (size_t j = 0; j < w.snap.n; j++) {
		size_t lo = 0, hi = n;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (ids[mid] < w.snap.ids[j])
				lo = mid + 1;
			else
				hi = mid;
		}
		ck_assert_uint_eq(ids[lo], w.snap.ids[j]);
		ck_assert_mem_eq(rows + lo * D, w.snap.g + j * D,
				 D * sizeof(float));
	}
	fresh_corrector_free(pub);
	fresh_corrector_free(back);
	fresh_corrector_free(raw);
	free_world(&w);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rowage");
	TCase *tc = tcase_create("rowage");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, moves_kept_rows_as_a_naive_ridge_would);
	tcase_add_test(tc, undoes_a_common_drift);
	tcase_add_test(tc, no_records_or_too_few_replaced_rows);
	tcase_add_test(tc, what_counts_as_a_change);
	tcase_add_test(tc, records_through_publishes_and_a_checkpoint);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
