/*
 * engine.c - opening a data dir, updates, state for the API, publishes
 * from the API (reset, checkpoint install). The background refit lives in
 * refitter.c; the locks are described in engine_impl.h.
 *
 * Design: recovery rebuilds the pair buffer from the newest pair snapshot
 * plus the log after it, and the model from the newest checkpoint that
 * loads (a damaged one is skipped with a warning). An update is checked
 * against the index before it is logged, so the log holds only updates
 * that were acknowledged, and replay applies them exactly as the live
 * path did (fresh_wal applies records in order after they are durable).
 */
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

double fresh_engine_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double fresh_engine_walltime(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void fresh_engine_logf(struct fresh_engine *e, enum fresh_log_level level,
		       const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	if (!e->cfg.log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	e->cfg.log(e->cfg.log_ctx, level, msg);
}

enum fresh_status fresh_engine_new_corrector(struct fresh_engine *e,
					     struct fresh_corrector **out,
					     struct fresh_error *err)
{
	enum fresh_status st = fresh_corrector_create(&e->shape, out, err);

	/* --normalize-output on holds from the start; auto waits for pairs. */
	if (st == FRESH_OK && e->shape.kind != FRESH_CORRECTOR_NONE)
		fresh_corrector_set_normalize(
			*out, e->cfg.refit.normalize == FRESH_NORMALIZE_ON);
	return st;
}

/* The log's apply callback: replay and live updates take this path. */
static void apply_record(void *ctx, uint64_t seq, const void *payload,
			 size_t len)
{
	struct fresh_engine *e = ctx;
	enum fresh_record_type type;
	struct fresh_update u;
	size_t dropped = 0;

	if (fresh_record_decode(payload, len, &type, &u) != FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_ERROR,
				  "update log record %" PRIu64
				  " does not decode; skipped",
				  seq);
		return;
	}
	pthread_mutex_lock(&e->mu);
	if (seq < e->switch_seq) {
		/* Written for the index a recorded switch replaced. */
		e->applied_seq = seq;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	if (type == FRESH_RECORD_CLEAR) {
		fresh_pairs_clear(e->pairs);
		fresh_qbuf_clear(e->qbuf);
	} else if (type == FRESH_RECORD_EXPIRE) {
		fresh_pairs_expire(e->pairs, u.step);
	} else if (u.dim == e->shape.d_out) {
		if (fresh_qbuf_add(e->qbuf, &u, seq) != FRESH_OK)
			dropped += u.n_queries;
		for (size_t i = 0; i < u.n_targets; i++) {
			size_t row;
			bool kept;
			if (!fresh_index_find(e->index, u.ids[i], &row)) {
				dropped++;
				continue;
			}
			if (fresh_pairs_put(e->pairs, u.ids[i],
					    u.vectors + i * u.dim, u.has_step,
					    u.step, seq, &kept) != FRESH_OK)
				dropped++;
		}
		e->pairs_total += u.n_targets;
		/* The refitter sleeps without a deadline while no pair is new:
		 * wake it on the first one (its timer starts) and at M. */
		if (e->pairs_since_refit == 0)
			e->first_new_pair = fresh_engine_now();
		if ((e->pairs_since_refit == 0 && e->cfg.refit_every_seconds > 0) ||
		    (e->cfg.refit_every_pairs &&
		     e->pairs_since_refit + u.n_targets >=
			     e->cfg.refit_every_pairs))
			pthread_cond_signal(&e->work_cv);
		e->pairs_since_refit += u.n_targets;
	} else {
		dropped = u.n_targets;
	}
	e->applied_seq = seq;
	pthread_mutex_unlock(&e->mu);
	if (dropped)
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "update log record %" PRIu64
				  ": %zu pairs not buffered (unknown ids or no "
				  "memory)",
				  seq, dropped);
}

static bool shapes_equal(const struct fresh_corrector_shape *a,
			 const struct fresh_corrector_shape *b)
{
	return a->kind == b->kind && a->act == b->act && a->d_in == b->d_in &&
	       a->d_out == b->d_out && a->hidden == b->hidden;
}

static void describe_shape(const struct fresh_corrector_shape *s, char *buf,
			   size_t cap)
{
	snprintf(buf, cap, "%s %zu->%zu hidden %zu (%s)",
		 fresh_corrector_kind_name(s->kind), s->d_in, s->d_out,
		 s->hidden, fresh_activation_name(s->act));
}

/* The newest checkpoint that loads, or a new identity corrector. */
static enum fresh_status recover_corrector(struct fresh_engine *e,
					   struct fresh_corrector **out,
					   struct fresh_error *err)
{
	uint64_t *versions;
	size_t n;
	enum fresh_status st = fresh_checkpoint_list(e->data_dir, &versions, &n);

	*out = NULL;
	if (st != FRESH_OK)
		return fresh_fail(err, st, "%s/checkpoints: cannot list",
				  e->data_dir);
	for (size_t i = 0; i < n && !*out; i++) {
		char path[4200];
		struct fresh_error lerr;
		struct fresh_corrector *c;

		if (versions[i] < e->switch_version)
			continue; /* trained on the index a switch replaced */
		fresh_checkpoint_path(e->data_dir, versions[i], path,
				      sizeof path);
		if (fresh_corrector_load(path, &c, &lerr) != FRESH_OK) {
			fresh_engine_logf(e, FRESH_LOG_WARN,
					  "skipping checkpoint: %s", lerr.msg);
			continue;
		}
		if (!shapes_equal(fresh_corrector_shape(c), &e->shape)) {
			char have[128], want[128];
			describe_shape(fresh_corrector_shape(c), have,
				       sizeof have);
			describe_shape(&e->shape, want, sizeof want);
			fresh_corrector_free(c);
			free(versions);
			return fresh_fail(err, FRESH_CONFLICT,
					  "%s holds a corrector %s, this run "
					  "asks for %s; use another --data-dir",
					  path, have, want);
		}
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "recovered corrector version %" PRIu64
				  " from %s",
				  fresh_corrector_version(c), path);
		*out = c;
	}
	free(versions);
	if (*out)
		return FRESH_OK;
	st = fresh_engine_new_corrector(e, out, err);
	if (st == FRESH_OK && e->switch_version)
		fresh_corrector_set_version(*out, e->switch_version);
	return st;
}

