/*
 * test_fileio.c - whole reads and writes and atomic replacement: a commit
 * leaves exactly the new content (mode 0644 under umask 022, no temp file
 * behind, a stale temp file from a crash overwritten); every failure (a
 * write that hits a full device, a rename that cannot happen, an abort, a
 * missing directory) leaves exactly the old content and removes the temp
 * file; pread/write loops move every byte and report end of file.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "testutil.h"

static char dir[4096];
static mode_t old_umask;

static void setup(void)
{
	tu_tmpdir(dir, sizeof dir);
	old_umask = umask(022);
}

static void teardown(void)
{
	umask(old_umask);
	tu_rmdir(dir);
}

/* The whole file into a malloc'ed buffer; *len its size; NULL if none. */
static char *slurp(const char *path, size_t *len)
{
	struct stat sb;
	char *buf;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	ck_assert_int_eq(fstat(fd, &sb), 0);
	*len = (size_t)sb.st_size;
	buf = malloc(*len + 1);
	ck_assert_int_eq(fresh_pread_full(fd, buf, *len, 0), FRESH_OK);
	buf[*len] = '\0';
	close(fd);
	return buf;
}

static void assert_content(const char *path, const char *want)
{
	size_t len;
	char *got = slurp(path, &len);

	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_mem_eq(got, want, len);
	free(got);
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Writes text to path through the atomic API, committing. */
static enum fresh_status atomic_put(const char *path, const char *text)
{
	struct fresh_atomic_file f;
	enum fresh_status st = fresh_atomic_open(&f, path, NULL);

	if (st != FRESH_OK)
		return st;
	st = fresh_atomic_write(&f, text, strlen(text), NULL);
	return fresh_atomic_finish(&f, st, NULL);
}

START_TEST(commit_replaces_whole_file)
{
	char path[4200], tmp[4300];
	struct stat sb;

	tu_path(path, sizeof path, dir, "state");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	ck_assert_int_eq(atomic_put(path, "first version, long text"),
			 FRESH_OK);
	assert_content(path, "first version, long text");
	ck_assert(!exists(tmp));
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 07777, 0644);
	ck_assert(S_ISREG(sb.st_mode));
	/* Shorter content replaces, it does not overlay. */
	ck_assert_int_eq(atomic_put(path, "v2"), FRESH_OK);
	assert_content(path, "v2");
	/* Empty content is a valid file. */
	ck_assert_int_eq(atomic_put(path, ""), FRESH_OK);
	assert_content(path, "");
	ck_assert(!exists(tmp));
}
END_TEST

START_TEST(writes_in_pieces_and_large)
{
	enum { LEN = 3 << 20 };
	char path[4200];
	struct fresh_atomic_file f;
	unsigned char *data = malloc(LEN);
	char *got;
	size_t len, off = 0;
	struct tu_rng r = {1};

	for (size_t i = 0; i < LEN; i++)
		data[i] = (unsigned char)tu_next(&r);
	tu_path(path, sizeof path, dir, "big");
	ck_assert_int_eq(fresh_atomic_open(&f, path, NULL), FRESH_OK);
	while (off < LEN) {
		size_t n = 1 + tu_next(&r) % 100000;
		if (n > LEN - off)
			n = LEN - off;
		ck_assert_int_eq(fresh_atomic_write(&f, data + off, n, NULL),
				 FRESH_OK);
		off += n;
	}
	/* Nothing is visible under the name before the commit. */
	ck_assert(!exists(path));
	ck_assert_int_eq(fresh_atomic_commit(&f, NULL), FRESH_OK);
	ck_assert_int_eq(f.fd, -1);
	got = slurp(path, &len);
	ck_assert_uint_eq(len, LEN);
	ck_assert_mem_eq(got, data, LEN);
	free(got);
	free(data);
}
END_TEST

START_TEST(stale_temp_file_is_overwritten)
{
	char path[4200], tmp[4300];

	tu_path(path, sizeof path, dir, "x");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	tu_write_file(tmp, "left over by a crash", 20);
	ck_assert_int_eq(atomic_put(path, "new"), FRESH_OK);
	assert_content(path, "new");
	ck_assert(!exists(tmp));
}
END_TEST

