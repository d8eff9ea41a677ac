/*
 * test_model.c - published models and the swap: corrected search equals
 * brute force over h(S) for every plan (identity, folded affine with and
 * without normalization, materialized MLP), stale scoring ignores the
 * corrector, and searches from several threads during repeated publishes
 * see consistent, non-decreasing versions (run under TSan and ASan in CI).
 * An mlp model over a bf16 index answers as the float32 one, bit for bit.
 * Fresh rows replace h(s) of their targets, and a publish of rows only,
 * built from the serving model, equals a full build.
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pool.h"
#include "swap.h"
#include "testutil.h"

struct fx {
	size_t n, d;
	float *s;
	struct fresh_index *idx;
	struct fresh_pool *pool;
};

static void fx_make(struct fx *f, size_t n, size_t d, uint64_t seed)
{
	struct tu_rng r = {seed};
	uint64_t *ids = malloc(n * sizeof *ids);

	f->n = n;
	f->d = d;
	f->s = malloc(n * d * sizeof *f->s);
	tu_fill_normal(&r, f->s, n * d);
	for (size_t i = 0; i < n; i++)
		ids[i] = 5 * i + 3;
	ck_assert_int_eq(
		fresh_index_create(n, d, f->s, ids, "fx", &f->idx, NULL),
		FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(2, 0, &f->pool), FRESH_OK);
	free(ids);
}

static void fx_free(struct fx *f)
{
	fresh_index_release(f->idx);
	fresh_pool_free(f->pool);
	free(f->s);
}

static struct fresh_corrector *random_corrector(enum fresh_corrector_kind k,
						size_t d, size_t dd,
						size_t hidden, bool normalize,
						uint64_t seed)
{
	struct fresh_corrector_shape s = {k, FRESH_ACT_GELU, d, dd, hidden};
	struct fresh_corrector *c;
	struct tu_rng r = {seed};
	struct fresh_corrector_layout l = fresh_corrector_layout_of(&s);

	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	for (size_t i = 0; i < l.total; i++)
		fresh_corrector_params(c)[i] = 0.3f * tu_normal(&r);
	fresh_corrector_set_normalize(c, normalize);
	return c;
}

/* Brute force over h(S) (normalized if asked), compared with tolerance. */
static void check_search(struct fx *f, struct fresh_model *m,
			 const struct fresh_corrector *c, size_t b, size_t k)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(c);
	struct fresh_corrector_ws ws;
	struct tu_rng r = {99};
	float *h = malloc(f->n * sh->d_out * sizeof *h);
	float *q = malloc(b * sh->d_out * sizeof *q);
	struct fresh_hit *hits = malloc(b * k * sizeof *hits);
	struct fresh_hit *want = malloc(k * sizeof *want);
	size_t *counts = malloc(b * sizeof *counts);

	ck_assert_int_eq(fresh_corrector_ws_init(&ws, f->n, sh->hidden),
			 FRESH_OK);
	ck_assert_int_eq(fresh_corrector_forward(c, f->s, f->n, h, &ws),
			 FRESH_OK);
	if (fresh_corrector_normalize(c))
		for (size_t i = 0; i < f->n; i++) {
			double ss = 0.0;
			for (size_t o = 0; o < sh->d_out; o++)
				ss += h[i * sh->d_out + o] *
				      h[i * sh->d_out + o];
			for (size_t o = 0; o < sh->d_out; o++)
				h[i * sh->d_out + o] /= (float)sqrt(ss);
		}
	tu_fill_normal(&r, q, b * sh->d_out);
	ck_assert_int_eq(fresh_model_search(m, f->pool, FRESH_SCORING_CORRECTED,
					    q, b, k, NULL, hits, counts),
			 FRESH_OK);
	for (size_t i = 0; i < b; i++) {
		uint64_t ids_map[1];
		(void)ids_map;
		ck_assert_uint_eq(counts[i], k);
		tu_naive_topk(h, fresh_index_ids(f->idx), f->n, sh->d_out,
			      q + i * sh->d_out, k, NULL, 0, want);
		for (size_t j = 0; j < k; j++) {
			/* Same scores at every rank; ids equal unless a near tie. */
			ck_assert_msg(
				fabsf(hits[i * k + j].score - want[j].score) <
					1e-3f * (1 + fabsf(want[j].score)),
				"query %zu rank %zu: %g vs %g", i, j,
				hits[i * k + j].score, want[j].score);
			if (j + 1 < k &&
			    fabsf(want[j].score - want[j + 1].score) > 1e-3f &&
			    (j == 0 ||
			     fabsf(want[j - 1].score - want[j].score) > 1e-3f))
				ck_assert_uint_eq(hits[i * k + j].id,
						  want[j].id);
		}
	}
	fresh_corrector_ws_free(&ws);
	free(h);
	free(q);
	free(hits);
	free(want);
	free(counts);
}

