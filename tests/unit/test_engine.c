/*
 * test_engine.c - the engine end to end, without HTTP: updates are durable
 * and survive a restart, refits publish and are recovered from
 * checkpoints, the wait semantics of a refit, reset, checkpoint exchange
 * between two engines, clearing and compaction, automatic refits, a data
 * dir of another shape refused, and updates, searches and refits from
 * several threads at once (run under TSan in CI).
 */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "index.h"
#include "testutil.h"

#define N 3000
#define D 16

static char dir[4096], dir2[4200];
static float stale[N * D], fresh[N * D];

static void setup(void)
{
	struct tu_rng r = {11};

	tu_tmpdir(dir, sizeof dir);
	snprintf(dir2, sizeof dir2, "%s/second", dir);
	tu_linear_drift(&r, stale, fresh, N, D, 0.2);
}

static void teardown(void)
{
	tu_rmdir(dir);
}

static struct fresh_engine_config config(const char *data_dir,
					 enum fresh_corrector_kind kind)
{
	struct fresh_engine_config c = fresh_engine_config_default();

	c.data_dir = data_dir;
	c.kind = kind;
	c.hidden = kind == FRESH_CORRECTOR_MLP ? 16 : 0;
	c.refit_every_pairs = 0;
	c.refit_every_seconds = 0;
	c.refit.max_epochs = 10;
	c.search_threads = 2;
	return c;
}

static struct fresh_engine *open_engine(struct fresh_engine_config c)
{
	struct fresh_index *idx;
	struct fresh_engine *e;
	struct fresh_error err;

	ck_assert_int_eq(
		fresh_index_create(N, D, stale, NULL, "test", &idx, NULL),
		FRESH_OK);
	ck_assert_msg(fresh_engine_open(&c, idx, &e, &err) == FRESH_OK, "%s",
		      err.msg);
	return e;
}

/* Posts fresh vectors for targets [from, to) in batches of 50. */
static void post(struct fresh_engine *e, size_t from, size_t to)
{
	for (size_t b = from; b < to; b += 50) {
		size_t n = to - b < 50 ? to - b : 50;
		uint64_t ids[50];
		struct fresh_update u;
		struct fresh_update_ack ack;
		struct fresh_error err;

		for (size_t i = 0; i < n; i++)
			ids[i] = b + i;
		memset(&u, 0, sizeof u);
		u.n_targets = n;
		u.ids = ids;
		u.vectors = fresh + b * D;
		u.dim = D;
		ck_assert_msg(fresh_engine_update(e, &u, &ack, &err) ==
				      FRESH_OK,
			      "%s", err.msg);
		ck_assert_uint_eq(ack.accepted, n);
	}
}

static uint64_t version_of(struct fresh_engine *e)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	uint64_t v = fresh_model_version(m);
	fresh_model_release(m);
	return v;
}

static void search(struct fresh_engine *e, const float *q, struct fresh_hit *h)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	size_t cnt;
	ck_assert_int_eq(fresh_model_search(m, fresh_engine_search_pool(e),
					    FRESH_SCORING_CORRECTED, q, 1, 10,
					    NULL, h, &cnt),
			 FRESH_OK);
	ck_assert_uint_eq(cnt, 10);
	fresh_model_release(m);
}

START_TEST(updates_refit_and_restart)
{
	struct fresh_engine *e = open_engine(config(dir, FRESH_CORRECTOR_MLP));
	struct fresh_refit_outcome out;
	struct fresh_engine_status st;
	struct fresh_hit before[10], after[10], again[10];
	float q[D], s[D], c[D], g[D];
	struct fresh_target_view view;

	memcpy(q, fresh + 7 * D, sizeof q);
	search(e, q, before);
	post(e, 0, 1000);
	fresh_engine_status(e, &st);
	ck_assert_uint_eq(st.pairs_buffered, 1000);
	ck_assert_uint_eq(st.pairs_total, 1000);
	ck_assert_uint_eq(st.version, 0);
	ck_assert(!st.have_holdout);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert_msg(out.report.accepted, "%s", out.report.reason);
	ck_assert_uint_eq(out.version, 1);
	ck_assert_uint_eq(out.trained_through, 20);
	ck_assert(out.report.holdout.corrected_mse <
		  0.1 * out.report.holdout.stale_mse);
	search(e, q, after);
	ck_assert(memcmp(before, after, sizeof before) != 0);
	fresh_engine_status(e, &st);
	ck_assert(st.have_holdout);
	ck_assert_uint_eq(st.refits_accepted, 1);
	ck_assert_int_eq(fresh_engine_target(e, 5, s, c, g, &view), FRESH_OK);
	ck_assert(view.has_fresh && view.corrected_ok);
	ck_assert_mem_eq(s, stale + 5 * D, sizeof s);
	ck_assert_mem_eq(g, fresh + 5 * D, sizeof g);
	ck_assert_int_eq(fresh_engine_target(e, N + 5, s, c, g, &view),
			 FRESH_NOT_FOUND);
	fresh_engine_close(e);

	e = open_engine(config(dir, FRESH_CORRECTOR_MLP));
	ck_assert_uint_eq(version_of(e), 1);
	fresh_engine_status(e, &st);
	ck_assert_uint_eq(st.pairs_buffered, 1000);
	ck_assert_uint_eq(st.pairs_total, 1000);
	ck_assert_uint_eq(st.last_seq, 20);
	search(e, q, again);
	tu_assert_hits_eq(after, again, 10);
	fresh_engine_close(e);
}
END_TEST

