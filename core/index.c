/*
 * index.c - the stale index as an object: building it from memory, its
 * ids and their lookup, the bf16 copy, the accessors. Files are read and
 * written by index_file.c (and mapped by index_map.c for --store bf16).
 *
 * Design: a loader reads the file once, in row chunks, into one aligned
 * buffer; each chunk is checked for non-finite values and hashed into the
 * fingerprint while it is still in cache, so loading costs about one read
 * of the file. Nothing is published until every check has passed: a
 * malformed file yields a status and a message, never a partial index.
 * The vectors are copied rather than mapped so that an operator who
 * overwrites the file under a running daemon cannot change or SIGBUS it.
 *
 * --store bf16 is the exception, for indexes larger than memory: the scan
 * reads a bfloat16 copy with per-row norm bounds (half the bytes), and the
 * float32 rows, needed only to rescore the few candidates of each query
 * exactly, stay in the file, mapped read-only and left to the page cache.
 * The file must then not be changed in place while served (replace it by
 * renaming a new one over it); the load streams it once, dropping each
 * chunk's pages from the process as it goes, so the resident set is the
 * bf16 copy, not the file.
 *
 * Ids: when they are 0..N-1 (no ids file) lookup is arithmetic; otherwise
 * an open-addressing table of row+1 (0 = empty) at load factor <= 1/2.
 * The reference count is the only mutable field; it is atomic.
 */
#include "index.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bf16.h"
#include "hash.h"
#include "index_impl.h"
#include "mem.h"

void fresh_index_destroy(struct fresh_index *idx)
{
	if (idx->map)
		munmap(idx->map, idx->map_len);
	else
		fresh_free(idx->vectors);
	fresh_free(idx->xh);
	fresh_free(idx->norms);
	free(idx->ids);
	free(idx->slots);
	free(idx);
}

/* With bf16 the float32 rows are mapped later, not allocated here. */
struct fresh_index *fresh_index_alloc(size_t n, size_t d, const char *source,
				      enum fresh_store store)
{
	struct fresh_index *idx = calloc(1, sizeof *idx);

	if (!idx)
		return NULL;
	atomic_init(&idx->refs, 1);
	idx->n = n;
	idx->d = d;
	idx->store = store;
	snprintf(idx->source, sizeof idx->source, "%s", source ? source : "");
	idx->ids = malloc(n * sizeof *idx->ids);
	if (store == FRESH_STORE_BF16) {
		idx->xh = fresh_alloc(n, d * sizeof *idx->xh);
		idx->norms = fresh_alloc(n, sizeof *idx->norms);
		if (!idx->xh || !idx->norms || !idx->ids) {
			fresh_index_destroy(idx);
			return NULL;
		}
	} else {
		idx->vectors = fresh_alloc(n, d * sizeof(float));
		if (!idx->vectors || !idx->ids) {
			fresh_index_destroy(idx);
			return NULL;
		}
	}
	return idx;
}

/*
 * Rounds rows [r, r + rows) to bf16 and bounds their norms, raising *max
 * to the largest. Touches only those rows: two threads may run it on
 * disjoint ranges.
 */
enum fresh_status fresh_index_shrink_rows(struct fresh_index *idx, size_t r,
					  size_t rows, const char *label,
					  float *max, struct fresh_error *err)
{
	const float *src = idx->vectors + r * idx->d;
	size_t bad =
		fresh_bf16_convert(src, idx->xh + r * idx->d, rows * idx->d);

	if (bad != (size_t)-1)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: row %zu, column %zu: %g is beyond "
				  "bfloat16's range (--store bf16 needs "
				  "|x| < 3.39e38; use --store f32)",
				  label, r + bad / idx->d, bad % idx->d,
				  (double)src[bad]);
	for (size_t i = 0; i < rows; i++) {
		float nb = fresh_norm_bound(src + i * idx->d, idx->d);
		idx->norms[r + i] = nb;
		if (nb > *max)
			*max = nb;
	}
	return FRESH_OK;
}

enum fresh_status fresh_index_add_bf16(struct fresh_index *idx,
				       struct fresh_error *err)
{
	const char *label = idx->source[0] ? idx->source : "index";
	enum fresh_status st;

