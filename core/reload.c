/*
 * reload.c - hot index reload (see engine.h, fresh_engine_reload).
 *
 * Design: a reloader thread loads the new index with no lock held (the
 * old index keeps serving), then, under publish_mu:
 *   1. builds the new model (the identity corrector on the new index),
 *   2. writes DIR/index.ref naming the new index, the log sequence S the
 *      switch starts at and the version V of the identity corrector: the
 *      one commit point;
 *   3. clears the pairs (a CLEAR record; in memory even if it cannot be
 *      logged), swaps the index and publishes the model at V (its
 *      checkpoint written if the disk allows).
 * A failure or crash before 2 changes nothing: the old index, its pairs
 * and its corrector serve on. After 2, a restart serves the new index and
 * ignores what belongs to the old one whatever else reached the disk: log
 * records before S, a pair snapshot taken before S, checkpoints before V
 * (engine.c's recovery). A refit that trained on the old index is
 * discarded at its publish (the version moved). Threads: one reloader at a
 * time, joined before the next and on shutdown.
 */
#include "engine_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "datadir.h"
#include "fileio.h"
#include "npy.h"

#define REF_NAME "index.ref"

struct reload_args {
	struct fresh_engine *e;
	char path[PATH_MAX];
	char ids[PATH_MAX]; /* empty: none */
};

const char *fresh_reload_state_name(enum fresh_reload_state s)
{
	switch (s) {
	case FRESH_RELOAD_LOADING:
		return "loading";
	case FRESH_RELOAD_DONE:
		return "done";
	case FRESH_RELOAD_FAILED:
		return "failed";
	case FRESH_RELOAD_NONE:
		break;
	}
	return "none";
}

/* Resolves name against dir; it must exist and stay inside dir. */
static enum fresh_status resolve_under(const char *dir, const char *field,
				       const char *name, char *out,
				       struct fresh_error *err)
{
	char root[PATH_MAX], joined[PATH_MAX * 2];
	size_t n;

	if (!realpath(dir, root))
		return fresh_fail(err, FRESH_IO, "data dir %s: %s", dir,
				  strerror(errno));
	if (name[0] == '/')
		snprintf(joined, sizeof joined, "%s", name);
	else
		snprintf(joined, sizeof joined, "%s/%s", root, name);
	if (!realpath(joined, out))
		return fresh_fail(err, FRESH_INVALID, "%s: %s: %s", field, name,
				  strerror(errno));
	n = strlen(root);
	if (strncmp(out, root, n) != 0 || out[n] != '/')
		return fresh_fail(err, FRESH_INVALID,
				  "%s: %s is outside the data dir %s", field,
				  name, root);
	return FRESH_OK;
}

/*
 * The dimension a file announces (its header only), so that a reload of
 * another width is refused before anything loads. FRESH_OK with *d == 0
 * when the format is not recognised here (the loader will say why).
 */
static enum fresh_status probe_dim(const char *path, size_t *d,
				   struct fresh_error *err)
{
	unsigned char head[FRESH_NPY_MAX_HEADER + 12];
	struct fresh_npy_header h;
	size_t plen = strlen(path), n;
	FILE *f = fopen(path, "rb");

	*d = 0;
	if (!f)
		return fresh_fail(err, FRESH_INVALID, "path: %s: %s", path,
				  strerror(errno));
	n = fread(head, 1, sizeof head, f);
	fclose(f);
	if (n >= 6 && memcmp(head, "\x93NUMPY", 6) == 0) {
		if (fresh_npy_parse(head, n, &h, NULL) == FRESH_OK &&
		    h.ndim == 2)
			*d = h.shape[1];
	} else if (n >= 40 && memcmp(head, "FRESHIDX", 8) == 0) {
		*d = (size_t)fresh_get64(head + 32);
	} else if (n >= 4 && plen >= 6 && !strcmp(path + plen - 6, ".fvecs")) {
		int32_t v;
		memcpy(&v, head, 4);
		*d = v > 0 ? (size_t)v : 0;
	}
	return FRESH_OK;
}