static struct fresh_model *build(struct fx *f, struct fresh_corrector *c)
{
	struct fresh_model *m;
	struct fresh_progress prog;
	struct fresh_error err;

	atomic_init(&prog.done, 0);
	atomic_init(&prog.total, 0);
	ck_assert_int_eq(fresh_model_build(f->idx, c, f->pool, &prog, NULL,
					   NULL, &m, &err),
			 FRESH_OK);
	ck_assert_uint_eq(atomic_load(&prog.done), atomic_load(&prog.total));
	return m;
}

START_TEST(every_plan_matches_brute_force)
{
	struct fx f;
	struct {
		enum fresh_corrector_kind kind;
		size_t dd, hidden;
		bool normalize;
		bool materialized;
	} cases[] = {
		{FRESH_CORRECTOR_MLP, 20, 16, false, true},
		{FRESH_CORRECTOR_MLP, 20, 16, true, true},
		{FRESH_CORRECTOR_MLP, 28, 8, false, true},
		{FRESH_CORRECTOR_AFFINE, 20, 0, false, false},
		{FRESH_CORRECTOR_AFFINE, 20, 0, true, false},
		{FRESH_CORRECTOR_AFFINE, 12, 0, true, false},
	};

	fx_make(&f, 3000, 20, 1);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct fresh_corrector *c = random_corrector(
			cases[i].kind, 20, cases[i].dd, cases[i].hidden,
			cases[i].normalize, 10 + i);
		struct fresh_model *m = build(&f, c);
		size_t extra = fresh_model_extra_bytes(m);

		if (cases[i].materialized)
			ck_assert_uint_eq(extra, f.n * cases[i].dd * 4);
		else
			ck_assert_uint_eq(extra,
					  cases[i].normalize ? f.n * 4 : 0);
		ck_assert_uint_eq(
			fresh_model_query_dim(m, FRESH_SCORING_CORRECTED),
			cases[i].dd);
		check_search(&f, m, fresh_model_corrector(m), 5, 10);
		fresh_model_release(m);
	}
	fx_free(&f);
}
END_TEST

START_TEST(identity_scans_stale_matrix)
{
	struct fx f;
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_MLP, FRESH_ACT_RELU,
					  8, 8, 4};
	struct fresh_corrector *c;
	struct fresh_model *m;
	float q[8] = {1, 0, 0, 0, 0, 0, 0, -1};
	struct fresh_hit a[5], b[5];
	size_t ca, cb;

	fx_make(&f, 500, 8, 2);
	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	m = build(&f, c);
	ck_assert_uint_eq(fresh_model_extra_bytes(m), 0);
	ck_assert(fresh_model_can_correct(m));
	ck_assert_int_eq(fresh_model_search(m, f.pool, FRESH_SCORING_CORRECTED,
					    q, 1, 5, NULL, a, &ca),
			 FRESH_OK);
	ck_assert_int_eq(fresh_model_search(m, f.pool, FRESH_SCORING_STALE, q,
					    1, 5, NULL, b, &cb),
			 FRESH_OK);
	tu_assert_hits_eq(a, b, 5);
	fresh_model_release(m);
	fx_free(&f);
}
END_TEST

START_TEST(stale_scoring_ignores_corrector)
{
	struct fx f;
	struct fresh_corrector *c;
	struct fresh_model *m;
	struct tu_rng r = {3};
	float q[3 * 16];
	struct fresh_hit got[3 * 7], want[7];
	size_t counts[3];

	fx_make(&f, 800, 16, 3);
	c = random_corrector(FRESH_CORRECTOR_MLP, 16, 16, 8, false, 4);
	m = build(&f, c);
	tu_fill_int(&r, q, 3 * 16, 2);
	ck_assert_int_eq(fresh_model_search(m, f.pool, FRESH_SCORING_STALE, q,
					    3, 7, NULL, got, counts),
			 FRESH_OK);
	for (size_t i = 0; i < 3; i++) {
		tu_naive_topk(f.s, fresh_index_ids(f.idx), f.n, 16, q + i * 16,
			      7, NULL, 0, want);
		for (size_t j = 0; j < 7; j++) {
			ck_assert_uint_eq(got[i * 7 + j].id, want[j].id);
			ck_assert_float_eq_tol(got[i * 7 + j].score,
					       want[j].score, 1e-4f);
		}
	}
	fresh_model_release(m);
	fx_free(&f);
}
END_TEST