	if (idx->store == FRESH_STORE_BF16)
		return FRESH_OK;
	idx->xh = fresh_alloc(idx->n, idx->d * sizeof *idx->xh);
	idx->norms = fresh_alloc(idx->n, sizeof *idx->norms);
	if (!idx->xh || !idx->norms) {
		st = fresh_fail(err, FRESH_NOMEM,
				"%s: no memory for the bf16 copy of %zu x %zu",
				label, idx->n, idx->d);
		goto fail;
	}
	idx->max_norm = 0.0f;
	st = fresh_index_shrink_rows(idx, 0, idx->n, label, &idx->max_norm,
				     err);
	if (st != FRESH_OK)
		goto fail;
	idx->store = FRESH_STORE_BF16;
	return FRESH_OK;
fail:
	fresh_free(idx->xh);
	fresh_free(idx->norms);
	idx->xh = NULL;
	idx->norms = NULL;
	return st;
}

enum fresh_store fresh_index_store(const struct fresh_index *idx)
{
	return idx->store;
}
const uint16_t *fresh_index_bf16(const struct fresh_index *idx)
{
	return idx->xh;
}
const float *fresh_index_norms(const struct fresh_index *idx)
{
	return idx->norms;
}
float fresh_index_max_norm(const struct fresh_index *idx)
{
	return idx->max_norm;
}
size_t fresh_index_resident_bytes(const struct fresh_index *idx)
{
	size_t b = idx->n * sizeof *idx->ids;

	if (idx->slots)
		b += (idx->mask + 1) * sizeof *idx->slots;
	if (idx->store == FRESH_STORE_BF16)
		b += idx->n * idx->d * sizeof *idx->xh +
		     idx->n * sizeof *idx->norms;
	if (!idx->map)
		b += idx->n * idx->d * sizeof(float);
	return b;
}

void fresh_index_retain(struct fresh_index *idx)
{
	atomic_fetch_add_explicit(&idx->refs, 1, memory_order_relaxed);
}

void fresh_index_release(struct fresh_index *idx)
{
	if (idx &&
	    atomic_fetch_sub_explicit(&idx->refs, 1, memory_order_acq_rel) == 1)
		fresh_index_destroy(idx);
}

size_t fresh_index_size(const struct fresh_index *idx)
{
	return idx->n;
}
size_t fresh_index_dim(const struct fresh_index *idx)
{
	return idx->d;
}
const float *fresh_index_vectors(const struct fresh_index *idx)
{
	return idx->vectors;
}
const uint64_t *fresh_index_ids(const struct fresh_index *idx)
{
	return idx->ids;
}
uint64_t fresh_index_fingerprint(const struct fresh_index *idx)
{
	return idx->fingerprint;
}
const char *fresh_index_source(const struct fresh_index *idx)
{
	return idx->source;
}

bool fresh_index_find(const struct fresh_index *idx, uint64_t id, size_t *row)
{
	if (!idx->slots) {
		if (id >= idx->n)
			return false;
		*row = (size_t)id;
		return true;
	}
	for (size_t i = fresh_mix64(id) & idx->mask;; i = (i + 1) & idx->mask) {
		uint32_t s = idx->slots[i];
		if (s == 0)
			return false;
		if (idx->ids[s - 1] == id) {
			*row = s - 1;
			return true;
		}
	}
}
/* First row whose value is not finite, or (size_t)-1. */
size_t fresh_index_first_nonfinite(const float *v, size_t count)
{
	const uint32_t *bits = (const uint32_t *)(const void *)v;
	uint32_t bad = 0;

	/* A branch-free sweep the compiler vectorizes; rescan only on a hit. */
	for (size_t i = 0; i < count; i++)
		bad |= (uint32_t)((bits[i] & 0x7f800000u) == 0x7f800000u);
	if (!bad)
		return (size_t)-1;
	for (size_t i = 0; i < count; i++)
		if ((bits[i] & 0x7f800000u) == 0x7f800000u)
			return i;
	return (size_t)-1;
}

/*
 * Builds the id table and the fingerprint. ids_given says whether ids came
 * from the caller (else they are 0..n-1, already written). hs already holds
 * n, d and the vectors.
 */
