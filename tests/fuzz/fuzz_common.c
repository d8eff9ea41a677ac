/*
 * fuzz_common.c - see fuzz_common.h.
 */
#include "fuzz_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[4096];
static volatile unsigned char sink;

_Noreturn void fz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
	abort();
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[8192];
		struct stat sb;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
			remove_tree(path);
			rmdir(path);
		} else {
			unlink(path);
		}
	}
	closedir(d);
}

void fz_clear_dir(const char *dir)
{
	remove_tree(dir);
}

static void remove_scratch(void)
{
	if (scratch[0]) {
		remove_tree(scratch);
		rmdir(scratch);
		scratch[0] = '\0';
	}
}

const char *fz_tmpdir(void)
{
	if (!scratch[0]) {
		const char *base = getenv("TMPDIR");

		if (!base || !base[0])
			base = "/tmp";
		if (snprintf(scratch, sizeof scratch, "%s/freshd-fuzz-XXXXXX",
			     base) >= (int)sizeof scratch - 64)
			fz_fail("TMPDIR too long", __FILE__, __LINE__);
		if (!mkdtemp(scratch)) {
			fprintf(stderr, "mkdtemp %s: %s\n", scratch,
				strerror(errno));
			abort();
		}
		atexit(remove_scratch);
	}
	return scratch;
}

void fz_path(char *buf, size_t cap, const char *name)
{
	if (snprintf(buf, cap, "%s/%s", fz_tmpdir(), name) >= (int)cap)
		fz_fail("path too long", __FILE__, __LINE__);
}

void fz_write(const char *path, const void *data, size_t size)
{
	const char *p = data;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0) {
		fprintf(stderr, "open %s: %s\n", path, strerror(errno));
		abort();
	}
	while (size > 0) {
		ssize_t w = write(fd, p, size);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "write %s: %s\n", path,
				strerror(errno));
			abort();
		}
		p += w;
		size -= (size_t)w;
	}
	if (close(fd) != 0) {
		fprintf(stderr, "close %s: %s\n", path, strerror(errno));
		abort();
	}
}

void *fz_memdup(const void *data, size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p)
		fz_fail("out of memory", __FILE__, __LINE__);
	if (size)
		memcpy(p, data, size);
	return p;
}

void fz_touch(const void *p, size_t n)
{
	const unsigned char *b = p;
	unsigned char x = 0;

	for (size_t i = 0; i < n; i++)
		x ^= b[i];
	sink = x;
}
