/*
 * engine_publish.c - publishing a model: every new version (an accepted
 * refit, a reset, an installed checkpoint, an index switch) goes through
 * here under publish_mu, so versions are assigned once each and each has
 * its checkpoint on disk before it is served.
 */
#include "checkpoint.h"
#include "engine_impl.h"

#include <inttypes.h>
#include <stdlib.h>

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

/*
 * Under publish_mu: whether a checkpoint of version want may replace the
 * current version have (FRESH_CONFLICT naming why not).
 */
static enum fresh_status check_version_locked(struct fresh_engine *e,
					      uint64_t want, uint64_t have,
					      bool force,
					      struct fresh_error *err)
{
	uint64_t sv;

	if (want < have && !force)
		return fresh_fail(err, FRESH_CONFLICT,
				  "checkpoint version %" PRIu64
				  " is older than the current %" PRIu64
				  " (add ?force=true to install it anyway)",
				  want, have);
	pthread_mutex_lock(&e->mu);
	sv = e->switch_version;
	pthread_mutex_unlock(&e->mu);
	if (want < sv)
		return fresh_fail(err, FRESH_CONFLICT,
				  "checkpoint version %" PRIu64
				  " was trained before the index reload that "
				  "started version %" PRIu64
				  "; it describes the old index",
				  want, sv);
	return FRESH_OK;
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

/*
 * Under publish_mu: checks a checkpoint against the engine and the current
 * version and builds its model (on refit_pool), without publishing it.
 */
static enum fresh_status build_checkpoint_locked(struct fresh_engine *e,
						 const void *buf, size_t len,
						 bool force,
						 struct fresh_model **out,
						 struct fresh_error *err)
{
	struct fresh_corrector *c;
	struct fresh_model *cur;
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
	cur = fresh_engine_acquire(e);
	have = fresh_model_version(cur);
	st = check_version_locked(e, want, have, force, err);
	if (st != FRESH_OK) {
		fresh_model_release(cur);
		fresh_corrector_free(c);
		return st;
	}
	/* The coordinator's rows-only publishes: cur's C, rows redone. */
	st = fresh_model_build_like(cur, e->index, c, e->refit_pool, NULL,
				    &e->stopping, e->data_dir, out, err);
	fresh_model_release(cur);
	if (st != FRESH_OK)
		fresh_corrector_free(c);
	return st;
}

/* Under publish_mu: publishes m (built by build_checkpoint_locked). */
static enum fresh_status install_locked(struct fresh_engine *e,
					struct fresh_model *m,
					uint64_t *version,
					struct fresh_error *err)
{
	struct fresh_model *cur = fresh_engine_acquire(e);
	uint64_t have = fresh_model_version(cur), want = fresh_model_version(m);
	enum fresh_status st;

	fresh_model_release(cur);
	if (want < have)
		drop_newer_checkpoints(e, want);
	st = fresh_engine_publish_locked(e, m, want, err);
	if (st == FRESH_OK) {
		*version = want;
		fresh_engine_logf(
			e, FRESH_LOG_INFO,
			"installed corrector checkpoint version %" PRIu64,
			want);
	}
	return st;
}

enum fresh_status fresh_engine_checkpoint_put(struct fresh_engine *e,
					      const void *buf, size_t len,
					      bool force, uint64_t *version,
					      struct fresh_error *err)
{
	struct fresh_model *m;
	enum fresh_status st;

	pthread_mutex_lock(&e->publish_mu);
	st = build_checkpoint_locked(e, buf, len, force, &m, err);
	if (st == FRESH_OK)
		st = install_locked(e, m, version, err);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

/* Under publish_mu: m (or NULL) becomes the staged model; the old goes. */
void fresh_engine_set_staged_locked(struct fresh_engine *e,
				    struct fresh_model *m)
{
	struct fresh_model *old = e->staged;

	e->staged = m;
	atomic_store(&e->staged_bytes, m ? fresh_model_extra_bytes(m) : 0);
	fresh_model_release(old);
}

enum fresh_status fresh_engine_checkpoint_stage(struct fresh_engine *e,
						const void *buf, size_t len,
						bool force, uint64_t *version,
						struct fresh_error *err)
{
	struct fresh_model *m;
	enum fresh_status st;

	pthread_mutex_lock(&e->publish_mu);
	/* The one staged before goes first: two need not fit at once. */
	fresh_engine_set_staged_locked(e, NULL);
	st = build_checkpoint_locked(e, buf, len, force, &m, err);
	if (st == FRESH_OK) {
		fresh_engine_set_staged_locked(e, m);
		e->staged_force = force;
		*version = fresh_model_version(m);
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "staged corrector checkpoint version %" PRIu64
				  " (served once committed)",
				  *version);
	}
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

enum fresh_status fresh_engine_checkpoint_commit(struct fresh_engine *e,
						 uint64_t version,
						 struct fresh_error *err)
{
	struct fresh_model *m, *cur;
	enum fresh_status st;

	pthread_mutex_lock(&e->publish_mu);
	m = e->staged;
	if (!m || fresh_model_version(m) != version) {
		if (m)
			st = fresh_fail(err, FRESH_NOT_FOUND,
					"the staged checkpoint is version "
					"%" PRIu64 ", not %" PRIu64,
					fresh_model_version(m), version);
		else
			st = fresh_fail(err, FRESH_NOT_FOUND,
					"no checkpoint is staged (to commit "
					"version %" PRIu64 ")",
					version);
		pthread_mutex_unlock(&e->publish_mu);
		return st;
	}
	e->staged = NULL; /* ours now: released or published below */
	atomic_store(&e->staged_bytes, 0);
	if (fresh_model_index(m) != e->index) {
		fresh_model_release(m);
		pthread_mutex_unlock(&e->publish_mu);
		return fresh_fail(err, FRESH_CONFLICT,
				  "the index was reloaded since checkpoint "
				  "version %" PRIu64 " was staged; stage it "
				  "again",
				  version);
	}
	cur = fresh_engine_acquire(e);
	st = check_version_locked(e, version, fresh_model_version(cur),
				  e->staged_force, err);
	fresh_model_release(cur);
	if (st == FRESH_OK)
		st = install_locked(e, m, &version, err);
	else
		fresh_model_release(m);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

bool fresh_engine_checkpoint_unstage(struct fresh_engine *e)
{
	bool had;

	pthread_mutex_lock(&e->publish_mu);
	had = e->staged != NULL;
	fresh_engine_set_staged_locked(e, NULL);
	pthread_mutex_unlock(&e->publish_mu);
	return had;
}
