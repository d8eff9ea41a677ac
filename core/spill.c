/*
 * spill.c - an unnamed, preallocated file of rows (see spill.h).
 */
#include "spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fault.h"
#include "fileio.h"

/* bytes for a message: GiB from 1 GiB on, else MiB. */
static const char *human(double bytes, char *buf, size_t cap)
{
	if (bytes >= 1073741824.0)
		snprintf(buf, cap, "%.2f GiB", bytes / 1073741824.0);
	else
		snprintf(buf, cap, "%.2f MiB", bytes / 1048576.0);
	return buf;
}

/* An unnamed file in dir: O_TMPFILE where the file system has it. */
static int open_unnamed(const char *dir)
{
	char *path;
	int fd;

#ifdef O_TMPFILE
	fd = fresh_sys_open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 ||
	    (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
#endif
	path = malloc(strlen(dir) + sizeof "/h-XXXXXX");
	if (!path) {
		errno = ENOMEM;
		return -1;
	}
	sprintf(path, "%s/h-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		(void)unlink(path);
	free(path);
	return fd;
}

enum fresh_status fresh_spill_create(const char *dir, size_t len,
				     struct fresh_spill *s,
				     struct fresh_error *err)
{
	struct statvfs vs;
	char a[32], b[32];
	int rc;

	s->fd = -1;
	s->map = NULL;
	s->len = len;
	if (statvfs(dir, &vs) == 0) {
		double avail = (double)vs.f_bavail * (double)vs.f_frsize;
		if ((double)len > avail)
			return fresh_fail(
				err, FRESH_NO_SPACE,
				"%s: h(S) in float32 needs %s of disk "
				"(--store bf16 keeps it there) and "
				"%s are free",
				dir, human((double)len, a, sizeof a),
				human(avail, b, sizeof b));
	}
	s->fd = open_unnamed(dir);
	if (s->fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: cannot create a file: %s",
				  dir, strerror(errno));
	if (len == 0)
		return FRESH_OK;
	rc = fresh_fault_hit("fallocate", dir)
		     ? errno
		     : posix_fallocate(s->fd, 0, (off_t)len);
	if (rc != 0) {
		fresh_spill_close(s);
		return fresh_fail(err, rc == ENOSPC ? FRESH_NO_SPACE : FRESH_IO,
				  "%s: cannot allocate %s for h(S) in "
				  "float32: %s",
				  dir, human((double)len, a, sizeof a),
				  strerror(rc));
	}
	return FRESH_OK;
}

enum fresh_status fresh_spill_write(struct fresh_spill *s, const void *buf,
				    size_t len, size_t off)
{
	const char *p = buf;

	if (off > s->len || len > s->len - off)
		return FRESH_INVALID;
	while (len > 0) {
		ssize_t w = fresh_fault_hit("write", NULL)
				    ? -1
				    : pwrite(s->fd, p, len, (off_t)off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == ENOSPC || errno == EDQUOT))
			return FRESH_NO_SPACE;
		if (w <= 0)
			return FRESH_IO;
		p += w;
		off += (size_t)w;
		len -= (size_t)w;
	}
	return FRESH_OK;
}

enum fresh_status fresh_spill_map(struct fresh_spill *s,
				  struct fresh_error *err)
{
	void *map;

	if (s->len == 0)
		return FRESH_OK;
	map = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->fd, 0);
	if (map == MAP_FAILED)
		return fresh_fail(err, FRESH_IO, "cannot map h(S): %s",
				  strerror(errno));
	/* The rescoring reads rows here and there: no read-around. */
	(void)madvise(map, s->len, MADV_RANDOM);
	s->map = map;
	return FRESH_OK;
}

void fresh_spill_close(struct fresh_spill *s)
{
	if (s->map)
		munmap(s->map, s->len);
	if (s->fd >= 0)
		close(s->fd);
	s->map = NULL;
	s->fd = -1;
}
