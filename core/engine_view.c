/*
 * engine_view.c - what the API reads of the engine: the index's facts,
 * the published version, corrected vectors by id, and the index loader
 * the server starts with. Each view is taken from one model, acquired
 * once, so its parts agree with each other.
 *
 * Design: only the engine's public interface is used here (acquire,
 * fresh_dim); nothing is locked beyond the swap's pointer lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "index.h"
#include "mem.h"
#include "model.h"

void fresh_engine_info(struct fresh_engine *e, struct fresh_engine_info *out)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	const struct fresh_index *idx = fresh_model_index(m);

	memset(out, 0, sizeof *out);
	out->targets = fresh_index_size(idx);
	out->dim = fresh_index_dim(idx);
	out->fresh_dim = fresh_engine_fresh_dim(e);
	out->version = fresh_model_version(m);
	out->fingerprint = fresh_index_fingerprint(idx);
	snprintf(out->source, sizeof out->source, "%s", fresh_index_source(idx));
	out->index_bytes = out->targets * out->dim * sizeof(float);
	out->extra_bytes = fresh_model_extra_bytes(m);
	fresh_model_release(m);
}

size_t fresh_engine_dim(struct fresh_engine *e)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	size_t d = fresh_index_dim(fresh_model_index(m));

	fresh_model_release(m);
	return d;
}

uint64_t fresh_engine_version(struct fresh_engine *e)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	uint64_t v = fresh_model_version(m);

	fresh_model_release(m);
	return v;
}

enum fresh_status fresh_engine_corrected(struct fresh_engine *e,
					 const uint64_t *ids, size_t n,
					 float *out, uint64_t *version,
					 size_t *missing)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	const struct fresh_index *idx = fresh_model_index(m);
	size_t *rows = malloc((n ? n : 1) * sizeof *rows);
	enum fresh_status st = FRESH_OK;

	*version = fresh_model_version(m);
	if (!rows) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		if (!fresh_index_find(idx, ids[i], &rows[i])) {
			*missing = i;
			st = FRESH_NOT_FOUND;
			goto out;
		}
	st = fresh_model_corrected_rows(m, rows, n, out);
out:
	free(rows);
	fresh_model_release(m);
	return st;
}

enum fresh_status fresh_engine_index_load(const char *path,
					  const char *ids_path,
					  struct fresh_index **out, size_t *n,
					  size_t *d, struct fresh_error *err)
{
	enum fresh_status st = fresh_index_load(path, ids_path, out, err);

	if (st == FRESH_OK) {
		*n = fresh_index_size(*out);
		*d = fresh_index_dim(*out);
	}
	return st;
}

void fresh_engine_index_release(struct fresh_index *idx)
{
	fresh_index_release(idx);
}
