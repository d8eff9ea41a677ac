/*
 * engine_recover.c - what fresh_engine_open rebuilds from the data dir:
 * the pair buffer from the newest pair snapshot (the log after it is
 * replayed by engine.c's open), and the corrector from the newest
 * checkpoint that loads (a damaged one is skipped with a warning). Also
 * the data dir's directories and its lock.
 */
#include "checkpoint.h"
#include "engine_impl.h"

#include <inttypes.h>
#include <stdlib.h>

#include "datadir.h"
#include "hash.h"
#include "mem.h"

/* The newest checkpoint that loads, or a new identity corrector. */
enum fresh_status fresh_engine_recover_corrector(struct fresh_engine *e,
						 struct fresh_corrector **out,
						 struct fresh_error *err)
{
	uint64_t *versions;
	size_t n;
	enum fresh_status st =
		fresh_checkpoint_list(e->data_dir, &versions, &n);

	*out = NULL;
	if (st != FRESH_OK)
		return fresh_fail(err, st, "%s/checkpoints: cannot list",
				  e->data_dir);
	for (size_t i = 0; i < n && !*out; i++) {
		struct fresh_error lerr;
		struct fresh_corrector *c;

		if (versions[i] < e->switch_version)
			continue; /* trained on the index a switch replaced */
		if (fresh_checkpoint_load(e->data_dir, versions[i], &c,
					  &lerr) != FRESH_OK) {
			fresh_engine_logf(e, FRESH_LOG_WARN,
					  "skipping checkpoint: %s", lerr.msg);
			continue;
		}
		if (!fresh_corrector_shape_equal(fresh_corrector_shape(c),
						 &e->shape)) {
			char have[128], want[128];
			fresh_corrector_shape_describe(fresh_corrector_shape(c),
						       have, sizeof have);
			fresh_corrector_shape_describe(&e->shape, want,
						       sizeof want);
			fresh_corrector_free(c);
			st = fresh_fail(err, FRESH_CONFLICT,
					"%s: checkpoint %" PRIu64
					" holds a corrector %s, this run "
					"asks for %s; use another --data-dir",
					e->dd->checkpoints, versions[i], have,
					want);
			free(versions);
			return st;
		}
		fresh_engine_logf(
			e, FRESH_LOG_INFO,
			"recovered corrector version %" PRIu64 " from %s",
			fresh_corrector_version(c), e->dd->checkpoints);
		*out = c;
	}
	free(versions);
	if (*out)
		return FRESH_OK;
	st = fresh_engine_new_corrector(e, out, err);
	if (st == FRESH_OK && e->switch_version)
		fresh_corrector_set_version(*out, e->switch_version);
	return st;
}

static bool id_in_index(void *arg, uint64_t id)
{
	size_t row;
	return fresh_index_find(arg, id, &row);
}

enum fresh_status fresh_engine_recover_pairs(struct fresh_engine *e,
					     uint64_t *through,
					     struct fresh_error *err)
{
	struct fresh_pairs_file meta;
	enum fresh_status st;

	*through = 0;
	st = fresh_pairs_file_load(e->dd->pairs, e->pairs, &meta, err);
	if (st == FRESH_NOT_FOUND)
		return FRESH_OK;
	if (st != FRESH_OK)
		return st;
	*through = meta.through_seq;
	e->pairs_total = meta.total;
	e->applied_seq = meta.through_seq;
	if (meta.through_seq < e->switch_seq) {
		/* Taken before a recorded index switch: none of it applies. */
		fresh_pairs_clear(e->pairs);
		return FRESH_OK;
	}
	/* Queries were snapshotted first; keep those the pairs cover. */
	st = fresh_qbuf_load(e->qbuf, e->dd->queries, meta.through_seq, err);
	if (st != FRESH_OK && st != FRESH_NOT_FOUND)
		return st;
	if (meta.fingerprint != fresh_index_fingerprint(e->index)) {
		size_t gone =
			fresh_pairs_filter(e->pairs, id_in_index, e->index);
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "%s was taken on another index (fingerprint "
				  "%016" PRIx64 "); %zu pairs of unknown ids "
				  "dropped",
				  e->dd->pairs, meta.fingerprint, gone);
	}
	return FRESH_OK;
}
