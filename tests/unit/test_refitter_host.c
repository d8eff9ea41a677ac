/*
 * test_refitter_host.c - the refitter alone, driven through a host of the
 * test's own (no engine, no data dir, no log): a request trains on what
 * the host's snapshot holds and publishes through the host; a publish
 * that was overtaken is an outcome, not an error; a waiter gets a refit
 * that reflects the sequence it asked for, or FRESH_CANCELLED when the
 * refitter stops, even while a refit is stuck in the host; the automatic
 * policy counts the pairs the host reports; compaction is the host's.
 *
 * Timing: what the worker does is awaited through observable state (the
 * fake host's counters, the refitter's status) against a generous
 * deadline; no assertion is about elapsed time.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pairs.h"
#include "pool.h"
#include "refitter.h"
#include "testutil.h"

#define N 1000
#define D 8
#define DEADLINE 120.0

static float stale[N * D], fresh[N * D];

/* The fake engine: a pair buffer, a published model, counters. */
struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct fresh_index *idx;
	struct fresh_pairs *pairs;
	struct fresh_model *cur;
	uint64_t applied; /* what a snapshot reports it reflects */
	unsigned snapshots, publishes, compactions, logs;
	uint64_t supersede; /* publish: pretend this version overtook */
	bool gate_closed;   /* snapshot blocks while true */
	bool in_snapshot;   /* a snapshot is blocked at the gate */
	struct fresh_pool *pool;
};

static struct fake F;

static enum fresh_status fk_snapshot(void *ctx, bool with_groups,
				     struct fresh_pairs_snapshot *snap,
				     struct fresh_qgroups *groups,
				     uint64_t *through)
{
	struct fake *f = ctx;
	enum fresh_status st;

	(void)with_groups;
	(void)groups;
	pthread_mutex_lock(&f->mu);
	f->snapshots++;
	f->in_snapshot = true;
	pthread_cond_broadcast(&f->cv);
	while (f->gate_closed)
		pthread_cond_wait(&f->cv, &f->mu);
	f->in_snapshot = false;
	st = fresh_pairs_snapshot(f->pairs, 0, snap);
	*through = f->applied;
	pthread_mutex_unlock(&f->mu);
	return st;
}

static struct fresh_model *fk_acquire(void *ctx)
{
	struct fake *f = ctx;
	struct fresh_model *m;

	pthread_mutex_lock(&f->mu);
	m = f->cur;
	fresh_model_retain(m);
	pthread_mutex_unlock(&f->mu);
	return m;
}

static enum fresh_status fk_publish(void *ctx, struct fresh_model *m,
				    uint64_t base, uint64_t *superseded_by,
				    struct fresh_error *err)
{
	struct fake *f = ctx;
	struct fresh_model *old;

	(void)err;
	pthread_mutex_lock(&f->mu);
	*superseded_by = 0;
	if (f->supersede) {
		*superseded_by = f->supersede;
		pthread_mutex_unlock(&f->mu);
		fresh_model_release(m);
		return FRESH_OK;
	}
	ck_assert_uint_eq(fresh_model_version(f->cur), base);
	fresh_model_stamp(
		m, base + 1,
		fresh_corrector_trained_through(fresh_model_corrector(m)));
	old = f->cur;
	f->cur = m;
	f->publishes++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	fresh_model_release(old);
	return FRESH_OK;
}

