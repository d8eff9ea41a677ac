/*
 * index.c - loading, building and looking up the stale index.
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

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "fileio.h"
#include "hash.h"
#include "mem.h"
#include "npy.h"

#define CHUNK_BYTES ((size_t)8 << 20)
#define SNAPSHOT_MAGIC "FRESHIDX"
#define SNAPSHOT_VERSION 1u
#define SNAPSHOT_HEADER 64

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

static size_t first_nonfinite(const float *v, size_t count);

static void index_free(struct fresh_index *idx)
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
static struct fresh_index *index_alloc_store(size_t n, size_t d,
					     const char *source,
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
			index_free(idx);
			return NULL;
		}
	} else {
		idx->vectors = fresh_alloc(n, d * sizeof(float));
		if (!idx->vectors || !idx->ids) {
			index_free(idx);
			return NULL;
		}
	}
	return idx;
}

static struct fresh_index *index_alloc(size_t n, size_t d, const char *source)
{
	return index_alloc_store(n, d, source, FRESH_STORE_F32);
}

/*
 * Rounds rows [r, r + rows) to bf16 and bounds their norms, raising *max
 * to the largest. Touches only those rows: two threads may run it on
 * disjoint ranges.
 */
static enum fresh_status shrink_rows(struct fresh_index *idx, size_t r,
				     size_t rows, const char *label,
				     float *max, struct fresh_error *err)
{
	const float *src = idx->vectors + r * idx->d;
	size_t bad = fresh_bf16_convert(src, idx->xh + r * idx->d,
					rows * idx->d);

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

/*
 * The second thread of a bf16 load: between two barrier waits it shrinks
 * the rows it was handed while the loader checks and hashes the chunk.
 */
struct shrink_helper {
	pthread_barrier_t go, done;
	struct fresh_index *idx;
	const char *label;
	size_t r, rows;
	bool quit;
	float max;
	enum fresh_status st;
	struct fresh_error err;
};

static void *shrink_main(void *arg)
{
	struct shrink_helper *h = arg;

	for (;;) {
		pthread_barrier_wait(&h->go);
		if (h->quit)
			return NULL;
		if (h->st == FRESH_OK && h->rows)
			h->st = shrink_rows(h->idx, h->r, h->rows, h->label,
					    &h->max, &h->err);
		pthread_barrier_wait(&h->done);
	}
}

static enum fresh_status shrink_mapped(struct fresh_index *idx,
				       const char *path,
				       struct fresh_hasher *hs,
				       struct fresh_error *err);

/*
 * Maps the float32 rows at off of fd (fsize bytes in all) and builds the
 * bf16 copy from them, checking and hashing as read_rows does.
 */
static enum fresh_status map_rows(int fd, const char *path, size_t fsize,
				  size_t off, struct fresh_index *idx,
				  struct fresh_hasher *hs,
				  struct fresh_error *err)
{
	void *map;

	if (off % sizeof(float) != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: data at offset %zu is not 4-byte "
				  "aligned (--store bf16 maps it)",
				  path, off);
	map = mmap(NULL, fsize, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return fresh_fail(err, FRESH_IO, "%s: cannot map: %s", path,
				  strerror(errno));
	idx->map = map;
	idx->map_len = fsize;
	idx->vectors = (float *)(void *)((char *)map + off);
	(void)madvise(map, fsize, MADV_SEQUENTIAL);
	return shrink_mapped(idx, path, hs, err);
}

/*
 * Checks, hashes and shrinks the mapped rows chunk by chunk, on two
 * threads: this one checks and hashes a chunk (the hash is sequential)
 * and rounds its first half, a helper rounds the second half. Each
 * chunk's pages then leave the resident set (they stay in the page cache).
 */
static enum fresh_status shrink_mapped(struct fresh_index *idx,
				       const char *path,
				       struct fresh_hasher *hs,
				       struct fresh_error *err)
{
	size_t row_bytes = idx->d * sizeof(float);
	size_t rows_per = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct shrink_helper h;
	enum fresh_status st = FRESH_OK;
	pthread_t th;
	bool helper;
	float max = 0.0f;

	memset(&h, 0, sizeof h);
	h.idx = idx;
	h.label = path;
	helper = pthread_barrier_init(&h.go, NULL, 2) == 0;
	if (helper && pthread_barrier_init(&h.done, NULL, 2) != 0) {
		pthread_barrier_destroy(&h.go);
		helper = false;
	}
	if (helper && pthread_create(&th, NULL, shrink_main, &h) != 0) {
		pthread_barrier_destroy(&h.go);
		pthread_barrier_destroy(&h.done);
		helper = false;
	}
	for (size_t r = 0; r < idx->n && st == FRESH_OK; r += rows_per) {
		size_t rows = idx->n - r < rows_per ? idx->n - r : rows_per;
		size_t mine = helper ? rows / 2 : rows;
		const float *src = idx->vectors + r * idx->d;
		size_t bad;
		uintptr_t lo, hi;

		if (helper) {
			h.r = r + mine;
			h.rows = rows - mine;
			pthread_barrier_wait(&h.go);
		}
		bad = first_nonfinite(src, rows * idx->d);
		if (bad != (size_t)-1)
			st = fresh_fail(err, FRESH_FORMAT,
					"%s: row %zu, column %zu: value is "
					"not finite",
					path, r + bad / idx->d, bad % idx->d);
		else
			fresh_hasher_update(hs, src, rows * row_bytes);
		if (st == FRESH_OK)
			st = shrink_rows(idx, r, mine, path, &max, err);
		if (helper) {
			pthread_barrier_wait(&h.done);
			if (st == FRESH_OK && h.st != FRESH_OK) {
				st = h.st;
				*err = h.err;
			}
		}
		/* The pages stay in the page cache, not in our resident set. */
		lo = (uintptr_t)src & ~(uintptr_t)(page - 1);
		hi = ((uintptr_t)(src + rows * idx->d)) & ~(uintptr_t)(page - 1);
		if (hi > lo)
			(void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
	}
	if (helper) {
		h.quit = true;
		pthread_barrier_wait(&h.go);
		pthread_join(th, NULL);
		pthread_barrier_destroy(&h.go);
		pthread_barrier_destroy(&h.done);
		if (h.max > max)
			max = h.max;
	}
	idx->max_norm = max;
	(void)madvise(idx->map, idx->map_len, MADV_RANDOM);
	return st;
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
	st = shrink_rows(idx, 0, idx->n, label, &idx->max_norm, err);
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
	if (idx && atomic_fetch_sub_explicit(&idx->refs, 1,
					     memory_order_acq_rel) == 1)
		index_free(idx);
}

size_t fresh_index_size(const struct fresh_index *idx) { return idx->n; }
size_t fresh_index_dim(const struct fresh_index *idx) { return idx->d; }
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
static size_t first_nonfinite(const float *v, size_t count)
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
static enum fresh_status finish(struct fresh_index *idx, bool ids_given,
				struct fresh_hasher *hs, const char *ids_label,
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
				return fresh_fail(err, FRESH_NOMEM,
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

static void hash_shape(struct fresh_hasher *hs, size_t n, size_t d)
{
	uint64_t shape[2] = {n, d};

	fresh_hasher_init(hs, 0);
	fresh_hasher_update(hs, shape, sizeof shape);
}

static enum fresh_status check_shape(const char *path, size_t n, size_t d,
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

/* Reads n x d floats at off, checking and hashing them chunk by chunk. */
static enum fresh_status read_rows(int fd, const char *path, off_t off,
				   struct fresh_index *idx,
				   struct fresh_hasher *hs,
				   struct fresh_error *err)
{
	size_t row_bytes = idx->d * sizeof(float);
	size_t rows_per = CHUNK_BYTES / row_bytes ? CHUNK_BYTES / row_bytes : 1;

	for (size_t r = 0; r < idx->n; r += rows_per) {
		size_t rows = idx->n - r < rows_per ? idx->n - r : rows_per;
		float *dst = idx->vectors + r * idx->d;
		size_t bad;

		if (fresh_pread_full(fd, dst, rows * row_bytes,
				     off + (off_t)(r * row_bytes)) != FRESH_OK)
			return fresh_fail(err, FRESH_IO,
					  "%s: read failed at row %zu", path, r);
		bad = first_nonfinite(dst, rows * idx->d);
		if (bad != (size_t)-1)
			return fresh_fail(err, FRESH_FORMAT,
					  "%s: row %zu, column %zu: value is "
					  "not finite",
					  path, r + bad / idx->d, bad % idx->d);
		fresh_hasher_update(hs, dst, rows * row_bytes);
	}
	return FRESH_OK;
}

static enum fresh_status load_npy(int fd, const char *path, size_t fsize,
				  enum fresh_store store,
				  struct fresh_index **out,
				  struct fresh_hasher *hs,
				  struct fresh_error *err)
{
	unsigned char *head;
	size_t hlen = fsize < FRESH_NPY_MAX_HEADER + 12 ? fsize
						       : FRESH_NPY_MAX_HEADER + 12;
	struct fresh_npy_header h;
	struct fresh_error perr;
	enum fresh_status st;
	size_t n, d, bytes, data;

	head = malloc(hlen ? hlen : 1);
	if (!head)
		return fresh_fail(err, FRESH_NOMEM, "%s: out of memory", path);
	st = fresh_pread_full(fd, head, hlen, 0);
	if (st == FRESH_OK)
		st = fresh_npy_parse(head, hlen, &h, &perr);
	else
		snprintf(perr.msg, sizeof perr.msg, "read failed");
	free(head);
	if (st != FRESH_OK)
		return fresh_fail(err, st, "%s: %s", path, perr.msg);
	if (strcmp(h.descr, "<f4") != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: dtype '%s', expected '<f4' (float32, "
				  "little-endian)",
				  path, h.descr);
	if (h.fortran_order)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: Fortran order, expected C order "
				  "(numpy.ascontiguousarray)",
				  path);
	if (h.ndim != 2)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: %zu dimensions, expected 2 (N x d)",
				  path, h.ndim);
	n = h.shape[0];
	d = h.shape[1];
	st = check_shape(path, n, d, err);
	if (st != FRESH_OK)
		return st;
	if (!fresh_mul_ok(n, d * sizeof(float), &bytes) ||
	    h.data_offset > fsize)
		return fresh_fail(err, FRESH_FORMAT, "%s: shape too large",
				  path);
	data = fsize - h.data_offset;
	if (data < bytes)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: truncated: shape (%zu, %zu) needs %zu "
				  "bytes of data, found %zu",
				  path, n, d, bytes, data);
	if (data > bytes)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: %zu unexpected bytes after the data of "
				  "shape (%zu, %zu)",
				  path, data - bytes, n, d);
	*out = index_alloc_store(n, d, path, store);
	if (!*out)
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu %s", path, n,
				  d, fresh_store_name(store));
	hash_shape(hs, n, d);
	if (store == FRESH_STORE_BF16)
		return map_rows(fd, path, fsize, h.data_offset, *out, hs, err);
	return read_rows(fd, path, (off_t)h.data_offset, *out, hs, err);
}

static enum fresh_status load_fvecs(int fd, const char *path, size_t fsize,
				    struct fresh_index **out,
				    struct fresh_hasher *hs,
				    struct fresh_error *err)
{
	int32_t dim;
	size_t d, rec, n, rows_per;
	char *stage = NULL;
	enum fresh_status st = FRESH_OK;

	if (fsize < 4 || fresh_pread_full(fd, &dim, 4, 0) != FRESH_OK)
		return fresh_fail(err, FRESH_FORMAT, "%s: truncated .fvecs",
				  path);
	if (dim <= 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: row 0: dimension %d is not positive",
				  path, (int)dim);
	d = (size_t)dim;
	if (d > FRESH_MAX_DIM)
		return check_shape(path, 1, d, err);
	rec = 4 + 4 * d;
	if (fsize % rec != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: size %zu is not a multiple of the "
				  "record size %zu (dimension %zu): truncated "
				  "or mixed dimensions",
				  path, fsize, rec, d);
	n = fsize / rec;
	st = check_shape(path, n, d, err);
	if (st != FRESH_OK)
		return st;
	*out = index_alloc(n, d, path);
	rows_per = CHUNK_BYTES / rec ? CHUNK_BYTES / rec : 1;
	stage = malloc(rows_per * rec);
	if (!*out || !stage) {
		free(stage);
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu floats", path, n,
				  d);
	}
	hash_shape(hs, n, d);
	for (size_t r = 0; r < n && st == FRESH_OK; r += rows_per) {
		size_t rows = n - r < rows_per ? n - r : rows_per;
		float *dst = (*out)->vectors + r * d;
		size_t bad;

		if (fresh_pread_full(fd, stage, rows * rec,
				     (off_t)(r * rec)) != FRESH_OK) {
			st = fresh_fail(err, FRESH_IO,
					"%s: read failed at row %zu", path, r);
			break;
		}
		for (size_t i = 0; i < rows; i++) {
			int32_t di;
			memcpy(&di, stage + i * rec, 4);
			if (di != dim) {
				st = fresh_fail(err, FRESH_FORMAT,
						"%s: row %zu: dimension %d, "
						"expected %zu",
						path, r + i, (int)di, d);
				break;
			}
			memcpy(dst + i * d, stage + i * rec + 4, 4 * d);
		}
		if (st != FRESH_OK)
			break;
		bad = first_nonfinite(dst, rows * d);
		if (bad != (size_t)-1)
			st = fresh_fail(err, FRESH_FORMAT,
					"%s: row %zu, column %zu: value is not "
					"finite",
					path, r + bad / d, bad % d);
		else
			fresh_hasher_update(hs, dst, rows * d * sizeof(float));
	}
	free(stage);
	return st;
}

/*
 * Snapshot layout (little-endian): a 64-byte header {magic[8], u32
 * version, u32 reserved, u64 n, u64 d, u64 fingerprint, zero padding},
 * then n u64 ids, then n x d float32 vectors. The fingerprint, recomputed
 * on load, doubles as the integrity check.
 */
struct snapshot_header {
	char magic[8];
	uint32_t version;
	uint32_t reserved;
	uint64_t n, d, fingerprint;
	unsigned char pad[SNAPSHOT_HEADER - 40];
};

static enum fresh_status load_snapshot(int fd, const char *path, size_t fsize,
				       enum fresh_store store,
				       struct fresh_index **out,
				       struct fresh_hasher *hs, uint64_t *want,
				       struct fresh_error *err)
{
	struct snapshot_header h;
	size_t n, d, ids_bytes, vec_bytes;
	enum fresh_status st;

	if (fsize < sizeof h ||
	    fresh_pread_full(fd, &h, sizeof h, 0) != FRESH_OK)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: truncated snapshot header", path);
	if (h.version != SNAPSHOT_VERSION)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: snapshot format %u, expected %u", path,
				  h.version, SNAPSHOT_VERSION);
	n = (size_t)h.n;
	d = (size_t)h.d;
	*want = h.fingerprint;
	st = check_shape(path, n, d, err);
	if (st != FRESH_OK)
		return st;
	ids_bytes = n * 8;
	vec_bytes = n * d * sizeof(float);
	if (fsize != sizeof h + ids_bytes + vec_bytes)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: size %zu, expected %zu for %zu x %zu",
				  path, fsize, sizeof h + ids_bytes + vec_bytes,
				  n, d);
	*out = index_alloc_store(n, d, path, store);
	if (!*out)
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu %s", path, n,
				  d, fresh_store_name(store));
	if (fresh_pread_full(fd, (*out)->ids, ids_bytes, sizeof h) != FRESH_OK)
		return fresh_fail(err, FRESH_IO, "%s: read failed", path);
	hash_shape(hs, n, d);
	if (store == FRESH_STORE_BF16)
		return map_rows(fd, path, fsize, sizeof h + ids_bytes, *out,
				hs, err);
	return read_rows(fd, path, (off_t)(sizeof h + ids_bytes), *out, hs,
			 err);
}

