/*
 * engine.h - freshd's engine: a stale index, the published model, the
 * fresh-pair buffer, the update log, checkpoints and the background
 * refitter, behind one object. The server is a thin HTTP layer over it.
 *
 * Guarantees: searches take only the swap's pointer lock (never wait for
 * updates or refits); an update is acknowledged only once durable and
 * applied; a refit publishes only a corrector that beat the published one
 * on held-out pairs, checkpointed before it is published; versions grow
 * by one per publish.
 */
#ifndef FRESH_ENGINE_H
#define FRESH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pool.h"
#include "record.h"
#include "status.h"
#include "trainer.h"
#include "wal.h"

struct fresh_engine_config {
	const char *data_dir;
	enum fresh_corrector_kind kind;
	enum fresh_activation act;
	enum fresh_store store; /* what reloads load: f32 or bf16 rows */
	size_t hidden;		/* mlp width (256) */
	size_t fresh_dim;	/* 0: the index's dimension */
	struct fresh_refit_config refit;
	size_t max_pairs;	  /* buffer capacity (262144) */
	size_t max_queries;	  /* update queries kept for logits (8192) */
	size_t refit_every_pairs; /* automatic refit after M new pairs; 0 off */
	double refit_every_seconds; /* ... or T seconds with new pairs; 0 off */
	int64_t max_step_lag; /* drop pairs this far behind; 0 keeps all */
	enum fresh_sync sync;
	unsigned sync_interval_ms;
	bool salvage_log;
	bool simulate_power_loss; /* tests only: see fresh_wal_config */
	size_t keep_checkpoints;  /* 3 */
	size_t search_threads;	  /* 0: one per CPU */
	int refit_nice;		  /* priority of refit threads (10) */
	uint64_t compact_bytes;	  /* compact the log past this size */
	fresh_log_fn log;
	void *log_ctx;
};

struct fresh_engine_config fresh_engine_config_default(void);

struct fresh_engine;

/*
 * Opens the engine on idx (the engine takes over the caller's reference)
 * and the data dir: loads the pair snapshot and the newest valid
 * checkpoint, replays the log, publishes the recovered model and starts
 * the refitter. Refuses (with err) a data dir whose corrector has another
 * shape than cfg asks for. Caller owns *out; close with fresh_engine_close.
 */
enum fresh_status fresh_engine_open(const struct fresh_engine_config *cfg,
				    struct fresh_index *idx,
				    struct fresh_engine **out,
				    struct fresh_error *err);
/*
 * Abandons a running refit and stops the refitter; callers waiting for a
 * refit get FRESH_CANCELLED. Everything else keeps working. Idempotent.
 */
void fresh_engine_stop_refits(struct fresh_engine *e);
/* Stops refits (as above), closes the log, frees. Accepts NULL. */
void fresh_engine_close(struct fresh_engine *e);

/* The current model (a new reference: fresh_model_release it). */
struct fresh_model *fresh_engine_acquire(struct fresh_engine *e);
/* The pool searches run on (one job at a time; callers serialize). */
struct fresh_pool *fresh_engine_search_pool(struct fresh_engine *e);
/*
 * Scores a batch of requests (batch.h) on the current model, acquired
 * once for all of them, on the search pool. One caller at a time (the
 * dispatcher). Returns the number of queries scored.
 */
size_t fresh_engine_score(struct fresh_engine *e,
			  struct fresh_request *const *reqs, size_t n);
/* Dimension of fresh vectors (queries for corrected scoring). */
size_t fresh_engine_fresh_dim(const struct fresh_engine *e);
/* Dimension of the stale index (queries for stale scoring); fixed. */
size_t fresh_engine_dim(struct fresh_engine *e);
/* Version of the published corrector. */
uint64_t fresh_engine_version(struct fresh_engine *e);

