/*
 * fileio.h - whole reads and writes, and files replaced atomically.
 *
 * Every durable file freshd writes (checkpoints, snapshots, the reload
 * record) goes through fresh_atomic_*: write PATH.tmp, fsync it, rename it
 * over PATH, fsync the directory. A reader therefore sees the old file or
 * the new one, never a mix, even across a power loss.
 */
#ifndef FRESH_FILEIO_H
#define FRESH_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

#include "status.h"

/*
 * The system calls durable state goes through, so that a test build can
 * fail any one of them (fault.h); what names the file for the trace.
 */
int fresh_sys_open(const char *path, int flags, int mode);
ssize_t fresh_sys_write(int fd, const void *buf, size_t len);
ssize_t fresh_sys_pread(int fd, void *buf, size_t len, off_t off);
int fresh_sys_fsync(int fd, const char *what);
int fresh_sys_fdatasync(int fd, const char *what);
int fresh_sys_ftruncate(int fd, off_t len, const char *what);
int fresh_sys_rename(const char *from, const char *to);

/* pread until len bytes are read; FRESH_IO at end of file or on error. */
enum fresh_status fresh_pread_full(int fd, void *buf, size_t len, off_t off);
/* write until len bytes are written; FRESH_IO on error. */
enum fresh_status fresh_write_full(int fd, const void *buf, size_t len);
/* fsync the directory that holds path (for renames and creations). */
enum fresh_status fresh_fsync_parent(const char *path);

struct fresh_atomic_file {
	int fd;
	char path[4096];
	char tmp[4096];
};

enum fresh_status fresh_atomic_open(struct fresh_atomic_file *f,
				    const char *path, struct fresh_error *err);
enum fresh_status fresh_atomic_write(struct fresh_atomic_file *f,
				     const void *buf, size_t len,
				     struct fresh_error *err);
/* fsync, close, rename over path, fsync the directory. Closes f always. */
enum fresh_status fresh_atomic_commit(struct fresh_atomic_file *f,
				      struct fresh_error *err);
/* Closes and removes the temp file. Safe after a failed commit. */
void fresh_atomic_abort(struct fresh_atomic_file *f);
/*
 * Ends a write that began with fresh_atomic_open: commits when st is
 * FRESH_OK (the status of the writes so far), else aborts. Returns the
 * final status.
 */
enum fresh_status fresh_atomic_finish(struct fresh_atomic_file *f,
				      enum fresh_status st,
				      struct fresh_error *err);

#endif
