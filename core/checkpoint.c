/*
 * checkpoint.c - a corrector's file format and the checkpoint files of a
 * data dir (see checkpoint.h).
 *
 * Design: checkpoints are little-endian and end with a CRC-32C over every
 * byte before it; a file that fails any check is refused whole. The
 * format is written and read through corrector.h's interface only.
 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fileio.h"
#include "index.h"

#define CKPT_MAGIC "FRSHCKPT"
#define CKPT_FORMAT 1u
#define CKPT_HEADER 72
#define CKPT_HOLDOUT 48
#define CKPT_MAX_BYTES ((size_t)1 << 32)
/*
 * Format 2 is format 1 with a block of fresh rows after the parameters:
 * their count (8 bytes), the ids (8 each, strictly ascending), the rows
 * (count x d_out floats). Written only when there are fresh rows, so a
 * corrector without them keeps format 1's bytes.
 */
#define CKPT_FORMAT_FRESH 2u

static size_t fresh_block_bytes(size_t n, size_t d_out)
{
	return 8 + n * (8 + d_out * sizeof(float));
}

bool fresh_checkpoint_fits(const struct fresh_corrector_shape *shape,
			   size_t fresh_rows)
{
	size_t params = fresh_corrector_layout_of(shape).total;
	size_t row = 8 + shape->d_out * sizeof(float);

	return fresh_rows <= (CKPT_MAX_BYTES - CKPT_HEADER - CKPT_HOLDOUT - 12 -
			      params * sizeof(float)) /
				     row;
}

/* The checkpoint's bytes in order, to a buffer or a file, and their CRC. */
struct emitter {
	enum fresh_status (*put)(void *ctx, const void *p, size_t n);
	void *ctx;
	uint32_t crc;
	enum fresh_status st;
};

static void emit(struct emitter *e, const void *p, size_t n)
{
	if (e->st != FRESH_OK || n == 0)
		return;
	e->crc = fresh_crc32c(e->crc, p, n);
	e->st = e->put(e->ctx, p, n);
}

/* The checkpoint's length, or 0 when no reader would take it back. */
static size_t checkpoint_bytes(const struct fresh_corrector *c)
{
	const struct fresh_corrector_shape *shape = fresh_corrector_shape(c);
	size_t nf = fresh_corrector_fresh_rows(c, NULL, NULL);
	size_t n = CKPT_HEADER +
		   fresh_corrector_layout(c).total * sizeof(float) +
		   (nf ? fresh_block_bytes(nf, shape->d_out) : 0) +
		   CKPT_HOLDOUT + 4;

	return n > CKPT_MAX_BYTES ? 0 : n;
}

/*
 * Header, parameters, fresh rows (format 2), held-out block, CRC. The rows
 * go out from the corrector's own memory: no copy of the checkpoint is
 * made, which at --max-pairs rows of d floats is most of it.
 */
static enum fresh_status emit_corrector(const struct fresh_corrector *c,
					struct emitter *e)
{
	const struct fresh_corrector_shape *shape = fresh_corrector_shape(c);
	struct fresh_corrector_layout layout = fresh_corrector_layout(c);
	unsigned char head[CKPT_HEADER] = {0}, hold[CKPT_HOLDOUT] = {0};
	unsigned char ids_le[8 * 512], crc[4];
	struct fresh_holdout q;
	const uint64_t *ids;
	const float *rows;
	size_t nf = fresh_corrector_fresh_rows(c, &ids, &rows);

