/*
 * wire.h - little-endian integers in the binary bodies shards and their
 * coordinator exchange (api_shard.c, coord.c).
 */
#ifndef SRV_WIRE_H
#define SRV_WIRE_H

#include <stdint.h>

static inline void srv_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t srv_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

#endif
