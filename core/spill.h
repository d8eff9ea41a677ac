/*
 * spill.h - an unnamed file of float32 rows on disk, written once in
 * parallel and then mapped read-only: where an mlp corrector's h(S) lives
 * in float32 under --store bf16 (the scan reads its bf16 copy in memory,
 * the exact rescoring and the sampler read these rows, paged in from the
 * file). The file has no name (O_TMPFILE, or created and unlinked at
 * once), so nothing is left behind whatever way the process ends, and its
 * blocks are allocated at creation, so a full disk is an error at refit,
 * never a fault while a mapped row is read.
 */
#ifndef FRESH_SPILL_H
#define FRESH_SPILL_H

#include <stddef.h>

#include "status.h"

struct fresh_spill {
	int fd;	   /* -1 when closed */
	void *map; /* after fresh_spill_map, else NULL */
	size_t len;
};

/*
 * An unnamed file of len bytes in dir, its blocks allocated:
 * FRESH_NO_SPACE naming the bytes needed and free when the file system
 * has no room for them, FRESH_IO otherwise.
 */
enum fresh_status fresh_spill_create(const char *dir, size_t len,
				     struct fresh_spill *s,
				     struct fresh_error *err);
/*
 * Writes len bytes at off (within the file). Several threads may write
 * disjoint ranges at once. FRESH_NO_SPACE when the file system is full
 * (possible where blocks cannot be reserved ahead), else FRESH_IO.
 */
enum fresh_status fresh_spill_write(struct fresh_spill *s, const void *buf,
				    size_t len, size_t off);
/* Maps the whole file read-only (s->map). */
enum fresh_status fresh_spill_map(struct fresh_spill *s,
				  struct fresh_error *err);
/* Unmaps and closes (the file's blocks are then freed). Idempotent. */
void fresh_spill_close(struct fresh_spill *s);

#endif
