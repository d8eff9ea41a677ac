/*
 * index.h - the stale target index: N embeddings of dimension d, their ids.
 *
 * An index is immutable once built and shared by every published model
 * that scores against it; it is reference-counted (retain/release) so that
 * a hot reload can swap in another while searches still hold the old one.
 */
#ifndef FRESH_INDEX_H
#define FRESH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* Largest accepted dimension and row count (rows are 32-bit internally). */
#define FRESH_MAX_DIM ((size_t)16384)
#define FRESH_MAX_ROWS ((size_t)0xfffffffe)

struct fresh_index;

/*
 * What the scan holds in memory (API.md --store): float32 rows, or a
 * bfloat16 copy scanned with an error bound and rescored exactly from the
 * float32 rows, which then stay in the index file, mapped (topk.h).
 */
enum fresh_store {
	FRESH_STORE_F32 = 0,
	FRESH_STORE_BF16 = 1,
};
const char *fresh_store_name(enum fresh_store store);
bool fresh_store_parse(const char *s, enum fresh_store *out);

/*
 * Loads an index from path: a .npy (float32, little-endian, C order, 2-D),
 * a .fvecs file, or a snapshot written by fresh_index_save (recognised by
 * content, not name). ids_path, when not NULL, is a .npy of int64 or uint64
 * with one unique non-negative id a row; without it ids are 0..N-1. Every
 * value must be finite. On failure nothing is allocated and err names the
 * file and what is wrong (row, expected vs found). The caller owns *out;
 * drop it with fresh_index_release.
 */
enum fresh_status fresh_index_load(const char *path, const char *ids_path,
				   struct fresh_index **out,
				   struct fresh_error *err);

/*
 * As fresh_index_load, with the given store. With bf16 the file must be a
 * .npy or a snapshot (rows contiguous on disk) and must not change while
 * the index is alive; every value must fit bfloat16's range.
 */
enum fresh_status fresh_index_load_store(const char *path, const char *ids_path,
					 enum fresh_store store,
					 struct fresh_index **out,
					 struct fresh_error *err);

/*
 * Adds the bf16 copy to an index built in memory (its float32 rows stay
 * in memory). Only before the index is shared.
 */
enum fresh_status fresh_index_add_bf16(struct fresh_index *idx,
				       struct fresh_error *err);

/*
 * Builds an index from memory: copies n x d vectors and, when ids is not
 * NULL, n ids (else 0..n-1). source is a label for /v1/info (copied).
 */
enum fresh_status fresh_index_create(size_t n, size_t d, const float *vectors,
				     const uint64_t *ids, const char *source,
				     struct fresh_index **out,
				     struct fresh_error *err);

/* Writes the index as a snapshot (atomically: temp file, fsync, rename). */
enum fresh_status fresh_index_save(const struct fresh_index *idx,
				   const char *path, struct fresh_error *err);

void fresh_index_retain(struct fresh_index *idx);
/* Drops a reference; the last one frees. Accepts NULL. */
void fresh_index_release(struct fresh_index *idx);

size_t fresh_index_size(const struct fresh_index *idx);
size_t fresh_index_dim(const struct fresh_index *idx);
/* Row-major n x d, 64-byte aligned; valid while a reference is held. */
const float *fresh_index_vectors(const struct fresh_index *idx);
const uint64_t *fresh_index_ids(const struct fresh_index *idx);
/* Finds the row of id in O(1); false when the id is unknown. */
bool fresh_index_find(const struct fresh_index *idx, uint64_t id, size_t *row);
/* A 64-bit hash of n, d, the vectors and the ids. */
uint64_t fresh_index_fingerprint(const struct fresh_index *idx);
/* Where it came from: a path or a label. */
const char *fresh_index_source(const struct fresh_index *idx);

enum fresh_store fresh_index_store(const struct fresh_index *idx);
/* bf16 store: the rows rounded (n x d), NULL with f32. */
const uint16_t *fresh_index_bf16(const struct fresh_index *idx);
/* bf16 store: an upper bound of each row's norm (n), NULL with f32. */
const float *fresh_index_norms(const struct fresh_index *idx);
float fresh_index_max_norm(const struct fresh_index *idx);
/* Bytes the index keeps in memory (not counting mapped file pages). */
size_t fresh_index_resident_bytes(const struct fresh_index *idx);

#endif