	memcpy(head, CKPT_MAGIC, 8);
	fresh_put32(head + 8, nf ? CKPT_FORMAT_FRESH : CKPT_FORMAT);
	fresh_put32(head + 12, (uint32_t)shape->kind);
	fresh_put32(head + 16, (uint32_t)shape->act);
	fresh_put32(head + 20, fresh_corrector_normalize(c) ? 1u : 0u);
	fresh_put64(head + 24, shape->d_in);
	fresh_put64(head + 32, shape->d_out);
	fresh_put64(head + 40, shape->hidden);
	fresh_put64(head + 48, fresh_corrector_version(c));
	fresh_put64(head + 56, fresh_corrector_trained_through(c));
	fresh_put64(head + 64, layout.total);
	emit(e, head, sizeof head);
	emit(e, fresh_corrector_params_const(c), layout.total * sizeof(float));
	if (nf) {
		fresh_put64(ids_le, nf);
		emit(e, ids_le, 8);
		for (size_t i = 0; i < nf; i += 512) {
			size_t m = nf - i < 512 ? nf - i : 512;
			for (size_t k = 0; k < m; k++)
				fresh_put64(ids_le + 8 * k, ids[i + k]);
			emit(e, ids_le, 8 * m);
		}
		emit(e, rows, nf * shape->d_out * sizeof(float));
	}
	if (fresh_corrector_holdout(c, &q)) {
		double v[4] = {q.stale_mse, q.corrected_mse, q.stale_rel_err,
			       q.corrected_rel_err};
		fresh_put32(hold, 1u | (q.stale_defined ? 2u : 0u));
		fresh_put64(hold + 8, q.n);
		for (int i = 0; i < 4; i++)
			memcpy(hold + 16 + 8 * i, &v[i], 8);
	}
	emit(e, hold, sizeof hold);
	fresh_put32(crc, e->crc);
	if (e->st == FRESH_OK) /* not a part of its own checksum */
		e->st = e->put(e->ctx, crc, sizeof crc);
	return e->st;
}

static enum fresh_status put_buffer(void *ctx, const void *p, size_t n)
{
	unsigned char **at = ctx;

	memcpy(*at, p, n);
	*at += n;
	return FRESH_OK;
}

enum fresh_status fresh_corrector_serialize(const struct fresh_corrector *c,
					    void **buf, size_t *len)
{
	size_t n = checkpoint_bytes(c);
	unsigned char *b, *at;
	struct emitter e = {put_buffer, &at, 0, FRESH_OK};

	if (n == 0)
		return FRESH_TOO_LARGE;
	b = malloc(n);
	if (!b)
		return FRESH_NOMEM;
	at = b;
	(void)emit_corrector(c, &e);
	*buf = b;
	*len = n;
	return FRESH_OK;
}

/* The held-out block; absent means all zero, so bytes round-trip. */
static enum fresh_status read_holdout(const unsigned char *h,
				      struct fresh_corrector *c,
				      struct fresh_error *err)
{
	static const unsigned char zero[CKPT_HOLDOUT];
	uint32_t flags = fresh_get32(h);
	struct fresh_holdout q;
	double v[4];

	if (flags == 0) {
		if (memcmp(h, zero, CKPT_HOLDOUT) != 0)
			return fresh_fail(
				err, FRESH_FORMAT,
				"checkpoint held-out block malformed");
		return FRESH_OK;
	}
	if (flags > 3 || !(flags & 1u) || fresh_get32(h + 4) != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "checkpoint held-out block malformed");
	for (int i = 0; i < 4; i++) {
		memcpy(&v[i], h + 16 + 8 * i, 8);
		if (!isfinite(v[i]) || v[i] < 0 ||
		    (!(flags & 2u) && (i == 0 || i == 2) && v[i] != 0))
			return fresh_fail(
				err, FRESH_FORMAT,
				"checkpoint held-out error %d invalid", i);
	}
	q.n = (size_t)fresh_get64(h + 8);
	q.stale_defined = flags & 2u;
	q.stale_mse = v[0];
	q.corrected_mse = v[1];
	q.stale_rel_err = v[2];
	q.corrected_rel_err = v[3];
	fresh_corrector_set_holdout(c, &q);
	return FRESH_OK;
}