START_TEST(bad_updates_change_nothing)
{
	struct fresh_engine *e =
		open_engine(config(dir, FRESH_CORRECTOR_AFFINE));
	struct fresh_engine_status st;
	struct fresh_update u;
	struct fresh_update_ack ack;
	struct fresh_error err;
	uint64_t ids[3] = {1, N + 10, 2}, pos[1] = {77};
	float v[3 * D], bad = NAN;

	post(e, 0, 10);
	memset(&u, 0, sizeof u);
	u.n_targets = 3;
	u.ids = ids;
	u.vectors = v;
	u.dim = D;
	memcpy(v, fresh, sizeof v);
	ck_assert_int_eq(fresh_engine_update(e, &u, &ack, &err),
			 FRESH_NOT_FOUND);
	ck_assert(strstr(err.msg, "targets[1].id: unknown target id 3010"));
	ids[1] = 3;
	u.dim = D - 1;
	ck_assert_int_eq(fresh_engine_update(e, &u, &ack, &err), FRESH_INVALID);
	u.dim = D;
	v[2 * D + 4] = bad;
	ck_assert_int_eq(fresh_engine_update(e, &u, &ack, &err), FRESH_INVALID);
	ck_assert(strstr(err.msg, "targets[2].vector[4]"));
	v[2 * D + 4] = 0;
	u.n_queries = 1;
	u.queries = v;
	u.positives = pos;
	ck_assert_int_eq(fresh_engine_update(e, &u, &ack, &err), FRESH_INVALID);
	ck_assert(strstr(err.msg, "queries[0].positive: 77"));
	fresh_engine_status(e, &st);
	ck_assert_uint_eq(st.pairs_buffered, 10);
	ck_assert_uint_eq(st.pairs_total, 10);
	ck_assert_uint_eq(st.last_seq, 1);
	pos[0] = 3; /* now valid, with a query */
	ck_assert_int_eq(fresh_engine_update(e, &u, &ack, &err), FRESH_OK);
	ck_assert_uint_eq(ack.seq, 2);
	ck_assert_uint_eq(ack.buffered, 10); /* 1, 2, 3 were held already */
	fresh_engine_close(e);
}
END_TEST

START_TEST(refit_with_too_few_pairs_is_refused)
{
	struct fresh_engine *e = open_engine(config(dir, FRESH_CORRECTOR_MLP));
	struct fresh_refit_outcome out;

	post(e, 0, 30);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert(out.valid && !out.report.accepted);
	ck_assert(strstr(out.report.reason, "30 pairs buffered"));
	ck_assert_uint_eq(version_of(e), 0);
	fresh_engine_close(e);
}
END_TEST

