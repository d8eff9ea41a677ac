/*
 * test_refitter.c - the background refit worker: the automatic policy
 * (a refit after M new pairs, or T seconds after the first new pair, and
 * none without new pairs), the wait semantics of a requested refit (its
 * outcome covers every update acknowledged before the call), stopping
 * (waiters are cancelled, updates go on), expiry of pairs that lag the
 * newest step (durable across a restart), log compaction, and requests
 * that publish fresh rows only (--serve-fresh-rows).
 *
 * Timing: everything the worker does is awaited by polling the engine's
 * status against a generous deadline (a loaded 2-core machine, sanitizers);
 * no assertion is about elapsed time. Where a test checks that something
 * does NOT happen, it watches for a fixed window: correct code never fails
 * that check, and a refit wrongly triggered would show within it.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "engine.h"
#include "index.h"
#include "pairs.h"
#include "testutil.h"

#define N 2000
#define D 8

static char dir[4096];
static float stale[N * D], fresh[N * D];

static void setup(void)
{
	struct tu_rng r = {13};

	tu_tmpdir(dir, sizeof dir);
	tu_linear_drift(&r, stale, fresh, N, D, 0.3);
}

static void teardown(void)
{
	tu_rmdir(dir);
}

static struct fresh_engine_config config(void)
{
	struct fresh_engine_config c = fresh_engine_config_default();

	c.data_dir = dir;
	c.kind = FRESH_CORRECTOR_AFFINE;
	c.refit_every_pairs = 0;
	c.refit_every_seconds = 0;
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

/*
 * Posts targets [from, to) in updates of `batch` targets (one log record
 * each), with a step if asked; returns the last record's sequence.
 */
static uint64_t post_batched(struct fresh_engine *e, size_t from, size_t to,
			     size_t batch, bool has_step, int64_t step)
{
	uint64_t *ids = malloc(batch * sizeof *ids), seq = 0;

	for (size_t b = from; b < to; b += batch) {
		size_t n = to - b < batch ? to - b : batch;
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
		u.has_step = has_step;
		u.step = step;
		ck_assert_msg(fresh_engine_update(e, &u, &ack, &err) ==
				      FRESH_OK,
			      "%s", err.msg);
		seq = ack.seq;
	}
	free(ids);
	return seq;
}

static uint64_t post(struct fresh_engine *e, size_t from, size_t to)
{
	return post_batched(e, from, to, 50, false, 0);
}

static uint64_t post_steps(struct fresh_engine *e, size_t from, size_t to,
			   int64_t step)
{
	return post_batched(e, from, to, 50, true, step);
}

static struct fresh_engine_status status(struct fresh_engine *e)
{
	struct fresh_engine_status st;

	fresh_engine_status(e, &st);
	return st;
}

/* Polls until `finished` refits are done (60 s deadline). */
static struct fresh_engine_status await_refits(struct fresh_engine *e,
					       uint64_t finished)
{
	time_t deadline = time(NULL) + 60;
	struct fresh_engine_status st;

	for (;;) {
		st = status(e);
		if (st.refits_accepted + st.refits_rejected +
			    st.refits_failed >=
		    finished)
			return st;
		ck_assert_msg(time(NULL) < deadline,
			      "%llu refits started, %llu wanted done",
			      (unsigned long long)st.refits_started,
			      (unsigned long long)finished);
		usleep(5000);
	}
}

/* Watches a window of `ms` milliseconds: no refit may start in it. */
static void assert_no_refit_for(struct fresh_engine *e, uint64_t started,
				unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 10) {
		ck_assert_uint_eq(status(e).refits_started, started);
		usleep(10000);
	}
	ck_assert_uint_eq(status(e).refits_started, started);
}

START_TEST(refit_after_m_new_pairs)
{
	struct fresh_engine_config c = config();
	struct fresh_engine *e;
	struct fresh_engine_status st;

	c.refit_every_pairs = 400;
	e = open_engine(c);
	post(e, 0, 350);
	assert_no_refit_for(e, 0, 300);
	post(e, 350, 400); /* the 400th new pair */
	st = await_refits(e, 1);
	ck_assert_uint_eq(st.refits_started, 1);
	ck_assert_msg(st.refits_accepted == 1, "%s", st.last.report.reason);
	ck_assert_uint_eq(st.version, 1);
	ck_assert_uint_eq(st.last.report.pairs, 400);
	/* The count starts over: 399 more are not enough... */
	post(e, 400, 799);
	assert_no_refit_for(e, 1, 300);
	/* ... and repeated pairs count as new pairs too. */
	post(e, 0, 1);
	st = await_refits(e, 2);
	ck_assert_uint_eq(st.refits_started, 2);
	ck_assert_uint_eq(st.last.report.pairs, 799);
	fresh_engine_close(e);
}
END_TEST

