/*
 * reloader.c - hot index reload (see reloader.h).
 *
 * Design: fresh_reloader_start checks what it can without loading (the
 * paths resolve inside the data dir, the header's width) and starts a
 * thread that loads the index with no lock held, checks its width and
 * hands it to the host's install, which makes the switch (engine_reload.c:
 * the identity corrector on the new index, DIR/index.ref written as the
 * one commit point, the pairs cleared, the model published). A failure
 * before the install's commit changes nothing: the old index serves on.
 * Threads: one reloader thread at a time, joined before the next starts
 * and at stop.
 */
#include "reloader.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bytes.h"
#include "clock.h"
#include "datadir.h"
#include "fileio.h"
#include "npy.h"

#define REF_NAME "index.ref"

struct fresh_reloader {
	struct fresh_reload_host host;
	char *data_dir;
	enum fresh_store store;

	/* Held over a whole start and a whole stop, so that a stop never
	 * misses a thread a start is creating. Before mu. */
	pthread_mutex_t start_mu;
	pthread_mutex_t mu;
	struct fresh_reload_status status; /* (mu) */
	bool stopped;			   /* (mu) */
	bool joinable; /* (mu): thread started, not joined */
	pthread_t thread;
	char path[PATH_MAX],
		ids[PATH_MAX]; /* the running reload's ("": none) */
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

static void logf_(struct fresh_reloader *r, enum fresh_log_level level,
		  const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void logf_(struct fresh_reloader *r, enum fresh_log_level level,
		  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fresh_vlogf(r->host.log, r->host.ctx, level, fmt, ap);
	va_end(ap);
}

/* Resolves name against dir; it must exist and stay inside dir. */
static enum fresh_status resolve_under(const char *dir, const char *field,
				       const char *name, char *out,
				       struct fresh_error *err)
{
	char root[PATH_MAX], *joined;
	size_t n;

	if (!realpath(dir, root))
		return fresh_fail(err, FRESH_IO, "data dir %s: %s", dir,
				  strerror(errno));
	joined = name[0] == '/' ? strdup(name) : fresh_path_join(root, name);
	if (!joined)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	if (!realpath(joined, out)) {
		int e = errno;
		free(joined);
		return fresh_fail(err, FRESH_INVALID, "%s: %s: %s", field, name,
				  strerror(e));
	}
	free(joined);
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

static void finish(struct fresh_reloader *r, enum fresh_reload_state st,
		   const char *error, uint64_t version)
{
	pthread_mutex_lock(&r->mu);
	r->status.state = st;
	snprintf(r->status.error, sizeof r->status.error, "%s",
		 error ? error : "");
	r->status.finished_at = fresh_walltime();
	r->status.version = version;
	pthread_mutex_unlock(&r->mu);
}

static void *reload_main(void *arg)
{
	struct fresh_reloader *r = arg;
	struct fresh_index *idx = NULL;
	struct fresh_error err;
	enum fresh_status st;
	uint64_t version = 0;
	size_t want = r->host.dim(r->host.ctx);

	err.msg[0] = '\0';
	logf_(r, FRESH_LOG_INFO, "index reload: loading %s", r->path);
	st = fresh_index_load_store(r->path, r->ids[0] ? r->ids : NULL,
				    r->store, &idx, &err);
	if (st == FRESH_OK && fresh_index_dim(idx) != want)
		st = fresh_fail(&err, FRESH_INVALID,
				"%s: dimension %zu, the served index has %zu",
				r->path, fresh_index_dim(idx), want);
	if (st == FRESH_OK)
		st = r->host.install(r->host.ctx, idx, r->path, r->ids,
				     &version, &err);
	if (st == FRESH_OK) {
		logf_(r, FRESH_LOG_INFO,
		      "index reload: serving %s (%zu targets), corrector "
		      "reset to version %" PRIu64,
		      r->path, fresh_index_size(idx), version);
		finish(r, FRESH_RELOAD_DONE, NULL, version);
	} else {
		logf_(r, FRESH_LOG_WARN,
		      "index reload failed, the old index serves on: %s",
		      err.msg);
		finish(r, FRESH_RELOAD_FAILED, err.msg, 0);
	}
	fresh_index_release(idx);
	return NULL;
}

enum fresh_status fresh_reloader_new(const struct fresh_reloader_config *cfg,
				     const struct fresh_reload_host *host,
				     struct fresh_reloader **out)
{
	struct fresh_reloader *r = calloc(1, sizeof *r);

	if (!r)
		return FRESH_NOMEM;
	r->data_dir = strdup(cfg->data_dir);
	if (!r->data_dir) {
		free(r);
		return FRESH_NOMEM;
	}
	r->host = *host;
	r->store = cfg->store;
	pthread_mutex_init(&r->start_mu, NULL);
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return FRESH_OK;
}

/* Joins the last reload's thread, if one is left to join. */
static void join_last(struct fresh_reloader *r)
{
	bool join;

	pthread_mutex_lock(&r->mu);
	join = r->joinable;
	r->joinable = false;
	pthread_mutex_unlock(&r->mu);
	if (join)
		pthread_join(r->thread, NULL);
}

enum fresh_status fresh_reloader_start(struct fresh_reloader *r,
				       const char *path, const char *ids_path,
				       struct fresh_error *err)
{
	char full[PATH_MAX], ids[PATH_MAX] = "";
	size_t d = 0, want = r->host.dim(r->host.ctx);
	enum fresh_status st;

	st = resolve_under(r->data_dir, "path", path, full, err);
	if (st == FRESH_OK && ids_path)
		st = resolve_under(r->data_dir, "ids_path", ids_path, ids, err);
	if (st == FRESH_OK)
		st = probe_dim(full, &d, err);
	if (st == FRESH_OK && d && d != want)
		st = fresh_fail(err, FRESH_INVALID,
				"path: %s has dimension %zu, the served index "
				"%zu",
				path, d, want);
	if (st != FRESH_OK)
		return st;

	pthread_mutex_lock(&r->start_mu);
	pthread_mutex_lock(&r->mu);
	if (r->status.state == FRESH_RELOAD_LOADING || r->stopped) {
		pthread_mutex_unlock(&r->mu);
		pthread_mutex_unlock(&r->start_mu);
		return fresh_fail(err, FRESH_CONFLICT,
				  r->stopped ? "the engine is shutting down"
					     : "a reload of %s is already "
					       "running",
				  r->status.path);
	}
	r->status.state = FRESH_RELOAD_LOADING;
	snprintf(r->status.path, sizeof r->status.path, "%s", full);
	r->status.error[0] = '\0';
	r->status.started_at = fresh_walltime();
	r->status.finished_at = 0;
	r->status.version = 0;
	pthread_mutex_unlock(&r->mu);

	/* The last reload finished (its state was not LOADING): reap its
	 * thread before its fields are reused. */
	join_last(r);
	memcpy(r->path, full, sizeof full);
	memcpy(r->ids, ids, sizeof ids);
	if (pthread_create(&r->thread, NULL, reload_main, r) != 0) {
		finish(r, FRESH_RELOAD_FAILED, "cannot start a thread", 0);
		pthread_mutex_unlock(&r->start_mu);
		return fresh_fail(err, FRESH_NOMEM, "cannot start a thread");
	}
	pthread_mutex_lock(&r->mu);
	r->joinable = true;
	pthread_mutex_unlock(&r->mu);
	pthread_mutex_unlock(&r->start_mu);
	return FRESH_OK;
}

void fresh_reloader_status(struct fresh_reloader *r,
			   struct fresh_reload_status *out)
{
	pthread_mutex_lock(&r->mu);
	*out = r->status;
	pthread_mutex_unlock(&r->mu);
}

void fresh_reloader_stop(struct fresh_reloader *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->start_mu);
	pthread_mutex_lock(&r->mu);
	r->stopped = true;
	pthread_mutex_unlock(&r->mu);
	join_last(r);
	pthread_mutex_unlock(&r->start_mu);
}

void fresh_reloader_free(struct fresh_reloader *r)
{
	if (!r)
		return;
	fresh_reloader_stop(r);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->start_mu);
	free(r->data_dir);
	free(r);
}

enum fresh_status fresh_index_ref_write(const char *data_dir, const char *path,
					const char *ids_path, uint64_t seq,
					uint64_t version,
					struct fresh_error *err)
{
	struct fresh_atomic_file f;
	char *file = fresh_path_join(data_dir, REF_NAME), *text = NULL;
	enum fresh_status st;
	int n;