START_TEST(reset_and_checkpoint_exchange)
{
	struct fresh_engine *a = open_engine(config(dir, FRESH_CORRECTOR_MLP));
	struct fresh_engine *b = open_engine(config(dir2, FRESH_CORRECTOR_MLP));
	struct fresh_engine *c;
	struct fresh_refit_outcome out;
	struct fresh_hit ha[10], hb[10];
	struct fresh_error err;
	float q[D];
	void *buf, *old;
	size_t len, old_len;
	uint64_t v;

	memcpy(q, fresh + 99 * D, sizeof q);
	post(a, 0, 800);
	ck_assert_int_eq(fresh_engine_refit(a, true, &out), FRESH_OK);
	ck_assert_uint_eq(out.version, 1);
	ck_assert_int_eq(fresh_engine_checkpoint_get(a, &old, &old_len, &v),
			 FRESH_OK);
	ck_assert_uint_eq(v, 1);
	ck_assert_int_eq(fresh_engine_reset(a, &v, &err), FRESH_OK);
	ck_assert_uint_eq(v, 2);
	post(a, 800, 1600);
	ck_assert_int_eq(fresh_engine_refit(a, true, &out), FRESH_OK);
	ck_assert_uint_eq(out.version, 3);
	ck_assert_int_eq(fresh_engine_checkpoint_get(a, &buf, &len, &v),
			 FRESH_OK);
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(b, buf, len, false, &v, &err),
		FRESH_OK);
	ck_assert_uint_eq(v, 3);
	ck_assert_uint_eq(version_of(b), 3);
	search(a, q, ha);
	search(b, q, hb);
	tu_assert_hits_eq(ha, hb, 10);
	/* Older: refused unless forced. */
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(b, old, old_len, false, &v, &err),
		FRESH_CONFLICT);
	ck_assert(strstr(err.msg, "older than the current 3"));
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(b, old, old_len, true, &v, &err),
		FRESH_OK);
	ck_assert_uint_eq(version_of(b), 1);
	/* Damaged. */
	((unsigned char *)buf)[len / 2] ^= 1;
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(b, buf, len, true, &v, &err),
		FRESH_CHECKSUM);
	fresh_engine_close(b);
	/* The forced older version is what a restart recovers. */
	b = open_engine(config(dir2, FRESH_CORRECTOR_MLP));
	ck_assert_uint_eq(version_of(b), 1);
	fresh_engine_close(b);
	/* Another shape: refused. */
	{
		char dir3[4300];
		snprintf(dir3, sizeof dir3, "%s/third", dir);
		c = open_engine(config(dir3, FRESH_CORRECTOR_AFFINE));
		ck_assert_int_eq(fresh_engine_checkpoint_put(c, old, old_len,
							     true, &v, &err),
				 FRESH_CONFLICT);
		ck_assert(strstr(err.msg, "checkpoint is a corrector mlp"));
		fresh_engine_close(c);
	}
	free(buf);
	free(old);
	fresh_engine_close(a);
}
END_TEST

