/*
 * fuzz_crc.h - for the harnesses of files that end in a CRC-32C of what
 * precedes it (checkpoints, pair snapshots).
 */
#ifndef FUZZ_CRC_H
#define FUZZ_CRC_H

#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"
#include "fuzz_common.h"

/*
 * one(data), then one(data with its trailing CRC made right) when that
 * differs: most mutations break the checksum, and this lets them reach
 * the parser behind it too.
 */
static inline void fz_with_fixed_crc(const uint8_t *data, size_t size,
				     void (*one)(const uint8_t *, size_t))
{
	unsigned char *fixed;

	one(data, size);
	if (size < 8)
		return;
	fixed = fz_memdup(data, size);
	fresh_put32(fixed + size - 4, fresh_crc32c(0, fixed, size - 4));
	if (memcmp(fixed, data, size) != 0)
		one(fixed, size);
	free(fixed);
}

#endif