START_TEST(abort_keeps_old_content)
{
	char path[4200], tmp[4300];
	struct fresh_atomic_file f;

	tu_path(path, sizeof path, dir, "x");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	ck_assert_int_eq(atomic_put(path, "old"), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_open(&f, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_write(&f, "new!", 4, NULL), FRESH_OK);
	ck_assert(exists(tmp));
	fresh_atomic_abort(&f);
	ck_assert_int_eq(f.fd, -1);
	ck_assert(!exists(tmp));
	assert_content(path, "old");
	/* finish with a failed status is an abort, and passes it on. */
	ck_assert_int_eq(fresh_atomic_open(&f, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_write(&f, "new!", 4, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_finish(&f, FRESH_NOMEM, NULL),
			 FRESH_NOMEM);
	ck_assert(!exists(tmp));
	assert_content(path, "old");
	/* Aborting twice, or after the temp file is gone, is harmless. */
	fresh_atomic_abort(&f);
	assert_content(path, "old");
}
END_TEST

START_TEST(failed_write_keeps_old_content)
{
	char path[4200], tmp[4300];
	struct fresh_atomic_file f;
	struct fresh_error err;
	static char block[1 << 16];
	int full = open("/dev/full", O_WRONLY);
	enum fresh_status st;

	tu_path(path, sizeof path, dir, "x");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	ck_assert_int_eq(atomic_put(path, "old"), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_open(&f, path, NULL), FRESH_OK);
	/* The temp file's descriptor now writes to a full device (ENOSPC). */
	ck_assert_int_ge(full, 0);
	ck_assert_int_ge(dup2(full, f.fd), 0);
	close(full);
	err.msg[0] = '\0';
	memset(block, 'z', sizeof block);
	st = fresh_atomic_write(&f, block, sizeof block, &err);
	ck_assert_int_eq(st, FRESH_IO);
	ck_assert_msg(strstr(err.msg, tmp) && strstr(err.msg, "write failed"),
		      "%s", err.msg);
	ck_assert_int_eq(fresh_atomic_finish(&f, st, NULL), FRESH_IO);
	ck_assert(!exists(tmp));
	assert_content(path, "old");
}
END_TEST

START_TEST(failed_rename_keeps_old_content)
{
	char path[4200], tmp[4300], inner[4300];
	struct fresh_atomic_file f;
	struct fresh_error err;
	enum fresh_status st;

	/* The target is a non-empty directory: rename(2) must fail. */
	tu_path(path, sizeof path, dir, "d");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	snprintf(inner, sizeof inner, "%s/keep", path);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	tu_write_file(inner, "old", 3);
	ck_assert_int_eq(fresh_atomic_open(&f, path, NULL), FRESH_OK);
	ck_assert_int_eq(fresh_atomic_write(&f, "new", 3, NULL), FRESH_OK);
	err.msg[0] = '\0';
	st = fresh_atomic_commit(&f, &err);
	ck_assert_int_eq(st, FRESH_IO);
	ck_assert_msg(strstr(err.msg, "rename failed"), "%s", err.msg);
	ck_assert_int_eq(f.fd, -1); /* commit closes always */
	ck_assert(exists(tmp));	    /* ... and abort then cleans up */
	fresh_atomic_abort(&f);
	ck_assert(!exists(tmp));
	assert_content(inner, "old");
}
END_TEST

START_TEST(open_failures)
{
	char path[4200], longpath[5000];
	struct fresh_atomic_file f;
	struct fresh_error err;

	snprintf(path, sizeof path, "%s/missing/x", dir);
	err.msg[0] = '\0';
	ck_assert_int_eq(fresh_atomic_open(&f, path, &err), FRESH_IO);
	ck_assert_msg(strstr(err.msg, "missing/x.tmp"), "%s", err.msg);
	ck_assert_int_eq(f.fd, -1);
	fresh_atomic_abort(&f); /* nothing to undo */
	ck_assert_int_eq(fresh_atomic_finish(&f, FRESH_IO, NULL), FRESH_IO);

	/* A path whose ".tmp" does not fit. */
	memset(longpath, 'a', sizeof longpath);
	longpath[sizeof f.path - 2] = '\0';
	ck_assert_int_eq(fresh_atomic_open(&f, longpath, &err), FRESH_INVALID);
	ck_assert_int_eq(f.fd, -1);
	fresh_atomic_abort(&f); /* must not unlink a truncated name */
}
END_TEST

START_TEST(pread_and_write_full)
{
	char path[4200];
	unsigned char buf[100], back[100];
	int fd;

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 7);
	tu_path(path, sizeof path, dir, "rw");
	fd = open(path, O_RDWR | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fresh_write_full(fd, buf, sizeof buf), FRESH_OK);
	ck_assert_int_eq(fresh_write_full(fd, buf, 0), FRESH_OK);
	memset(back, 0, sizeof back);
	ck_assert_int_eq(fresh_pread_full(fd, back, 40, 60), FRESH_OK);
	ck_assert_mem_eq(back, buf + 60, 40);
	ck_assert_int_eq(fresh_pread_full(fd, back, 0, 100), FRESH_OK);
	/* Past the end: refused, not a short read. */
	ck_assert_int_eq(fresh_pread_full(fd, back, 41, 60), FRESH_IO);
	ck_assert_int_eq(fresh_pread_full(fd, back, 1, 100), FRESH_IO);
	close(fd);
	ck_assert_int_eq(fresh_pread_full(fd, back, 1, 0), FRESH_IO);
	ck_assert_int_eq(fresh_write_full(fd, buf, 1), FRESH_IO);
	fd = open("/dev/full", O_WRONLY);
	if (fd >= 0) {
		ck_assert_int_eq(fresh_write_full(fd, buf, sizeof buf),
				 FRESH_IO);
		close(fd);
	}
}
END_TEST

START_TEST(fsync_parent)
{
	char path[4200], longpath[5000];

	tu_path(path, sizeof path, dir, "anything");
	ck_assert_int_eq(fresh_fsync_parent(path), FRESH_OK);
	snprintf(path, sizeof path, "%s/no/such/file", dir);
	ck_assert_int_eq(fresh_fsync_parent(path), FRESH_IO);
	/* A parent that is a regular file is not a directory. */
	tu_path(path, sizeof path, dir, "plain");
	tu_write_file(path, "x", 1);
	snprintf(longpath, sizeof longpath, "%s/child", path);
	ck_assert_int_eq(fresh_fsync_parent(longpath), FRESH_IO);
	memset(longpath, 'a', sizeof longpath);
	longpath[sizeof longpath - 1] = '\0';
	ck_assert_int_eq(fresh_fsync_parent(longpath), FRESH_INVALID);
}
END_TEST

static Suite *fileio_suite(void)
{
	Suite *s = suite_create("fileio");
	TCase *ok = tcase_create("commit");
	TCase *bad = tcase_create("failure");
	TCase *io = tcase_create("io");

	tcase_add_checked_fixture(ok, setup, teardown);
	tcase_add_checked_fixture(bad, setup, teardown);
	tcase_add_checked_fixture(io, setup, teardown);
	tcase_add_test(ok, commit_replaces_whole_file);
	tcase_add_test(ok, writes_in_pieces_and_large);
	tcase_add_test(ok, stale_temp_file_is_overwritten);
	tcase_add_test(bad, abort_keeps_old_content);
	tcase_add_test(bad, failed_write_keeps_old_content);
	tcase_add_test(bad, failed_rename_keeps_old_content);
	tcase_add_test(bad, open_failures);
	tcase_add_test(io, pread_and_write_full);
	tcase_add_test(io, fsync_parent);
	suite_add_tcase(s, ok);
	suite_add_tcase(s, bad);
	suite_add_tcase(s, io);
	return s;
}

int main(void)
{
	return tu_run(fileio_suite());
}