/* Facts of the published model, all from one acquisition. */
struct fresh_engine_info {
	size_t targets, dim, fresh_dim;
	uint64_t version, fingerprint;
	char source[4096]; /* the index's file (truncated if longer) */
	enum fresh_store store;
	size_t index_bytes;  /* the index in memory (rows, ids, bf16) */
	size_t mapped_bytes; /* bf16: the float32 rows (S, h(S)), in files */
	size_t extra_bytes;  /* corrected matrix, norms, fold, fresh rows */
	size_t staged_bytes; /* the same for a staged checkpoint's model */
	/* bf16: rows rescored in float32 since the start (all models). */
	unsigned long long rescored_rows;
};
void fresh_engine_info(struct fresh_engine *e, struct fresh_engine_info *out);

/*
 * The corrected vectors of ids[0..n), as scored (out: n x fresh_dim), and
 * the version of the model they come from. FRESH_NOT_FOUND with *missing
 * the position of the first unknown id; FRESH_NOT_READY when corrected
 * scoring is not possible yet.
 */
enum fresh_status fresh_engine_corrected(struct fresh_engine *e,
					 const uint64_t *ids, size_t n,
					 float *out, uint64_t *version,
					 size_t *missing);

/*
 * The vectors of ids[0..n) as the given scoring scores them (out: n x
 * width, width fresh_dim for corrected and dim for stale), from one
 * acquired model whose version goes to *version. found[i] is false for an
 * unknown id (its row of out is left as it was). FRESH_NOT_READY when
 * corrected scoring is not possible yet.
 */
enum fresh_status fresh_engine_vectors(struct fresh_engine *e,
				       enum fresh_scoring scoring,
				       const uint64_t *ids, size_t n,
				       float *out, bool *found,
				       uint64_t *version);

/*
 * The published corrector as a map of queries (fresh_model_query_map):
 * *w (d_out x d_in) and *b (d_out) allocated here (free()), with the
 * widths, the version and the corrector's kind. FRESH_CONFLICT when the
 * corrected score is not affine in the stale vector.
 */
struct fresh_query_map {
	float *w, *b;
	size_t d_out, d_in;
	uint64_t version;
	const char *kind;
	bool normalize;
};
enum fresh_status fresh_engine_query_map(struct fresh_engine *e,
					 struct fresh_query_map *out);

/*
 * Loads an index file (index.h's formats) for fresh_engine_open, with its
 * size; release one that was not handed to the engine with
 * fresh_engine_index_release.
 */
enum fresh_status fresh_engine_index_load(const char *path,
					  const char *ids_path,
					  enum fresh_store store,
					  struct fresh_index **out, size_t *n,
					  size_t *d, struct fresh_error *err);
/* Gives an index built in memory (the demo's) the store's bf16 copy. */
enum fresh_status fresh_engine_index_store(struct fresh_index *idx,
					   enum fresh_store store,
					   struct fresh_error *err);
void fresh_engine_index_release(struct fresh_index *idx);

struct fresh_update_ack {
	size_t accepted; /* pairs logged (all of the request's targets) */
	uint64_t seq;	 /* the log record */
	size_t buffered; /* targets with a pair held now */
};

/*
 * Logs and applies an update, all or nothing. FRESH_NOT_FOUND names an
 * unknown target id; FRESH_INVALID a bad shape or a query whose positive
 * is not among the targets; FRESH_IO when it could not be made durable.
 */
enum fresh_status fresh_engine_update(struct fresh_engine *e,
				      const struct fresh_update *u,
				      struct fresh_update_ack *ack,
				      struct fresh_error *err);
/* Empties the pair buffer, durably (a log record). */
enum fresh_status fresh_engine_clear_pairs(struct fresh_engine *e,
					   struct fresh_error *err);

/* The outcome of one refit attempt. */
struct fresh_refit_outcome {
	bool valid; /* false before any refit finished */
	struct fresh_refit_report report;
	uint64_t version;	  /* published version when accepted */
	uint64_t trained_through; /* newest log record the refit saw */
	double finished_at;	  /* unix time */
	double train_seconds;	  /* snapshot, closed form, gradient stage */
	double build_seconds;	  /* materializing what scoring needs */
	double publish_seconds;	  /* checkpoint and swap */
	enum fresh_status status; /* FRESH_OK unless the refit failed */
};

