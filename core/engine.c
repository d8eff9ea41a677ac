/*
 * engine.c - the engine's life (open, close) and its state for the API.
 * Its other parts, each a file: engine_recover.c (what open rebuilds from
 * the data dir), engine_updates.c (updates, checked, logged, applied),
 * engine_publish.c (publishing a model: refits, reset, checkpoint
 * install), engine_refit.c (the host of the background refitter,
 * refitter.c), engine_reload.c (the host of index reloads, reloader.c).
 * The locks are described in engine_impl.h.
 */
#include "engine_impl.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "datadir.h"
#include "hash.h"
#include "mem.h"

struct fresh_engine_config fresh_engine_config_default(void)
{
	struct fresh_engine_config c;

	memset(&c, 0, sizeof c);
	c.data_dir = "./freshd-data";
	c.kind = FRESH_CORRECTOR_MLP;
	c.act = FRESH_ACT_RELU;
	c.hidden = 256;
	c.refit = fresh_refit_config_default();
	c.max_pairs = 262144;
	c.max_queries = 8192;
	c.refit_every_pairs = 4096;
	c.refit_every_seconds = 60.0;
	c.sync = FRESH_SYNC_ALWAYS;
	c.sync_interval_ms = 100;
	c.keep_checkpoints = 3;
	c.refit_nice = 10;
	c.compact_bytes = (uint64_t)1 << 30;
	return c;
}

const char *fresh_refit_state_name(enum fresh_refit_state s)
{
	switch (s) {
	case FRESH_REFIT_TRAINING:
		return "training";
	case FRESH_REFIT_MATERIALIZING:
		return "materializing";
	case FRESH_REFIT_IDLE:
		break;
	}
	return "idle";
}

void fresh_engine_logf(struct fresh_engine *e, enum fresh_log_level level,
		       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fresh_vlogf(e->cfg.log, e->cfg.log_ctx, level, fmt, ap);
	va_end(ap);
}

enum fresh_status fresh_engine_new_corrector(struct fresh_engine *e,
					     struct fresh_corrector **out,
					     struct fresh_error *err)
{
	enum fresh_status st = fresh_corrector_create(&e->shape, out, err);

	/* --normalize-output on holds from the start; auto waits for pairs. */
	if (st == FRESH_OK && e->shape.kind != FRESH_CORRECTOR_NONE)
		fresh_corrector_set_normalize(*out, e->cfg.refit.normalize ==
							    FRESH_NORMALIZE_ON);
	return st;
}

enum fresh_status fresh_engine_open(const struct fresh_engine_config *cfg,
				    struct fresh_index *idx,
				    struct fresh_engine **out,
				    struct fresh_error *err)
{
	struct fresh_engine *e = calloc(1, sizeof *e);
	struct fresh_corrector *corr = NULL;
	struct fresh_model *model = NULL;
	struct fresh_wal_config wcfg;
	struct fresh_wal_recovery rec;
	struct fresh_error serr;
	enum fresh_status st;
	uint64_t through;

	if (!e) {
		fresh_index_release(idx);
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	}
	e->cfg = *cfg;
	atomic_init(&e->stopping, false);
	atomic_init(&e->staged_bytes, 0);
	e->index = idx;
	e->shape.kind = cfg->kind;
	e->shape.act = cfg->act;
	e->shape.d_in = fresh_index_dim(idx);
	e->shape.d_out = cfg->fresh_dim ? cfg->fresh_dim : e->shape.d_in;
	e->shape.hidden = cfg->kind == FRESH_CORRECTOR_MLP ? cfg->hidden : 0;
	pthread_mutex_init(&e->mu, NULL);
	pthread_mutex_init(&e->publish_mu, NULL);
	fresh_swap_init(&e->swap, NULL);

