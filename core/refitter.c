/*
 * refitter.c - the background worker that refits, publishes and compacts.
 *
 * Design: a boring worker (Redis bio.c): one thread, a condition variable,
 * a `stopping` flag, pthread_join on shutdown. It wakes for an explicit
 * request, for the automatic policy (every M new pairs, or T seconds after
 * the first pair that arrived since the last refit, so that a burst of
 * updates is trained on together), or for log compaction. A refit
 * snapshots the pair buffer under mu, then trains and materializes with no
 * lock held, on the low-priority refit pool; it publishes under publish_mu
 * only if no other publish (reset, checkpoint install) happened since it
 * started, since it was gated against the corrector it saw.
 *
 * Waiting for a refit (POST /v1/refit?wait=true) uses generation numbers:
 * a caller needs the first refit whose snapshot includes every update
 * applied before its call: the running one if its snapshot does, else the
 * next one, which it requests.
 */
#include "engine_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datadir.h"

static bool auto_due(const struct fresh_engine *e, double now)
{
	if (e->pairs_since_refit == 0)
		return false;
	if (e->cfg.refit_every_pairs &&
	    e->pairs_since_refit >= e->cfg.refit_every_pairs)
		return true;
	return e->cfg.refit_every_seconds > 0 &&
	       now - e->first_new_pair >= e->cfg.refit_every_seconds;
}

/* Waits under mu until there is work; false when stopping. */
static bool wait_for_work(struct fresh_engine *e)
{
	while (!e->stopping && !e->requested && !e->compact_requested &&
	       !auto_due(e, fresh_engine_now())) {
		if (e->cfg.refit_every_seconds > 0 && e->pairs_since_refit > 0) {
			double due = e->first_new_pair +
				     e->cfg.refit_every_seconds -
				     fresh_engine_now();
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			if (due < 0.001)
				due = 0.001;
			ts.tv_sec += (time_t)due;
			ts.tv_nsec += (long)((due - floor(due)) * 1e9);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&e->work_cv, &e->mu, &ts);
		} else {
			pthread_cond_wait(&e->work_cv, &e->mu);
		}
	}
	return !e->stopping;
}

/*
 * Snapshots the buffers, then drops the log they cover. The query groups
 * are written first (under the same lock as the pairs): a crash between
 * the two files leaves queries.snap at least as new as pairs.snap, and
 * loading keeps only the groups the pairs' sequence covers.
 */
static void compact(struct fresh_engine *e)
{
	struct fresh_pairs_snapshot snap;
	struct fresh_pairs_file meta;
	struct fresh_error err;
	char path[4200];
	enum fresh_status st;

	err.msg[0] = '\0';
	pthread_mutex_lock(&e->mu);
	st = fresh_pairs_snapshot(e->pairs, 0, &snap);
	meta.through_seq = e->applied_seq;
	meta.total = e->pairs_total;
	meta.fingerprint = fresh_index_fingerprint(e->index);
	snprintf(path, sizeof path, "%s/queries.snap", e->data_dir);
	if (st == FRESH_OK)
		st = fresh_qbuf_save(e->qbuf, path, &err);
	pthread_mutex_unlock(&e->mu);
	if (st != FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "log compaction skipped: %s",
				  err.msg[0] ? err.msg : "out of memory");
		fresh_pairs_snapshot_free(&snap);
		return;
	}
	snprintf(path, sizeof path, "%s/pairs.snap", e->data_dir);
	st = fresh_pairs_file_save(path, &snap, &meta, &err);
	if (st == FRESH_OK)
		st = fresh_wal_compact(e->wal, meta.through_seq, &err);
	if (st == FRESH_OK)
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "compacted the update log through record %" PRIu64
				  " (%zu pairs snapshotted)",
				  meta.through_seq, snap.n);
	else
		fresh_engine_logf(e, FRESH_LOG_WARN, "log compaction failed: %s",
				  err.msg);
	fresh_pairs_snapshot_free(&snap);
}

/*
 * --max-step-lag: pairs more than L steps behind the newest leave the
 * buffer, durably (an EXPIRE record, so a restart drops them too).
 * Called and returns with mu held.
 */
static void expire_lagging(struct fresh_engine *e)
{
	unsigned char rec[FRESH_RECORD_HEADER];
	int64_t newest, min_step;
	uint64_t seq;

	if (e->cfg.max_step_lag <= 0 ||
	    !fresh_pairs_newest_step(e->pairs, &newest))
		return;
	min_step = newest - e->cfg.max_step_lag;
	if (fresh_pairs_count_below(e->pairs, min_step) == 0)
		return;
	fresh_record_encode_expire(rec, min_step);
	pthread_mutex_unlock(&e->mu);
	if (fresh_wal_append(e->wal, rec, sizeof rec, &seq, NULL) != FRESH_OK)
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "could not log the expiry of pairs before "
				  "step %lld; the refit leaves them out anyway",
				  (long long)min_step);
	pthread_mutex_lock(&e->mu);
}