START_TEST(refit_t_seconds_after_first_new_pair)
{
	struct fresh_engine_config c = config();
	struct fresh_engine *e;
	struct fresh_engine_status st;

	c.refit_every_seconds = 0.2;
	e = open_engine(c);
	/* No pairs, no refit, however long. */
	assert_no_refit_for(e, 0, 400);
	/* One update each time, so that the timer cannot fire between
	 * the pairs of one burst however slow the machine. */
	post_batched(e, 0, 300, 300, false, 0);
	st = await_refits(e, 1);
	ck_assert_uint_eq(st.refits_started, 1);
	ck_assert_msg(st.refits_accepted == 1, "%s", st.last.report.reason);
	ck_assert_uint_eq(st.last.report.pairs, 300);
	/* Nothing new since: the timer does not fire again. */
	assert_no_refit_for(e, 1, 500);
	post_batched(e, 300, 350, 50, false, 0);
	st = await_refits(e, 2);
	ck_assert_uint_eq(st.refits_started, 2);
	ck_assert_uint_eq(st.last.report.pairs, 350);
	fresh_engine_close(e);
}
END_TEST

START_TEST(policy_off_never_refits)
{
	struct fresh_engine *e = open_engine(config());

	post(e, 0, 1000);
	assert_no_refit_for(e, 0, 500);
	ck_assert_uint_eq(status(e).version, 0);
	fresh_engine_close(e);
}
END_TEST

START_TEST(requested_refit_sees_acknowledged_updates)
{
	struct fresh_engine *e = open_engine(config());
	struct fresh_refit_outcome out;
	struct fresh_engine_status st;
	uint64_t seq;

	seq = post(e, 0, 500);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert(out.valid);
	ck_assert_int_eq(out.status, FRESH_OK);
	ck_assert_uint_eq(out.trained_through, seq);
	ck_assert_msg(out.report.accepted, "%s", out.report.reason);
	ck_assert_uint_eq(out.version, 1);
	ck_assert_uint_eq(out.report.pairs, 500);
	/* The published corrector says what it was trained through. */
	{
		struct fresh_model *m = fresh_engine_acquire(e);
		ck_assert_uint_eq(fresh_corrector_trained_through(
					  fresh_model_corrector(m)),
				  seq);
		fresh_model_release(m);
	}
	/* Without wait: queued; a waiting call then covers later updates. */
	seq = post(e, 500, 700);
	ck_assert_int_eq(fresh_engine_refit(e, false, &out), FRESH_OK);
	ck_assert(!out.valid);
	seq = post(e, 700, 800);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert(out.valid);
	ck_assert_uint_ge(out.trained_through, seq);
	ck_assert_uint_eq(out.report.pairs, 800);
	st = await_refits(e, 2);
	ck_assert_uint_ge(st.refits_started, 2);
	ck_assert_uint_le(st.refits_started, 3);
	ck_assert_uint_eq(st.refits_started, st.refits_accepted +
						     st.refits_rejected +
						     st.refits_failed);
	ck_assert_uint_eq(st.last.trained_through, out.trained_through);
	fresh_engine_close(e);
}
END_TEST

/*
 * --serve-fresh-rows: a rows-only request publishes the buffer's rows with
 * the serving network and trains nothing (no pair held out); a request
 * that trains, made while a rows-only one is queued, gets a refit that
 * trains; with nothing new, a rows-only request publishes nothing.
 */
START_TEST(rows_only_publishes_without_training)
{
	struct fresh_engine_config c = config();
	struct fresh_refit_outcome out;
	struct fresh_engine *e;
	uint64_t seq;

	c.kind = FRESH_CORRECTOR_MLP;
	c.hidden = 8;
	c.refit.serve_fresh_rows = true;
	c.refit.max_epochs = 5;
	e = open_engine(c);
	seq = post(e, 0, 500);
	ck_assert_int_eq(fresh_engine_refit_rows(e, true, &out), FRESH_OK);
	ck_assert_msg(out.report.accepted, "%s", out.report.reason);
	ck_assert_str_eq(out.report.method, "fresh-rows");
	ck_assert_uint_eq(out.report.held_out, 0);
	ck_assert_uint_eq(out.version, 1);
	ck_assert_uint_eq(out.trained_through, seq);
	ck_assert_uint_eq(status(e).fresh_rows, 500);
	seq = post(e, 500, 600);
	ck_assert_int_eq(fresh_engine_refit_rows(e, false, &out), FRESH_OK);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert_msg(out.report.accepted, "%s", out.report.reason);
	ck_assert_uint_gt(out.report.held_out, 0);
	ck_assert_uint_ge(out.trained_through, seq);
	ck_assert_uint_eq(status(e).fresh_rows, 600);
	ck_assert_int_eq(fresh_engine_refit_rows(e, true, &out), FRESH_OK);
	ck_assert(!out.report.accepted);
	ck_assert(strstr(out.report.reason, "no fresh rows") != NULL);
	fresh_engine_close(e);
}
END_TEST

START_TEST(too_few_pairs_is_an_outcome_not_an_error)
{
	struct fresh_engine *e = open_engine(config());
	struct fresh_refit_outcome out;
	struct fresh_engine_status st;

	post(e, 0, 10);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert(out.valid);
	ck_assert_int_eq(out.status, FRESH_OK);
	ck_assert(!out.report.accepted);
	ck_assert_uint_eq(out.version, 0);
	st = status(e);
	ck_assert_uint_eq(st.refits_rejected, 1);
	ck_assert_uint_eq(st.version, 0);
	fresh_engine_close(e);
}
END_TEST

