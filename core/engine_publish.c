/*
 * engine_publish.c - publishing a model: every new version (an accepted
 * refit, a reset, an installed checkpoint, an index switch) goes through
 * here under publish_mu, so versions are assigned once each and each has
 * its checkpoint on disk before it is served.
 */
#include "checkpoint.h"
#include "engine_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "hash.h"
#include "mem.h"

enum fresh_status fresh_engine_publish_locked(struct fresh_engine *e,
					      struct fresh_model *m,
					      uint64_t version,
					      struct fresh_error *err)
{
	enum fresh_status st;

	fresh_model_stamp(
		m, version,
		fresh_corrector_trained_through(fresh_model_corrector(m)));
	st = fresh_checkpoint_save(e->data_dir, version,
				   fresh_model_corrector(m), err);
	if (st != FRESH_OK) {
		fresh_model_release(m);
		return st;
	}
	fresh_swap_publish(&e->swap, m);
	fresh_checkpoint_prune(e->data_dir, e->cfg.keep_checkpoints
						    ? e->cfg.keep_checkpoints
						    : 1);
	return FRESH_OK;
}

void fresh_engine_publish_anyway_locked(struct fresh_engine *e,
					struct fresh_model *m, uint64_t version)
{
	struct fresh_error err;

	fresh_model_stamp(
		m, version,
		fresh_corrector_trained_through(fresh_model_corrector(m)));
	if (fresh_checkpoint_save(e->data_dir, version,
				  fresh_model_corrector(m), &err) != FRESH_OK)
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "corrector version %" PRIu64
				  " is published without its checkpoint (a "
				  "restart recovers it from the index switch "
				  "record): %s",
				  version, err.msg);
	fresh_swap_publish(&e->swap, m);
	fresh_checkpoint_prune(e->data_dir, e->cfg.keep_checkpoints
						    ? e->cfg.keep_checkpoints
						    : 1);
}

enum fresh_status fresh_engine_reset(struct fresh_engine *e, uint64_t *version,
				     struct fresh_error *err)
{
	struct fresh_corrector *c;
	struct fresh_model *cur, *m;
	enum fresh_status st;

	st = fresh_engine_new_corrector(e, &c, err);
	if (st != FRESH_OK)
		return st;
	pthread_mutex_lock(&e->publish_mu);
	cur = fresh_engine_acquire(e);
	*version = fresh_model_version(cur) + 1;
	fresh_corrector_set_trained_through(
		c, fresh_corrector_trained_through(fresh_model_corrector(cur)));
	fresh_model_release(cur);
	st = fresh_model_build(e->index, c, e->refit_pool, NULL, NULL,
			       e->data_dir, &m, err);
	if (st != FRESH_OK)
		fresh_corrector_free(c);
	else
		st = fresh_engine_publish_locked(e, m, *version, err);
	if (st == FRESH_OK)
		fresh_engine_logf(
			e, FRESH_LOG_INFO,
			"corrector reset to the identity, version %" PRIu64,
			*version);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

enum fresh_status fresh_engine_checkpoint_get(struct fresh_engine *e,
					      void **buf, size_t *len,
					      uint64_t *version)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	enum fresh_status st =
		fresh_corrector_serialize(fresh_model_corrector(m), buf, len);

	*version = fresh_model_version(m);
	fresh_model_release(m);
	return st;
}

/* Removes checkpoints newer than version (after a forced older install). */
static void drop_newer_checkpoints(struct fresh_engine *e, uint64_t version)
{
	uint64_t *v;
	size_t n;

	if (fresh_checkpoint_list(e->data_dir, &v, &n) != FRESH_OK)
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i] > version)
			fresh_checkpoint_remove(e->data_dir, v[i]);
	free(v);
}

enum fresh_status fresh_engine_checkpoint_put(struct fresh_engine *e,
					      const void *buf, size_t len,
					      bool force, uint64_t *version,
					      struct fresh_error *err)
{
	struct fresh_corrector *c;
	struct fresh_model *cur, *m;
	uint64_t have, want;
	enum fresh_status st = fresh_corrector_deserialize(buf, len, &c, err);

	if (st != FRESH_OK)
		return st;
	if (!fresh_corrector_shape_equal(fresh_corrector_shape(c), &e->shape)) {
		char have_s[128], want_s[128];
		fresh_corrector_shape_describe(fresh_corrector_shape(c), have_s,
					       sizeof have_s);
		fresh_corrector_shape_describe(&e->shape, want_s,
					       sizeof want_s);
		fresh_corrector_free(c);
		return fresh_fail(err, FRESH_CONFLICT,
				  "checkpoint is a corrector %s; this daemon "
				  "serves %s",
				  have_s, want_s);
	}
	want = fresh_corrector_version(c);
	pthread_mutex_lock(&e->publish_mu);
	cur = fresh_engine_acquire(e);
	have = fresh_model_version(cur);
	fresh_model_release(cur);
	if (want < have && !force) {
		pthread_mutex_unlock(&e->publish_mu);
		fresh_corrector_free(c);
		return fresh_fail(err, FRESH_CONFLICT,
				  "checkpoint version %" PRIu64
				  " is older than the current %" PRIu64
				  " (add ?force=true to install it anyway)",
				  want, have);
	}
	pthread_mutex_lock(&e->mu);
	if (want < e->switch_version) {
		uint64_t sv = e->switch_version;
		pthread_mutex_unlock(&e->mu);
		pthread_mutex_unlock(&e->publish_mu);
		fresh_corrector_free(c);
		return fresh_fail(err, FRESH_CONFLICT,
				  "checkpoint version %" PRIu64
				  " was trained before the index reload that "
				  "started version %" PRIu64
				  "; it describes the old index",
				  want, sv);
	}
	pthread_mutex_unlock(&e->mu);
	st = fresh_model_build(e->index, c, e->refit_pool, NULL, NULL,
			       e->data_dir, &m, err);
	if (st != FRESH_OK) {
		fresh_corrector_free(c);
	} else {
		if (want < have)
			drop_newer_checkpoints(e, want);
		st = fresh_engine_publish_locked(e, m, want, err);
	}
	if (st == FRESH_OK) {
		*version = want;
		fresh_engine_logf(
			e, FRESH_LOG_INFO,
			"installed corrector checkpoint version %" PRIu64,
			want);
	}
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}