static enum fresh_status make_dirs(const char *dir, struct fresh_error *err)
{
	char sub[4200];
	const char *subs[] = {"", "/checkpoints", "/wal"};

	for (size_t i = 0; i < 3; i++) {
		snprintf(sub, sizeof sub, "%s%s", dir, subs[i]);
		if (mkdir(sub, 0755) != 0 && errno != EEXIST)
			return fresh_fail(err, FRESH_IO, "%s: %s", sub,
					  strerror(errno));
	}
	return FRESH_OK;
}

/*
 * One process per data dir: two daemons appending to one log would
 * interleave records. The lock dies with the process, so a crash never
 * leaves it held.
 */
static enum fresh_status lock_data_dir(struct fresh_engine *e,
				       struct fresh_error *err)
{
	char path[4200], pid[32];
	int fd, n;

	snprintf(path, sizeof path, "%s/LOCK", e->data_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		n = (int)pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		return fresh_fail(err, FRESH_CONFLICT,
				  "data dir %s is in use by another freshd "
				  "(pid %s)",
				  e->data_dir, pid[0] ? pid : "unknown");
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* Only informational; the lock itself holds. */
	}
	e->lock_fd = fd;
	return FRESH_OK;
}

static bool id_in_index(void *arg, uint64_t id)
{
	size_t row;
	return fresh_index_find(arg, id, &row);
}

static enum fresh_status recover_pairs(struct fresh_engine *e,
				       uint64_t *through,
				       struct fresh_error *err)
{
	char path[4200];
	struct fresh_pairs_file meta;
	enum fresh_status st;

