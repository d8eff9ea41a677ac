/*
 * engine_refit.c - the engine as the refitter's host (refitter.h): the
 * buffers it snapshots, the model it reads and publishes, the log it
 * compacts; and POST /v1/refit's entry, fresh_engine_refit.
 */
#include "engine_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datadir.h"
#include "record.h"

/*
 * Snapshots the buffers, then drops the log they cover. The query groups
 * are written first (under the same lock as the pairs): a crash between
 * the two files leaves queries.snap at least as new as pairs.snap, and
 * loading keeps only the groups the pairs' sequence covers.
 */
static void host_compact(void *ctx)
{
	struct fresh_engine *e = ctx;
	struct fresh_pairs_snapshot snap;
	struct fresh_pairs_file meta;
	struct fresh_error err;
	enum fresh_status st;

	err.msg[0] = '\0';
	pthread_mutex_lock(&e->mu);
	st = fresh_pairs_snapshot(e->pairs, 0, &snap);
	meta.through_seq = e->applied_seq;
	meta.total = e->pairs_total;
	meta.fingerprint = fresh_index_fingerprint(e->index);
	if (st == FRESH_OK)
		st = fresh_qbuf_save(e->qbuf, e->dd->queries, &err);
	pthread_mutex_unlock(&e->mu);
	if (st != FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "log compaction skipped: %s",
				  err.msg[0] ? err.msg : "out of memory");
		fresh_pairs_snapshot_free(&snap);
		return;
	}
	st = fresh_pairs_file_save(e->dd->pairs, &snap, &meta, &err);
	if (st == FRESH_OK)
		st = fresh_wal_compact(e->wal, meta.through_seq, &err);
	if (st == FRESH_OK)
		fresh_engine_logf(
			e, FRESH_LOG_INFO,
			"compacted the update log through record %" PRIu64
			" (%zu pairs snapshotted)",
			meta.through_seq, snap.n);
	else
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "log compaction failed: %s", err.msg);
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

static enum fresh_status host_snapshot(void *ctx, bool with_groups,
				       struct fresh_pairs_snapshot *snap,
				       struct fresh_qgroups *groups,
				       uint64_t *through)
{
	struct fresh_engine *e = ctx;
	enum fresh_status st;

	pthread_mutex_lock(&e->mu);
	expire_lagging(e);
	st = fresh_pairs_snapshot(e->pairs, e->cfg.max_step_lag, snap);
	if (st == FRESH_OK && with_groups)
		st = fresh_qbuf_snapshot(e->qbuf, groups);
	*through = e->applied_seq;
	pthread_mutex_unlock(&e->mu);
	return st;
}

static struct fresh_model *host_acquire(void *ctx)
{
	return fresh_engine_acquire(ctx);
}

static enum fresh_status host_publish(void *ctx, struct fresh_model *m,
				      uint64_t base, uint64_t *superseded_by,
				      struct fresh_error *err)
{
	struct fresh_engine *e = ctx;
	struct fresh_model *now;
	enum fresh_status st = FRESH_OK;

	*superseded_by = 0;
	pthread_mutex_lock(&e->publish_mu);
	now = fresh_engine_acquire(e);
	if (fresh_model_version(now) != base) {
		*superseded_by = fresh_model_version(now);
		fresh_model_release(m);
	} else {
		st = fresh_engine_publish_locked(e, m, base + 1, err);
	}
	fresh_model_release(now);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

static void host_log(void *ctx, enum fresh_log_level level, const char *msg)
{
	fresh_engine_logf(ctx, level, "%s", msg);
}

enum fresh_status fresh_engine_start_refitter(struct fresh_engine *e)
{
	struct fresh_refitter_config cfg;
	struct fresh_refit_host host = {
		.ctx = e,
		.snapshot = host_snapshot,
		.acquire = host_acquire,
		.publish = host_publish,
		.compact = host_compact,
		.log = host_log,
	};
	struct fresh_refitter *r;
	enum fresh_status st;
	uint64_t pending;

	memset(&cfg, 0, sizeof cfg);
	cfg.refit = e->cfg.refit;
	cfg.every_pairs = e->cfg.refit_every_pairs;
	cfg.every_seconds = e->cfg.refit_every_seconds;
	cfg.pool = e->refit_pool;
	cfg.spill_dir = e->data_dir;
	st = fresh_refitter_start(&cfg, &host, &r);
	if (st != FRESH_OK)
		return st;
	/* Pairs replayed at open count toward the automatic policy. */
	pthread_mutex_lock(&e->mu);
	e->refitter = r;
	pending = e->replayed_pairs;
	e->replayed_pairs = 0;
	pthread_mutex_unlock(&e->mu);
	fresh_refitter_pairs_arrived(r, pending);
	return FRESH_OK;
}

/* The newest update applied: what a requested refit must reflect. */
static uint64_t applied_seq(struct fresh_engine *e)
{
	uint64_t seq;

	pthread_mutex_lock(&e->mu);
	seq = e->applied_seq;
	pthread_mutex_unlock(&e->mu);
	return seq;
}

enum fresh_status fresh_engine_refit(struct fresh_engine *e, bool wait,
				     struct fresh_refit_outcome *out)
{
	return fresh_refitter_request(e->refitter, applied_seq(e), wait, out);
}

enum fresh_status fresh_engine_refit_rows(struct fresh_engine *e, bool wait,
					  struct fresh_refit_outcome *out)
{
	return fresh_refitter_request_rows(e->refitter, applied_seq(e), wait,
					   out);
}
