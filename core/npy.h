/*
 * npy.h - the header of NumPy's .npy format (versions 1, 2 and 3).
 *
 * Only what freshd reads: a dtype string, the fortran_order flag and a
 * shape of at most FRESH_NPY_MAX_DIMS dimensions. The parser never reads
 * past the bytes it is given and names what is wrong in err.
 */
#ifndef FRESH_NPY_H
#define FRESH_NPY_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define FRESH_NPY_MAX_DIMS 8
/* Bytes to read to be sure of holding any header freshd accepts. */
#define FRESH_NPY_MAX_HEADER 65536

struct fresh_npy_header {
	char descr[16]; /* e.g. "<f4" */
	bool fortran_order;
	size_t ndim;
	size_t shape[FRESH_NPY_MAX_DIMS];
	size_t data_offset; /* bytes from the file start to the data */
};

/*
 * Parses the header at the start of buf[0..len). On success fills *h;
 * FRESH_FORMAT (with err) when it is not a well-formed .npy header.
 */
enum fresh_status fresh_npy_parse(const void *buf, size_t len,
				  struct fresh_npy_header *h,
				  struct fresh_error *err);

/* Number of elements (product of the shape); false on overflow. */
bool fresh_npy_count(const struct fresh_npy_header *h, size_t *count);

#endif
