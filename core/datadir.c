/*
 * datadir.c - a data directory's names and lock, and the pair snapshot
 * file (see datadir.h).
 */
#include "datadir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "crc32c.h"
#include "fileio.h"

/* The longest name under DIR: checkpoints/ckpt-<20 digits>.bin, and the
 * log's segments, with room to spare. */
#define LONGEST_NAME 64

#define PAIRS_MAGIC "FRSHPAIR"
#define PAIRS_FORMAT 1u
#define PAIRS_HEADER 56
#define ENTRY_HEADER 32

char *fresh_path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (p) {
		memcpy(p, dir, a);
		p[a] = '/';
		memcpy(p + a + 1, name, b + 1);
	}
	return p;
}

/*
 * One process per data dir: two daemons appending to one log would
 * interleave records. The lock dies with the process, so a crash never
 * leaves it held.
 */
static enum fresh_status take_lock(struct fresh_datadir *dd,
				   struct fresh_error *err)
{
	char *path = fresh_path_join(dd->root, "LOCK"), pid[32];
	int fd, n;

	if (!path)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		enum fresh_status st = fresh_fail(err, FRESH_IO, "%s: %s", path,
						  strerror(errno));
		free(path);
		return st;
	}
	free(path);
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		n = (int)pread(fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		return fresh_fail(err, FRESH_CONFLICT,
				  "data dir %s is in use by another freshd "
				  "(pid %s)",
				  dd->root, pid[0] ? pid : "unknown");
	}
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		/* Only informational; the lock itself holds. */
	}
	dd->lock_fd = fd;
	return FRESH_OK;
}

enum fresh_status fresh_datadir_open(const char *root,
				     struct fresh_datadir **out,
				     struct fresh_error *err)
{
	struct fresh_datadir *dd;
	const char *dirs[3];
	enum fresh_status st = FRESH_OK;

	*out = NULL;
	if (!root[0] || strlen(root) + LONGEST_NAME >= PATH_MAX)
		return fresh_fail(err, FRESH_INVALID,
				  "data dir: the path is %s",
				  root[0] ? "too long" : "empty");
	dd = calloc(1, sizeof *dd);
	if (!dd)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	dd->lock_fd = -1;
	dd->root = strdup(root);
	dd->pairs = fresh_path_join(root, "pairs.snap");
	dd->queries = fresh_path_join(root, "queries.snap");
	dd->wal = fresh_path_join(root, "wal");
	dd->checkpoints = fresh_path_join(root, "checkpoints");
	if (!dd->root || !dd->pairs || !dd->queries || !dd->wal ||
	    !dd->checkpoints)
		st = fresh_fail(err, FRESH_NOMEM, "out of memory");
	dirs[0] = dd->root;
	dirs[1] = dd->checkpoints;
	dirs[2] = dd->wal;
	for (size_t i = 0; i < 3 && st == FRESH_OK; i++)
		if (mkdir(dirs[i], 0755) != 0 && errno != EEXIST)
			st = fresh_fail(err, FRESH_IO, "%s: %s", dirs[i],
					strerror(errno));
	if (st == FRESH_OK)
		st = take_lock(dd, err);
	if (st != FRESH_OK) {
		fresh_datadir_close(dd);
		return st;
	}
	*out = dd;
	return FRESH_OK;
}

void fresh_datadir_close(struct fresh_datadir *dd)
{
	if (!dd)
		return;
	if (dd->lock_fd >= 0)
		close(dd->lock_fd);
	free(dd->root);
	free(dd->pairs);
	free(dd->queries);
	free(dd->wal);
	free(dd->checkpoints);
	free(dd);
}

enum fresh_status fresh_pairs_file_save(const char *path,
					const struct fresh_pairs_snapshot *snap,
					const struct fresh_pairs_file *meta,
					struct fresh_error *err)
{
	struct fresh_atomic_file f;
	unsigned char h[PAIRS_HEADER], e[ENTRY_HEADER], c[4];
	uint32_t crc;
	enum fresh_status st;

