/*
 * shard.h - within the core: the encoding of a shard's pairs for its
 * coordinator (GET /v1/pairs; shard.c). The rest of the shard protocol
 * is in engine.h.
 */
#ifndef FRESH_SHARD_H
#define FRESH_SHARD_H

#include <stddef.h>

#include "model.h"
#include "pairs.h"
#include "status.h"

/*
 * The pairs of snap whose ids m's index holds, each with its stale row,
 * encoded for fresh_engine_pairs_import, stamped with m's version.
 * *buf is malloc'ed (free()).
 */
enum fresh_status fresh_shard_encode_pairs(
	const struct fresh_pairs_snapshot *snap, struct fresh_model *m,
	void **buf, size_t *len);

#endif