/* The fresh-row block: ids strictly ascending, rows finite. */
static enum fresh_status read_fresh_rows(const unsigned char *f, size_t n,
					 struct fresh_corrector *c,
					 struct fresh_error *err)
{
	size_t d = fresh_corrector_shape(c)->d_out;
	uint64_t *ids = malloc(n * sizeof *ids);
	float *rows = malloc(n * d * sizeof *rows);
	enum fresh_status st = FRESH_OK;

	if (!ids || !rows) {
		st = fresh_fail(err, FRESH_NOMEM,
				"no memory for %zu fresh rows", n);
		goto out;
	}
	for (size_t i = 0; i < n && st == FRESH_OK; i++) {
		ids[i] = fresh_get64(f + 8 + 8 * i);
		if (i && ids[i] <= ids[i - 1])
			st = fresh_fail(err, FRESH_FORMAT,
					"checkpoint fresh-row ids not "
					"ascending at %zu",
					i);
	}
	memcpy(rows, f + 8 + 8 * n, n * d * sizeof *rows);
	for (size_t i = 0; i < n * d && st == FRESH_OK; i++)
		if (!isfinite(rows[i]))
			st = fresh_fail(err, FRESH_FORMAT,
					"checkpoint fresh row %zu is not "
					"finite",
					i / d);
	if (st == FRESH_OK &&
	    fresh_corrector_set_fresh_rows(c, ids, rows, n) != FRESH_OK)
		st = fresh_fail(err, FRESH_NOMEM,
				"no memory for %zu fresh rows", n);
out:
	free(ids);
	free(rows);
	return st;
}

enum fresh_status fresh_corrector_deserialize(const void *buf, size_t len,
					      struct fresh_corrector **out,
					      struct fresh_error *err)
{
	const unsigned char *b = buf;
	struct fresh_corrector_shape shape;
	struct fresh_corrector_layout layout;
	struct fresh_corrector *c;
	struct fresh_error serr;
	float *params;
	uint32_t flags, format;
	uint64_t nparams, nf = 0;
	size_t fresh = 0, head;
	enum fresh_status st;