/*
 * Asks for a refit. Without wait, returns at once (one is queued or joins
 * the running one). With wait, returns the outcome of a refit that saw
 * every update acknowledged before the call (joining a running one that
 * did, else starting the next); FRESH_CANCELLED when shutting down.
 */
enum fresh_status fresh_engine_refit(struct fresh_engine *e, bool wait,
				     struct fresh_refit_outcome *out);
/*
 * As fresh_engine_refit, but publishes the buffer's fresh rows with the
 * serving network, without training (--serve-fresh-rows; POST
 * /v1/refit?rows_only=true).
 */
enum fresh_status fresh_engine_refit_rows(struct fresh_engine *e, bool wait,
					  struct fresh_refit_outcome *out);

/* Publishes the identity corrector (version + 1). */
enum fresh_status fresh_engine_reset(struct fresh_engine *e, uint64_t *version,
				     struct fresh_error *err);

enum fresh_refit_state {
	FRESH_REFIT_IDLE,
	FRESH_REFIT_TRAINING,
	FRESH_REFIT_MATERIALIZING,
};
const char *fresh_refit_state_name(enum fresh_refit_state s);

struct fresh_engine_status {
	uint64_t version;
	struct fresh_corrector_shape shape;
	bool normalize;
	size_t fresh_rows; /* targets the published model scores by a fresh row */
	enum fresh_refit_state state;
	double progress; /* 0..1 within the current state */
	size_t progress_done, progress_total; /* epochs, or rows */
	size_t pairs_buffered;
	uint64_t pairs_total;
	uint64_t last_seq; /* newest log record applied */
	bool have_holdout; /* the published corrector's, if known */
	struct fresh_holdout holdout;
	struct fresh_refit_outcome last; /* the last attempt */
	uint64_t refits_started, refits_accepted, refits_rejected,
		refits_failed;
	double refit_seconds_total;
	bool writable; /* the log accepts updates */
	uint64_t log_bytes;
	struct fresh_wal_stats wal;
};
void fresh_engine_status(struct fresh_engine *e,
			 struct fresh_engine_status *st);

/*
 * What the corrector does to one target: stale (d floats), corrected (as
 * scored, fresh_dim floats; *corrected_ok false when corrected scoring is
 * not ready) and the buffered fresh vector (fresh_dim floats) with its
 * step. FRESH_NOT_FOUND for an unknown id.
 */
struct fresh_target_view {
	bool corrected_ok, has_fresh, has_step;
	int64_t step;
	uint64_t version;
};
enum fresh_status fresh_engine_target(struct fresh_engine *e, uint64_t id,
				      float *stale, float *corrected,
				      float *fresh,
				      struct fresh_target_view *view);

/*
 * Index reload: load a re-embedded index in the background and swap it in
 * (API.md "Index reload"). path and ids_path (may be NULL) are resolved
 * against the data dir and must stay inside it. Returns at once:
 * FRESH_INVALID (err) for a path outside the data dir or missing,
 * FRESH_CONFLICT while another reload runs. On success the new index is
 * published with the identity corrector (version + 1), the pair buffer
 * and the log's pairs are cleared, and the choice is recorded in the data
 * dir so that a restart serves the reloaded index.
 */
enum fresh_reload_state {
	FRESH_RELOAD_NONE,
	FRESH_RELOAD_LOADING,
	FRESH_RELOAD_DONE,
	FRESH_RELOAD_FAILED,
};
struct fresh_reload_status {
	enum fresh_reload_state state;
	char path[4096];
	char error[512];
	double started_at, finished_at; /* unix time */
	uint64_t version;		/* published, when done */
};
enum fresh_status fresh_engine_reload(struct fresh_engine *e, const char *path,
				      const char *ids_path,
				      struct fresh_error *err);
void fresh_engine_reload_status(struct fresh_engine *e,
				struct fresh_reload_status *out);
const char *fresh_reload_state_name(enum fresh_reload_state s);

/*
 * Where a previous reload recorded the index to serve from data_dir:
 * FRESH_OK with the paths (ids_path empty when none), FRESH_NOT_FOUND when
 * none was recorded.
 */
enum fresh_status fresh_engine_recorded_index(const char *data_dir, char *path,
					      size_t cap, char *ids_path,
					      size_t ids_cap);