enum fresh_status fresh_index_finish(struct fresh_index *idx, bool ids_given,
				     struct fresh_hasher *hs,
				     const char *ids_label,
				     struct fresh_error *err)
{
	if (ids_given) {
		bool sequential = true;
		size_t cap = 16;

		for (size_t r = 0; r < idx->n && sequential; r++)
			sequential = idx->ids[r] == r;
		if (!sequential) {
			while (cap < 2 * idx->n)
				cap <<= 1;
			idx->slots = calloc(cap, sizeof *idx->slots);
			if (!idx->slots)
				return fresh_fail(
					err, FRESH_NOMEM,
					"%s: no memory for the id table",
					ids_label);
			idx->mask = cap - 1;
			for (size_t r = 0; r < idx->n; r++) {
				uint64_t id = idx->ids[r];
				size_t i = fresh_mix64(id) & idx->mask;
				for (; idx->slots[i]; i = (i + 1) & idx->mask) {
					size_t other = idx->slots[i] - 1;
					if (idx->ids[other] == id)
						return fresh_fail(
							err, FRESH_FORMAT,
							"%s: duplicate id %llu "
							"at rows %zu and %zu",
							ids_label,
							(unsigned long long)id,
							other, r);
				}
				idx->slots[i] = (uint32_t)(r + 1);
			}
		}
	}
	fresh_hasher_update(hs, idx->ids, idx->n * sizeof *idx->ids);
	idx->fingerprint = fresh_hasher_final(hs);
	return FRESH_OK;
}

void fresh_index_hash_shape(struct fresh_hasher *hs, size_t n, size_t d)
{
	uint64_t shape[2] = {n, d};

	fresh_hasher_init(hs, 0);
	fresh_hasher_update(hs, shape, sizeof shape);
}

enum fresh_status fresh_index_check_shape(const char *path, size_t n, size_t d,
					  struct fresh_error *err)
{
	if (n == 0 || d == 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: empty index (%zu x %zu)", path, n, d);
	if (d > FRESH_MAX_DIM)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: dimension %zu, at most %zu supported",
				  path, d, FRESH_MAX_DIM);
	if (n > FRESH_MAX_ROWS)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: %zu rows, at most %zu supported", path,
				  n, FRESH_MAX_ROWS);
	return FRESH_OK;
}

const char *fresh_store_name(enum fresh_store store)
{
	return store == FRESH_STORE_BF16 ? "bf16" : "f32";
}

bool fresh_store_parse(const char *s, enum fresh_store *out)
{
	if (strcmp(s, "f32") == 0)
		*out = FRESH_STORE_F32;
	else if (strcmp(s, "bf16") == 0)
		*out = FRESH_STORE_BF16;
	else
		return false;
	return true;
}

enum fresh_status fresh_index_create(size_t n, size_t d, const float *vectors,
				     const uint64_t *ids, const char *source,
				     struct fresh_index **out,
				     struct fresh_error *err)
{
	struct fresh_index *idx;
	struct fresh_hasher hs;
	enum fresh_status st;
	size_t bad;

	st = fresh_index_check_shape(source ? source : "index", n, d, err);
	if (st != FRESH_OK)
		return st;
	bad = fresh_index_first_nonfinite(vectors, n * d);
	if (bad != (size_t)-1)
		return fresh_fail(err, FRESH_INVALID,
				  "row %zu, column %zu: value is not finite",
				  bad / d, bad % d);
	idx = fresh_index_alloc(n, d, source, FRESH_STORE_F32);
	if (!idx)
		return fresh_fail(err, FRESH_NOMEM,
				  "no memory for %zu x %zu floats", n, d);
	memcpy(idx->vectors, vectors, n * d * sizeof(float));
	if (ids)
		memcpy(idx->ids, ids, n * sizeof *ids);
	else
		for (size_t r = 0; r < n; r++)
			idx->ids[r] = r;
	fresh_index_hash_shape(&hs, n, d);
	fresh_hasher_update(&hs, idx->vectors, n * d * sizeof(float));
	st = fresh_index_finish(idx, ids != NULL, &hs, "ids", err);
	if (st != FRESH_OK) {
		fresh_index_destroy(idx);
		return st;
	}
	*out = idx;
	return FRESH_OK;
}