static void set_state(struct fresh_engine *e, enum fresh_reload_state st,
		      const char *error, uint64_t version)
{
	pthread_mutex_lock(&e->mu);
	e->reload.state = st;
	snprintf(e->reload.error, sizeof e->reload.error, "%s",
		 error ? error : "");
	e->reload.finished_at = fresh_engine_walltime();
	e->reload.version = version;
	pthread_mutex_unlock(&e->mu);
}

static enum fresh_status write_ref(struct fresh_engine *e, const char *path,
				   const char *ids, uint64_t seq,
				   uint64_t version, struct fresh_error *err)
{
	struct fresh_atomic_file f;
	char file[4200], text[2 * PATH_MAX + 64];
	enum fresh_status st;
	int n;

	snprintf(file, sizeof file, "%s/%s", e->data_dir, REF_NAME);
	n = snprintf(text, sizeof text,
		     "%s\n%s\nswitch %" PRIu64 " %" PRIu64 "\n", path, ids, seq,
		     version);
	st = fresh_atomic_open(&f, file, err);
	if (st != FRESH_OK)
		return st;
	st = fresh_atomic_write(&f, text, (size_t)n, err);
	return fresh_atomic_finish(&f, st, err);
}

/* Steps 1-3 of the header, under publish_mu. */
static enum fresh_status switch_index(struct fresh_engine *e,
				      struct fresh_index *idx,
				      const struct reload_args *a,
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
	st = fresh_model_build(idx, c, e->refit_pool, NULL, NULL, &m, err);
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
	st = write_ref(e, a->path, a->ids, seq, *version, err);
	if (st != FRESH_OK) {
		uint64_t rs, rv;
		/* Renamed into place but not synced: it is what a restart
		 * reads, so the switch is made all the same. */
		fresh_reload_recorded_switch(e->data_dir, &rs, &rv);
		if (rs != seq || rv != *version) {
			fresh_model_release(m);
			return st;
		}
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "index reload: %s is in place but its "
				  "directory sync failed (%s); switching",
				  REF_NAME, err->msg);
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
	fresh_engine_publish_anyway_locked(e, m, *version);
	return FRESH_OK;
}

static void *reload_main(void *arg)
{
	struct reload_args *a = arg;
	struct fresh_engine *e = a->e;
	struct fresh_index *idx = NULL, *cur;
	struct fresh_error err;
	enum fresh_status st;
	uint64_t version = 0;

	err.msg[0] = '\0';
	fresh_engine_logf(e, FRESH_LOG_INFO, "index reload: loading %s",
			  a->path);
	st = fresh_index_load_store(a->path, a->ids[0] ? a->ids : NULL,
				    e->cfg.store, &idx, &err);
	if (st == FRESH_OK) {
		cur = fresh_engine_index(e);
		if (fresh_index_dim(idx) != fresh_index_dim(cur))
			st = fresh_fail(&err, FRESH_INVALID,
					"%s: dimension %zu, the served index "
					"has %zu",
					a->path, fresh_index_dim(idx),
					fresh_index_dim(cur));
		fresh_index_release(cur);
	}
	if (st == FRESH_OK) {
		pthread_mutex_lock(&e->publish_mu);
		st = switch_index(e, idx, a, &version, &err);
		pthread_mutex_unlock(&e->publish_mu);
	}
	if (st == FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "index reload: serving %s (%zu targets), "
				  "corrector reset to version %" PRIu64,
				  a->path, fresh_index_size(idx), version);
		set_state(e, FRESH_RELOAD_DONE, NULL, version);
	} else {
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "index reload failed, the old index serves "
				  "on: %s",
				  err.msg);
		set_state(e, FRESH_RELOAD_FAILED, err.msg, 0);
	}
	fresh_index_release(idx);
	free(a);
	return NULL;
}

enum fresh_status fresh_engine_reload(struct fresh_engine *e, const char *path,
				      const char *ids_path,
				      struct fresh_error *err)
{
	struct reload_args *a = calloc(1, sizeof *a);
	pthread_t old = 0;
	bool join = false;
	enum fresh_status st;

