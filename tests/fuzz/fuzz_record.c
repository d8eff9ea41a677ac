/*
 * fuzz_record.c - update-log record payloads (fresh_record_decode,
 * core/record.c).
 *
 * The input is copied into an 8-byte aligned buffer of exactly its size
 * (the decoder requires the alignment a log segment gives). CLEAR and
 * EXPIRE must be exactly a header and encode back to the same meaning. A
 * decoded UPDATE must describe arrays that lie within the buffer (every
 * byte is read) and encode back to the same bytes up to the padding; a
 * copy at a misaligned address must never decode as an UPDATE.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* malloc gives at least 16-byte alignment; size exactly 'size'. */
	unsigned char *buf = fz_memdup(data, size);
	unsigned char *odd, *again;
	enum fresh_record_type type = 0;
	struct fresh_update u;
	enum fresh_status st;
	size_t meaningful;

	FZ_CHECK(((uintptr_t)buf & 7) == 0);
	st = fresh_record_decode(buf, size, &type, &u);
	if (st != FRESH_OK) {
		FZ_CHECK(st == FRESH_FORMAT);
		free(buf);
		return 0;
	}
	if (type != FRESH_RECORD_UPDATE) {
		/* CLEAR and EXPIRE (whose threshold is the step field). */
		unsigned char h[FRESH_RECORD_HEADER];
		enum fresh_record_type t2 = 0;
		struct fresh_update u2;
		int64_t step;

		FZ_CHECK(type == FRESH_RECORD_CLEAR ||
			 type == FRESH_RECORD_EXPIRE);
		FZ_CHECK(size == FRESH_RECORD_HEADER);
		FZ_CHECK(buf[0] == (unsigned char)type);
		memcpy(&step, buf + 16, 8);
		if (type == FRESH_RECORD_EXPIRE) {
			FZ_CHECK(u.step == step);
			fresh_record_encode_expire(h, step);
		} else {
			fresh_record_encode_clear(h);
		}
		FZ_CHECK(fresh_record_decode(h, sizeof h, &t2, &u2) ==
			 FRESH_OK);
		FZ_CHECK(t2 == type);
		FZ_CHECK(type != FRESH_RECORD_EXPIRE || u2.step == step);
		free(buf);
		return 0;
	}
	FZ_CHECK(type == FRESH_RECORD_UPDATE);
	FZ_CHECK(u.n_targets > 0 && u.dim > 0);
	FZ_CHECK(fresh_record_size(&u) == size);
	fz_touch(u.ids, u.n_targets * sizeof *u.ids);
	fz_touch(u.vectors, u.n_targets * u.dim * sizeof *u.vectors);
	if (u.n_queries) {
		fz_touch(u.positives, u.n_queries * sizeof *u.positives);
		fz_touch(u.queries, u.n_queries * u.dim * sizeof *u.queries);
	}
	FZ_CHECK(((uintptr_t)u.ids & 7) == 0);
	FZ_CHECK(!u.n_queries || ((uintptr_t)u.positives & 7) == 0);

	/* Round trip: the same header and arrays; the padding zeroed. */
	again = malloc(size);
	FZ_CHECK(again != NULL);
	fresh_record_encode(&u, again);
	meaningful = FRESH_RECORD_HEADER + (u.n_targets + u.n_queries) * 8 +
		     (u.n_targets + u.n_queries) * u.dim * 4;
	FZ_CHECK(meaningful <= size);
	FZ_CHECK(memcmp(again, buf, meaningful) == 0);
	for (size_t i = meaningful; i < size; i++)
		FZ_CHECK(again[i] == 0);
	free(again);

	/* The same bytes misaligned must be refused, not misread. */
	odd = malloc(size + 4);
	FZ_CHECK(odd != NULL);
	memcpy(odd + 4, buf, size);
	FZ_CHECK(fresh_record_decode(odd + 4, size, &type, &u) ==
		 FRESH_INVALID);
	free(odd);
	free(buf);
	return 0;
}
