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

size_t fresh_mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (size_t)kb * 1024;
}