	st = fresh_corrector_shape_check(&e->shape, err);
	if (st == FRESH_OK && cfg->refit.serve_fresh_rows &&
	    !fresh_checkpoint_fits(&e->shape, cfg->max_pairs))
		st = fresh_fail(err, FRESH_INVALID,
				"--serve-fresh-rows: %zu pairs of %zu floats "
				"would not fit in a checkpoint (4 GiB); lower "
				"--max-pairs",
				cfg->max_pairs, e->shape.d_out);
	if (st == FRESH_OK)
		st = fresh_datadir_open(cfg->data_dir, &e->dd, err);
	if (st == FRESH_OK)
		e->data_dir = e->cfg.data_dir = e->dd->root;
	if (st == FRESH_OK &&
	    (fresh_pool_create(cfg->search_threads, 0, &e->search_pool) !=
		     FRESH_OK ||
	     fresh_pool_create(0, cfg->refit_nice, &e->refit_pool) !=
		     FRESH_OK ||
	     fresh_pairs_create(e->shape.d_out,
				cfg->max_pairs ? cfg->max_pairs : 1,
				&e->pairs) != FRESH_OK ||
	     fresh_qbuf_create(e->shape.d_out, cfg->max_queries, &e->qbuf) !=
		     FRESH_OK))
		st = fresh_fail(err, FRESH_NOMEM, "cannot start threads");
	if (st == FRESH_OK) {
		fresh_index_ref_switch(e->data_dir, &e->switch_seq,
				       &e->switch_version);
		st = fresh_engine_recover_pairs(e, &through, err);
	}
	if (st != FRESH_OK)
		goto fail;

	memset(&wcfg, 0, sizeof wcfg);
	wcfg.dir = e->dd->wal;
	wcfg.sync = cfg->sync;
	wcfg.interval_ms = cfg->sync_interval_ms;
	wcfg.salvage = cfg->salvage_log;
	wcfg.simulate_writeback = cfg->simulate_power_loss;
	st = fresh_wal_open(&wcfg, through, fresh_engine_apply_record, e,
			    &e->wal, &rec, err);
	if (st != FRESH_OK)
		goto fail;
	if (rec.note[0])
		fresh_engine_logf(e, FRESH_LOG_WARN, "update log: %s",
				  rec.note);
	fresh_engine_logf(e, FRESH_LOG_INFO,
			  "update log: %zu records replayed from %zu segments; "
			  "%zu pairs buffered, %" PRIu64 " accepted in all",
			  rec.replayed, rec.segments,
			  fresh_pairs_count(e->pairs), e->pairs_total);

	st = fresh_engine_recover_corrector(e, &corr, err);
	if (st != FRESH_OK)
		goto fail;
	st = fresh_model_build(idx, corr, e->search_pool, NULL, NULL,
			       e->data_dir, &model, &serr);
	if (st == FRESH_NO_SPACE) {
		/*
		 * A daemon on a full disk serves what it has: h(S) in float32
		 * in memory, if memory allows, until a refit rebuilds it.
		 */
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "%s; keeping h(S) in float32 in memory "
				  "instead until the next refit",
				  serr.msg);
		st = fresh_model_build(idx, corr, e->search_pool, NULL, NULL,
				       NULL, &model, &serr);
	}
	if (st != FRESH_OK) {
		fresh_fail(err, st, "%s", serr.msg);
		fresh_corrector_free(corr);
		goto fail;
	}
	fresh_swap_publish(&e->swap, model);
	st = fresh_engine_start_refitter(e);
	if (st != FRESH_OK) {
		st = fresh_fail(err, st, "cannot start the refit thread");
		goto fail;
	}
	st = fresh_engine_start_reloader(e);
	if (st != FRESH_OK) {
		st = fresh_fail(err, st, "out of memory");
		goto fail;
	}
	*out = e;
	return FRESH_OK;
fail:
	fresh_engine_close(e);
	return st;
}

void fresh_engine_stop_refits(struct fresh_engine *e)
{
	if (!e)
		return;
	atomic_store(&e->stopping, true);
	fresh_refitter_stop(e->refitter);
	fresh_reloader_stop(e->reloader);
}

