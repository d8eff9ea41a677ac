/*
 * index_file.c - reading and writing index files: .npy, .fvecs, freshd
 * snapshots, and .npy ids.
 *
 * Design: a loader reads the file once, in row chunks, into one aligned
 * buffer; each chunk is checked for non-finite values and hashed into the
 * fingerprint while it is still in cache, so loading costs about one read
 * of the file. Nothing is published until every check has passed: a
 * malformed file yields a status and a message, never a partial index.
 * The vectors are copied rather than mapped so that an operator who
 * overwrites the file under a running daemon cannot change or SIGBUS it
 * (--store bf16 is the exception: index_map.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "index_impl.h"
#include "mem.h"
#include "npy.h"

#define SNAPSHOT_MAGIC "FRESHIDX"
#define SNAPSHOT_VERSION 1u
#define SNAPSHOT_HEADER 64

/* Reads n x d floats at off, checking and hashing them chunk by chunk. */
static enum fresh_status read_rows(int fd, const char *path, off_t off,
				   struct fresh_index *idx,
				   struct fresh_hasher *hs,
				   struct fresh_error *err)
{
	size_t row_bytes = idx->d * sizeof(float);
	size_t rows_per = FRESH_INDEX_CHUNK_BYTES / row_bytes
				  ? FRESH_INDEX_CHUNK_BYTES / row_bytes
				  : 1;

	for (size_t r = 0; r < idx->n; r += rows_per) {
		size_t rows = idx->n - r < rows_per ? idx->n - r : rows_per;
		float *dst = idx->vectors + r * idx->d;
		size_t bad;

		if (fresh_pread_full(fd, dst, rows * row_bytes,
				     off + (off_t)(r * row_bytes)) != FRESH_OK)
			return fresh_fail(err, FRESH_IO,
					  "%s: read failed at row %zu", path,
					  r);
		bad = fresh_index_first_nonfinite(dst, rows * idx->d);
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
	size_t hlen = fsize < FRESH_NPY_MAX_HEADER + 12
			      ? fsize
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
	st = fresh_index_check_shape(path, n, d, err);
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
	*out = fresh_index_alloc(n, d, path, store);
	if (!*out)
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu %s", path, n, d,
				  fresh_store_name(store));
	fresh_index_hash_shape(hs, n, d);
	if (store == FRESH_STORE_BF16)
		return fresh_index_map_rows(fd, path, fsize, h.data_offset,
					    *out, hs, err);
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
		return fresh_index_check_shape(path, 1, d, err);
	rec = 4 + 4 * d;
	if (fsize % rec != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: size %zu is not a multiple of the "
				  "record size %zu (dimension %zu): truncated "
				  "or mixed dimensions",
				  path, fsize, rec, d);
	n = fsize / rec;
	st = fresh_index_check_shape(path, n, d, err);
	if (st != FRESH_OK)
		return st;
	*out = fresh_index_alloc(n, d, path, FRESH_STORE_F32);
	rows_per = FRESH_INDEX_CHUNK_BYTES / rec ? FRESH_INDEX_CHUNK_BYTES / rec
						 : 1;
	stage = malloc(rows_per * rec);
	if (!*out || !stage) {
		free(stage);
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu floats", path, n,
				  d);
	}
	fresh_index_hash_shape(hs, n, d);
	for (size_t r = 0; r < n && st == FRESH_OK; r += rows_per) {
		size_t rows = n - r < rows_per ? n - r : rows_per;
		float *dst = (*out)->vectors + r * d;
		size_t bad;

		if (fresh_pread_full(fd, stage, rows * rec, (off_t)(r * rec)) !=
		    FRESH_OK) {
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
		bad = fresh_index_first_nonfinite(dst, rows * d);
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
	st = fresh_index_check_shape(path, n, d, err);
	if (st != FRESH_OK)
		return st;
	ids_bytes = n * 8;
	vec_bytes = n * d * sizeof(float);
	if (fsize != sizeof h + ids_bytes + vec_bytes)
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: size %zu, expected %zu for %zu x %zu",
				  path, fsize, sizeof h + ids_bytes + vec_bytes,
				  n, d);
	*out = fresh_index_alloc(n, d, path, store);
	if (!*out)
		return fresh_fail(err, FRESH_NOMEM,
				  "%s: no memory for %zu x %zu %s", path, n, d,
				  fresh_store_name(store));
	if (fresh_pread_full(fd, (*out)->ids, ids_bytes, sizeof h) != FRESH_OK)
		return fresh_fail(err, FRESH_IO, "%s: read failed", path);
	fresh_index_hash_shape(hs, n, d);
	if (store == FRESH_STORE_BF16)
		return fresh_index_map_rows(
			fd, path, fsize, sizeof h + ids_bytes, *out, hs, err);
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
				h.data_offset > fsize ? 0
						      : fsize - h.data_offset,
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
				st = fresh_fail(
					err, FRESH_FORMAT,
					"%s: row %zu: negative id %lld", path,
					r, (long long)(int64_t)idx->ids[r]);
				goto out;
			}
		}
	}
out:
	close(fd);
	return st;
}

enum fresh_status fresh_index_load(const char *path, const char *ids_path,
				   struct fresh_index **out,
				   struct fresh_error *err)
{
	return fresh_index_load_store(path, ids_path, FRESH_STORE_F32, out,
				      err);
}

enum fresh_status fresh_index_load_store(const char *path, const char *ids_path,
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
		st = fresh_index_finish(idx, ids_path || snapshot, &hs,
					ids_path ? ids_path : path, err);
	if (st == FRESH_OK && snapshot && !ids_path && idx->fingerprint != want)
		st = fresh_fail(err, FRESH_CHECKSUM,
				"%s: fingerprint mismatch (damaged snapshot)",
				path);
	if (st != FRESH_OK) {
		if (idx)
			fresh_index_destroy(idx);
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
