/*
 * engine_shard.c - what a shard engine gives its coordinator: its ids
 * (fresh_engine_ids) and its pairs (fresh_engine_export_pairs: the buffer
 * snapshotted under the engine's lock, encoded by shard.c against the
 * published model's index).
 */
#include "engine_impl.h"

#include <stdlib.h>
#include <string.h>

#include "shard.h"

enum fresh_status fresh_engine_ids(struct fresh_engine *e, uint64_t **ids,
				   size_t *n, uint64_t *fingerprint)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	const struct fresh_index *idx = fresh_model_index(m);
	size_t count = fresh_index_size(idx);

	*ids = malloc((count ? count : 1) * sizeof **ids);
	if (!*ids) {
		fresh_model_release(m);
		return FRESH_NOMEM;
	}
	memcpy(*ids, fresh_index_ids(idx), count * sizeof **ids);
	*n = count;
	*fingerprint = fresh_index_fingerprint(idx);
	fresh_model_release(m);
	return FRESH_OK;
}

enum fresh_status fresh_engine_export_pairs(struct fresh_engine *e, void **buf,
					    size_t *len)
{
	struct fresh_pairs_snapshot snap;
	struct fresh_model *m;
	enum fresh_status st;

	pthread_mutex_lock(&e->mu);
	st = fresh_pairs_snapshot(e->pairs, e->cfg.max_step_lag, &snap);
	pthread_mutex_unlock(&e->mu);
	if (st != FRESH_OK)
		return st;
	m = fresh_engine_acquire(e);
	st = fresh_shard_encode_pairs(&snap, m, buf, len);
	fresh_model_release(m);
	fresh_pairs_snapshot_free(&snap);
	return st;
}
