/*
 * test_record.c - the update-log record codec: every kind (UPDATE with and
 * without queries and steps, CLEAR, EXPIRE) survives encode/decode with
 * the documented byte layout, sizes and zero padding; decoded arrays point
 * into the (8-aligned) buffer; and each malformed record is refused with
 * its status: short, wrong length (every truncation of a valid record),
 * unknown kind, stray flag or reserved bits, zero or oversized counts, a
 * misaligned buffer. Records carry no checksum of their own (the log frames
 * them with one, see wal.h), so there is no checksum case here.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "index.h"
#include "record.h"
#include "testutil.h"

/* A buffer with room to spare, 8-aligned (malloc's alignment is 16). */
static unsigned char *alloc_rec(size_t len)
{
	unsigned char *b = malloc(len + 16);
	ck_assert_ptr_nonnull(b);
	memset(b, 0xa5, len + 16); /* padding must be written, not inherited */
	return b;
}

struct sample {
	uint64_t ids[5], pos[3];
	float vec[5 * 7], q[3 * 7];
	struct fresh_update u;
};

static void make_sample(struct sample *s, size_t t, size_t q, size_t d,
			bool has_step, int64_t step, uint64_t seed)
{
	struct tu_rng r = {seed};

	ck_assert_uint_le(t, 5);
	ck_assert_uint_le(q, 3);
	ck_assert_uint_le(d, 7);
	for (size_t i = 0; i < t; i++)
		s->ids[i] = tu_next(&r);
	for (size_t i = 0; i < q; i++)
		s->pos[i] = s->ids[i % t];
	tu_fill_normal(&r, s->vec, t * d);
	tu_fill_normal(&r, s->q, q * d);
	memset(&s->u, 0, sizeof s->u);
	s->u.n_targets = t;
	s->u.ids = s->ids;
	s->u.vectors = s->vec;
	s->u.dim = d;
	s->u.has_step = has_step;
	s->u.step = step;
	s->u.n_queries = q;
	s->u.queries = q ? s->q : NULL;
	s->u.positives = q ? s->pos : NULL;
}

START_TEST(update_round_trip)
{
	/* (targets, queries, dim, has_step, step) */
	static const struct {
		size_t t, q, d;
		bool has_step;
		int64_t step;
	} cases[] = {
		{1, 0, 1, false, 0},	    {1, 0, 2, true, -5},
		{2, 1, 3, true, INT64_MAX}, {5, 3, 7, true, INT64_MIN},
		{3, 0, 7, false, 0},	    {4, 2, 1, false, 0},
	};

	for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
		struct sample s;
		struct fresh_update got;
		enum fresh_record_type type = 0;
		size_t t = cases[c].t, q = cases[c].q, d = cases[c].d;
		size_t raw = 24 + 8 * t + 8 * q + 4 * (t + q) * d;
		size_t len;
		unsigned char *b;

		make_sample(&s, t, q, d, cases[c].has_step, cases[c].step, c);
		len = fresh_record_size(&s.u);
		ck_assert_uint_eq(len, (raw + 7) / 8 * 8);
		b = alloc_rec(len);
		fresh_record_encode(&s.u, b);
		/* Header layout (record.h) and zeroed padding. */
		ck_assert_uint_eq(b[0], FRESH_RECORD_UPDATE);
		ck_assert_uint_eq(b[1], cases[c].has_step ? 1 : 0);
		ck_assert_uint_eq(b[2] | b[3], 0);
		ck_assert_uint_eq(fresh_get32(b + 4), t);
		ck_assert_uint_eq(fresh_get32(b + 8), q);
		ck_assert_uint_eq(fresh_get32(b + 12), d);
		ck_assert_int_eq((int64_t)fresh_get64(b + 16), cases[c].step);
		ck_assert_uint_eq(fresh_get64(b + 24), s.ids[0]);
		for (size_t i = raw; i < len; i++)
			ck_assert_uint_eq(b[i], 0);
		ck_assert_uint_eq(b[len], 0xa5); /* nothing past the end */

		ck_assert_int_eq(fresh_record_decode(b, len, &type, &got),
				 FRESH_OK);
		ck_assert_int_eq(type, FRESH_RECORD_UPDATE);
		ck_assert_uint_eq(got.n_targets, t);
		ck_assert_uint_eq(got.n_queries, q);
		ck_assert_uint_eq(got.dim, d);
		ck_assert(got.has_step == cases[c].has_step);
		ck_assert_int_eq(got.step, cases[c].step);
		/* Borrowed from the buffer, 8-aligned arrays first. */
		ck_assert_ptr_eq(got.ids, (const void *)(b + 24));
		ck_assert_uint_eq((uintptr_t)got.ids % 8, 0);
		ck_assert_mem_eq(got.ids, s.ids, t * 8);
		ck_assert_mem_eq(got.vectors, s.vec, t * d * 4);
		if (q) {
			ck_assert_uint_eq((uintptr_t)got.positives % 8, 0);
			ck_assert_mem_eq(got.positives, s.pos, q * 8);
			ck_assert_mem_eq(got.queries, s.q, q * d * 4);
		} else {
			ck_assert_ptr_null(got.positives);
			ck_assert_ptr_null(got.queries);
		}
		free(b);
	}
}
END_TEST

