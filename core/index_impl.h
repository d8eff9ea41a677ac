/*
 * index_impl.h - the index's representation, shared by the files that build
 * it: index.c (the object, ids, bf16 copy), index_file.c (reading and
 * writing files), index_map.c (mapping a file's float32 rows for
 * --store bf16). Not part of the core's interface: everyone else uses
 * index.h.
 */
#ifndef FRESH_INDEX_IMPL_H
#define FRESH_INDEX_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "index.h"

/* Files are read, checked and hashed this many bytes at a time. */
#define FRESH_INDEX_CHUNK_BYTES ((size_t)8 << 20)

struct fresh_index {
	atomic_size_t refs;
	size_t n, d;
	float *vectors;
	uint64_t *ids;
	uint32_t *slots; /* NULL when ids are 0..n-1 */
	size_t mask;
	uint64_t fingerprint;
	char source[4096];
	/* --store bf16: the scanned copy, row norm bounds, their maximum;
	 * vectors then points into map (map_len bytes) when loaded from a
	 * file, else to an allocation as with f32. */
	enum fresh_store store;
	uint16_t *xh;
	float *norms;
	float max_norm;
	void *map;
	size_t map_len;
};

/*
 * An index of n x d with room for its rows (float32, or with bf16 the
 * bf16 copy and norms, the float32 rows being mapped later) and ids;
 * source is copied. NULL when out of memory.
 */
struct fresh_index *fresh_index_alloc(size_t n, size_t d, const char *source,
				      enum fresh_store store);
/* Frees an index that was never shared (or whose last reference went). */
void fresh_index_destroy(struct fresh_index *idx);

/* First value of v[0..count) that is not finite, or (size_t)-1. */
size_t fresh_index_first_nonfinite(const float *v, size_t count);

/* Starts the fingerprint with the shape. */
void fresh_index_hash_shape(struct fresh_hasher *hs, size_t n, size_t d);
/* Rejects empty shapes and those beyond FRESH_MAX_DIM / FRESH_MAX_ROWS. */
enum fresh_status fresh_index_check_shape(const char *path, size_t n, size_t d,
					  struct fresh_error *err);

/*
 * Rounds rows [r, r + rows) to bf16 and bounds their norms, raising *max
 * to the largest. Touches only those rows: two threads may run it on
 * disjoint ranges.
 */
enum fresh_status fresh_index_shrink_rows(struct fresh_index *idx, size_t r,
					  size_t rows, const char *label,
					  float *max, struct fresh_error *err);

/*
 * Builds the id table and the fingerprint. ids_given says whether ids came
 * from the caller (else they are 0..n-1, already written). hs already holds
 * n, d and the vectors.
 */
enum fresh_status fresh_index_finish(struct fresh_index *idx, bool ids_given,
				     struct fresh_hasher *hs,
				     const char *ids_label,
				     struct fresh_error *err);

/*
 * index_map.c: maps the float32 rows at off of fd (fsize bytes in all)
 * and builds the bf16 copy from them, checking and hashing as a read does.
 */
enum fresh_status fresh_index_map_rows(int fd, const char *path, size_t fsize,
				       size_t off, struct fresh_index *idx,
				       struct fresh_hasher *hs,
				       struct fresh_error *err);

#endif
