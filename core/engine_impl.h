/*
 * engine_impl.h - the engine's state, shared by engine.c (open, close,
 * state), engine_recover.c, engine_updates.c, engine_publish.c,
 * engine_refit.c (the refitter's host) and engine_reload.c (the
 * reloader's). Not part of the core's interface: the refitter and the
 * reloader themselves (refitter.c, reloader.c) do not see it.
 *
 * Locks, in the order they may nest:
 *   wal.mu (inside fresh_wal_*)  ->  mu
 *   publish_mu  ->  swap.mu (inside fresh_swap_*)
 *   publish_mu  ->  mu
 * mu guards the pair buffer and every field marked (mu); publish_mu
 * serializes publishing (refit, reset, checkpoint install) so versions are
 * assigned once each. Searches take only swap.mu. The refitter's own
 * lock is never held across a call back into the engine, so the engine
 * may call the refitter under any of its locks.
 */
#ifndef FRESH_ENGINE_IMPL_H
#define FRESH_ENGINE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "datadir.h"
#include "engine.h"
#include "pairs.h"
#include "refitter.h"
#include "reloader.h"
#include "queries.h"
#include "swap.h"
#include "wal.h"

struct fresh_engine {
	struct fresh_engine_config cfg;
	struct fresh_datadir *dd; /* its names and lock (datadir.h) */
	const char *data_dir;	  /* dd->root */
	struct fresh_corrector_shape shape;
	/* The index models are built on: written under publish_mu and mu,
	 * read under either. */
	struct fresh_index *index;

	struct fresh_swap swap;
	struct fresh_pool *search_pool, *refit_pool;
	struct fresh_wal *wal;

	pthread_mutex_t publish_mu;
	pthread_mutex_t mu;
	struct fresh_pairs *pairs;	   /* (mu) */
	struct fresh_queries_buf *qbuf;	   /* (mu) */
	uint64_t applied_seq, pairs_total; /* (mu) */

	/*
	 * The background refit and compaction (refitter.h), set under mu
	 * once open has replayed the log (read freely after open returns);
	 * pairs applied before that are counted in replayed_pairs and
	 * handed to it when it starts.
	 */
	struct fresh_refitter *refitter;
	uint64_t replayed_pairs;	 /* (mu) */
	struct fresh_reloader *reloader; /* set at open, before any thread */

	/*
	 * The last index switch recorded in DIR/index.ref (0, 0: none): log
	 * records before switch_seq and checkpoints before switch_version
	 * belong to the index it replaced. Read from the file at open (before
	 * any thread), set by a reload's switch under mu.
	 */
	uint64_t switch_seq, switch_version;

	/*
	 * A checkpoint's model built but not yet published (the first phase
	 * of a two-phase install: fresh_engine_checkpoint_stage / _commit),
	 * with whether it may be older than the current. (publish_mu)
	 */
	struct fresh_model *staged;
	bool staged_force;
	atomic_size_t staged_bytes; /* its extra bytes, read without a lock */
	/* Set when refits stop (shutdown): a checkpoint's build stops too. */
	atomic_bool stopping;
};

void fresh_engine_logf(struct fresh_engine *e, enum fresh_log_level level,
		       const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A corrector of the engine's shape with all parameters zero. */
enum fresh_status fresh_engine_new_corrector(struct fresh_engine *e,
					     struct fresh_corrector **out,
					     struct fresh_error *err);

/*
 * Under publish_mu: gives m (built on e->index) the next version, writes
 * its checkpoint, publishes it and prunes old checkpoints. On failure m is
 * released and nothing is published.
 */
enum fresh_status fresh_engine_publish_locked(struct fresh_engine *e,
					      struct fresh_model *m,
					      uint64_t version,
					      struct fresh_error *err);
/*
 * The same for a model that must be published whatever the disk says (a
 * switch already made durable another way): a checkpoint that cannot be
 * written is logged, and m is published all the same.
 */
void fresh_engine_publish_anyway_locked(struct fresh_engine *e,
					struct fresh_model *m,
					uint64_t version);

/* engine_publish.c, under publish_mu: m (or NULL) is staged, the old goes. */
void fresh_engine_set_staged_locked(struct fresh_engine *e,
				    struct fresh_model *m);

/* The current index, retained (release it). */
struct fresh_index *fresh_engine_index(struct fresh_engine *e);

/*
 * engine_updates.c: the log's apply callback (ctx is the engine): replay
 * and live updates take this path.
 */
void fresh_engine_apply_record(void *ctx, uint64_t seq, const void *payload,
			       size_t len);

/*
 * engine_recover.c: loads the newest pair snapshot into the buffer;
 * *through is the last log sequence it covers.
 */
enum fresh_status fresh_engine_recover_pairs(struct fresh_engine *e,
					     uint64_t *through,
					     struct fresh_error *err);
/*
 * engine_recover.c: the corrector to serve at open: the newest checkpoint
 * of the current index that loads and has the engine's shape, else a new
 * one (identity start).
 */
enum fresh_status fresh_engine_recover_corrector(struct fresh_engine *e,
						 struct fresh_corrector **out,
						 struct fresh_error *err);

/* engine_reload.c: creates e->reloader with the engine as its host. */
enum fresh_status fresh_engine_start_reloader(struct fresh_engine *e);

/* engine_refit.c: starts e->refitter with the engine as its host. */
enum fresh_status fresh_engine_start_refitter(struct fresh_engine *e);

#endif