/* The current corrector as a checkpoint (malloc'ed; free()). */
enum fresh_status fresh_engine_checkpoint_get(struct fresh_engine *e,
					      void **buf, size_t *len,
					      uint64_t *version);
/*
 * Installs a checkpoint: FRESH_CHECKSUM/FRESH_FORMAT for a damaged one,
 * FRESH_CONFLICT for another shape, or an older version unless force.
 */
enum fresh_status fresh_engine_checkpoint_put(struct fresh_engine *e,
					      const void *buf, size_t len,
					      bool force, uint64_t *version,
					      struct fresh_error *err);

/*
 * A two-phase install, for a coordinator that must switch every shard at
 * once: stage checks the checkpoint as put does and builds its model
 * (h(S) for an mlp: the slow part) while the current one keeps serving,
 * replacing any checkpoint staged before; commit publishes the staged
 * model of that version (quick: its checkpoint is written and the model
 * swapped in). Commit is FRESH_NOT_FOUND when no checkpoint of that
 * version is staged, FRESH_CONFLICT when the index was reloaded since or
 * a newer version was published (unless staged with force). Unstage drops
 * it (true when there was one).
 */
enum fresh_status fresh_engine_checkpoint_stage(struct fresh_engine *e,
						const void *buf, size_t len,
						bool force, uint64_t *version,
						struct fresh_error *err);
enum fresh_status fresh_engine_checkpoint_commit(struct fresh_engine *e,
						 uint64_t version,
						 struct fresh_error *err);
bool fresh_engine_checkpoint_unstage(struct fresh_engine *e);

/*
 * Sharding (API.md --shards; shard.c). A shard's ids (a copy; free()) and
 * its index's fingerprint, from one acquired model.
 */
enum fresh_status fresh_engine_ids(struct fresh_engine *e, uint64_t **ids,
				   size_t *n, uint64_t *fingerprint);
/*
 * The buffered pairs with their stale rows, for a coordinator's refit
 * (malloc'ed; free()). The format, little-endian: "FRSHPRS1", u64 n,
 * d_in, d_out, the model's version; then n records of u64 id, i64 step,
 * u64 flags (1: has a step), d_in float32 stale, d_out float32 fresh.
 */
enum fresh_status fresh_engine_export_pairs(struct fresh_engine *e, void **buf,
					    size_t *len);
size_t fresh_engine_pairs_record(size_t d_in, size_t d_out);

/* Pairs gathered from shards (the coordinator's). */
struct fresh_shard_pairs {
	size_t n, cap, d_in, d_out;
	uint64_t *ids;
	int64_t *steps;
	bool *has_step;
	float *stale; /* n x d_in */
	float *fresh; /* n x d_out */
};
/* Appends an export to into; FRESH_FORMAT for a damaged one. */
enum fresh_status fresh_engine_pairs_import(const void *buf, size_t len,
					    struct fresh_shard_pairs *into,
					    struct fresh_error *err);
enum fresh_status fresh_engine_pairs_reserve(struct fresh_shard_pairs *p,
					     size_t n, size_t d_in,
					     size_t d_out);
void fresh_engine_pairs_free(struct fresh_shard_pairs *p);

/*
 * A coordinator's refit: trains on pairs (ids unique) a corrector of the
 * checkpoint current's shape, by the recipe of trainer.h, judged against
 * current on the held-out pairs. On FRESH_OK, rep says whether it was
 * accepted; if so *ckpt (malloc'ed; free()) is the new checkpoint, at
 * current's version + 1. Fewer than cfg->min_pairs pairs: not accepted,
 * with the reason.
 */
enum fresh_status fresh_engine_fit(const void *current, size_t current_len,
				   const struct fresh_shard_pairs *pairs,
				   const struct fresh_refit_config *cfg,
				   const atomic_bool *cancel, void **ckpt,
				   size_t *ckpt_len,
				   struct fresh_refit_report *rep,
				   struct fresh_error *err);
/* A checkpoint's version (0 for a damaged one). */
uint64_t fresh_engine_checkpoint_version(const void *buf, size_t len);

#endif