START_TEST(fresh_width_needs_a_fit)
{
	struct fx f;
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_AFFINE,
					  FRESH_ACT_RELU, 8, 6, 0};
	struct fresh_corrector *c;
	struct fresh_model *m;
	float q[6] = {0};
	struct fresh_hit h[1];
	size_t cnt;
	size_t rows[1] = {0};
	float out[6];

	fx_make(&f, 100, 8, 5);
	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	m = build(&f, c);
	ck_assert(!fresh_model_can_correct(m));
	ck_assert_int_eq(fresh_model_search(m, f.pool, FRESH_SCORING_CORRECTED,
					    q, 1, 1, NULL, h, &cnt),
			 FRESH_NOT_READY);
	ck_assert_int_eq(fresh_model_corrected_rows(m, rows, 1, out),
			 FRESH_NOT_READY);
	fresh_model_release(m);
	fx_free(&f);
}
END_TEST

START_TEST(corrected_rows_match_forward)
{
	struct fx f;
	struct fresh_corrector *c =
		random_corrector(FRESH_CORRECTOR_AFFINE, 10, 10, 0, true, 6);
	struct fresh_model *m;
	size_t rows[3] = {4, 0, 77};
	float out[30], h[10];

	fx_make(&f, 100, 10, 6);
	m = build(&f, c);
	ck_assert_int_eq(fresh_model_corrected_rows(m, rows, 3, out), FRESH_OK);
	for (size_t i = 0; i < 3; i++) {
		double ss = 0.0;
		ck_assert_int_eq(
			fresh_corrector_forward(fresh_model_corrector(m),
						f.s + rows[i] * 10, 1, h, NULL),
			FRESH_OK);
		for (size_t o = 0; o < 10; o++)
			ss += h[o] * h[o];
		for (size_t o = 0; o < 10; o++)
			ck_assert_float_eq_tol(out[i * 10 + o],
					       h[o] / (float)sqrt(ss), 1e-5f);
	}
	fresh_model_release(m);
	fx_free(&f);
}
END_TEST

START_TEST(cancelled_build_leaves_corrector_with_caller)
{
	struct fx f;
	struct fresh_corrector *c =
		random_corrector(FRESH_CORRECTOR_MLP, 12, 12, 8, false, 7);
	struct fresh_model *m = NULL;
	atomic_bool cancel;

	atomic_init(&cancel, true);
	fx_make(&f, 5000, 12, 7);
	ck_assert_int_eq(fresh_model_build(f.idx, c, f.pool, NULL, &cancel,
					   NULL, &m, NULL),
			 FRESH_CANCELLED);
	ck_assert_ptr_null(m);
	fresh_corrector_free(c); /* still ours: no double free under ASan */
	fx_free(&f);
}
END_TEST

/* Entries of dir other than . and .. */
static int count_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/*
 * An mlp corrector over a bf16 index keeps h(S) as bf16 in memory and
 * float32 in an unnamed file: searches (bf16 scan, float32 rescoring) and
 * seeded samples (float32 rows from the file) equal the float32 model's
 * bit for bit, plain and normalized; the file leaves no name behind, and
 * a spill dir that cannot take it is an error with the corrector still
 * the caller's.
 */