	*through = 0;
	snprintf(path, sizeof path, "%s/pairs.snap", e->data_dir);
	st = fresh_pairs_file_load(path, e->pairs, &meta, err);
	if (st == FRESH_NOT_FOUND)
		return FRESH_OK;
	if (st != FRESH_OK)
		return st;
	*through = meta.through_seq;
	e->pairs_total = meta.total;
	e->applied_seq = meta.through_seq;
	if (meta.through_seq < e->switch_seq) {
		/* Taken before a recorded index switch: none of it applies. */
		fresh_pairs_clear(e->pairs);
		return FRESH_OK;
	}
	/* Queries were snapshotted first; keep those the pairs cover. */
	snprintf(path, sizeof path, "%s/queries.snap", e->data_dir);
	st = fresh_qbuf_load(e->qbuf, path, meta.through_seq, err);
	if (st != FRESH_OK && st != FRESH_NOT_FOUND)
		return st;
	if (meta.fingerprint != fresh_index_fingerprint(e->index)) {
		size_t gone = fresh_pairs_filter(e->pairs, id_in_index, e->index);
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "%s was taken on another index (fingerprint "
				  "%016" PRIx64 "); %zu pairs of unknown ids "
				  "dropped",
				  path, meta.fingerprint, gone);
	}
	return FRESH_OK;
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
	enum fresh_status st;
	uint64_t through;
	char wal_dir[4200];

	if (!e) {
		fresh_index_release(idx);
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	}
	e->lock_fd = -1;
	e->cfg = *cfg;
	e->index = idx;
	snprintf(e->data_dir, sizeof e->data_dir, "%s", cfg->data_dir);
	e->cfg.data_dir = e->data_dir;
	e->shape.kind = cfg->kind;
	e->shape.act = cfg->act;
	e->shape.d_in = fresh_index_dim(idx);
	e->shape.d_out = cfg->fresh_dim ? cfg->fresh_dim : e->shape.d_in;
	e->shape.hidden = cfg->kind == FRESH_CORRECTOR_MLP ? cfg->hidden : 0;
	pthread_mutex_init(&e->mu, NULL);
	pthread_mutex_init(&e->publish_mu, NULL);
	pthread_cond_init(&e->work_cv, NULL);
	pthread_cond_init(&e->done_cv, NULL);
	fresh_swap_init(&e->swap, NULL);
	atomic_init(&e->cancel, false);
	atomic_init(&e->train_prog.done, 0);
	atomic_init(&e->train_prog.total, 0);
	atomic_init(&e->build_prog.done, 0);
	atomic_init(&e->build_prog.total, 0);

	st = fresh_corrector_shape_check(&e->shape, err);
	if (st == FRESH_OK && strlen(cfg->data_dir) > 3900)
		st = fresh_fail(err, FRESH_INVALID, "data dir path too long");
	if (st == FRESH_OK)
		st = make_dirs(e->data_dir, err);
	if (st == FRESH_OK)
		st = lock_data_dir(e, err);
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
		fresh_reload_recorded_switch(e->data_dir, &e->switch_seq,
					     &e->switch_version);
		st = recover_pairs(e, &through, err);
	}
	if (st != FRESH_OK)
		goto fail;

	snprintf(wal_dir, sizeof wal_dir, "%s/wal", e->data_dir);
	memset(&wcfg, 0, sizeof wcfg);
	wcfg.dir = wal_dir;
	wcfg.sync = cfg->sync;
	wcfg.interval_ms = cfg->sync_interval_ms;
	wcfg.salvage = cfg->salvage_log;
	wcfg.simulate_writeback = cfg->simulate_power_loss;
	st = fresh_wal_open(&wcfg, through, apply_record, e, &e->wal, &rec,
			    err);
	if (st != FRESH_OK)
		goto fail;
	if (rec.note[0])
		fresh_engine_logf(e, FRESH_LOG_WARN, "update log: %s", rec.note);
	fresh_engine_logf(e, FRESH_LOG_INFO,
			  "update log: %zu records replayed from %zu segments; "
			  "%zu pairs buffered, %" PRIu64 " accepted in all",
			  rec.replayed, rec.segments, fresh_pairs_count(e->pairs),
			  e->pairs_total);

	st = recover_corrector(e, &corr, err);
	if (st != FRESH_OK)
		goto fail;
	st = fresh_model_build(idx, corr, e->search_pool, &e->build_prog, NULL,
			       &model, err);
	if (st != FRESH_OK) {
		fresh_corrector_free(corr);
		goto fail;
	}
	fresh_swap_publish(&e->swap, model);
	st = fresh_refitter_start(e);
	if (st != FRESH_OK) {
		st = fresh_fail(err, st, "cannot start the refit thread");
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
	fresh_refitter_stop(e);
	fresh_reload_join(e);
}