static void fk_compact(void *ctx)
{
	struct fake *f = ctx;

	pthread_mutex_lock(&f->mu);
	f->compactions++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

static void fk_log(void *ctx, enum fresh_log_level level, const char *msg)
{
	struct fake *f = ctx;

	(void)level;
	(void)msg;
	pthread_mutex_lock(&f->mu);
	f->logs++;
	pthread_mutex_unlock(&f->mu);
}

static const struct fresh_refit_host HOST = {
	.ctx = &F,
	.snapshot = fk_snapshot,
	.acquire = fk_acquire,
	.publish = fk_publish,
	.compact = fk_compact,
	.log = fk_log,
};

static void setup(void)
{
	struct tu_rng r = {29};
	struct fresh_corrector_shape shape = {0};
	struct fresh_corrector *c;

	tu_linear_drift(&r, stale, fresh, N, D, 0.3);
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.mu, NULL);
	pthread_cond_init(&F.cv, NULL);
	ck_assert_int_eq(
		fresh_index_create(N, D, stale, NULL, "test", &F.idx, NULL),
		FRESH_OK);
	ck_assert_int_eq(fresh_pairs_create(D, N, &F.pairs), FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(2, 0, &F.pool), FRESH_OK);
	shape.kind = FRESH_CORRECTOR_AFFINE;
	shape.act = FRESH_ACT_RELU;
	shape.d_in = shape.d_out = D;
	ck_assert_int_eq(fresh_corrector_create(&shape, &c, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_model_build(F.idx, c, F.pool, NULL, NULL, NULL,
					   &F.cur, NULL),
			 FRESH_OK);
}

static void teardown(void)
{
	fresh_model_release(F.cur);
	fresh_pairs_free(F.pairs);
	fresh_index_release(F.idx);
	fresh_pool_free(F.pool);
	pthread_cond_destroy(&F.cv);
	pthread_mutex_destroy(&F.mu);
}

/* Buffers fresh vectors of ids [from, to) as log record seq. */
static void add_pairs(size_t from, size_t to, uint64_t seq)
{
	pthread_mutex_lock(&F.mu);
	for (size_t i = from; i < to; i++) {
		bool kept;
		ck_assert_int_eq(fresh_pairs_put(F.pairs, i, fresh + i * D,
						 false, 0, seq, &kept),
				 FRESH_OK);
	}
	F.applied = seq;
	pthread_mutex_unlock(&F.mu);
}

static struct fresh_refitter *start(size_t every_pairs)
{
	struct fresh_refitter_config cfg;
	struct fresh_refitter *r;

	memset(&cfg, 0, sizeof cfg);
	cfg.refit = fresh_refit_config_default();
	cfg.every_pairs = every_pairs;
	cfg.pool = F.pool;
	ck_assert_int_eq(fresh_refitter_start(&cfg, &HOST, &r), FRESH_OK);
	return r;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Waits until *counter (under F.mu) reaches want; false at the deadline. */
static bool await_count(const unsigned *counter, unsigned want)
{
	double end = now() + DEADLINE;
	bool ok;

	pthread_mutex_lock(&F.mu);
	while (*counter < want && now() < end) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&F.cv, &F.mu, &ts);
	}
	ok = *counter >= want;
	pthread_mutex_unlock(&F.mu);
	return ok;
}

START_TEST(request_trains_on_the_snapshot_and_publishes_through_the_host)
{
	struct fresh_refitter *r = start(0);
	struct fresh_refitter_status st;
	struct fresh_refit_outcome out;
	struct fresh_model *m;

	add_pairs(0, 600, 7);
	ck_assert_int_eq(fresh_refitter_request(r, 7, true, &out), FRESH_OK);
	ck_assert(out.valid);
	ck_assert_int_eq(out.status, FRESH_OK);
	ck_assert_uint_eq(out.version, 1); /* the host's model was version 0 */
	ck_assert_uint_eq(out.trained_through, 7);
	ck_assert(out.report.accepted);
	ck_assert_uint_eq(out.report.pairs, 600);
	/* Fitted on a linear drift: far better than the identity. */
	ck_assert(out.report.holdout.corrected_mse <
		  0.1 * out.report.current_mse);
	m = fk_acquire(&F);
	ck_assert_uint_eq(fresh_model_version(m), 1);
	ck_assert_uint_eq(
		fresh_corrector_trained_through(fresh_model_corrector(m)), 7);
	fresh_model_release(m);
	fresh_refitter_status(r, &st);
	ck_assert_int_eq(st.state, FRESH_REFIT_IDLE);
	ck_assert_uint_eq(st.started, 1);
	ck_assert_uint_eq(st.accepted, 1);
	ck_assert_uint_eq(st.last.version, 1);
	ck_assert_uint_eq(F.publishes, 1);
	fresh_refitter_free(r);
}
END_TEST

START_TEST(overtaken_publish_is_an_outcome)
{
	struct fresh_refitter *r = start(0);
	struct fresh_refitter_status st;
	struct fresh_refit_outcome out;

	add_pairs(0, 600, 3);
	F.supersede = 9;
	ck_assert_int_eq(fresh_refitter_request(r, 3, true, &out), FRESH_OK);
	ck_assert_int_eq(out.status, FRESH_OK);
	ck_assert_uint_eq(out.version, 0);
	ck_assert(!out.report.accepted);
	ck_assert_msg(strstr(out.report.reason, "superseded: version 9"), "%s",
		      out.report.reason);
	fresh_refitter_status(r, &st);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_uint_eq(st.accepted, 0);
	fresh_refitter_free(r);
}
END_TEST

