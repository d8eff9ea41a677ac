/*
 * datadir.h - the files of a data directory besides the update log:
 *
 *   DIR/pairs.snap                the pair buffer at some log sequence,
 *                                 so the log before it can be dropped;
 *   DIR/checkpoints/ckpt-<v>.bin  the correctors published (checkpoint.h);
 *   DIR/wal/                      the update log (wal.h).
 *
 * All writes are atomic replacements (fileio.h).
 */
#ifndef FRESH_DATADIR_H
#define FRESH_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "pairs.h"
#include "status.h"

struct fresh_pairs_file {
	uint64_t through_seq; /* every log record <= this is reflected */
	uint64_t total;	      /* pairs ever accepted in this data dir */
	uint64_t fingerprint; /* of the index the pairs belong to */
};

/*
 * Writes snap (in arrival order) with meta to path. Layout: magic
 * "FRSHPAIR", u32 format, u32 reserved, u64 through_seq, u64 total, u64
 * fingerprint, u64 dim, u64 count, then count x {u64 id, i64 step, u64 seq,
 * u64 has_step, dim x float32}, then CRC-32C of everything before.
 */
enum fresh_status fresh_pairs_file_save(const char *path,
					const struct fresh_pairs_snapshot *snap,
					const struct fresh_pairs_file *meta,
					struct fresh_error *err);

/*
 * Loads path into the (empty) buffer p, whose dim must match. A missing
 * file is FRESH_NOT_FOUND (a new data dir); a damaged one FRESH_CHECKSUM
 * or FRESH_FORMAT with err naming it.
 */
enum fresh_status fresh_pairs_file_load(const char *path, struct fresh_pairs *p,
					struct fresh_pairs_file *meta,
					struct fresh_error *err);

#endif