START_TEST(mlp_over_bf16_equals_f32)
{
	enum { N = 3000, D = 24, B = 7, K = 10 };
	struct fx f, g;
	char dir[512], missing[600];
	float q[B * D], temps[B], lp_a[B * K], lp_b[B * K];
	uint64_t seeds[B];
	struct fresh_hit ha[B * K], hb[B * K];
	size_t ca[B], cb[B];
	struct tu_rng r = {41};

	tu_tmpdir(dir, sizeof dir);
	fx_make(&f, N, D, 17);
	fx_make(&g, N, D, 17);
	ck_assert_int_eq(fresh_index_add_bf16(g.idx, NULL), FRESH_OK);
	tu_fill_normal(&r, q, B * D);
	for (size_t i = 0; i < B; i++) {
		temps[i] = 0.2f + 0.1f * (float)i;
		seeds[i] = 1000 + i;
	}
	for (int normalize = 0; normalize < 2; normalize++) {
		struct fresh_corrector *ca_c = random_corrector(
			FRESH_CORRECTOR_MLP, D, D, 16, normalize, 3);
		struct fresh_corrector *cb_c = random_corrector(
			FRESH_CORRECTOR_MLP, D, D, 16, normalize, 3);
		struct fresh_model *a, *b;

		ck_assert_int_eq(fresh_model_build(f.idx, ca_c, f.pool, NULL,
						   NULL, dir, &a, NULL),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_build(g.idx, cb_c, g.pool, NULL,
						   NULL, dir, &b, NULL),
				 FRESH_OK);
		ck_assert_uint_eq(fresh_model_extra_bytes(a), N * D * 4);
		ck_assert_uint_eq(fresh_model_extra_bytes(b), N * (D * 2 + 4));
		ck_assert_int_eq(count_files(dir), 0);
		for (size_t k = 1; k <= K; k += K - 1) {
			ck_assert_int_eq(
				fresh_model_search(a, f.pool,
						   FRESH_SCORING_CORRECTED, q,
						   B, k, NULL, ha, ca),
				FRESH_OK);
			ck_assert_int_eq(
				fresh_model_search(b, g.pool,
						   FRESH_SCORING_CORRECTED, q,
						   B, k, NULL, hb, cb),
				FRESH_OK);
			for (size_t i = 0; i < B; i++) {
				ck_assert_uint_eq(ca[i], k);
				ck_assert_uint_eq(cb[i], k);
			}
			tu_assert_hits_eq(ha, hb, B * k);
		}
		ck_assert_int_eq(fresh_model_sample(a, f.pool,
						    FRESH_SCORING_CORRECTED, q,
						    B, K, true, NULL, temps,
						    seeds, ha, lp_a, ca, NULL),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_sample(b, g.pool,
						    FRESH_SCORING_CORRECTED, q,
						    B, K, true, NULL, temps,
						    seeds, hb, lp_b, cb, NULL),
				 FRESH_OK);
		tu_assert_hits_eq(ha, hb, B * K);
		ck_assert_int_eq(memcmp(lp_a, lp_b, sizeof lp_a), 0);
		fresh_model_release(a);
		fresh_model_release(b);
	}
	snprintf(missing, sizeof missing, "%s/none", dir);
	{
		struct fresh_corrector *c = random_corrector(
			FRESH_CORRECTOR_MLP, D, D, 16, false, 3);
		struct fresh_model *m = NULL;
		struct fresh_error err;

		ck_assert_int_eq(fresh_model_build(g.idx, c, g.pool, NULL, NULL,
						   missing, &m, &err),
				 FRESH_IO);
		ck_assert_ptr_null(m);
		ck_assert_ptr_nonnull(strstr(err.msg, missing));
		fresh_corrector_free(c);
	}
	fx_free(&f);
	fx_free(&g);
	tu_rmdir(dir);
}
END_TEST

/*
 * Concurrency: version v publishes an affine corrector whose bias is v
 * along axis 0, so the query e0 scores every target at s[0] + v: the
 * reader can check each answer against the version that scored it.
 */
struct race {
	struct fx *f;
	struct fresh_swap swap;
	atomic_bool stop;
	atomic_int errors, reads;
	float best_s0; /* the largest s[0] and its id */
	uint64_t best_id;
};

static void *reader(void *arg)
{
	struct race *r = arg;
	uint64_t last = 0;
	float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};

	while (!atomic_load(&r->stop)) {
		struct fresh_model *m = fresh_swap_acquire(&r->swap);
		struct fresh_hit h[3];
		size_t cnt;
		uint64_t v = fresh_model_version(m);

		if (v < last ||
		    fresh_model_search(m, r->f->pool, FRESH_SCORING_CORRECTED,
				       q, 1, 3, NULL, h, &cnt) != FRESH_OK ||
		    h[0].id != r->best_id ||
		    fabsf(h[0].score - (r->best_s0 + (float)v)) > 1e-3f)
			atomic_fetch_add(&r->errors, 1);
		last = v;
		atomic_fetch_add(&r->reads, 1);
		fresh_model_release(m);
	}
	return NULL;
}