	n = file ? asprintf(&text, "%s\n%s\nswitch %" PRIu64 " %" PRIu64 "\n",
			    path, ids_path, seq, version)
		 : -1;
	if (n < 0) {
		free(file);
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	}
	st = fresh_atomic_open(&f, file, err);
	if (st == FRESH_OK) {
		st = fresh_atomic_write(&f, text, (size_t)n, err);
		st = fresh_atomic_finish(&f, st, err);
	}
	free(text);
	free(file);
	return st;
}

/* The record's three lines (ids may be empty); FRESH_NOT_FOUND if none. */
static enum fresh_status read_ref(const char *data_dir, char *path, size_t cap,
				  char *ids, size_t ids_cap, uint64_t *seq,
				  uint64_t *version)
{
	char *file = fresh_path_join(data_dir, REF_NAME), line[128];
	enum fresh_status st = FRESH_OK;
	FILE *f;

	*seq = *version = 0;
	if (!file)
		return FRESH_NOMEM;
	f = fopen(file, "r");
	free(file);
	if (!f)
		return errno == ENOENT ? FRESH_NOT_FOUND : FRESH_IO;
	if (!fgets(path, (int)cap, f) || !fgets(ids, (int)ids_cap, f))
		st = FRESH_FORMAT;
	else if (!fgets(line, sizeof line, f) ||
		 sscanf(line, "switch %" SCNu64 " %" SCNu64, seq, version) != 2)
		*seq = *version = 0; /* written before switches were */
	fclose(f);
	if (st == FRESH_OK) {
		path[strcspn(path, "\n")] = '\0';
		ids[strcspn(ids, "\n")] = '\0';
		if (!path[0])
			st = FRESH_FORMAT;
	}
	return st;
}

void fresh_index_ref_switch(const char *data_dir, uint64_t *seq,
			    uint64_t *version)
{
	char path[PATH_MAX + 2], ids[PATH_MAX + 2];

	if (read_ref(data_dir, path, sizeof path, ids, sizeof ids, seq,
		     version) != FRESH_OK)
		*seq = *version = 0;
}

enum fresh_status fresh_engine_recorded_index(const char *data_dir, char *path,
					      size_t cap, char *ids_path,
					      size_t ids_cap)
{
	uint64_t seq, version;

	return read_ref(data_dir, path, cap, ids_path, ids_cap, &seq, &version);
}
