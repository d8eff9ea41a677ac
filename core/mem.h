/*
 * mem.h - allocation of large float matrices.
 *
 * Matrices are 64-byte aligned (one cache line, one AVX-512 register);
 * those of a megabyte or more are 2 MiB aligned and advised for transparent
 * huge pages, since a scan over the index touches every page of it and TLB
 * misses are then a measurable share of a pass. Free with fresh_free.
 */
#ifndef FRESH_MEM_H
#define FRESH_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* n * size bytes, uninitialised; NULL on overflow or out of memory. */
void *fresh_alloc(size_t n, size_t size);
/* As fresh_alloc, zero-filled. */
void *fresh_calloc(size_t n, size_t size);
void fresh_free(void *p);

/*
 * Memory the system can still give (MemAvailable, or less when a cgroup
 * limit leaves less room), in bytes; 0 when it cannot tell.
 */
size_t fresh_mem_available(void);

/* a * b without overflow, else false. */
static inline bool fresh_mul_ok(size_t a, size_t b, size_t *out)
{
	if (b != 0 && a > (size_t)-1 / b)
		return false;
	*out = a * b;
	return true;
}

#endif
