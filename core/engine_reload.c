/*
 * engine_reload.c - the engine as the reloader's host (reloader.h): the
 * switch to a loaded index; and the entries of engine.h's index reload.
 *
 * The switch, under publish_mu:
 *   1. builds the new model (the identity corrector on the new index),
 *   2. writes DIR/index.ref naming the new index, the log sequence S the
 *      switch starts at and the version V of the identity corrector: the
 *      one commit point;
 *   3. clears the pairs (a CLEAR record; in memory even if it cannot be
 *      logged), swaps the index and publishes the model at V (its
 *      checkpoint written if the disk allows).
 * A failure before 2 changes nothing: the old index, its pairs and its
 * corrector serve on. After 2, a restart serves the new index and ignores
 * what belongs to the old one whatever else reached the disk: log records
 * before S, a pair snapshot taken before S, checkpoints before V
 * (engine_recover.c). A refit that trained on the old index is discarded
 * at its publish (the version moved).
 */
#include "engine_impl.h"

#include <inttypes.h>
#include <stdio.h>

#include "reloader.h"

static size_t host_dim(void *ctx)
{
	struct fresh_engine *e = ctx;
	return e->shape.d_in;
}

static void host_log(void *ctx, enum fresh_log_level level, const char *msg)
{
	fresh_engine_logf(ctx, level, "%s", msg);
}

/* Steps 1-3 of the header, under publish_mu. */
static enum fresh_status switch_locked(struct fresh_engine *e,
				       struct fresh_index *idx,
				       const char *path, const char *ids_path,
				       uint64_t *version,
				       struct fresh_error *err)
{
	struct fresh_corrector *c = NULL;
	struct fresh_model *cur, *m;
	struct fresh_index *old;
	struct fresh_error cerr;
	enum fresh_status st;
	uint64_t seq;

	st = fresh_engine_new_corrector(e, &c, err);
	if (st != FRESH_OK)
		return st;
	cur = fresh_engine_acquire(e);
	*version = fresh_model_version(cur) + 1;
	fresh_model_release(cur);
	fresh_corrector_set_version(c, *version);
	st = fresh_model_build(idx, c, e->refit_pool, NULL, NULL, e->data_dir,
			       &m, err);
	if (st != FRESH_OK) {
		fresh_corrector_free(c);
		return st;
	}
	/*
	 * Records from here on belong to the new index; one written before
	 * and still syncing belongs to the old (the CLEAR after it drops it
	 * live, recovery by its sequence).
	 */
	seq = fresh_wal_next_seq(e->wal);
	st = fresh_index_ref_write(e->data_dir, path, ids_path, seq, *version,
				   err);
	if (st != FRESH_OK) {
		uint64_t rs, rv;
		/* Renamed into place but not synced: it is what a restart
		 * reads, so the switch is made all the same. */
		fresh_index_ref_switch(e->data_dir, &rs, &rv);
		if (rs != seq || rv != *version) {
			fresh_model_release(m);
			return st;
		}
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "index reload: index.ref is in place but "
				  "its directory sync failed (%s); switching",
				  err->msg);
	}
	pthread_mutex_lock(&e->mu);
	e->switch_seq = seq;
	e->switch_version = *version;
	pthread_mutex_unlock(&e->mu);
	/* Committed: from here on nothing may fail. */
	if (fresh_engine_clear_pairs(e, &cerr) != FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "index reload: the log's CLEAR record could "
				  "not be written (%s); the pairs are cleared "
				  "in memory and the switch record covers a "
				  "restart",
				  cerr.msg);
		pthread_mutex_lock(&e->mu);
		fresh_pairs_clear(e->pairs);
		fresh_qbuf_clear(e->qbuf);
		pthread_mutex_unlock(&e->mu);
	}
	pthread_mutex_lock(&e->mu);
	old = e->index;
	fresh_index_retain(idx);
	e->index = idx;
	pthread_mutex_unlock(&e->mu);
	fresh_refitter_request_compact(e->refitter); /* drop the old pairs */
	fresh_index_release(old);
	/* A staged checkpoint describes the old index (and holds it). */
	fresh_engine_set_staged_locked(e, NULL);
	fresh_engine_publish_anyway_locked(e, m, *version);
	return FRESH_OK;
}

static enum fresh_status host_install(void *ctx, struct fresh_index *idx,
				      const char *path, const char *ids_path,
				      uint64_t *version,
				      struct fresh_error *err)
{
	struct fresh_engine *e = ctx;
	enum fresh_status st;

	pthread_mutex_lock(&e->publish_mu);
	st = switch_locked(e, idx, path, ids_path, version, err);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

enum fresh_status fresh_engine_start_reloader(struct fresh_engine *e)
{
	struct fresh_reloader_config cfg = {
		.data_dir = e->data_dir,
		.store = e->cfg.store,
	};
	struct fresh_reload_host host = {
		.ctx = e,
		.dim = host_dim,
		.install = host_install,
		.log = host_log,
	};

	return fresh_reloader_new(&cfg, &host, &e->reloader);
}

enum fresh_status fresh_engine_reload(struct fresh_engine *e, const char *path,
				      const char *ids_path,
				      struct fresh_error *err)
{
	return fresh_reloader_start(e->reloader, path, ids_path, err);
}

void fresh_engine_reload_status(struct fresh_engine *e,
				struct fresh_reload_status *out)
{
	fresh_reloader_status(e->reloader, out);
}
