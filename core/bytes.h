/*
 * bytes.h - little-endian fields in durable formats (checkpoints, log
 * records, snapshots). freshd writes host order and requires a
 * little-endian host (checked at compile time), so these are unaligned
 * loads and stores.
 */
#ifndef FRESH_BYTES_H
#define FRESH_BYTES_H

#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "freshd's files are little-endian, as is its host");

static inline void fresh_put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline void fresh_put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline uint32_t fresh_get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

static inline uint64_t fresh_get64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

#endif