	memset(h, 0, sizeof h);
	memcpy(h, PAIRS_MAGIC, 8);
	fresh_put32(h + 8, PAIRS_FORMAT);
	fresh_put64(h + 16, meta->through_seq);
	fresh_put64(h + 24, meta->total);
	fresh_put64(h + 32, meta->fingerprint);
	fresh_put64(h + 40, snap->dim);
	fresh_put64(h + 48, snap->n);
	st = fresh_atomic_open(&f, path, err);
	if (st != FRESH_OK)
		return st;
	crc = fresh_crc32c(0, h, sizeof h);
	st = fresh_atomic_write(&f, h, sizeof h, err);
	for (size_t i = 0; i < snap->n && st == FRESH_OK; i++) {
		const float *g = snap->g + i * snap->dim;
		fresh_put64(e, snap->ids[i]);
		fresh_put64(e + 8, (uint64_t)snap->steps[i]);
		fresh_put64(e + 16, snap->seqs[i]);
		fresh_put64(e + 24, snap->has_step[i] ? 1 : 0);
		crc = fresh_crc32c(crc, e, sizeof e);
		crc = fresh_crc32c(crc, g, snap->dim * sizeof *g);
		st = fresh_atomic_write(&f, e, sizeof e, err);
		if (st == FRESH_OK)
			st = fresh_atomic_write(&f, g, snap->dim * sizeof *g,
						err);
	}
	fresh_put32(c, crc);
	if (st == FRESH_OK)
		st = fresh_atomic_write(&f, c, sizeof c, err);
	st = fresh_atomic_finish(&f, st, err);
	return st;
}

enum fresh_status fresh_pairs_file_load(const char *path, struct fresh_pairs *p,
					struct fresh_pairs_file *meta,
					struct fresh_error *err)
{
	unsigned char *buf = NULL;
	size_t size, dim, n, entry;
	enum fresh_status st = FRESH_OK;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return FRESH_NOT_FOUND;
		return fresh_fail(err, FRESH_IO, "%s: %s", path,
				  strerror(errno));
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fresh_fail(err, FRESH_IO, "%s: not a regular file",
				  path);
	}
	size = (size_t)sb.st_size;
	buf = malloc(size ? size : 1);
	if (!buf) {
		close(fd);
		return fresh_fail(err, FRESH_NOMEM, "%s: out of memory", path);
	}
	if (fresh_pread_full(fd, buf, size, 0) != FRESH_OK) {
		st = fresh_fail(err, FRESH_IO, "%s: read failed", path);
		goto out;
	}
	if (size < PAIRS_HEADER + 4 || memcmp(buf, PAIRS_MAGIC, 8) != 0 ||
	    fresh_get32(buf + 8) != PAIRS_FORMAT) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: not a freshd pair snapshot", path);
		goto out;
	}
	if (fresh_crc32c(0, buf, size - 4) != fresh_get32(buf + size - 4)) {
		st = fresh_fail(err, FRESH_CHECKSUM,
				"%s: checksum mismatch (damaged)", path);
		goto out;
	}
	meta->through_seq = fresh_get64(buf + 16);
	meta->total = fresh_get64(buf + 24);
	meta->fingerprint = fresh_get64(buf + 32);
	dim = (size_t)fresh_get64(buf + 40);
	n = (size_t)fresh_get64(buf + 48);
	if (dim != fresh_pairs_dim(p)) {
		st = fresh_fail(err, FRESH_CONFLICT,
				"%s: pairs of width %zu, this run expects %zu",
				path, dim, fresh_pairs_dim(p));
		goto out;
	}
	entry = ENTRY_HEADER + dim * 4;
	if (n > (size - PAIRS_HEADER - 4) / entry ||
	    PAIRS_HEADER + n * entry + 4 != size) {
		st = fresh_fail(err, FRESH_FORMAT,
				"%s: %zu pairs do not fit its size %zu", path,
				n, size);
		goto out;
	}
	for (size_t i = 0; i < n && st == FRESH_OK; i++) {
		const unsigned char *e = buf + PAIRS_HEADER + i * entry;
		float *g = malloc(dim * sizeof *g);
		bool kept;
		if (!g) {
			st = FRESH_NOMEM;
			break;
		}
		memcpy(g, e + ENTRY_HEADER, dim * sizeof *g);
		st = fresh_pairs_put(p, fresh_get64(e), g,
				     fresh_get64(e + 24) != 0,
				     (int64_t)fresh_get64(e + 8),
				     fresh_get64(e + 16), &kept);
		free(g);
	}
	if (st != FRESH_OK)
		st = fresh_fail(err, st, "%s: cannot hold its pairs", path);
out:
	close(fd);
	free(buf);
	return st;
}
