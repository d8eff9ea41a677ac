/*
 * refitter.h - the background worker that refits the corrector, and
 * compacts the update log, for an engine it knows only through a host:
 * a few callbacks (snapshot the buffers, the published model, publish a
 * new one, compact, log). The engine owns one (engine.c); a test can
 * drive one alone with a host of its own (tests/unit/test_refitter.c).
 *
 * Locks: the refitter's mutex guards only its own state, and is never held
 * while it calls the host, so the host may call into the refitter (e.g.
 * fresh_refitter_pairs_arrived from under its own locks) at any time.
 */
#ifndef FRESH_REFITTER_H
#define FRESH_REFITTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "model.h"
#include "pairs.h"
#include "pool.h"
#include "queries.h"
#include "trainer.h"

struct fresh_refitter;

/* What the refitter needs from the engine it works for; ctx is passed
 * back to every call. */
struct fresh_refit_host {
	void *ctx;
	/*
	 * Copies the pair buffer into *snap (and, when with_groups, the
	 * update queries into *groups) for a refit; *through is the newest
	 * log record the copy reflects. Both are freed by the refitter.
	 */
	enum fresh_status (*snapshot)(void *ctx, bool with_groups,
				      struct fresh_pairs_snapshot *snap,
				      struct fresh_qgroups *groups,
				      uint64_t *through);
	/* The published model, retained. */
	struct fresh_model *(*acquire)(void *ctx);
	/*
	 * Publishes m (takes it) as version base + 1, unless another version
	 * was published since base: then m is released, *superseded_by is
	 * that version and the status is FRESH_OK.
	 */
	enum fresh_status (*publish)(void *ctx, struct fresh_model *m,
				     uint64_t base, uint64_t *superseded_by,
				     struct fresh_error *err);
	/* Snapshots the buffers to disk and drops the log they cover. */
	void (*compact)(void *ctx);
	void (*log)(void *ctx, enum fresh_log_level level, const char *msg);
};

struct fresh_refitter_config {
	struct fresh_refit_config refit; /* the recipe (trainer.h) */
	size_t every_pairs;	 /* automatic refit after M new pairs; 0 off */
	double every_seconds;	 /* ... or T seconds after the first new pair */
	struct fresh_pool *pool; /* where models are built (low priority) */
	const char *spill_dir;	 /* h(S) in float32 under bf16 (model.c) */
};

/* Starts the worker thread. The host must outlive the refitter. */
enum fresh_status fresh_refitter_start(const struct fresh_refitter_config *cfg,
				       const struct fresh_refit_host *host,
				       struct fresh_refitter **out);
/*
 * Cancels a refit in progress, wakes every waiter (FRESH_CANCELLED) and
 * joins the worker. Idempotent; the refitter still answers status.
 */
void fresh_refitter_stop(struct fresh_refitter *r);
/* Stops (if needed) and frees. Accepts NULL. */
void fresh_refitter_free(struct fresh_refitter *r);

/* n new pairs were buffered (the automatic policy counts them). */
void fresh_refitter_pairs_arrived(struct fresh_refitter *r, size_t n);
/* Asks for a log compaction (runs between refits). */
void fresh_refitter_request_compact(struct fresh_refitter *r);
/*
 * Asks for a refit that reflects every log record through seq. Without
 * wait, returns at once (one is queued, or the running one qualifies).
 * With wait, returns that refit's outcome; FRESH_CANCELLED if stopped
 * first.
 */
enum fresh_status fresh_refitter_request(struct fresh_refitter *r, uint64_t seq,
					 bool wait,
					 struct fresh_refit_outcome *out);

/*
 * As fresh_refitter_request, for a publish of the buffer's fresh rows with
 * the serving network and no training (refit config rows_only); a running
 * or queued refit that trains also serves it.
 */
enum fresh_status fresh_refitter_request_rows(struct fresh_refitter *r,
					      uint64_t seq, bool wait,
					      struct fresh_refit_outcome *out);

struct fresh_refitter_status {
	enum fresh_refit_state state;
	double progress;		      /* 0..1 within the state */
	size_t progress_done, progress_total; /* epochs, or rows */
	struct fresh_refit_outcome last;      /* the last attempt */
	uint64_t started, accepted, rejected, failed;
	double seconds_total;
};
void fresh_refitter_status(struct fresh_refitter *r,
			   struct fresh_refitter_status *st);

#endif