	if (len < CKPT_HEADER + CKPT_HOLDOUT + 4 ||
	    memcmp(b, CKPT_MAGIC, 8) != 0)
		return fresh_fail(
			err, FRESH_FORMAT,
			"not a freshd checkpoint (bad magic or size)");
	format = fresh_get32(b + 8);
	if (format != CKPT_FORMAT && format != CKPT_FORMAT_FRESH)
		return fresh_fail(err, FRESH_FORMAT,
				  "checkpoint format %u, expected %u or %u",
				  format, CKPT_FORMAT, CKPT_FORMAT_FRESH);
	if (fresh_crc32c(0, b, len - 4) != fresh_get32(b + len - 4))
		return fresh_fail(err, FRESH_CHECKSUM,
				  "checkpoint checksum mismatch (damaged)");
	memset(&shape, 0, sizeof shape);
	shape.kind = (enum fresh_corrector_kind)fresh_get32(b + 12);
	shape.act = (enum fresh_activation)fresh_get32(b + 16);
	flags = fresh_get32(b + 20);
	if (fresh_get64(b + 24) > FRESH_MAX_DIM ||
	    fresh_get64(b + 32) > FRESH_MAX_DIM ||
	    fresh_get64(b + 40) > FRESH_MAX_HIDDEN || flags > 1)
		return fresh_fail(err, FRESH_FORMAT,
				  "checkpoint header out of range");
	if (format == CKPT_FORMAT_FRESH && shape.kind != FRESH_CORRECTOR_MLP)
		return fresh_fail(err, FRESH_FORMAT,
				  "checkpoint has fresh rows but a corrector "
				  "'%s' (only mlp serves them)",
				  fresh_corrector_kind_name(shape.kind));
	shape.d_in = (size_t)fresh_get64(b + 24);
	shape.d_out = (size_t)fresh_get64(b + 32);
	shape.hidden = (size_t)fresh_get64(b + 40);
	st = fresh_corrector_shape_check(&shape, &serr);
	if (st != FRESH_OK)
		return fresh_fail(err, FRESH_FORMAT, "checkpoint: %s",
				  serr.msg);
	layout = fresh_corrector_layout_of(&shape);
	nparams = fresh_get64(b + 64);
	head = CKPT_HEADER + layout.total * sizeof(float);
	if (nparams == layout.total && format == CKPT_FORMAT_FRESH) {
		if (len < head + 8 + CKPT_HOLDOUT + 4)
			return fresh_fail(err, FRESH_FORMAT,
					  "checkpoint fresh-row block cut off");
		nf = fresh_get64(b + head);
		if (nf == 0 || nf > (len - head - 8 - CKPT_HOLDOUT -
				     4) / (8 + shape.d_out * sizeof(float)))
			return fresh_fail(err, FRESH_FORMAT,
					  "checkpoint fresh-row count %llu "
					  "does not fit its %zu bytes",
					  (unsigned long long)nf, len);
		fresh = fresh_block_bytes((size_t)nf, shape.d_out);
	}
	if (nparams != layout.total || len != head + fresh + CKPT_HOLDOUT + 4)
		return fresh_fail(err, FRESH_FORMAT,
				  "checkpoint holds %llu parameters in %zu "
				  "bytes, its shape needs %zu",
				  (unsigned long long)nparams, len,
				  layout.total);
	st = fresh_corrector_create(&shape, &c, err);
	if (st != FRESH_OK)
		return st;
	params = fresh_corrector_params(c);
	memcpy(params, b + CKPT_HEADER, layout.total * sizeof(float));
	for (size_t i = 0; i < layout.total; i++) {
		if (!isfinite(params[i])) {
			fresh_corrector_free(c);
			return fresh_fail(err, FRESH_FORMAT,
					  "checkpoint parameter %zu is not "
					  "finite",
					  i);
		}
	}
	if (nf)
		st = read_fresh_rows(b + head, (size_t)nf, c, err);
	if (st == FRESH_OK)
		st = read_holdout(b + len - 4 - CKPT_HOLDOUT, c, err);
	if (st != FRESH_OK) {
		fresh_corrector_free(c);
		return st;
	}
	fresh_corrector_set_normalize(c, flags & 1u);
	fresh_corrector_set_version(c, fresh_get64(b + 48));
	fresh_corrector_set_trained_through(c, fresh_get64(b + 56));
	*out = c;
	return FRESH_OK;
}

struct file_out {
	struct fresh_atomic_file f;
	struct fresh_error *err;
};

static enum fresh_status put_file(void *ctx, const void *p, size_t n)
{
	struct file_out *o = ctx;

	return fresh_atomic_write(&o->f, p, n, o->err);
}

enum fresh_status fresh_corrector_save(const struct fresh_corrector *c,
				       const char *path,
				       struct fresh_error *err)
{
	struct file_out out = {.err = err};
	struct emitter e = {put_file, &out, 0, FRESH_OK};
	enum fresh_status st;

	if (checkpoint_bytes(c) == 0)
		return fresh_fail(err, FRESH_TOO_LARGE,
				  "%s: the corrector and its fresh rows pass "
				  "the %zu-byte checkpoint limit (lower "
				  "--max-pairs)",
				  path, CKPT_MAX_BYTES);
	st = fresh_atomic_open(&out.f, path, err);
	if (st != FRESH_OK)
		return st;
	return fresh_atomic_finish(&out.f, emit_corrector(c, &e), err);
}

