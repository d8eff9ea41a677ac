/*
 * mem.c - aligned allocation for matrices (see mem.h).
 */
#include "mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_ALIGN ((size_t)2 << 20)
#define LINE_ALIGN ((size_t)64)

void *fresh_alloc(size_t n, size_t size)
{
	size_t bytes, align;
	void *p = NULL;

	if (!fresh_mul_ok(n, size, &bytes))
		return NULL;
	if (bytes == 0)
		bytes = 1;
	align = bytes >= ((size_t)1 << 20) ? HUGE_ALIGN : LINE_ALIGN;
	if (posix_memalign(&p, align, bytes) != 0)
		return NULL;
#ifdef MADV_HUGEPAGE
	if (align == HUGE_ALIGN)
		(void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
	return p;
}

void *fresh_calloc(size_t n, size_t size)
{
	void *p = fresh_alloc(n, size);

	if (p)
		memset(p, 0, n * size);
	return p;
}

void fresh_free(void *p)
{
	free(p);
}

/* A number from a one-line file (0 when absent or "max"). */
static unsigned long long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/* A field of a cgroup's memory.stat (0 when absent). */
static unsigned long long stat_field(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	char key[64];
	unsigned long long v, found = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %llu", key, &v) == 2)
		if (strcmp(key, name) == 0) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

size_t fresh_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb = 0, avail, limit, used, inactive;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	avail = kb * 1024;
	/*
	 * In a container /proc/meminfo is the machine's: the cgroup's limit
	 * (v2, else v1) less its working set (usage less inactive file
	 * pages, which the kernel reclaims first: the mapped index rows of
	 * --store bf16 among them) bounds what this process may still take
	 * before it is killed.
	 */
	limit = read_number("/sys/fs/cgroup/memory.max");
	used = read_number("/sys/fs/cgroup/memory.current");
	inactive = stat_field("/sys/fs/cgroup/memory.stat", "inactive_file");
	if (!limit) {
		limit = read_number(
			"/sys/fs/cgroup/memory/memory.limit_in_bytes");
		used = read_number(
			"/sys/fs/cgroup/memory/memory.usage_in_bytes");
		inactive = stat_field("/sys/fs/cgroup/memory/memory.stat",
				      "total_inactive_file");
	}
	used = used > inactive ? used - inactive : 0;
	if (limit && limit < (1ULL << 60)) {
		unsigned long long room = limit > used ? limit - used : 0;
		if (room < avail)
			avail = room;
	}
	return (size_t)avail;
}