START_TEST(clear_and_expire_round_trip)
{
	static const int64_t steps[] = {0,	   1,	      -1,
					123456789, INT64_MIN, INT64_MAX};
	unsigned char b[FRESH_RECORD_HEADER] __attribute__((aligned(8)));
	enum fresh_record_type type = 0;
	struct fresh_update u;

	memset(b, 0xff, sizeof b);
	fresh_record_encode_clear(b);
	ck_assert_uint_eq(b[0], FRESH_RECORD_CLEAR);
	for (size_t i = 1; i < sizeof b; i++)
		ck_assert_uint_eq(b[i], 0);
	ck_assert_int_eq(fresh_record_decode(b, sizeof b, &type, &u), FRESH_OK);
	ck_assert_int_eq(type, FRESH_RECORD_CLEAR);
	ck_assert_uint_eq(u.n_targets, 0);

	for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
		memset(b, 0xff, sizeof b);
		fresh_record_encode_expire(b, steps[i]);
		ck_assert_uint_eq(b[0], FRESH_RECORD_EXPIRE);
		ck_assert_uint_eq(b[1] | b[2] | b[3], 0);
		ck_assert_uint_eq(fresh_get64(b + 4) | fresh_get32(b + 12), 0);
		type = 0;
		ck_assert_int_eq(fresh_record_decode(b, sizeof b, &type, &u),
				 FRESH_OK);
		ck_assert_int_eq(type, FRESH_RECORD_EXPIRE);
		ck_assert_int_eq(u.step, steps[i]);
		ck_assert_uint_eq(u.n_targets, 0);
	}
	/* The header alone: anything longer is not a CLEAR or EXPIRE. */
	{
		unsigned char long_b[32] __attribute__((aligned(8)));
		memset(long_b, 0, sizeof long_b);
		fresh_record_encode_clear(long_b);
		ck_assert_int_eq(fresh_record_decode(long_b, 32, &type, &u),
				 FRESH_FORMAT);
		fresh_record_encode_expire(long_b, 3);
		ck_assert_int_eq(fresh_record_decode(long_b, 32, &type, &u),
				 FRESH_FORMAT);
	}
}
END_TEST

START_TEST(sizes_refused_before_overflow)
{
	struct fresh_update u;

	memset(&u, 0, sizeof u);
	u.n_targets = 1;
	u.dim = FRESH_MAX_DIM;
	ck_assert_uint_eq(fresh_record_size(&u), 24 + 8 + 4 * FRESH_MAX_DIM);
	u.dim = FRESH_MAX_DIM + 1;
	ck_assert_uint_eq(fresh_record_size(&u), 0);
	u.dim = 4;
	u.n_targets = (size_t)UINT32_MAX + 1;
	ck_assert_uint_eq(fresh_record_size(&u), 0);
	u.n_targets = 1;
	u.n_queries = (size_t)UINT32_MAX + 1;
	ck_assert_uint_eq(fresh_record_size(&u), 0);
	/* The largest counts still give an exact size (no wraparound). */
	u.n_targets = UINT32_MAX;
	u.n_queries = UINT32_MAX;
	u.dim = FRESH_MAX_DIM;
	ck_assert_uint_eq(fresh_record_size(&u),
			  24 + 16 * (size_t)UINT32_MAX +
				  8 * (size_t)UINT32_MAX * FRESH_MAX_DIM);
}
END_TEST