/*
 * A corrector's fresh rows replace h(s) for the ids the index has (an
 * unknown id is skipped), normalized like the rest of C; every other row
 * stays h(s); a query equal to a fresh row finds its target first; and an
 * mlp over bf16 gives the float32 model's answers. An identity mlp with
 * fresh rows still materializes C to hold them.
 */
START_TEST(fresh_rows_replace_h_of_their_targets)
{
	enum { N = 2000, D = 12, NF = 5 };
	const size_t rows[NF] = {0, 17, 999, 1000, 1999};
	uint64_t ids[NF + 1];
	float fresh[(NF + 1) * D], out[D], h[D], q[NF * D];
	struct fresh_hit ha[NF * 3], hb[NF * 3];
	size_t ca[NF], cb[NF];
	struct tu_rng r = {91};
	struct fresh_corrector_ws ws;
	struct fx f, g;
	char dir[512];

	tu_tmpdir(dir, sizeof dir);
	fx_make(&f, N, D, 23);
	fx_make(&g, N, D, 23);
	ck_assert_int_eq(fresh_index_add_bf16(g.idx, NULL), FRESH_OK);
	tu_fill_normal(&r, fresh, (NF + 1) * D);
	for (size_t i = 0; i < NF; i++)
		ids[i] = 5 * rows[i] + 3;
	ids[NF] = 4; /* not in the index */
	ck_assert_int_eq(fresh_corrector_ws_init(&ws, 1, 8), FRESH_OK);
	for (int identity = 0; identity < 2; identity++) {
		struct fresh_corrector *c[2];
		struct fresh_model *a, *b;

		for (int k = 0; k < 2; k++) {
			c[k] = identity ? random_corrector(FRESH_CORRECTOR_MLP,
							   D, D, 8, true, 4)
					: random_corrector(FRESH_CORRECTOR_MLP,
							   D, D, 8, true, 5);
			if (identity)
				memset(fresh_corrector_params(c[k]), 0,
				       fresh_corrector_layout(c[k]).total *
					       sizeof(float));
			ck_assert_int_eq(fresh_corrector_set_fresh_rows(
						 c[k], ids, fresh, NF + 1),
					 FRESH_OK);
		}
		ck_assert_int_eq(fresh_model_build(f.idx, c[0], f.pool, NULL,
						   NULL, dir, &a, NULL),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_build(g.idx, c[1], g.pool, NULL,
						   NULL, dir, &b, NULL),
				 FRESH_OK);
		ck_assert_uint_eq(fresh_model_fresh_rows(a), NF);
		ck_assert_uint_eq(fresh_model_fresh_rows(b), NF);
		/* C, and the corrector's rows (the one its index lacks too). */
		ck_assert_uint_eq(fresh_model_extra_bytes(a),
				  N * D * 4 + (NF + 1) * (8 + D * 4));
		for (size_t row = 2; row < N; row += 37) { /* no fresh row */
			double ss = 0.0;
			ck_assert_int_eq(
				fresh_model_corrected_rows(a, &row, 1, out),
				FRESH_OK);
			ck_assert_int_eq(fresh_corrector_forward(
						 fresh_model_corrector(a),
						 f.s + row * D, 1, h, &ws),
					 FRESH_OK);
			for (size_t o = 0; o < D; o++)
				ss += h[o] * h[o];
			for (size_t o = 0; o < D; o++)
				ck_assert_float_eq_tol(
					out[o], h[o] / (float)sqrt(ss), 1e-5f);
		}
		for (size_t i = 0; i < NF; i++) {
			double ss = 0.0;
			ck_assert_int_eq(
				fresh_model_corrected_rows(a, &rows[i], 1, out),
				FRESH_OK);
			for (size_t o = 0; o < D; o++)
				ss += fresh[i * D + o] * fresh[i * D + o];
			for (size_t o = 0; o < D; o++) {
				ck_assert_float_eq_tol(out[o],
						       fresh[i * D + o] /
							       (float)sqrt(ss),
						       1e-6f);
				q[i * D + o] = fresh[i * D + o] * 10.0f;
			}
		}
		ck_assert_int_eq(fresh_model_search(a, f.pool,
						    FRESH_SCORING_CORRECTED, q,
						    NF, 3, NULL, ha, ca),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_search(b, g.pool,
						    FRESH_SCORING_CORRECTED, q,
						    NF, 3, NULL, hb, cb),
				 FRESH_OK);
		for (size_t i = 0; i < NF; i++)
			ck_assert_uint_eq(ha[i * 3].id, ids[i]);
		tu_assert_hits_eq(ha, hb, NF * 3);
		fresh_model_release(a);
		fresh_model_release(b);
	}
	fresh_corrector_ws_free(&ws);
	fx_free(&f);
	fx_free(&g);
	tu_rmdir(dir);
}
END_TEST