/* Also undoes a partly done fresh_engine_open: every part accepts NULL. */
void fresh_engine_close(struct fresh_engine *e)
{
	if (!e)
		return;
	fresh_engine_stop_refits(e);
	fresh_wal_close(e->wal);
	fresh_swap_destroy(&e->swap);
	fresh_pairs_free(e->pairs);
	fresh_qbuf_free(e->qbuf);
	fresh_pool_free(e->search_pool);
	fresh_pool_free(e->refit_pool);
	fresh_index_release(e->index);
	pthread_cond_destroy(&e->work_cv);
	pthread_cond_destroy(&e->done_cv);
	pthread_mutex_destroy(&e->mu);
	pthread_mutex_destroy(&e->publish_mu);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
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

/* Finds a positive among the targets; ids small enough for a scan. */
static bool among(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
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

static enum fresh_status check_update(struct fresh_engine *e,
				      const struct fresh_index *idx,
				      const struct fresh_update *u,
				      struct fresh_error *err)
{
	size_t row;

	if (u->n_targets == 0)
		return fresh_fail(err, FRESH_INVALID,
				  "targets: at least one is needed");
	if (u->dim != e->shape.d_out)
		return fresh_fail(err, FRESH_INVALID,
				  "targets[0].vector: %zu numbers, expected %zu",
				  u->dim, e->shape.d_out);
	if (u->n_targets > UINT32_MAX || u->n_queries > UINT32_MAX)
		return fresh_fail(err, FRESH_INVALID, "too many targets");
	for (size_t i = 0; i < u->n_targets; i++) {
		if (!fresh_index_find(idx, u->ids[i], &row))
			return fresh_fail(err, FRESH_NOT_FOUND,
					  "targets[%zu].id: unknown target id "
					  "%" PRIu64,
					  i, u->ids[i]);
		for (size_t c = 0; c < u->dim; c++)
			if (!isfinite(u->vectors[i * u->dim + c]))
				return fresh_fail(err, FRESH_INVALID,
						  "targets[%zu].vector[%zu]: "
						  "not a finite number",
						  i, c);
	}
	for (size_t q = 0; q < u->n_queries; q++) {
		/* Sort-free: requests hold at most a few thousand targets. */
		if (!among(u->ids, u->n_targets, u->positives[q]))
			return fresh_fail(err, FRESH_INVALID,
					  "queries[%zu].positive: %" PRIu64
					  " is not among this update's targets",
					  q, u->positives[q]);
		for (size_t c = 0; c < u->dim; c++)
			if (!isfinite(u->queries[q * u->dim + c]))
				return fresh_fail(err, FRESH_INVALID,
						  "queries[%zu].vector[%zu]: "
						  "not a finite number",
						  q, c);
	}
	return FRESH_OK;
}

static void maybe_compact(struct fresh_engine *e)
{
	if (e->cfg.compact_bytes &&
	    fresh_wal_bytes(e->wal) > e->cfg.compact_bytes) {
		pthread_mutex_lock(&e->mu);
		e->compact_requested = true;
		pthread_cond_signal(&e->work_cv);
		pthread_mutex_unlock(&e->mu);
	}
}

enum fresh_status fresh_engine_update(struct fresh_engine *e,
				      const struct fresh_update *u,
				      struct fresh_update_ack *ack,
				      struct fresh_error *err)
{
	struct fresh_index *idx = fresh_engine_index(e);
	size_t size;
	void *rec;
	enum fresh_status st = check_update(e, idx, u, err);

	fresh_index_release(idx);
	if (st != FRESH_OK)
		return st;
	size = fresh_record_size(u);
	if (size == 0)
		return fresh_fail(err, FRESH_TOO_LARGE, "update too large");
	rec = malloc(size);
	if (!rec)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	fresh_record_encode(u, rec);
	st = fresh_wal_append(e->wal, rec, size, &ack->seq, err);
	free(rec);
	if (st != FRESH_OK)
		return st;
	ack->accepted = u->n_targets;
	pthread_mutex_lock(&e->mu);
	ack->buffered = fresh_pairs_count(e->pairs);
	pthread_mutex_unlock(&e->mu);
	maybe_compact(e);
	return FRESH_OK;
}

enum fresh_status fresh_engine_clear_pairs(struct fresh_engine *e,
					   struct fresh_error *err)
{
	unsigned char rec[FRESH_RECORD_HEADER];
	uint64_t seq;

	fresh_record_encode_clear(rec);
	return fresh_wal_append(e->wal, rec, sizeof rec, &seq, err);
}

enum fresh_status fresh_engine_publish_locked(struct fresh_engine *e,
					      struct fresh_model *m,
					      uint64_t version,
					      struct fresh_error *err)
{
	char path[4200];
	enum fresh_status st;

	fresh_model_stamp(m, version,
			  fresh_corrector_trained_through(
				  fresh_model_corrector(m)));
	fresh_checkpoint_path(e->data_dir, version, path, sizeof path);
	st = fresh_corrector_save(fresh_model_corrector(m), path, err);
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
					struct fresh_model *m,
					uint64_t version)
{
	char path[4200];
	struct fresh_error err;

	fresh_model_stamp(m, version,
			  fresh_corrector_trained_through(
				  fresh_model_corrector(m)));
	fresh_checkpoint_path(e->data_dir, version, path, sizeof path);
	if (fresh_corrector_save(fresh_model_corrector(m), path, &err) !=
	    FRESH_OK)
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
	st = fresh_model_build(e->index, c, e->refit_pool, NULL, NULL, &m, err);
	if (st != FRESH_OK)
		fresh_corrector_free(c);
	else
		st = fresh_engine_publish_locked(e, m, *version, err);
	if (st == FRESH_OK)
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "corrector reset to the identity, version %" PRIu64,
				  *version);
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}

void fresh_engine_status(struct fresh_engine *e, struct fresh_engine_status *st)
{
	struct fresh_model *m = fresh_engine_acquire(e);

	memset(st, 0, sizeof *st);
	st->version = fresh_model_version(m);
	st->shape = e->shape;
	st->normalize = fresh_corrector_normalize(fresh_model_corrector(m));
	st->have_holdout =
		fresh_corrector_holdout(fresh_model_corrector(m), &st->holdout);
	fresh_model_release(m);
	pthread_mutex_lock(&e->mu);
	st->state = e->state;
	if (e->state != FRESH_REFIT_IDLE) {
		const struct fresh_progress *p =
			e->state == FRESH_REFIT_TRAINING ? &e->train_prog
							 : &e->build_prog;
		st->progress = fresh_progress_fraction(p);
		st->progress_done = atomic_load(&p->done);
		st->progress_total = atomic_load(&p->total);
	}
	st->pairs_buffered = fresh_pairs_count(e->pairs);
	st->pairs_total = e->pairs_total;
	st->last_seq = e->applied_seq;
	st->last = e->last;
	st->refits_started = e->refits_started;
	st->refits_accepted = e->refits_accepted;
	st->refits_rejected = e->refits_rejected;
	st->refits_failed = e->refits_failed;
	st->refit_seconds_total = e->refit_seconds_total;
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
	char path[4200];

	if (fresh_checkpoint_list(e->data_dir, &v, &n) != FRESH_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		if (v[i] <= version)
			continue;
		fresh_checkpoint_path(e->data_dir, v[i], path, sizeof path);
		unlink(path);
	}
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
	if (!shapes_equal(fresh_corrector_shape(c), &e->shape)) {
		char have_s[128], want_s[128];
		describe_shape(fresh_corrector_shape(c), have_s, sizeof have_s);
		describe_shape(&e->shape, want_s, sizeof want_s);
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
	st = fresh_model_build(e->index, c, e->refit_pool, NULL, NULL, &m, err);
	if (st != FRESH_OK) {
		fresh_corrector_free(c);
	} else {
		if (want < have)
			drop_newer_checkpoints(e, want);
		st = fresh_engine_publish_locked(e, m, want, err);
	}
	if (st == FRESH_OK) {
		*version = want;
		fresh_engine_logf(e, FRESH_LOG_INFO,
				  "installed corrector checkpoint version %" PRIu64,
				  want);
	}
	pthread_mutex_unlock(&e->publish_mu);
	return st;
}