/* A valid 2-target, 1-query, dim-3 record to damage; returns its length. */
static size_t valid_record(unsigned char **out)
{
	struct sample s;
	size_t len;

	make_sample(&s, 2, 1, 3, true, 42, 7);
	len = fresh_record_size(&s.u);
	*out = alloc_rec(len);
	fresh_record_encode(&s.u, *out);
	return len;
}

static enum fresh_status decode(const unsigned char *b, size_t len)
{
	enum fresh_record_type type;
	struct fresh_update u;

	return fresh_record_decode(b, len, &type, &u);
}

START_TEST(every_truncation_or_extension_refused)
{
	unsigned char *b;
	size_t len = valid_record(&b);

	ck_assert_int_eq(decode(b, len), FRESH_OK);
	for (size_t l = 0; l < len; l++)
		ck_assert_msg(decode(b, l) == FRESH_FORMAT, "length %zu", l);
	for (size_t l = len + 1; l <= len + 16; l++)
		ck_assert_msg(decode(b, l) == FRESH_FORMAT, "length %zu", l);
	free(b);
}
END_TEST

START_TEST(bad_kind_flags_reserved_refused)
{
	unsigned char *b;
	size_t len = valid_record(&b);

	for (int kind = 0; kind < 256; kind++) {
		b[0] = (unsigned char)kind;
		if (kind == FRESH_RECORD_UPDATE)
			ck_assert_int_eq(decode(b, len), FRESH_OK);
		else /* CLEAR, EXPIRE: too long; others: unknown */
			ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	}
	b[0] = FRESH_RECORD_UPDATE;
	for (int bit = 1; bit < 8; bit++) {
		b[1] = (unsigned char)(1u << bit | 1u);
		ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	}
	b[1] = 0; /* no step: fine */
	ck_assert_int_eq(decode(b, len), FRESH_OK);
	b[2] = 1;
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	b[2] = 0;
	b[3] = 0x80;
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	b[3] = 0;
	ck_assert_int_eq(decode(b, len), FRESH_OK);
	free(b);
}
END_TEST

START_TEST(bad_counts_refused)
{
	unsigned char *b;
	size_t len = valid_record(&b);
	unsigned char save[24];

	memcpy(save, b, sizeof save);
	fresh_put32(b + 4, 0); /* no targets */
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	fresh_put32(b + 12, 0); /* dim 0 */
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	fresh_put32(b + 12, (uint32_t)FRESH_MAX_DIM + 1);
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	fresh_put32(b + 12, UINT32_MAX);
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	/* Counts that claim more than the buffer holds are caught by the
	 * length (ASan would see any read past it). */
	fresh_put32(b + 4, UINT32_MAX);
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	fresh_put32(b + 8, UINT32_MAX);
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	fresh_put32(b + 8, 2); /* one query more: 8 + 12 bytes more */
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	fresh_put32(b + 8, 0); /* one query fewer: 20 bytes fewer */
	ck_assert_int_eq(decode(b, len), FRESH_FORMAT);
	memcpy(b, save, sizeof save);
	ck_assert_int_eq(decode(b, len), FRESH_OK);
	free(b);
}
END_TEST

START_TEST(misaligned_update_refused)
{
	unsigned char *b, *odd;
	size_t len = valid_record(&b);

	odd = malloc(len + 8);
	for (size_t shift = 1; shift < 8; shift++) {
		memcpy(odd + shift, b, len);
		ck_assert_int_eq(decode(odd + shift, len), FRESH_INVALID);
	}
	/* A CLEAR has no arrays and decodes anywhere. */
	fresh_record_encode_clear(odd + 3);
	ck_assert_int_eq(decode(odd + 3, FRESH_RECORD_HEADER), FRESH_OK);
	free(odd);
	free(b);
}
END_TEST

static Suite *record_suite(void)
{
	Suite *s = suite_create("record");
	TCase *trip = tcase_create("round_trip");
	TCase *bad = tcase_create("malformed");

	tcase_add_test(trip, update_round_trip);
	tcase_add_test(trip, clear_and_expire_round_trip);
	tcase_add_test(trip, sizes_refused_before_overflow);
	tcase_add_test(bad, every_truncation_or_extension_refused);
	tcase_add_test(bad, bad_kind_flags_reserved_refused);
	tcase_add_test(bad, bad_counts_refused);
	tcase_add_test(bad, misaligned_update_refused);
	suite_add_tcase(s, trip);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return tu_run(record_suite());
}