/*
 * A publish of fresh rows only: built from the serving model (its C
 * copied, the rows whose fresh row changed, came or went redone), it has
 * the same bits as a full build; with another network it is a full build.
 */
START_TEST(build_like_equals_a_full_build)
{
	enum { N = 1500, D = 10, NB = 40 };
	struct fx f;
	struct fresh_corrector *c0 =
		random_corrector(FRESH_CORRECTOR_MLP, D, D, 6, true, 8);
	struct fresh_corrector *c1, *c2;
	struct fresh_model *base, *like, *full;
	uint64_t ids[NB + 2];
	float rows[(NB + 2) * D], *a = malloc(N * D * sizeof *a),
				  *b = malloc(N * D * sizeof *b);
	size_t all[N];
	struct tu_rng r = {12};

	fx_make(&f, N, D, 31);
	for (size_t i = 0; i < N; i++)
		all[i] = i;
	tu_fill_normal(&r, rows, (NB + 2) * D);
	for (size_t i = 0; i < NB; i++)
		ids[i] = 5 * (7 * i) + 3; /* rows 0, 7, 14, ... */
	ck_assert_int_eq(fresh_corrector_set_fresh_rows(c0, ids, rows, NB),
			 FRESH_OK);
	base = build(&f, c0);
	for (int other_network = 0; other_network < 2; other_network++) {
		/* Rows 0..9 kept, 10..19 changed, 20..29 gone, 30..39 kept,
		 * two new ones (one an id the index lacks). */
		uint64_t nid[NB];
		float nrow[NB * D];
		size_t k = 0;

		for (size_t i = 0; i < NB; i++) {
			if (i >= 20 && i < 30)
				continue;
			nid[k] = ids[i];
			memcpy(nrow + k * D, rows + i * D, D * sizeof(float));
			if (i >= 10 && i < 20)
				nrow[k * D] += 0.5f;
			k++;
		}
		nid[k] = 5 * 1001 + 3;
		memcpy(nrow + k++ * D, rows + NB * D, D * sizeof(float));
		nid[k] = 4; /* not in the index */
		memcpy(nrow + k++ * D, rows + (NB + 1) * D, D * sizeof(float));
		ck_assert_int_eq(fresh_corrector_clone(c0, &c1), FRESH_OK);
		if (other_network)
			fresh_corrector_params(c1)[3] += 0.25f;
		ck_assert_int_eq(
			fresh_corrector_set_fresh_rows(c1, nid, nrow, k),
			FRESH_OK);
		ck_assert_int_eq(fresh_corrector_clone(c1, &c2), FRESH_OK);
		ck_assert_int_eq(fresh_model_build_like(base, f.idx, c1, f.pool,
							NULL, NULL, NULL, &like,
							NULL),
				 FRESH_OK);
		full = build(&f, c2);
		ck_assert_uint_eq(fresh_model_fresh_rows(like), k - 1);
		ck_assert_uint_eq(fresh_model_fresh_rows(full), k - 1);
		ck_assert_int_eq(fresh_model_corrected_rows(like, all, N, a),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_corrected_rows(full, all, N, b),
				 FRESH_OK);
		ck_assert_mem_eq(a, b, N * D * sizeof(float));
		fresh_model_release(like);
		fresh_model_release(full);
	}
	fresh_model_release(base);
	/*
	 * The identity network losing its rows: a full build scans S (no
	 * C), and so does the like build, with the same answers.
	 */
	{
		struct fresh_hit ha[3 * 5], hb[3 * 5];
		size_t na[3], nb[3];
		float q[3 * D];

		tu_fill_normal(&r, q, 3 * D);
		c1 = random_corrector(FRESH_CORRECTOR_MLP, D, D, 6, true, 9);
		memset(fresh_corrector_params(c1), 0,
		       fresh_corrector_layout(c1).total * sizeof(float));
		struct fresh_corrector *c3;

		ck_assert_int_eq(fresh_corrector_clone(c1, &c2), FRESH_OK);
		ck_assert_int_eq(fresh_corrector_clone(c1, &c3), FRESH_OK);
		ck_assert_int_eq(
			fresh_corrector_set_fresh_rows(c1, ids, rows, NB),
			FRESH_OK);
		base = build(&f, c1);
		ck_assert_int_eq(fresh_model_build_like(base, f.idx, c2, f.pool,
							NULL, NULL, NULL, &like,
							NULL),
				 FRESH_OK);
		full = build(&f, c3);
		ck_assert_uint_eq(fresh_model_extra_bytes(like),
				  fresh_model_extra_bytes(full));
		ck_assert_uint_eq(fresh_model_fresh_rows(like), 0);
		ck_assert_int_eq(fresh_model_search(like, f.pool,
						    FRESH_SCORING_CORRECTED, q,
						    3, 5, NULL, ha, na),
				 FRESH_OK);
		ck_assert_int_eq(fresh_model_search(full, f.pool,
						    FRESH_SCORING_CORRECTED, q,
						    3, 5, NULL, hb, nb),
				 FRESH_OK);
		tu_assert_hits_eq(ha, hb, 3 * 5);
		fresh_model_release(base);
		fresh_model_release(like);
		fresh_model_release(full);
	}
	free(a);
	free(b);
	fx_free(&f);
}
END_TEST