	if (!a)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	a->e = e;
	st = resolve_under(e->data_dir, "path", path, a->path, err);
	if (st == FRESH_OK && ids_path)
		st = resolve_under(e->data_dir, "ids_path", ids_path, a->ids,
				   err);
	if (st == FRESH_OK) {
		size_t d = 0;
		st = probe_dim(a->path, &d, err);
		if (st == FRESH_OK && d && d != e->shape.d_in)
			st = fresh_fail(
				err, FRESH_INVALID,
				"path: %s has dimension %zu, the served "
				"index %zu",
				path, d, e->shape.d_in);
	}
	if (st != FRESH_OK) {
		free(a);
		return st;
	}
	pthread_mutex_lock(&e->mu);
	if (e->reload.state == FRESH_RELOAD_LOADING || e->closing) {
		pthread_mutex_unlock(&e->mu);
		free(a);
		return fresh_fail(err, FRESH_CONFLICT,
				  "a reload of %s is already running",
				  e->reload.path);
	}
	if (e->reload_thread) {
		old = e->reloader;
		join = true;
	}
	e->reload.state = FRESH_RELOAD_LOADING;
	snprintf(e->reload.path, sizeof e->reload.path, "%s", a->path);
	e->reload.error[0] = '\0';
	e->reload.started_at = fresh_engine_walltime();
	e->reload.finished_at = 0;
	e->reload_thread = false;
	pthread_mutex_unlock(&e->mu);
	if (join)
		pthread_join(old, NULL);
	if (pthread_create(&e->reloader, NULL, reload_main, a) != 0) {
		free(a);
		set_state(e, FRESH_RELOAD_FAILED, "cannot start a thread", 0);
		return fresh_fail(err, FRESH_NOMEM, "cannot start a thread");
	}
	pthread_mutex_lock(&e->mu);
	e->reload_thread = true;
	pthread_mutex_unlock(&e->mu);
	return FRESH_OK;
}

void fresh_reload_join(struct fresh_engine *e)
{
	bool join;

	pthread_mutex_lock(&e->mu);
	join = e->reload_thread;
	e->reload_thread = false;
	pthread_mutex_unlock(&e->mu);
	if (join)
		pthread_join(e->reloader, NULL);
}

void fresh_engine_reload_status(struct fresh_engine *e,
				struct fresh_reload_status *out)
{
	pthread_mutex_lock(&e->mu);
	*out = e->reload;
	pthread_mutex_unlock(&e->mu);
}

void fresh_reload_recorded_switch(const char *data_dir, uint64_t *seq,
				  uint64_t *version)
{
	char file[4200], line[PATH_MAX + 2];
	FILE *f;

	*seq = *version = 0;
	snprintf(file, sizeof file, "%s/%s", data_dir, REF_NAME);
	f = fopen(file, "r");
	if (!f)
		return;
	for (int i = 0; i < 3 && fgets(line, sizeof line, f); i++)
		if (i == 2 && sscanf(line, "switch %" SCNu64 " %" SCNu64, seq,
				     version) != 2)
			*seq = *version = 0;
	fclose(f);
}

enum fresh_status fresh_engine_recorded_index(const char *data_dir, char *path,
					      size_t cap, char *ids_path,
					      size_t ids_cap)
{
	char file[4200];
	FILE *f;
	enum fresh_status st = FRESH_OK;

	snprintf(file, sizeof file, "%s/%s", data_dir, REF_NAME);
	f = fopen(file, "r");
	if (!f)
		return errno == ENOENT ? FRESH_NOT_FOUND : FRESH_IO;
	if (!fgets(path, (int)cap, f) || !fgets(ids_path, (int)ids_cap, f))
		st = FRESH_FORMAT;
	fclose(f);
	if (st == FRESH_OK) {
		path[strcspn(path, "\n")] = '\0';
		ids_path[strcspn(ids_path, "\n")] = '\0';
		if (!path[0])
			st = FRESH_FORMAT;
	}
	return st;
}
