/*
 * fileio.c - see fileio.h.
 *
 * Design: a failed fsync is never retried (after a failure the kernel may
 * have dropped the dirty pages and a second fsync would report success for
 * data that is gone); the caller gets FRESH_IO and the temp file is removed.
 */
#include "fileio.h"

#include "fault.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int fresh_sys_open(const char *path, int flags, int mode)
{
	if ((flags & (O_WRONLY | O_RDWR | O_CREAT)) &&
	    fresh_fault_hit("open", path))
		return -1;
	return open(path, flags, mode);
}

ssize_t fresh_sys_write(int fd, const void *buf, size_t len)
{
	if (fresh_fault_hit("write", NULL))
		return -1;
	return write(fd, buf, len);
}

ssize_t fresh_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	if (fresh_fault_hit("read", NULL))
		return -1;
	return pread(fd, buf, len, off);
}

int fresh_sys_fsync(int fd, const char *what)
{
	if (fresh_fault_hit("fsync", what))
		return -1;
	return fsync(fd);
}

int fresh_sys_fdatasync(int fd, const char *what)
{
	if (fresh_fault_hit("fdatasync", what))
		return -1;
	return fdatasync(fd);
}

int fresh_sys_ftruncate(int fd, off_t len, const char *what)
{
	if (fresh_fault_hit("ftruncate", what))
		return -1;
	return ftruncate(fd, len);
}

int fresh_sys_rename(const char *from, const char *to)
{
	if (fresh_fault_hit("rename", to))
		return -1;
	return rename(from, to);
}

enum fresh_status fresh_pread_full(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t r = fresh_sys_pread(fd, p, len, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return FRESH_IO;
		p += r;
		off += r;
		len -= (size_t)r;
	}
	return FRESH_OK;
}

enum fresh_status fresh_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t w = fresh_sys_write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return FRESH_IO;
		p += w;
		len -= (size_t)w;
	}
	return FRESH_OK;
}

enum fresh_status fresh_fsync_parent(const char *path)
{
	char copy[4096];
	enum fresh_status st = FRESH_OK;
	int fd;

	if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy)
		return FRESH_INVALID;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return FRESH_IO;
	if (fresh_sys_fsync(fd, copy) != 0)
		st = FRESH_IO;
	close(fd);
	return st;
}

enum fresh_status fresh_atomic_open(struct fresh_atomic_file *f,
				    const char *path, struct fresh_error *err)
{
	f->fd = -1;
	f->tmp[0] = '\0';
	if (snprintf(f->path, sizeof f->path, "%s", path) >=
		    (int)sizeof f->path ||
	    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path) >=
		    (int)sizeof f->tmp) {
		f->tmp[0] = '\0';
		return fresh_fail(err, FRESH_INVALID, "%s: path too long",
				  path);
	}
	f->fd = fresh_sys_open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			       0644);
	if (f->fd < 0)
		return fresh_fail(err, FRESH_IO, "%s: %s", f->tmp,
				  strerror(errno));
	return FRESH_OK;
}

enum fresh_status fresh_atomic_write(struct fresh_atomic_file *f,
				     const void *buf, size_t len,
				     struct fresh_error *err)
{
	if (fresh_write_full(f->fd, buf, len) != FRESH_OK)
		return fresh_fail(err, FRESH_IO, "%s: write failed: %s", f->tmp,
				  strerror(errno));
	return FRESH_OK;
}

enum fresh_status fresh_atomic_commit(struct fresh_atomic_file *f,
				      struct fresh_error *err)
{
	int fd = f->fd;

	f->fd = -1;
	if (fresh_sys_fsync(fd, f->tmp) != 0) {
		int e = errno;
		close(fd);
		return fresh_fail(err, FRESH_IO, "%s: fsync failed: %s", f->tmp,
				  strerror(e));
	}
	if (close(fd) != 0)
		return fresh_fail(err, FRESH_IO, "%s: close failed: %s", f->tmp,
				  strerror(errno));
	if (fresh_sys_rename(f->tmp, f->path) != 0)
		return fresh_fail(err, FRESH_IO, "%s: rename failed: %s",
				  f->path, strerror(errno));
	if (fresh_fsync_parent(f->path) != FRESH_OK)
		return fresh_fail(err, FRESH_IO,
				  "%s: fsync of the directory failed", f->path);
	return FRESH_OK;
}

void fresh_atomic_abort(struct fresh_atomic_file *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	if (f->tmp[0])
		unlink(f->tmp);
}

enum fresh_status fresh_atomic_finish(struct fresh_atomic_file *f,
				      enum fresh_status st,
				      struct fresh_error *err)
{
	if (st == FRESH_OK)
		st = fresh_atomic_commit(f, err);
	if (st != FRESH_OK)
		fresh_atomic_abort(f);
	return st;
}