/* A waiter for seq S is not answered by a refit whose snapshot is older. */
START_TEST(waiter_gets_a_refit_that_reflects_its_sequence)
{
	struct fresh_refitter *r = start(0);
	struct fresh_refit_outcome out;

	add_pairs(0, 400, 5);
	F.gate_closed = true;
	ck_assert_int_eq(fresh_refitter_request(r, 5, false, &out), FRESH_OK);
	/* The first refit is in its snapshot; more pairs arrive (seq 6). */
	pthread_mutex_lock(&F.mu);
	while (!F.in_snapshot)
		pthread_cond_wait(&F.cv, &F.mu);
	pthread_mutex_unlock(&F.mu);
	add_pairs(400, 800, 6);
	pthread_mutex_lock(&F.mu);
	F.applied = 5; /* the blocked snapshot reflects only seq 5 */
	F.gate_closed = false;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	/* That one reports 5; a waiter for 6 needs the next refit. */
	ck_assert(await_count(&F.publishes, 1));
	pthread_mutex_lock(&F.mu);
	F.applied = 6;
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(fresh_refitter_request(r, 6, true, &out), FRESH_OK);
	ck_assert(out.valid);
	ck_assert_uint_ge(out.trained_through, 6);
	ck_assert_uint_eq(F.snapshots, 2);
	fresh_refitter_free(r);
}
END_TEST

struct waiter {
	struct fresh_refitter *r;
	enum fresh_status st;
	bool done;
};

static void *wait_main(void *arg)
{
	struct waiter *w = arg;
	struct fresh_refit_outcome out;

	w->st = fresh_refitter_request(w->r, 1, true, &out);
	pthread_mutex_lock(&F.mu);
	w->done = true;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	return NULL;
}

static void *stop_main(void *arg)
{
	fresh_refitter_stop(arg);
	return NULL;
}

/* Stopping releases waiters at once, even with a refit stuck in the host. */
START_TEST(stop_cancels_waiters_while_a_refit_is_stuck)
{
	struct fresh_refitter *r = start(0);
	struct waiter w = {r, FRESH_OK, false};
	pthread_t wt, stopper;

	add_pairs(0, 300, 1);
	F.gate_closed = true;
	ck_assert_int_eq(pthread_create(&wt, NULL, wait_main, &w), 0);
	pthread_mutex_lock(&F.mu);
	while (!F.in_snapshot)
		pthread_cond_wait(&F.cv, &F.mu);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(pthread_create(&stopper, NULL, stop_main, r), 0);
	pthread_mutex_lock(&F.mu);
	while (!w.done)
		pthread_cond_wait(&F.cv, &F.mu);
	F.gate_closed = false; /* now let the stuck refit finish */
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	pthread_join(wt, NULL);
	pthread_join(stopper, NULL);
	ck_assert_int_eq(w.st, FRESH_CANCELLED);
	fresh_refitter_free(r);
}
END_TEST

START_TEST(policy_counts_the_pairs_the_host_reports)
{
	struct fresh_refitter *r = start(500);
	struct fresh_refitter_status st;

	add_pairs(0, 499, 1);
	fresh_refitter_pairs_arrived(r, 499);
	/* Below M: no refit within a window a wrong trigger would show in. */
	usleep(300 * 1000);
	fresh_refitter_status(r, &st);
	ck_assert_uint_eq(st.started, 0);
	ck_assert_uint_eq(F.snapshots, 0);
	add_pairs(499, 600, 2);
	fresh_refitter_pairs_arrived(r, 101);
	ck_assert(await_count(&F.publishes, 1));
	fresh_refitter_status(r, &st);
	ck_assert_uint_eq(st.started, 1);
	fresh_refitter_free(r);
}
END_TEST

START_TEST(compaction_is_the_hosts)
{
	struct fresh_refitter *r = start(0);

	fresh_refitter_request_compact(r);
	ck_assert(await_count(&F.compactions, 1));
	ck_assert_uint_eq(F.snapshots, 0);
	ck_assert_uint_eq(F.publishes, 0);
	fresh_refitter_free(r);
}
END_TEST

static Suite *refitter_host_suite(void)
{
	Suite *s = suite_create("refitter_host");
	TCase *tc = tcase_create("alone");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(
		tc,
		request_trains_on_the_snapshot_and_publishes_through_the_host);
	tcase_add_test(tc, overtaken_publish_is_an_outcome);
	tcase_add_test(tc, waiter_gets_a_refit_that_reflects_its_sequence);
	tcase_add_test(tc, stop_cancels_waiters_while_a_refit_is_stuck);
	tcase_add_test(tc, policy_counts_the_pairs_the_host_reports);
	tcase_add_test(tc, compaction_is_the_hosts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(refitter_host_suite());
}
