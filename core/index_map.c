/*
 * index_map.c - --store bf16's load: the float32 rows stay in the file,
 * mapped read-only, and are streamed once to build the bfloat16 copy the
 * scan reads, on two threads, each chunk's pages leaving the resident set
 * as it goes (they stay in the page cache for the rescoring).
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "index_impl.h"

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
			h->st = fresh_index_shrink_rows(h->idx, h->r, h->rows,
							h->label, &h->max,
							&h->err);
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
enum fresh_status fresh_index_map_rows(int fd, const char *path, size_t fsize,
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
	size_t rows_per = FRESH_INDEX_CHUNK_BYTES / row_bytes
				  ? FRESH_INDEX_CHUNK_BYTES / row_bytes
				  : 1;
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
		bad = fresh_index_first_nonfinite(src, rows * idx->d);
		if (bad != (size_t)-1)
			st = fresh_fail(err, FRESH_FORMAT,
					"%s: row %zu, column %zu: value is "
					"not finite",
					path, r + bad / idx->d, bad % idx->d);
		else
			fresh_hasher_update(hs, src, rows * row_bytes);
		if (st == FRESH_OK)
			st = fresh_index_shrink_rows(idx, r, mine, path, &max,
						     err);
		if (helper) {
			pthread_barrier_wait(&h.done);
			if (st == FRESH_OK && h.st != FRESH_OK) {
				st = h.st;
				*err = h.err;
			}
		}
		/* The pages stay in the page cache, not in our resident set. */
		lo = (uintptr_t)src & ~(uintptr_t)(page - 1);
		hi = ((uintptr_t)(src + rows * idx->d)) &
		     ~(uintptr_t)(page - 1);
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
