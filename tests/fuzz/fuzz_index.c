/*
 * fuzz_index.c - the index loader (core/index.c): .npy, .fvecs and
 * snapshot files, with and without an ids .npy.
 *
 * Input: the vector file, optionally followed by IDS_SEPARATOR and the
 * ids file. The vector part is written to the scratch directory as x.npy
 * and as x.fvecs (snapshots are recognised by content under either name)
 * and loaded from each, alone and, when the separator is present, with the
 * rest as ids.npy. A loaded index is checked (finite values, every id found
 * at its row) and saved and reloaded: the snapshot must give the same
 * index back.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "fuzz_common.h"
#include "hash.h"
#include "index.h"

#define IDS_SEPARATOR "\n--ids--\n"

/* sequential: the ids must be 0..n-1 (no ids file, not a snapshot). */
static void check_index(const struct fresh_index *idx, bool sequential)
{
	size_t n = fresh_index_size(idx), d = fresh_index_dim(idx);
	const float *v = fresh_index_vectors(idx);
	const uint64_t *ids = fresh_index_ids(idx);

	FZ_CHECK(n > 0 && d > 0 && d <= FRESH_MAX_DIM);
	FZ_CHECK(((uintptr_t)v & 63) == 0);
	for (size_t i = 0; i < n * d; i++)
		FZ_CHECK(isfinite(v[i]));
	for (size_t r = 0; r < n; r++) {
		size_t row = (size_t)-1;
		if (sequential)
			FZ_CHECK(ids[r] == r);
		FZ_CHECK(fresh_index_find(idx, ids[r], &row));
		FZ_CHECK(row == r);
	}
	FZ_CHECK(fresh_index_source(idx) != NULL);
}

/* Saves idx and loads the snapshot: the same index must come back. */
static void round_trip(const struct fresh_index *idx)
{
	struct fresh_index *back = NULL;
	struct fresh_error err;
	char snap[4200];
	size_t n = fresh_index_size(idx), d = fresh_index_dim(idx);

	fz_path(snap, sizeof snap, "x.snap");
	FZ_CHECK(fresh_index_save(idx, snap, &err) == FRESH_OK);
	FZ_CHECK(fresh_index_load(snap, NULL, &back, &err) == FRESH_OK);
	FZ_CHECK(fresh_index_size(back) == n);
	FZ_CHECK(fresh_index_dim(back) == d);
	FZ_CHECK(fresh_index_fingerprint(back) == fresh_index_fingerprint(idx));
	FZ_CHECK(memcmp(fresh_index_vectors(back), fresh_index_vectors(idx),
			n * d * sizeof(float)) == 0);
	FZ_CHECK(memcmp(fresh_index_ids(back), fresh_index_ids(idx),
			n * sizeof(uint64_t)) == 0);
	check_index(back, false);
	fresh_index_release(back);
	(void)unlink(snap);
}

static void try_load(const char *path, const char *ids_path, bool snapshot)
{
	struct fresh_index *idx = NULL;
	struct fresh_error err;
	enum fresh_status st;

	err.msg[0] = '\0';
	st = fresh_index_load(path, ids_path, &idx, &err);
	if (st != FRESH_OK) {
		FZ_CHECK(idx == NULL);
		FZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
		FZ_CHECK(err.msg[0] != '\0');
		return;
	}
	FZ_CHECK(idx != NULL);
	check_index(idx, !ids_path && !snapshot);
	/* A second reference, as a reload would take, then both dropped. */
	fresh_index_retain(idx);
	fresh_index_release(idx);
	round_trip(idx);
	/*
	 * The same file with --store bf16: it loads (unless .fvecs or a value
	 * beyond bf16's range) with the same fingerprint and float32 rows.
	 */
	{
		struct fresh_index *h = NULL;

		if (fresh_index_load_store(path, ids_path, FRESH_STORE_BF16, &h,
					   &err) == FRESH_OK) {
			FZ_CHECK(fresh_index_fingerprint(h) ==
				 fresh_index_fingerprint(idx));
			FZ_CHECK(memcmp(fresh_index_vectors(h),
					fresh_index_vectors(idx),
					fresh_index_size(idx) *
						fresh_index_dim(idx) *
						sizeof(float)) == 0);
			FZ_CHECK(fresh_index_bf16(h) != NULL);
			fresh_index_release(h);
		} else {
			FZ_CHECK(h == NULL);
			FZ_CHECK(err.msg[0] != '\0');
		}
	}
	fresh_index_release(idx);
}

/*
 * A copy of a snapshot with the fingerprint made right (the header's n and
 * d must match the size), or NULL.
 */
static unsigned char *fix_fingerprint(const uint8_t *data, size_t size)
{
	unsigned char *b;
	uint64_t n, d, shape[2];
	struct fresh_hasher hs;

	if (size < 64 || memcmp(data, "FRESHIDX", 8) != 0)
		return NULL;
	n = fresh_get64(data + 16);
	d = fresh_get64(data + 24);
	if (n == 0 || d == 0 || n > (size - 64) / 8 ||
	    d > (size - 64 - n * 8) / 4 / n || 64 + n * 8 + n * d * 4 != size)
		return NULL;
	b = fz_memdup(data, size);
	shape[0] = n;
	shape[1] = d;
	fresh_hasher_init(&hs, 0);
	fresh_hasher_update(&hs, shape, sizeof shape);
	fresh_hasher_update(&hs, b + 64 + n * 8, n * d * 4);
	fresh_hasher_update(&hs, b + 64, n * 8);
	fresh_put64(b + 32, fresh_hasher_final(&hs));
	if (memcmp(b, data, size) == 0) {
		free(b);
		return NULL;
	}
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const size_t seplen = sizeof IDS_SEPARATOR - 1;
	const uint8_t *sep = memmem(data, size, IDS_SEPARATOR, seplen);
	size_t vlen = sep ? (size_t)(sep - data) : size;
	bool snapshot = vlen >= 8 && memcmp(data, "FRESHIDX", 8) == 0;
	char npy[4200], fvecs[4200], ids[4200];

	fz_path(npy, sizeof npy, "x.npy");
	fz_path(fvecs, sizeof fvecs, "x.fvecs");
	fz_path(ids, sizeof ids, "ids.npy");
	fz_write(npy, data, vlen);
	fz_write(fvecs, data, vlen);
	try_load(npy, NULL, snapshot);
	try_load(fvecs, NULL, snapshot);
	if (sep) {
		fz_write(ids, sep + seplen, size - vlen - seplen);
		try_load(npy, ids, snapshot);
		try_load(fvecs, ids, snapshot);
	}
	if (snapshot) {
		unsigned char *fixed = fix_fingerprint(data, vlen);
		if (fixed) {
			fz_write(npy, fixed, vlen);
			try_load(npy, NULL, true);
			free(fixed);
		}
	}
	fz_clear_dir(fz_tmpdir());
	return 0;
}
