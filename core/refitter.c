/*
 * refitter.c - the background worker that refits, publishes and compacts
 * (see refitter.h).
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
#include "clock.h"
#include "refitter.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fresh_refitter {
	struct fresh_refitter_config cfg;
	struct fresh_refit_host host;
	pthread_t worker;
	bool worker_started;

	pthread_mutex_t mu;
	pthread_cond_t work_cv, done_cv;
	/* Everything below: (mu). */
	bool stopping, requested, compact_requested, running;
	bool requested_full; /* a request that needs training, not rows only */
	bool running_full;
	uint64_t pairs_since_refit;
	double first_new_pair; /* monotonic: when pairs_since_refit left 0 */
	uint64_t started_gen, done_gen;
	uint64_t running_seq; /* what the running refit's snapshot reflects */
	bool running_seq_known;
	enum fresh_refit_state state;
	struct fresh_refit_outcome last;
	uint64_t started, accepted, rejected, failed;
	double seconds_total;

	/* Written by the training and build stages, read by status. */
	struct fresh_progress train_prog, build_prog;
	atomic_bool cancel;
};

static void logf_(struct fresh_refitter *r, enum fresh_log_level level,
		  const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(struct fresh_refitter *r, enum fresh_log_level level,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fresh_vlogf(r->host.log, r->host.ctx, level, fmt, ap);
	va_end(ap);
}

static bool auto_due(const struct fresh_refitter *r, double t)
{
	if (r->pairs_since_refit == 0)
		return false;
	if (r->cfg.every_pairs && r->pairs_since_refit >= r->cfg.every_pairs)
		return true;
	return r->cfg.every_seconds > 0 &&
	       t - r->first_new_pair >= r->cfg.every_seconds;
}

/* Waits under mu until there is work; false when stopping. */
static bool wait_for_work(struct fresh_refitter *r)
{
	while (!r->stopping && !r->requested && !r->compact_requested &&
	       !auto_due(r, fresh_monotonic())) {
		if (r->cfg.every_seconds > 0 && r->pairs_since_refit > 0) {
			double due = r->first_new_pair + r->cfg.every_seconds -
				     fresh_monotonic();
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
			pthread_cond_timedwait(&r->work_cv, &r->mu, &ts);
		} else {
			pthread_cond_wait(&r->work_cv, &r->mu);
		}
	}
	return !r->stopping;
}

/*
 * Trains (or, when !full, takes the serving network with the buffer's
 * fresh rows), builds and has the host publish; fills out. No lock held.
 */
static void train_and_publish(struct fresh_refitter *r, double t0, bool full,
			      struct fresh_refit_outcome *out)
{
	struct fresh_refit_config rc = r->cfg.refit;
	struct fresh_pairs_snapshot snap;
	struct fresh_qgroups groups = {0, NULL};
	struct fresh_corrector *cand = NULL;
	struct fresh_model *cur, *m = NULL;
	struct fresh_error err;
	uint64_t base, seq = 0, superseded = 0;
	enum fresh_status st;

	memset(&snap, 0, sizeof snap);
	err.msg[0] = '\0';
	rc.rows_only = !full;
	/*
	 * The model before the pairs: a reload published between them makes
	 * this refit superseded, never one that puts the old index's pairs
	 * on the new index.
	 */
	cur = r->host.acquire(r->host.ctx);
	base = fresh_model_version(cur);
	st = r->host.snapshot(r->host.ctx, full && rc.logit_weight > 0, &snap,
			      &groups, &seq);
	pthread_mutex_lock(&r->mu);
	r->running_seq = seq;
	r->running_seq_known = st == FRESH_OK;
	pthread_mutex_unlock(&r->mu);

	if (st == FRESH_OK)
		st = fresh_refit_train(fresh_model_index(cur), &snap, &groups,
				       fresh_model_corrector(cur), &rc,
				       &r->train_prog, &r->cancel, &cand,
				       &out->report, &err);
	fresh_pairs_snapshot_free(&snap);
	fresh_qgroups_free(&groups);
	out->train_seconds = fresh_monotonic() - t0;
	if (st == FRESH_OK && cand) {
		pthread_mutex_lock(&r->mu);
		r->state = FRESH_REFIT_MATERIALIZING;
		pthread_mutex_unlock(&r->mu);
		fresh_corrector_set_trained_through(cand, seq);
		if (!out->report.network_kept) /* else the network's own */
			fresh_corrector_set_holdout(cand, &out->report.holdout);
		/* Rows only: cur's C with the changed rows redone. */
		st = fresh_model_build_like(
			cur, fresh_model_index(cur), cand, r->cfg.pool,
			&r->build_prog, &r->cancel, r->cfg.spill_dir, &m, &err);
		if (st != FRESH_OK)
			fresh_corrector_free(cand);
		out->build_seconds =
			fresh_monotonic() - t0 - out->train_seconds;
	}
	fresh_model_release(cur);
	if (st == FRESH_OK && m) {
		double tp = fresh_monotonic();
		st = r->host.publish(r->host.ctx, m, base, &superseded, &err);
		if (st == FRESH_OK && superseded) {
			out->report.accepted = false;
			snprintf(out->report.reason, sizeof out->report.reason,
				 "superseded: version %" PRIu64
				 " was published while it trained",
				 superseded);
		} else if (st == FRESH_OK) {
			out->version = base + 1;
		}
		out->publish_seconds = fresh_monotonic() - tp;
	}
	out->valid = true;
	out->status = st;
	out->trained_through = seq;
	out->finished_at = fresh_walltime();
	if (st != FRESH_OK) {
		out->report.accepted = false;
		snprintf(out->report.reason, sizeof out->report.reason,
			 "refit failed: %s",
			 err.msg[0] ? err.msg : fresh_status_str(st));
	}
}

/* Called and returns with mu held. */
static void run_refit(struct fresh_refitter *r, bool full)
{
	struct fresh_refit_outcome out;
	double t0 = fresh_monotonic();
	uint64_t gen;

	gen = ++r->started_gen;
	r->running = true;
	r->running_full = full;
	r->running_seq_known = false;
	r->state = FRESH_REFIT_TRAINING;
	r->started++;
	if (full) /* the automatic policy counts pairs since training */
		r->pairs_since_refit = 0;
	atomic_store(&r->train_prog.done, 0);
	atomic_store(&r->build_prog.done, 0);
	pthread_mutex_unlock(&r->mu);

	memset(&out, 0, sizeof out);
	train_and_publish(r, t0, full, &out);

	pthread_mutex_lock(&r->mu);
	if (out.status != FRESH_OK)
		r->failed++;
	else if (out.version)
		r->accepted++;
	else
		r->rejected++;
	r->seconds_total += fresh_monotonic() - t0;
	r->last = out;
	r->state = FRESH_REFIT_IDLE;
	r->running = false;
	r->done_gen = gen;
	pthread_cond_broadcast(&r->done_cv);
	pthread_mutex_unlock(&r->mu);

	if (out.version)
		logf_(r, FRESH_LOG_INFO,
		      "refit published version %" PRIu64
		      " (%s, %zu pairs, held-out mse %.6g vs %.6g before, "
		      "%.2fs)",
		      out.version, out.report.method, out.report.pairs,
		      out.report.holdout.corrected_mse, out.report.current_mse,
		      fresh_monotonic() - t0);
	else
		logf_(r,
		      out.status == FRESH_OK ? FRESH_LOG_INFO : FRESH_LOG_WARN,
		      "refit not published: %s", out.report.reason);
	pthread_mutex_lock(&r->mu);
}

static void *worker_main(void *arg)
{
	struct fresh_refitter *r = arg;

	pthread_mutex_lock(&r->mu);
	while (wait_for_work(r)) {
		if (r->compact_requested) {
			r->compact_requested = false;
			pthread_mutex_unlock(&r->mu);
			r->host.compact(r->host.ctx);
			pthread_mutex_lock(&r->mu);
			continue;
		}
		/* A rows-only request runs as one; a due training comes
		 * next (rows only leave the policy's count alone). */
		bool full = r->requested_full || !r->requested;
		r->requested = false;
		r->requested_full = false;
		run_refit(r, full);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

enum fresh_status fresh_refitter_start(const struct fresh_refitter_config *cfg,
				       const struct fresh_refit_host *host,
				       struct fresh_refitter **out)
{
	struct fresh_refitter *r = calloc(1, sizeof *r);

	if (!r)
		return FRESH_NOMEM;
	r->cfg = *cfg;
	r->host = *host;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->work_cv, NULL);
	pthread_cond_init(&r->done_cv, NULL);
	atomic_init(&r->cancel, false);
	atomic_init(&r->train_prog.done, 0);
	atomic_init(&r->train_prog.total, 0);
	atomic_init(&r->build_prog.done, 0);
	atomic_init(&r->build_prog.total, 0);
	if (pthread_create(&r->worker, NULL, worker_main, r) != 0) {
		fresh_refitter_free(r);
		return FRESH_NOMEM;
	}
	r->worker_started = true;
	*out = r;
	return FRESH_OK;
}

void fresh_refitter_stop(struct fresh_refitter *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = true;
	atomic_store(&r->cancel, true);
	pthread_cond_broadcast(&r->work_cv);
	pthread_cond_broadcast(&r->done_cv);
	pthread_mutex_unlock(&r->mu);
	if (r->worker_started) {
		pthread_join(r->worker, NULL);
		r->worker_started = false;
	}
}

void fresh_refitter_free(struct fresh_refitter *r)
{
	if (!r)
		return;
	fresh_refitter_stop(r);
	pthread_cond_destroy(&r->work_cv);
	pthread_cond_destroy(&r->done_cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

void fresh_refitter_pairs_arrived(struct fresh_refitter *r, size_t n)
{
	if (n == 0)
		return;
	pthread_mutex_lock(&r->mu);
	/* The worker sleeps without a deadline while no pair is new: wake
	 * it on the first one (its timer starts) and at M. */
	if (r->pairs_since_refit == 0)
		r->first_new_pair = fresh_monotonic();
	if ((r->pairs_since_refit == 0 && r->cfg.every_seconds > 0) ||
	    (r->cfg.every_pairs &&
	     r->pairs_since_refit + n >= r->cfg.every_pairs))
		pthread_cond_signal(&r->work_cv);
	r->pairs_since_refit += n;
	pthread_mutex_unlock(&r->mu);
}

void fresh_refitter_request_compact(struct fresh_refitter *r)
{
	pthread_mutex_lock(&r->mu);
	r->compact_requested = true;
	pthread_cond_signal(&r->work_cv);
	pthread_mutex_unlock(&r->mu);
}

static enum fresh_status request(struct fresh_refitter *r, uint64_t seq,
				 bool wait, bool full,
				 struct fresh_refit_outcome *out)
{
	enum fresh_status st = FRESH_OK;
	uint64_t target;

	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&r->mu);
	if (r->running && r->running_seq_known && r->running_seq >= seq &&
	    (r->running_full || !full)) {
		target = r->started_gen;
	} else {
		r->requested = true;
		r->requested_full = r->requested_full || full;
		target = r->started_gen + 1;
		pthread_cond_signal(&r->work_cv);
	}
	if (wait) {
		while (r->done_gen < target && !r->stopping)
			pthread_cond_wait(&r->done_cv, &r->mu);
		if (r->done_gen < target)
			st = FRESH_CANCELLED;
		else
			*out = r->last;
	}
	pthread_mutex_unlock(&r->mu);
	return st;
}

enum fresh_status fresh_refitter_request(struct fresh_refitter *r, uint64_t seq,
					 bool wait,
					 struct fresh_refit_outcome *out)
{
	return request(r, seq, wait, true, out);
}

enum fresh_status fresh_refitter_request_rows(struct fresh_refitter *r,
					      uint64_t seq, bool wait,
					      struct fresh_refit_outcome *out)
{
	return request(r, seq, wait, false, out);
}

void fresh_refitter_status(struct fresh_refitter *r,
			   struct fresh_refitter_status *st)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&r->mu);
	st->state = r->state;
	if (r->state != FRESH_REFIT_IDLE) {
		const struct fresh_progress *p =
			r->state == FRESH_REFIT_TRAINING ? &r->train_prog
							 : &r->build_prog;
		st->progress = fresh_progress_fraction(p);
		st->progress_done = atomic_load(&p->done);
		st->progress_total = atomic_load(&p->total);
	}
	st->last = r->last;
	st->started = r->started;
	st->accepted = r->accepted;
	st->rejected = r->rejected;
	st->failed = r->failed;
	st->seconds_total = r->seconds_total;
	pthread_mutex_unlock(&r->mu);
}
