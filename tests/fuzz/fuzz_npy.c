/*
 * fuzz_npy.c - the .npy header parser (core/npy.c) on arbitrary bytes.
 *
 * Checks, on success: the header lies within the input, descr is a string
 * that fits, the shape has at most FRESH_NPY_MAX_DIMS dimensions, and
 * fresh_npy_count agrees with an overflow-checked product.
 */
#include <string.h>

#include "fuzz_common.h"
#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fresh_npy_header h;
	struct fresh_error err;
	enum fresh_status st;
	size_t count, product = 1;
	bool overflow = false;

	err.msg[0] = '\0';
	st = fresh_npy_parse(data, size, &h, &err);
	if (st != FRESH_OK) {
		FZ_CHECK(st == FRESH_FORMAT);
		FZ_CHECK(memchr(err.msg, '\0', sizeof err.msg) != NULL);
		FZ_CHECK(err.msg[0] != '\0');
		return 0;
	}
	FZ_CHECK(h.data_offset >= 10 && h.data_offset <= size);
	FZ_CHECK(h.data_offset <= FRESH_NPY_MAX_HEADER + 12);
	FZ_CHECK(memchr(h.descr, '\0', sizeof h.descr) != NULL);
	FZ_CHECK(h.ndim <= FRESH_NPY_MAX_DIMS);
	for (size_t i = 0; i < h.ndim; i++) {
		unsigned __int128 wide =
			(unsigned __int128)product * h.shape[i];
		if (wide > SIZE_MAX) {
			overflow = true;
			break;
		}
		product = (size_t)wide;
	}
	if (fresh_npy_count(&h, &count))
		FZ_CHECK(!overflow && count == product);
	else
		FZ_CHECK(overflow);
	return 0;
}
