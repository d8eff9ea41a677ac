/*
 * record.h - what an update-log record says, and its byte layout.
 *
 * Layout (little-endian): u8 type, u8 flags, u16 reserved, u32 targets,
 * u32 queries, u32 dim, i64 step, then targets x u64 ids, queries x u64
 * positives, targets x dim float32, queries x dim float32, zero padding to
 * a multiple of 8 bytes. The 64-bit arrays come first and every record is
 * a multiple of 8 long, so in a log segment read into memory they are
 * naturally aligned. Type CLEAR (DELETE /v1/pairs, an index reload) is the
 * first 24 bytes alone.
 */
#ifndef FRESH_RECORD_H
#define FRESH_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum fresh_record_type {
	FRESH_RECORD_UPDATE = 1,
	FRESH_RECORD_CLEAR = 2,
	FRESH_RECORD_EXPIRE = 3, /* drop pairs whose step is below u.step */
};

/* An update as the engine takes it; all arrays borrowed. */
struct fresh_update {
	size_t n_targets;
	const uint64_t *ids;
	const float *vectors; /* n_targets x dim */
	size_t dim;
	bool has_step;
	int64_t step;
	size_t n_queries;
	const float *queries;	   /* n_queries x dim */
	const uint64_t *positives; /* n_queries */
};

/* Bytes fresh_record_encode needs for u; 0 on overflow. */
size_t fresh_record_size(const struct fresh_update *u);
/* Writes u as an UPDATE record into buf (fresh_record_size bytes). */
void fresh_record_encode(const struct fresh_update *u, void *buf);
/* Writes a CLEAR record (FRESH_RECORD_HEADER bytes). */
#define FRESH_RECORD_HEADER 24
void fresh_record_encode_clear(void *buf);
/* Writes an EXPIRE record: pairs with a step below min_step go. */
void fresh_record_encode_expire(void *buf, int64_t min_step);

/*
 * Parses a record (for EXPIRE, u->step holds the threshold). For UPDATE,
 * *u points into buf, which must stay alive
 * and be 8-byte aligned (FRESH_INVALID otherwise). FRESH_FORMAT when the
 * sizes do not add up.
 */
enum fresh_status fresh_record_decode(const void *buf, size_t len,
				      enum fresh_record_type *type,
				      struct fresh_update *u);

#endif