START_TEST(stopped_refitter_cancels_waiters)
{
	struct fresh_engine *e = open_engine(config());
	struct fresh_refit_outcome out;
	struct fresh_engine_status st;

	post(e, 0, 200);
	fresh_engine_stop_refits(e);
	fresh_engine_stop_refits(e); /* idempotent */
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_CANCELLED);
	ck_assert_int_eq(fresh_engine_refit(e, false, &out), FRESH_OK);
	/* Everything else keeps working. */
	post(e, 200, 300);
	st = status(e);
	ck_assert_uint_eq(st.pairs_buffered, 300);
	ck_assert_uint_eq(st.refits_started, 0);
	fresh_engine_close(e);
}
END_TEST

START_TEST(lagging_pairs_expire_durably)
{
	struct fresh_engine_config c = config();
	struct fresh_engine *e;
	struct fresh_refit_outcome out;

	c.max_step_lag = 50;
	e = open_engine(c);
	post_steps(e, 0, 300, 100);   /* 100 behind: expire */
	post_steps(e, 300, 600, 150); /* 50 behind: kept */
	post_steps(e, 600, 900, 200);
	post(e, 900, 1000); /* no step: never expire */
	ck_assert_uint_eq(status(e).pairs_buffered, 1000);
	ck_assert_int_eq(fresh_engine_refit(e, true, &out), FRESH_OK);
	ck_assert_uint_eq(out.report.pairs, 700);
	ck_assert_uint_eq(status(e).pairs_buffered, 700);
	fresh_engine_close(e);
	/* The expiry was logged: a restart does not bring them back. */
	e = open_engine(c);
	ck_assert_uint_eq(status(e).pairs_buffered, 700);
	{
		float s[D], cc[D], g[D];
		struct fresh_target_view view;
		ck_assert_int_eq(fresh_engine_target(e, 5, s, cc, g, &view),
				 FRESH_OK);
		ck_assert(!view.has_fresh);
		ck_assert_int_eq(fresh_engine_target(e, 305, s, cc, g, &view),
				 FRESH_OK);
		ck_assert(view.has_fresh && view.has_step);
		ck_assert_int_eq(view.step, 150);
	}
	fresh_engine_close(e);
}
END_TEST

START_TEST(compaction_snapshots_the_buffer)
{
	struct fresh_engine_config c = config();
	struct fresh_engine *e;
	struct fresh_pairs *p;
	struct fresh_pairs_file meta;
	struct fresh_error err;
	char path[4200];
	time_t deadline;
	uint64_t seq;
	enum fresh_status st;

	c.compact_bytes = 8 << 10;
	e = open_engine(c);
	seq = post(e, 0, 400); /* 8 records of 2 KB: past 8 KB */
	snprintf(path, sizeof path, "%s/pairs.snap", dir);
	ck_assert_int_eq(fresh_pairs_create(D, 10000, &p), FRESH_OK);
	/* The worker compacts in the background; the snapshot then holds
	 * every pair through some record, at most the last one. */
	deadline = time(NULL) + 60;
	while ((st = fresh_pairs_file_load(path, p, &meta, &err)) ==
	       FRESH_NOT_FOUND) {
		ck_assert_msg(time(NULL) < deadline, "no compaction");
		usleep(5000);
	}
	ck_assert_msg(st == FRESH_OK, "%s", err.msg);
	ck_assert_uint_le(meta.through_seq, seq);
	ck_assert_uint_ge(meta.through_seq, 1);
	ck_assert_uint_eq(fresh_pairs_count(p), meta.through_seq * 50);
	ck_assert_uint_eq(meta.total, meta.through_seq * 50);
	fresh_pairs_free(p);
	fresh_engine_close(e);
	e = open_engine(c);
	ck_assert_uint_eq(status(e).pairs_buffered, 400);
	fresh_engine_close(e);
}
END_TEST

static Suite *refitter_suite(void)
{
	Suite *s = suite_create("refitter");
	TCase *policy = tcase_create("policy");
	TCase *requests = tcase_create("requests");

	tcase_add_checked_fixture(policy, setup, teardown);
	tcase_add_checked_fixture(requests, setup, teardown);
	tcase_set_timeout(policy, 240);
	tcase_set_timeout(requests, 240);
	tcase_add_test(policy, refit_after_m_new_pairs);
	tcase_add_test(policy, refit_t_seconds_after_first_new_pair);
	tcase_add_test(policy, policy_off_never_refits);
	tcase_add_test(requests, requested_refit_sees_acknowledged_updates);
	tcase_add_test(requests, rows_only_publishes_without_training);
	tcase_add_test(requests, too_few_pairs_is_an_outcome_not_an_error);
	tcase_add_test(requests, stopped_refitter_cancels_waiters);
	tcase_add_test(requests, lagging_pairs_expire_durably);
	tcase_add_test(requests, compaction_snapshots_the_buffer);
	suite_add_tcase(s, policy);
	suite_add_tcase(s, requests);
	return s;
}

int main(void)
{
	return tu_run(refitter_suite());
}