START_TEST(data_dir_in_use_is_refused)
{
	struct fresh_engine *e =
		open_engine(config(dir, FRESH_CORRECTOR_AFFINE));
	struct fresh_engine_config c = config(dir, FRESH_CORRECTOR_AFFINE);
	struct fresh_index *idx;
	struct fresh_engine *e2 = NULL;
	struct fresh_error err;

	ck_assert_int_eq(fresh_index_create(N, D, stale, NULL, "t", &idx, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_engine_open(&c, idx, &e2, &err), FRESH_CONFLICT);
	ck_assert_ptr_null(e2);
	ck_assert_msg(strstr(err.msg, "in use by another freshd"), "%s",
		      err.msg);
	fresh_engine_close(e);
	/* Free again once the first one closed. */
	e = open_engine(c);
	fresh_engine_close(e);
}
END_TEST

START_TEST(data_dir_of_another_shape_is_refused)
{
	struct fresh_engine *e = open_engine(config(dir, FRESH_CORRECTOR_MLP));
	struct fresh_refit_outcome out;
	struct fresh_engine_config c = config(dir, FRESH_CORRECTOR_AFFINE);
	struct fresh_index *idx;
	struct fresh_engine *e2 = NULL;
	struct fresh_error err;

	post(e, 0, 500);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert(out.report.accepted);
	fresh_engine_close(e);
	ck_assert_int_eq(fresh_index_create(N, D, stale, NULL, "t", &idx, NULL),
			 FRESH_OK);
	ck_assert_int_eq(fresh_engine_open(&c, idx, &e2, &err), FRESH_CONFLICT);
	ck_assert_ptr_null(e2);
	ck_assert_msg(
		strstr(err.msg, "holds a corrector mlp 16->16 hidden 16") &&
			strstr(err.msg, "asks for affine"),
		"%s", err.msg);
}
END_TEST

START_TEST(clear_and_compaction_survive_restart)
{
	struct fresh_engine_config c = config(dir, FRESH_CORRECTOR_AFFINE);
	struct fresh_engine *e;
	struct fresh_engine_status st;
	struct fresh_error err;
	char path[4300];

	c.compact_bytes = 64 << 10; /* every few updates */
	e = open_engine(c);
	post(e, 0, 2000);
	/*
	 * Compaction runs on the worker, requested by each update past the
	 * threshold; one that raced with later appends may drop nothing, but
	 * the one the last update requested covers everything. Wait for it.
	 */
	for (int i = 0; i < 1000; i++) {
		fresh_engine_status(e, &st);
		if (st.log_bytes < 100000)
			break;
		usleep(10000);
	}
	snprintf(path, sizeof path, "%s/pairs.snap", dir);
	ck_assert_int_eq(access(path, F_OK), 0);
	fresh_engine_close(e);
	e = open_engine(c);
	fresh_engine_status(e, &st);
	ck_assert_uint_eq(st.pairs_buffered, 2000);
	ck_assert_uint_eq(st.pairs_total, 2000);
	/* 40 records of 3.6 KB were written; compaction dropped some. */
	ck_assert_uint_lt(st.log_bytes, 100000);
	ck_assert_int_eq(fresh_engine_clear_pairs(e, &err), FRESH_OK);
	post(e, 0, 5);
	fresh_engine_close(e);
	e = open_engine(c);
	fresh_engine_status(e, &st);
	ck_assert_uint_eq(st.pairs_buffered, 5);
	ck_assert_uint_eq(st.pairs_total, 2005);
	fresh_engine_close(e);
}
END_TEST

START_TEST(automatic_refit_every_m_pairs)
{
	struct fresh_engine_config c = config(dir, FRESH_CORRECTOR_AFFINE);
	struct fresh_engine *e;

	c.refit_every_pairs = 500;
	e = open_engine(c);
	post(e, 0, 600);
	for (int i = 0; i < 500 && version_of(e) == 0; i++)
		usleep(10000);
	ck_assert_uint_eq(version_of(e), 1);
	fresh_engine_close(e);
}
END_TEST

struct stress {
	struct fresh_engine *e;
	atomic_bool stop;
	atomic_int errors;
	int which;
};

static void *stress_main(void *arg)
{
	struct stress *s = arg;
	struct tu_rng r = {(uint64_t)s->which + 1};
	uint64_t last = 0;

	while (!atomic_load(&s->stop)) {
		if (s->which == 0) {
			size_t from = tu_next(&r) % (N - 50);
			post(s->e, from, from + 50);
		} else if (s->which == 1) {
			struct fresh_refit_outcome out;
			if (fresh_engine_refit(s->e, true, &out) != FRESH_OK)
				atomic_fetch_add(&s->errors, 1);
		} else {
			struct fresh_hit h[10];
			float q[D];
			uint64_t v = version_of(s->e);
			tu_fill_normal(&r, q, D);
			search(s->e, q, h);
			if (v < last)
				atomic_fetch_add(&s->errors, 1);
			last = v;
		}
	}
	return NULL;
}

START_TEST(concurrent_updates_searches_refits)
{
	struct fresh_engine_config c = config(dir, FRESH_CORRECTOR_MLP);
	struct stress s[5];
	pthread_t th[5];
	struct fresh_engine *e;

	c.refit_every_pairs = 300;
	e = open_engine(c);
	post(e, 0, 200);
	for (int i = 0; i < 5; i++) {
		s[i].e = e;
		s[i].which = i < 2 ? i : 2;
		atomic_init(&s[i].stop, false);
		atomic_init(&s[i].errors, 0);
		pthread_create(&th[i], NULL, stress_main, &s[i]);
	}
	usleep(1500000);
	for (int i = 0; i < 5; i++)
		atomic_store(&s[i].stop, true);
	for (int i = 0; i < 5; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(atomic_load(&s[i].errors), 0);
	}
	ck_assert_uint_ge(version_of(e), 1);
	fresh_engine_close(e);
}
END_TEST

static Suite *engine_suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("engine");
	TCase *conc = tcase_create("concurrency");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_checked_fixture(conc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_set_timeout(conc, 240);
	tcase_add_test(tc, updates_refit_and_restart);
	tcase_add_test(tc, bad_updates_change_nothing);
	tcase_add_test(tc, refit_with_too_few_pairs_is_refused);
	tcase_add_test(tc, reset_and_checkpoint_exchange);
	tcase_add_test(tc, data_dir_of_another_shape_is_refused);
	tcase_add_test(tc, data_dir_in_use_is_refused);
	tcase_add_test(tc, clear_and_compaction_survive_restart);
	tcase_add_test(tc, automatic_refit_every_m_pairs);
	tcase_add_test(conc, concurrent_updates_searches_refits);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, conc);
	return s;
}

int main(void)
{
	return tu_run(engine_suite());
}
