/*
 * record.c - the update-log record codec (see record.h). Decoding checks
 * every count against the length before any array is touched: a record is
 * input from disk and is fuzzed (tests/fuzz/fuzz_record.c).
 */
#include "record.h"

#include <string.h>

#include "bytes.h"
#include "index.h"

size_t fresh_record_size(const struct fresh_update *u)
{
	size_t t = u->n_targets, q = u->n_queries, d = u->dim;

	if (t > UINT32_MAX || q > UINT32_MAX || d > FRESH_MAX_DIM)
		return 0;
	/* t, q < 2^32 and d <= 2^14: no product below overflows 64 bits. */
	return (FRESH_RECORD_HEADER + t * 8 + q * 8 + (t + q) * d * 4 + 7) / 8 *
	       8;
}

void fresh_record_encode(const struct fresh_update *u, void *buf)
{
	unsigned char *b = buf;
	size_t t = u->n_targets, q = u->n_queries, d = u->dim;

	memset(b, 0, FRESH_RECORD_HEADER);
	b[0] = FRESH_RECORD_UPDATE;
	b[1] = u->has_step ? 1 : 0;
	fresh_put32(b + 4, (uint32_t)t);
	fresh_put32(b + 8, (uint32_t)q);
	fresh_put32(b + 12, (uint32_t)d);
	fresh_put64(b + 16, (uint64_t)u->step);
	b += FRESH_RECORD_HEADER;
	memcpy(b, u->ids, t * 8);
	b += t * 8;
	if (q) {
		memcpy(b, u->positives, q * 8);
		b += q * 8;
	}
	memcpy(b, u->vectors, t * d * 4);
	b += t * d * 4;
	if (q) {
		memcpy(b, u->queries, q * d * 4);
		b += q * d * 4;
	}
	memset(b, 0, (size_t)((unsigned char *)buf + fresh_record_size(u) - b));
}

void fresh_record_encode_clear(void *buf)
{
	unsigned char *b = buf;

	memset(b, 0, FRESH_RECORD_HEADER);
	b[0] = FRESH_RECORD_CLEAR;
}

void fresh_record_encode_expire(void *buf, int64_t min_step)
{
	unsigned char *b = buf;

	memset(b, 0, FRESH_RECORD_HEADER);
	b[0] = FRESH_RECORD_EXPIRE;
	fresh_put64(b + 16, (uint64_t)min_step);
}

enum fresh_status fresh_record_decode(const void *buf, size_t len,
				      enum fresh_record_type *type,
				      struct fresh_update *u)
{
	const unsigned char *b = buf;
	size_t t, q, d, need;

	memset(u, 0, sizeof *u);
	if (len < FRESH_RECORD_HEADER || (b[1] & ~1u) || b[2] || b[3])
		return FRESH_FORMAT;
	if (b[0] == FRESH_RECORD_CLEAR || b[0] == FRESH_RECORD_EXPIRE) {
		*type = (enum fresh_record_type)b[0];
		u->step = (int64_t)fresh_get64(b + 16);
		return len == FRESH_RECORD_HEADER ? FRESH_OK : FRESH_FORMAT;
	}
	if (b[0] != FRESH_RECORD_UPDATE)
		return FRESH_FORMAT;
	*type = FRESH_RECORD_UPDATE;
	t = fresh_get32(b + 4);
	q = fresh_get32(b + 8);
	d = fresh_get32(b + 12);
	if (d == 0 || d > FRESH_MAX_DIM || t == 0)
		return FRESH_FORMAT;
	u->n_targets = t;
	u->n_queries = q;
	u->dim = d;
	need = fresh_record_size(u);
	if (need != len)
		return FRESH_FORMAT;
	if ((uintptr_t)buf % 8 != 0)
		return FRESH_INVALID;
	u->has_step = b[1] & 1u;
	u->step = (int64_t)fresh_get64(b + 16);
	b += FRESH_RECORD_HEADER;
	u->ids = (const uint64_t *)(const void *)b;
	b += t * 8;
	if (q) {
		u->positives = (const uint64_t *)(const void *)b;
		b += q * 8;
	}
	u->vectors = (const float *)(const void *)b;
	b += t * d * 4;
	if (q)
		u->queries = (const float *)(const void *)b;
	return FRESH_OK;
}