static enum fresh_status load_ids(const char *path, struct fresh_index *idx,
				  struct fresh_error *err)
{
	struct fresh_npy_header h;
	struct fresh_error perr;
	unsigned char head[FRESH_NPY_MAX_HEADER + 12];
	enum fresh_status st = FRESH_OK;
	struct stat sb;
	size_t hlen, fsize;
	bool is_signed;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		st = fresh_fail(err, FRESH_IO, "%s: not a regular file", path);
		goto out;
	}
	fsize = (size_t)sb.st_size;
	hlen = fsize < sizeof head ? fsize : sizeof head;
	if (fresh_pread_full(fd, head, hlen, 0) != FRESH_OK) {
		st = fresh_fail(err, FRESH_IO, "%s: read failed", path);
		goto out;
	}
	st = fresh_npy_parse(head, hlen, &h, &perr);
	if (st != FRESH_OK) {
		st = fresh_fail(err, st, "%s: %s", path, perr.msg);
		goto out;
	}
	if (strcmp(h.descr, "<i8") == 0) {
		is_signed = true;
	} else if (strcmp(h.descr, "<u8") == 0) {
		is_signed = false;
	} else {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: dtype '%s', expected '<i8' or '<u8' "
				"(64-bit integers)",
				path, h.descr);
		goto out;
	}
	if (h.ndim != 1) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: %zu dimensions, expected 1", path, h.ndim);
		goto out;
	}
	if (h.shape[0] != idx->n) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: %zu ids, the index has %zu rows", path,
				h.shape[0], idx->n);
		goto out;
	}
	if (h.data_offset > fsize || fsize - h.data_offset != idx->n * 8) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: data is %zu bytes, expected %zu", path,
				h.data_offset > fsize ? 0 : fsize - h.data_offset,
				idx->n * 8);
		goto out;
	}
	if (fresh_pread_full(fd, idx->ids, idx->n * 8, (off_t)h.data_offset) !=
	    FRESH_OK) {
		st = fresh_fail(err, FRESH_IO, "%s: read failed", path);
		goto out;
	}
	if (is_signed) {
		for (size_t r = 0; r < idx->n; r++) {
			if ((int64_t)idx->ids[r] < 0) {
				st = fresh_fail(err, FRESH_FORMAT,
						"%s: row %zu: negative id %lld",
						path, r,
						(long long)(int64_t)idx->ids[r]);
				goto out;
			}
		}
	}