/* Called and returns with mu held. */
static void run_refit(struct fresh_engine *e)
{
	struct fresh_pairs_snapshot snap;
	struct fresh_qgroups groups = {0, NULL};
	struct fresh_refit_outcome out;
	struct fresh_corrector *cand = NULL;
	struct fresh_model *cur, *m = NULL;
	struct fresh_error err;
	uint64_t gen, base, seq;
	double t0 = fresh_engine_now();
	enum fresh_status st;

	expire_lagging(e);
	gen = ++e->started_gen;
	e->running = true;
	e->state = FRESH_REFIT_TRAINING;
	e->refits_started++;
	e->pairs_since_refit = 0;
	atomic_store(&e->train_prog.done, 0);
	atomic_store(&e->build_prog.done, 0);
	st = fresh_pairs_snapshot(e->pairs, e->cfg.max_step_lag, &snap);
	if (st == FRESH_OK && e->cfg.refit.logit_weight > 0)
		st = fresh_qbuf_snapshot(e->qbuf, &groups);
	seq = e->running_seq = e->applied_seq;
	pthread_mutex_unlock(&e->mu);

	memset(&out, 0, sizeof out);
	err.msg[0] = '\0';
	cur = fresh_engine_acquire(e);
	base = fresh_model_version(cur);
	if (st == FRESH_OK)
		st = fresh_refit_train(fresh_model_index(cur), &snap, &groups,
				       fresh_model_corrector(cur), &e->cfg.refit,
				       &e->train_prog, &e->cancel, &cand,
				       &out.report, &err);
	fresh_pairs_snapshot_free(&snap);
	fresh_qgroups_free(&groups);
	out.train_seconds = fresh_engine_now() - t0;
	if (st == FRESH_OK && cand) {
		pthread_mutex_lock(&e->mu);
		e->state = FRESH_REFIT_MATERIALIZING;
		pthread_mutex_unlock(&e->mu);
		fresh_corrector_set_trained_through(cand, seq);
		fresh_corrector_set_holdout(cand, &out.report.holdout);
		st = fresh_model_build(fresh_model_index(cur), cand,
				       e->refit_pool, &e->build_prog, &e->cancel,
				       &m, &err);
		if (st != FRESH_OK)
			fresh_corrector_free(cand);
		out.build_seconds =
			fresh_engine_now() - t0 - out.train_seconds;
	}
	if (st == FRESH_OK && m) {
		struct fresh_model *now;
		double tp = fresh_engine_now();
		pthread_mutex_lock(&e->publish_mu);
		now = fresh_engine_acquire(e);
		if (fresh_model_version(now) != base) {
			out.report.accepted = false;
			snprintf(out.report.reason, sizeof out.report.reason,
				 "superseded: version %" PRIu64
				 " was published while it trained",
				 fresh_model_version(now));
			fresh_model_release(m);
		} else {
			st = fresh_engine_publish_locked(e, m, base + 1, &err);
			if (st == FRESH_OK)
				out.version = base + 1;
		}
		fresh_model_release(now);
		pthread_mutex_unlock(&e->publish_mu);
		out.publish_seconds = fresh_engine_now() - tp;
	}
	fresh_model_release(cur);

	out.valid = true;
	out.status = st;
	out.trained_through = seq;
	out.finished_at = fresh_engine_walltime();
	if (st != FRESH_OK) {
		out.report.accepted = false;
		snprintf(out.report.reason, sizeof out.report.reason,
			 "refit failed: %s", err.msg[0] ? err.msg
						       : fresh_status_str(st));
	}
	pthread_mutex_lock(&e->mu);
	if (st != FRESH_OK)
		e->refits_failed++;
	else if (out.version)
		e->refits_accepted++;
	else
		e->refits_rejected++;
	e->refit_seconds_total += fresh_engine_now() - t0;
	e->last = out;
	e->state = FRESH_REFIT_IDLE;
	e->running = false;
	e->done_gen = gen;
	pthread_cond_broadcast(&e->done_cv);
	pthread_mutex_unlock(&e->mu);

	if (out.version)
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "refit published version %" PRIu64
				  " (%s, %zu pairs, held-out mse %.6g vs "
				  "%.6g before, %.2fs)",
				  out.version, out.report.method,
				  out.report.pairs,
				  out.report.holdout.corrected_mse,
				  out.report.current_mse,
				  fresh_engine_now() - t0);
	else
		fresh_engine_logf(e, st == FRESH_OK ? FRESH_LOG_INFO
						    : FRESH_LOG_WARN,
				  "refit not published: %s", out.report.reason);
	pthread_mutex_lock(&e->mu);
}

static void *worker_main(void *arg)
{
	struct fresh_engine *e = arg;

	pthread_mutex_lock(&e->mu);
	while (wait_for_work(e)) {
		if (e->compact_requested) {
			e->compact_requested = false;
			pthread_mutex_unlock(&e->mu);
			compact(e);
			pthread_mutex_lock(&e->mu);
			continue;
		}
		e->requested = false;
		run_refit(e);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

enum fresh_status fresh_refitter_start(struct fresh_engine *e)
{
	if (pthread_create(&e->worker, NULL, worker_main, e) != 0)
		return FRESH_NOMEM;
	e->worker_started = true;
	return FRESH_OK;
}

void fresh_refitter_stop(struct fresh_engine *e)
{
	if (!e->worker_started)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	atomic_store(&e->cancel, true);
	pthread_cond_broadcast(&e->work_cv);
	pthread_cond_broadcast(&e->done_cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->worker, NULL);
	e->worker_started = false;
}

enum fresh_status fresh_engine_refit(struct fresh_engine *e, bool wait,
				     struct fresh_refit_outcome *out)
{
	uint64_t target;
	enum fresh_status st = FRESH_OK;

	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&e->mu);
	if (e->running && e->running_seq >= e->applied_seq) {
		target = e->started_gen;
	} else {
		e->requested = true;
		target = e->started_gen + 1;
		pthread_cond_signal(&e->work_cv);
	}
	if (wait) {
		while (e->done_gen < target && !e->stopping)
			pthread_cond_wait(&e->done_cv, &e->mu);
		if (e->done_gen < target)
			st = FRESH_CANCELLED;
		else
			*out = e->last;
	}
	pthread_mutex_unlock(&e->mu);
	return st;
}