enum fresh_status fresh_corrector_load(const char *path,
				       struct fresh_corrector **out,
				       struct fresh_error *err)
{
	struct fresh_error derr;
	enum fresh_status st;
	struct stat sb;
	void *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: %s", path,
				  strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    (size_t)sb.st_size > CKPT_MAX_BYTES) {
		close(fd);
		return fresh_fail(err, FRESH_FORMAT,
				  "%s: not a regular file of plausible size",
				  path);
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (!buf) {
		close(fd);
		return fresh_fail(err, FRESH_NOMEM, "%s: out of memory", path);
	}
	st = fresh_pread_full(fd, buf, (size_t)sb.st_size, 0);
	close(fd);
	if (st != FRESH_OK)
		st = fresh_fail(err, FRESH_IO, "%s: read failed", path);
	else if ((st = fresh_corrector_deserialize(buf, (size_t)sb.st_size, out,
						   &derr)) != FRESH_OK)
		st = fresh_fail(err, st, "%s: %s", path, derr.msg);
	free(buf);
	return st;
}

/* The one spelling of a checkpoint's file name. */
#define CKPT_NAME "%s/checkpoints/ckpt-%020" PRIu64 ".bin"

void fresh_checkpoint_path(const char *dir, uint64_t version, char *buf,
			   size_t cap)
{
	if (snprintf(buf, cap, CKPT_NAME, dir, version) >= (int)cap)
		buf[0] = '\0';
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x < y) - (x > y);
}

enum fresh_status fresh_checkpoint_list(const char *dir, uint64_t **versions,
					size_t *n)
{
	char *path;
	DIR *d;
	struct dirent *e;
	size_t cap = 0;

	*versions = NULL;
	*n = 0;
	if (asprintf(&path, "%s/checkpoints", dir) < 0)
		return FRESH_NOMEM;
	d = opendir(path);
	free(path);
	if (!d)
		return errno == ENOENT ? FRESH_OK : FRESH_IO;
	while ((e = readdir(d)) != NULL) {
		unsigned long long v;
		char tail[2];
		if (strlen(e->d_name) != 29 ||
		    sscanf(e->d_name, "ckpt-%20llu.bi%1[n]", &v, tail) != 2)
			continue;
		if (*n == cap) {
			uint64_t *nv;
			cap = cap ? 2 * cap : 8;
			nv = realloc(*versions, cap * sizeof *nv);
			if (!nv) {
				closedir(d);
				free(*versions);
				*versions = NULL;
				*n = 0;
				return FRESH_NOMEM;
			}
			*versions = nv;
		}
		(*versions)[(*n)++] = v;
	}
	closedir(d);
	if (*n > 1)
		qsort(*versions, *n, sizeof **versions, cmp_desc);
	return FRESH_OK;
}

void fresh_checkpoint_prune(const char *dir, size_t keep)
{
	uint64_t *v;
	size_t n;

	if (fresh_checkpoint_list(dir, &v, &n) != FRESH_OK)
		return;
	for (size_t i = keep; i < n; i++)
		fresh_checkpoint_remove(dir, v[i]);
	free(v);
}

/* DIR/checkpoints/ckpt-<version>.bin, malloc'ed (NULL: out of memory). */
static char *version_path(const char *dir, uint64_t version)
{
	char *path;

	if (asprintf(&path, CKPT_NAME, dir, version) < 0)
		return NULL;
	return path;
}

enum fresh_status fresh_checkpoint_save(const char *dir, uint64_t version,
					const struct fresh_corrector *c,
					struct fresh_error *err)
{
	char *path = version_path(dir, version);
	enum fresh_status st;

	if (!path)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	st = fresh_corrector_save(c, path, err);
	free(path);
	return st;
}

enum fresh_status fresh_checkpoint_load(const char *dir, uint64_t version,
					struct fresh_corrector **out,
					struct fresh_error *err)
{
	char *path = version_path(dir, version);
	enum fresh_status st;

	*out = NULL;
	if (!path)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	st = fresh_corrector_load(path, out, err);
	free(path);
	return st;
}

void fresh_checkpoint_remove(const char *dir, uint64_t version)
{
	char *path = version_path(dir, version);

	if (path)
		unlink(path);
	free(path);
}