/* Also undoes a partly done fresh_engine_open: every part accepts NULL. */
void fresh_engine_close(struct fresh_engine *e)
{
	if (!e)
		return;
	fresh_engine_stop_refits(e);
	fresh_wal_close(e->wal);
	fresh_refitter_free(e->refitter);
	fresh_reloader_free(e->reloader);
	fresh_model_release(e->staged);
	fresh_swap_destroy(&e->swap);
	fresh_pairs_free(e->pairs);
	fresh_qbuf_free(e->qbuf);
	fresh_pool_free(e->search_pool);
	fresh_pool_free(e->refit_pool);
	fresh_index_release(e->index);
	pthread_mutex_destroy(&e->mu);
	pthread_mutex_destroy(&e->publish_mu);
	fresh_datadir_close(e->dd);
	free(e);
}

struct fresh_model *fresh_engine_acquire(struct fresh_engine *e)
{
	return fresh_swap_acquire(&e->swap);
}

struct fresh_pool *fresh_engine_search_pool(struct fresh_engine *e)
{
	return e->search_pool;
}

size_t fresh_engine_score(struct fresh_engine *e,
			  struct fresh_request *const *reqs, size_t n)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	size_t scored = fresh_batch_score(m, e->search_pool, reqs, n);

	fresh_model_release(m);
	return scored;
}

size_t fresh_engine_fresh_dim(const struct fresh_engine *e)
{
	return e->shape.d_out;
}

struct fresh_index *fresh_engine_index(struct fresh_engine *e)
{
	struct fresh_index *idx;

	pthread_mutex_lock(&e->mu);
	idx = e->index;
	fresh_index_retain(idx);
	pthread_mutex_unlock(&e->mu);
	return idx;
}

void fresh_engine_status(struct fresh_engine *e, struct fresh_engine_status *st)
{
	struct fresh_model *m = fresh_engine_acquire(e);

	memset(st, 0, sizeof *st);
	st->version = fresh_model_version(m);
	st->shape = e->shape;
	st->normalize = fresh_corrector_normalize(fresh_model_corrector(m));
	st->fresh_rows = fresh_model_fresh_rows(m);
	st->have_holdout =
		fresh_corrector_holdout(fresh_model_corrector(m), &st->holdout);
	fresh_model_release(m);
	if (e->refitter) {
		struct fresh_refitter_status rs;
		fresh_refitter_status(e->refitter, &rs);
		st->state = rs.state;
		st->progress = rs.progress;
		st->progress_done = rs.progress_done;
		st->progress_total = rs.progress_total;
		st->last = rs.last;
		st->refits_started = rs.started;
		st->refits_accepted = rs.accepted;
		st->refits_rejected = rs.rejected;
		st->refits_failed = rs.failed;
		st->refit_seconds_total = rs.seconds_total;
	}
	pthread_mutex_lock(&e->mu);
	st->pairs_buffered = fresh_pairs_count(e->pairs);
	st->pairs_total = e->pairs_total;
	st->last_seq = e->applied_seq;
	pthread_mutex_unlock(&e->mu);
	st->writable = fresh_wal_writable(e->wal);
	st->log_bytes = fresh_wal_bytes(e->wal);
	fresh_wal_stats(e->wal, &st->wal);
}

enum fresh_status fresh_engine_target(struct fresh_engine *e, uint64_t id,
				      float *stale, float *corrected,
				      float *fresh,
				      struct fresh_target_view *view)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	struct fresh_index *idx = fresh_model_index(m);
	struct fresh_pair p;
	enum fresh_status st;
	size_t row;

	memset(view, 0, sizeof *view);
	if (!fresh_index_find(idx, id, &row)) {
		fresh_model_release(m);
		return FRESH_NOT_FOUND;
	}
	view->version = fresh_model_version(m);
	memcpy(stale, fresh_index_vectors(idx) + row * fresh_index_dim(idx),
	       fresh_index_dim(idx) * sizeof(float));
	st = fresh_model_corrected_rows(m, &row, 1, corrected);
	view->corrected_ok = st == FRESH_OK;
	fresh_model_release(m);
	if (st != FRESH_OK && st != FRESH_NOT_READY)
		return st;
	pthread_mutex_lock(&e->mu);
	if (fresh_pairs_get(e->pairs, id, &p)) {
		view->has_fresh = true;
		view->has_step = p.has_step;
		view->step = p.step;
		memcpy(fresh, p.g, e->shape.d_out * sizeof(float));
	}
	pthread_mutex_unlock(&e->mu);
	return FRESH_OK;
}
