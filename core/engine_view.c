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

#include "engine_impl.h"
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
	snprintf(out->source, sizeof out->source, "%s",
		 fresh_index_source(idx));
	out->store = fresh_index_store(idx);
	out->index_bytes = fresh_index_resident_bytes(idx);
	if (out->store == FRESH_STORE_BF16)
		out->mapped_bytes = out->targets * out->dim * sizeof(float);
	out->mapped_bytes += fresh_model_mapped_bytes(m);
	out->extra_bytes = fresh_model_extra_bytes(m);
	out->rescored_rows = fresh_topk_bounded_rescored();
	fresh_model_release(m);
	/* Not under publish_mu: a stage holds it while it builds. */
	out->staged_bytes = atomic_load(&e->staged_bytes);
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

enum fresh_status fresh_engine_vectors(struct fresh_engine *e,
				       enum fresh_scoring scoring,
				       const uint64_t *ids, size_t n,
				       float *out, bool *found,
				       uint64_t *version)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	const struct fresh_index *idx = fresh_model_index(m);
	size_t width = fresh_model_query_dim(m, scoring);
	size_t *rows = malloc((n ? n : 1) * sizeof *rows);
	size_t *at = malloc((n ? n : 1) * sizeof *at);
	float *tmp = NULL;
	size_t nf = 0;
	enum fresh_status st = FRESH_OK;

	*version = fresh_model_version(m);
	if (!rows || !at) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		found[i] = fresh_index_find(idx, ids[i], &rows[nf]);
		if (found[i])
			at[nf++] = i;
	}
	if (scoring == FRESH_SCORING_STALE) {
		const float *x = fresh_index_vectors(idx);
		for (size_t j = 0; j < nf; j++)
			memcpy(out + at[j] * width, x + rows[j] * width,
			       width * sizeof *out);
		goto out;
	}
	tmp = malloc((nf ? nf : 1) * width * sizeof *tmp);
	if (!tmp) {
		st = FRESH_NOMEM;
		goto out;
	}
	st = fresh_model_corrected_rows(m, rows, nf, tmp);
	for (size_t j = 0; st == FRESH_OK && j < nf; j++)
		memcpy(out + at[j] * width, tmp + j * width,
		       width * sizeof *out);
out:
	free(tmp);
	free(at);
	free(rows);
	fresh_model_release(m);
	return st;
}

enum fresh_status fresh_engine_query_map(struct fresh_engine *e,
					 struct fresh_query_map *out)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	const struct fresh_corrector *c = fresh_model_corrector(m);
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(c);
	enum fresh_status st;

	memset(out, 0, sizeof *out);
	out->d_out = sh->d_out;
	out->d_in = sh->d_in;
	out->version = fresh_model_version(m);
	out->kind = fresh_corrector_kind_name(sh->kind);
	out->normalize = fresh_corrector_normalize(c);
	out->w = malloc(sh->d_out * sh->d_in * sizeof *out->w);
	out->b = malloc(sh->d_out * sizeof *out->b);
	st = out->w && out->b ? fresh_model_query_map(m, out->w, out->b)
			      : FRESH_NOMEM;
	fresh_model_release(m);
	if (st != FRESH_OK) {
		free(out->w);
		free(out->b);
		out->w = out->b = NULL;
	}
	return st;
}

enum fresh_status fresh_engine_index_store(struct fresh_index *idx,
					   enum fresh_store store,
					   struct fresh_error *err)
{
	if (store != FRESH_STORE_BF16)
		return FRESH_OK;
	return fresh_index_add_bf16(idx, err);
}

enum fresh_status fresh_engine_index_load(const char *path,
					  const char *ids_path,
					  enum fresh_store store,
					  struct fresh_index **out, size_t *n,
					  size_t *d, struct fresh_error *err)
{
	enum fresh_status st =
		fresh_index_load_store(path, ids_path, store, out, err);

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
