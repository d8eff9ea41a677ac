/*
 * reloader.h - hot index reload (engine.h, fresh_engine_reload) for an
 * engine it knows only through a host: a thread loads the new index with
 * no lock held, while the old one serves, and hands it to the host to
 * switch to; the status of the last reload; and DIR/index.ref, the record
 * of a switch that a restart reads. The engine owns one (engine_reload.c
 * is its host); a test can drive one alone (tests/unit/test_reloader.c).
 *
 * Locks: the reloader's mutex guards only its own state and is never held
 * while it calls the host, so the host may call back into it at any time.
 * One reload runs at a time; a stopped reloader starts none.
 */
#ifndef FRESH_RELOADER_H
#define FRESH_RELOADER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "index.h"

struct fresh_reloader;

/* What the reloader needs from the engine; ctx is passed back. */
struct fresh_reload_host {
	void *ctx;
	/* The width of the served index: a reload must keep it. */
	size_t (*dim)(void *ctx);
	/*
	 * Makes idx (retain it to keep it) the served index, path and
	 * ids_path ("" for none) the record a restart reads. FRESH_OK once
	 * switched, with *version the corrector version it published; on
	 * an error nothing changed and the old index serves on.
	 */
	enum fresh_status (*install)(void *ctx, struct fresh_index *idx,
				     const char *path, const char *ids_path,
				     uint64_t *version,
				     struct fresh_error *err);
	void (*log)(void *ctx, enum fresh_log_level level, const char *msg);
};

struct fresh_reloader_config {
	const char *data_dir;	/* paths are resolved inside it (copied) */
	enum fresh_store store; /* the rows a reload loads */
};

/* The host must outlive the reloader. */
enum fresh_status fresh_reloader_new(const struct fresh_reloader_config *cfg,
				     const struct fresh_reload_host *host,
				     struct fresh_reloader **out);
/*
 * Checks path and ids_path (may be NULL) up front (inside the data dir,
 * present, of the host's width when the header tells) and starts the
 * load: FRESH_INVALID naming the field, FRESH_CONFLICT while another
 * reload runs or after stop, else FRESH_OK at once.
 */
enum fresh_status fresh_reloader_start(struct fresh_reloader *r,
				       const char *path, const char *ids_path,
				       struct fresh_error *err);
void fresh_reloader_status(struct fresh_reloader *r,
			   struct fresh_reload_status *out);
/* Refuses further reloads and joins a running one. Idempotent. */
void fresh_reloader_stop(struct fresh_reloader *r);
/* Stops (if needed) and frees. Accepts NULL. */
void fresh_reloader_free(struct fresh_reloader *r);

/*
 * DIR/index.ref: three lines, the index path, the ids path (may be
 * empty) and "switch S V": log records before sequence S and checkpoints
 * before version V belong to the index the switch replaced. Written as an
 * atomic replacement: the one commit point of a switch.
 */
enum fresh_status fresh_index_ref_write(const char *data_dir, const char *path,
					const char *ids_path, uint64_t seq,
					uint64_t version,
					struct fresh_error *err);
/* The switch the record names (*seq, *version zero when none). */
void fresh_index_ref_switch(const char *data_dir, uint64_t *seq,
			    uint64_t *version);

#endif
