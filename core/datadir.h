/*
 * datadir.h - a data directory: its names, its lock, and the pair
 * snapshot file. Its files:
 *
 *   DIR/LOCK                      flock'ed by the one daemon using DIR;
 *   DIR/pairs.snap                the pair buffer at some log sequence,
 *                                 so the log before it can be dropped;
 *   DIR/queries.snap              the update queries, likewise (queries.h);
 *   DIR/index.ref                 the index a reload switched to
 *                                 (reloader.h);
 *   DIR/checkpoints/ckpt-<v>.bin  the correctors published (checkpoint.h);
 *   DIR/wal/                      the update log (wal.h).
 *
 * Every name is built here, once, at open; no caller builds a path into a
 * buffer of its own. All writes are atomic replacements (fileio.h).
 */
#ifndef FRESH_DATADIR_H
#define FRESH_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#include "pairs.h"
#include "status.h"

/* An open data directory. The names are fixed at open; read freely. */
struct fresh_datadir {
	char *root;	   /* as given */
	char *pairs;	   /* DIR/pairs.snap */
	char *queries;	   /* DIR/queries.snap */
	char *wal;	   /* DIR/wal */
	char *checkpoints; /* DIR/checkpoints */
	int lock_fd;
};

/*
 * Creates DIR, DIR/checkpoints and DIR/wal as needed and takes DIR/LOCK:
 * FRESH_CONFLICT (naming the pid that holds it) when another process
 * uses DIR, FRESH_INVALID when DIR's name is too long for its files.
 */
enum fresh_status fresh_datadir_open(const char *root,
				     struct fresh_datadir **out,
				     struct fresh_error *err);
/* Releases the lock and frees. Accepts NULL. */
void fresh_datadir_close(struct fresh_datadir *dd);

/* dir/name, malloc'ed; NULL when out of memory. */
char *fresh_path_join(const char *dir, const char *name);

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