START_TEST(searches_during_publishes)
{
	struct fx f;
	struct race r;
	pthread_t th[4];
	struct fresh_corrector_shape s = {FRESH_CORRECTOR_AFFINE,
					  FRESH_ACT_RELU, 8, 8, 0};
	struct fresh_corrector *c;
	struct fresh_pool *build_pool;

	fx_make(&f, 2000, 8, 8);
	ck_assert_int_eq(fresh_pool_create(2, 0, &build_pool), FRESH_OK);
	r.f = &f;
	atomic_init(&r.stop, false);
	atomic_init(&r.errors, 0);
	atomic_init(&r.reads, 0);
	r.best_s0 = -INFINITY;
	for (size_t i = 0; i < f.n; i++)
		if (f.s[i * 8] > r.best_s0) {
			r.best_s0 = f.s[i * 8];
			r.best_id = fresh_index_ids(f.idx)[i];
		}
	ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL), FRESH_OK);
	fresh_swap_init(&r.swap, build(&f, c));
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, reader, &r);
	/* Publish until many searches have overlapped many publishes. */
	for (uint64_t v = 1; v <= 200 || atomic_load(&r.reads) < 4000; v++) {
		struct fresh_model *m;
		ck_assert_int_eq(fresh_corrector_create(&s, &c, NULL),
				 FRESH_OK);
		fresh_corrector_params(c)[fresh_corrector_layout(c).b] =
			(float)v;
		fresh_corrector_set_version(c, v);
		ck_assert_int_eq(fresh_model_build(f.idx, c, build_pool, NULL,
						   NULL, NULL, &m, NULL),
				 FRESH_OK);
		fresh_swap_publish(&r.swap, m);
	}
	atomic_store(&r.stop, true);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(atomic_load(&r.errors), 0);
	ck_assert_int_ge(atomic_load(&r.reads), 4000);
	fresh_swap_destroy(&r.swap);
	fresh_pool_free(build_pool);
	fx_free(&f);
}
END_TEST

static Suite *model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *plans = tcase_create("plans");
	TCase *swap = tcase_create("swap");

	tcase_set_timeout(swap, 240);
	tcase_add_test(plans, every_plan_matches_brute_force);
	tcase_add_test(plans, identity_scans_stale_matrix);
	tcase_add_test(plans, stale_scoring_ignores_corrector);
	tcase_add_test(plans, fresh_width_needs_a_fit);
	tcase_add_test(plans, corrected_rows_match_forward);
	tcase_add_test(plans, cancelled_build_leaves_corrector_with_caller);
	tcase_add_test(plans, mlp_over_bf16_equals_f32);
	tcase_add_test(plans, fresh_rows_replace_h_of_their_targets);
	tcase_add_test(plans, build_like_equals_a_full_build);
	tcase_add_test(swap, searches_during_publishes);
	suite_add_tcase(s, plans);
	suite_add_tcase(s, swap);
	return s;
}

int main(void)
{
	return tu_run(model_suite());
}