out:
	close(fd);
	return st;
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

enum fresh_status fresh_index_load(const char *path, const char *ids_path,
				   struct fresh_index **out,
				   struct fresh_error *err)
{
	return fresh_index_load_store(path, ids_path, FRESH_STORE_F32, out,
				      err);
}

enum fresh_status fresh_index_load_store(const char *path,
					 const char *ids_path,
					 enum fresh_store store,
					 struct fresh_index **out,
					 struct fresh_error *err)
{
	struct fresh_index *idx = NULL;
	struct fresh_hasher hs;
	enum fresh_status st;
	struct stat sb;
	char magic[8] = {0};
	size_t fsize, plen = strlen(path);
	uint64_t want = 0;
	bool snapshot = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fresh_fail(err, FRESH_IO, "%s: not a regular file",
				  path);
	}
	fsize = (size_t)sb.st_size;
	if (fsize >= sizeof magic)
		(void)fresh_pread_full(fd, magic, sizeof magic, 0);
	if (memcmp(magic, "\x93NUMPY", 6) == 0) {
		st = load_npy(fd, path, fsize, store, &idx, &hs, err);
	} else if (memcmp(magic, SNAPSHOT_MAGIC, 8) == 0) {
		snapshot = true;
		st = load_snapshot(fd, path, fsize, store, &idx, &hs, &want,
				   err);
	} else if (plen >= 6 && strcmp(path + plen - 6, ".fvecs") == 0 &&
		   store == FRESH_STORE_BF16) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: --store bf16 maps the float32 rows from "
				"the file and .fvecs interleaves them with "
				"row headers: convert it to .npy",
				path);
	} else if (plen >= 6 && strcmp(path + plen - 6, ".fvecs") == 0) {
		st = load_fvecs(fd, path, fsize, &idx, &hs, err);
	} else {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: unknown format (expected .npy, .fvecs or "
				"a freshd snapshot)",
				path);
	}
	close(fd);
	if (st == FRESH_OK && ids_path)
		st = load_ids(ids_path, idx, err);
	else if (st == FRESH_OK && !snapshot)
		for (size_t r = 0; r < idx->n; r++)
			idx->ids[r] = r;
	if (st == FRESH_OK)
		st = finish(idx, ids_path || snapshot, &hs,
			    ids_path ? ids_path : path, err);
	if (st == FRESH_OK && snapshot && !ids_path && idx->fingerprint != want)
		st = fresh_fail(err, FRESH_CHECKSUM,
				"%s: fingerprint mismatch (damaged snapshot)",
				path);
	if (st != FRESH_OK) {
		if (idx)
			index_free(idx);
		return st;
	}
	*out = idx;
	return FRESH_OK;
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

	st = check_shape(source ? source : "index", n, d, err);
	if (st != FRESH_OK)
		return st;
	bad = first_nonfinite(vectors, n * d);
	if (bad != (size_t)-1)
		return fresh_fail(err, FRESH_INVALID,
				  "row %zu, column %zu: value is not finite",
				  bad / d, bad % d);
	idx = index_alloc(n, d, source);
	if (!idx)
		return fresh_fail(err, FRESH_NOMEM,
				  "no memory for %zu x %zu floats", n, d);
	memcpy(idx->vectors, vectors, n * d * sizeof(float));
	if (ids)
		memcpy(idx->ids, ids, n * sizeof *ids);
	else
		for (size_t r = 0; r < n; r++)
			idx->ids[r] = r;
	hash_shape(&hs, n, d);
	fresh_hasher_update(&hs, idx->vectors, n * d * sizeof(float));
	st = finish(idx, ids != NULL, &hs, "ids", err);
	if (st != FRESH_OK) {
		index_free(idx);
		return st;
	}
	*out = idx;
	return FRESH_OK;
}

enum fresh_status fresh_index_save(const struct fresh_index *idx,
				   const char *path, struct fresh_error *err)
{
	struct fresh_atomic_file f;
	struct snapshot_header h;
	enum fresh_status st;

	memset(&h, 0, sizeof h);
	memcpy(h.magic, SNAPSHOT_MAGIC, 8);
	h.version = SNAPSHOT_VERSION;
	h.n = idx->n;
	h.d = idx->d;
	h.fingerprint = idx->fingerprint;
	st = fresh_atomic_open(&f, path, err);
	if (st != FRESH_OK)
		return st;
	st = fresh_atomic_write(&f, &h, sizeof h, err);
	if (st == FRESH_OK)
		st = fresh_atomic_write(&f, idx->ids, idx->n * 8, err);
	if (st == FRESH_OK)
		st = fresh_atomic_write(&f, idx->vectors,
					idx->n * idx->d * sizeof(float), err);
	st = fresh_atomic_finish(&f, st, err);
	return st;
}
