/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every durable record.
 *
 * Uses the SSE4.2 crc32 instruction when the CPU has it (chosen once, at
 * first use), a slicing table otherwise; both give the same values.
 */
#ifndef FRESH_CRC32C_H
#define FRESH_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues crc (0 to start) over len bytes. */
uint32_t fresh_crc32c(uint32_t crc, const void *data, size_t len);

#endif
