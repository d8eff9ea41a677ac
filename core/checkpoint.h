/*
 * checkpoint.h - a published corrector on disk: its file format, and the
 * checkpoint files of a data dir (DIR/checkpoints/ckpt-<v>.bin, newest
 * kept). Which one a daemon recovers at open is engine_recover.c's choice.
 */
#ifndef FRESH_CHECKPOINT_H
#define FRESH_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "corrector.h"
#include "status.h"

/*
 * Checkpoints. The format: magic "FRSHCKPT", format version, kind,
 * activation, flags, d_in, d_out, hidden, version, trained-through
 * sequence, parameter count, the parameters (float32 LE), the held-out
 * block {u32 flags (1: present, 2: stale defined), u32 zero, u64 pairs,
 * 4 x f64: stale MSE, corrected MSE, stale and corrected relative error;
 * all zero when absent}, CRC-32C of all that precedes it. Every byte is
 * meaningful: a checkpoint re-serializes to itself. fresh_corrector_serialize allocates *buf (free()).
 * Format 2 adds fresh rows after the parameters (checkpoint.c). A
 * checkpoint is at most 4 GiB: serialize refuses more (FRESH_TOO_LARGE).
 */
bool fresh_checkpoint_fits(const struct fresh_corrector_shape *shape,
			   size_t fresh_rows);

enum fresh_status fresh_corrector_serialize(const struct fresh_corrector *c,
					    void **buf, size_t *len);
enum fresh_status fresh_corrector_deserialize(const void *buf, size_t len,
					      struct fresh_corrector **out,
					      struct fresh_error *err);
enum fresh_status fresh_corrector_save(const struct fresh_corrector *c,
				       const char *path,
				       struct fresh_error *err);
enum fresh_status fresh_corrector_load(const char *path,
				       struct fresh_corrector **out,
				       struct fresh_error *err);

/*
 * Where the checkpoints of data dir DIR are: DIR/checkpoints/ckpt-<20-digit
 * version>.bin (buf empty when cap is too small). The functions below
 * take DIR and a version and build the name themselves.
 */
void fresh_checkpoint_path(const char *dir, uint64_t version, char *buf,
			   size_t cap);
/*
 * Versions of the checkpoints present, newest first. *versions is
 * malloc'ed (free()); *n may be 0.
 */
enum fresh_status fresh_checkpoint_list(const char *dir, uint64_t **versions,
					size_t *n);
/* Removes all but the newest keep checkpoints. */
void fresh_checkpoint_prune(const char *dir, size_t keep);
/* c written as the checkpoint of version (an atomic replacement). */
enum fresh_status fresh_checkpoint_save(const char *dir, uint64_t version,
					const struct fresh_corrector *c,
					struct fresh_error *err);
/* The checkpoint of version; err names its file when it does not load. */
enum fresh_status fresh_checkpoint_load(const char *dir, uint64_t version,
					struct fresh_corrector **out,
					struct fresh_error *err);
/* Removes the checkpoint of version, if present. */
void fresh_checkpoint_remove(const char *dir, uint64_t version);

#endif
