/*
 * test_queries.c - the query buffer: groups are deep copies kept oldest
 * first, the oldest whole groups leave when the query budget is exceeded
 * (checked against a simple FIFO model across many ring wrap-arounds and
 * growths), updates without queries and wrong widths are not buffered,
 * snapshots outlive the buffer; and the durable form: a round trip, the
 * sequence filter on load, damaged or foreign files refused.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "crc32c.h"
#include "queries.h"
#include "testutil.h"

static char dir[4096];

static void setup(void)
{
	tu_tmpdir(dir, sizeof dir);
}

static void teardown(void)
{
	tu_rmdir(dir);
}

/* An update with t targets and q queries whose values derive from tag. */
struct upd {
	uint64_t ids[8], pos[8];
	float vec[8 * 6], q[8 * 6];
	struct fresh_update u;
};

static void make_upd(struct upd *x, size_t t, size_t q, size_t d, float tag)
{
	ck_assert_uint_le(t, 8);
	ck_assert_uint_le(q, 8);
	ck_assert_uint_le(d, 6);
	for (size_t i = 0; i < t; i++)
		x->ids[i] = (uint64_t)(tag * 100) + i;
	for (size_t i = 0; i < q; i++)
		x->pos[i] = x->ids[(i * 3) % t];
	for (size_t i = 0; i < t * d; i++)
		x->vec[i] = tag + 0.01f * (float)i;
	for (size_t i = 0; i < q * d; i++)
		x->q[i] = -tag - 0.01f * (float)i;
	memset(&x->u, 0, sizeof x->u);
	x->u.n_targets = t;
	x->u.ids = x->ids;
	x->u.vectors = x->vec;
	x->u.dim = d;
	x->u.n_queries = q;
	x->u.queries = x->q;
	x->u.positives = x->pos;
}

/* Group g equals update x (recorded with seq). */
static void assert_group(const struct fresh_qgroup *g, const struct upd *x,
			 uint64_t seq)
{
	size_t t = x->u.n_targets, q = x->u.n_queries, d = x->u.dim;

	ck_assert_uint_eq(g->seq, seq);
	ck_assert_uint_eq(g->n_targets, t);
	ck_assert_uint_eq(g->n_queries, q);
	ck_assert_uint_eq(g->dim, d);
	ck_assert_mem_eq(g->ids, x->ids, t * sizeof *g->ids);
	ck_assert_mem_eq(g->targets, x->vec, t * d * sizeof *g->targets);
	ck_assert_mem_eq(g->queries, x->q, q * d * sizeof *g->queries);
	ck_assert_mem_eq(g->positives, x->pos, q * sizeof *g->positives);
}

START_TEST(groups_are_copies_oldest_first)
{
	struct fresh_queries_buf *b;
	struct fresh_qgroups s;
	struct upd x1, x2, keep1, keep2;

	ck_assert_int_eq(fresh_qbuf_create(4, 100, &b), FRESH_OK);
	make_upd(&x1, 3, 2, 4, 1);
	make_upd(&x2, 5, 1, 4, 2);
	keep1 = x1;
	keep2 = x2;
	ck_assert_int_eq(fresh_qbuf_add(b, &x1.u, 10), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_add(b, &x2.u, 11), FRESH_OK);
	/* The caller's arrays may change afterwards. */
	memset(x1.vec, 0, sizeof x1.vec);
	memset(x1.q, 0, sizeof x1.q);
	x1.ids[0] = 0;
	ck_assert_uint_eq(fresh_qbuf_groups(b), 2);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 3);
	ck_assert_int_eq(fresh_qbuf_snapshot(b, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 2);
	assert_group(&s.g[0], &keep1, 10);
	assert_group(&s.g[1], &keep2, 11);
	/* A snapshot is its own copy: it outlives the buffer. */
	fresh_qbuf_free(b);
	assert_group(&s.g[1], &keep2, 11);
	fresh_qgroups_free(&s);
	ck_assert_uint_eq(s.n, 0);
	ck_assert_ptr_null(s.g);
	fresh_qbuf_free(NULL);
}
END_TEST

START_TEST(not_buffered)
{
	struct fresh_queries_buf *b, *off;
	struct fresh_qgroups s;
	struct upd x;

	ck_assert_int_eq(fresh_qbuf_create(4, 5, &b), FRESH_OK);
	make_upd(&x, 3, 0, 4, 1); /* no queries: nothing to keep */
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 1), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 0);
	make_upd(&x, 3, 2, 3, 1); /* another width */
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 2), FRESH_INVALID);
	make_upd(&x, 8, 6, 4, 1); /* more queries than the whole budget */
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 3), FRESH_INVALID);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 0);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 0);
	make_upd(&x, 8, 5, 4, 1); /* exactly the budget */
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 4), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 5);
	ck_assert_int_eq(fresh_qbuf_snapshot(b, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_uint_eq(s.g[0].seq, 4);
	fresh_qgroups_free(&s);
	/* A budget of 0 turns the buffer off. */
	ck_assert_int_eq(fresh_qbuf_create(4, 0, &off), FRESH_OK);
	make_upd(&x, 3, 2, 4, 1);
	ck_assert_int_eq(fresh_qbuf_add(off, &x.u, 1), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(off), 0);
	ck_assert_int_eq(fresh_qbuf_snapshot(off, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 0);
	fresh_qgroups_free(&s);
	fresh_qbuf_free(off);
	fresh_qbuf_free(b);
}
END_TEST

START_TEST(oldest_groups_leave_first)
{
	struct fresh_queries_buf *b;
	struct fresh_qgroups s;
	struct upd x;

	ck_assert_int_eq(fresh_qbuf_create(2, 10, &b), FRESH_OK);
	for (uint64_t seq = 1; seq <= 3; seq++) {
		make_upd(&x, 2, 4, 2, (float)seq);
		ck_assert_int_eq(fresh_qbuf_add(b, &x.u, seq), FRESH_OK);
	}
	/* 4 + 4 + 4 > 10: the first group went, whole. */
	ck_assert_uint_eq(fresh_qbuf_groups(b), 2);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 8);
	make_upd(&x, 2, 2, 2, 4);
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 4), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 10); /* fits exactly */
	ck_assert_int_eq(fresh_qbuf_snapshot(b, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_uint_eq(s.g[0].seq, 2);
	ck_assert_uint_eq(s.g[2].seq, 4);
	fresh_qgroups_free(&s);
	make_upd(&x, 1, 1, 2, 5);
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 5), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 3); /* 4 + 2 + 1 */
	ck_assert_uint_eq(fresh_qbuf_queries(b), 7);
	fresh_qbuf_clear(b);
	ck_assert_uint_eq(fresh_qbuf_groups(b), 0);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 0);
	make_upd(&x, 2, 3, 2, 6);
	ck_assert_int_eq(fresh_qbuf_add(b, &x.u, 6), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_queries(b), 3);
	fresh_qbuf_free(b);
}
END_TEST

START_TEST(randomized_against_fifo)
{
	/* Model: a FIFO of (seq, queries); pop while over the budget. */
	enum { BUDGET = 60, OPS = 3000 };
	struct fresh_queries_buf *b;
	static uint64_t mseq[OPS];
	static size_t mq[OPS];
	size_t head = 0, tail = 0, total = 0;
	struct tu_rng r = {21};

	ck_assert_int_eq(fresh_qbuf_create(3, BUDGET, &b), FRESH_OK);
	for (uint64_t seq = 1; seq <= OPS; seq++) {
		struct upd x;
		size_t q = tu_next(&r) % 9; /* 0 (ignored) .. 8 */

		make_upd(&x, 1 + tu_next(&r) % 8, q, 3, (float)seq);
		ck_assert_int_eq(fresh_qbuf_add(b, &x.u, seq), FRESH_OK);
		if (q) {
			while (tail > head && total + q > BUDGET)
				total -= mq[head++];
			mseq[tail] = seq;
			mq[tail++] = q;
			total += q;
		}
		ck_assert_uint_eq(fresh_qbuf_groups(b), tail - head);
		ck_assert_uint_eq(fresh_qbuf_queries(b), total);
		if (seq % 97 == 0 || seq == OPS) {
			struct fresh_qgroups s;
			ck_assert_int_eq(fresh_qbuf_snapshot(b, &s), FRESH_OK);
			ck_assert_uint_eq(s.n, tail - head);
			for (size_t i = 0; i < s.n; i++) {
				ck_assert_uint_eq(s.g[i].seq, mseq[head + i]);
				ck_assert_uint_eq(s.g[i].n_queries,
						  mq[head + i]);
				/* Contents travel with their group. */
				ck_assert_float_eq(s.g[i].targets[0],
						   (float)s.g[i].seq);
			}
			fresh_qgroups_free(&s);
		}
	}
	fresh_qbuf_free(b);
}
END_TEST

/* A buffer holding three groups with seqs 5, 8, 12, of width 3. */
static struct fresh_queries_buf *three_groups(struct upd x[3])
{
	static const uint64_t seqs[3] = {5, 8, 12};
	struct fresh_queries_buf *b;

	ck_assert_int_eq(fresh_qbuf_create(3, 100, &b), FRESH_OK);
	for (int i = 0; i < 3; i++) {
		make_upd(&x[i], 1 + (size_t)i * 3, 1 + (size_t)i, 3,
			 (float)(i + 1));
		ck_assert_int_eq(fresh_qbuf_add(b, &x[i].u, seqs[i]), FRESH_OK);
	}
	return b;
}

START_TEST(snapshot_file_round_trip)
{
	struct upd x[3];
	struct fresh_queries_buf *b = three_groups(x), *c;
	struct fresh_qgroups s;
	struct fresh_error err;
	char path[4200];

	tu_path(path, sizeof path, dir, "queries.snap");
	ck_assert_int_eq(fresh_qbuf_create(3, 100, &c), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_load(c, path, 100, &err), FRESH_NOT_FOUND);
	ck_assert_msg(fresh_qbuf_save(b, path, &err) == FRESH_OK, "%s",
		      err.msg);
	ck_assert_msg(fresh_qbuf_load(c, path, 100, &err) == FRESH_OK, "%s",
		      err.msg);
	ck_assert_int_eq(fresh_qbuf_snapshot(c, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 3);
	assert_group(&s.g[0], &x[0], 5);
	assert_group(&s.g[1], &x[1], 8);
	assert_group(&s.g[2], &x[2], 12);
	fresh_qgroups_free(&s);
	fresh_qbuf_free(c);
	/* Only the groups the pairs' sequence covers. */
	ck_assert_int_eq(fresh_qbuf_create(3, 100, &c), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_load(c, path, 8, &err), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_snapshot(c, &s), FRESH_OK);
	ck_assert_uint_eq(s.n, 2);
	assert_group(&s.g[1], &x[1], 8);
	fresh_qgroups_free(&s);
	fresh_qbuf_free(c);
	ck_assert_int_eq(fresh_qbuf_create(3, 100, &c), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_load(c, path, 4, &err), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(c), 0);
	fresh_qbuf_free(c);
	/* An empty buffer saves and loads as empty. */
	fresh_qbuf_clear(b);
	ck_assert_int_eq(fresh_qbuf_save(b, path, &err), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_create(3, 100, &c), FRESH_OK);
	ck_assert_int_eq(fresh_qbuf_load(c, path, 100, &err), FRESH_OK);
	ck_assert_uint_eq(fresh_qbuf_groups(c), 0);
	fresh_qbuf_free(c);
	fresh_qbuf_free(b);
}
END_TEST

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static enum fresh_status load_bytes(const char *path, const void *data,
				    size_t len, size_t dim)
{
	struct fresh_queries_buf *c;
	struct fresh_error err;
	enum fresh_status st;

	tu_write_file(path, data, len);
	ck_assert_int_eq(fresh_qbuf_create(dim, 100, &c), FRESH_OK);
	err.msg[0] = '\0';
	st = fresh_qbuf_load(c, path, UINT64_MAX, &err);
	if (st != FRESH_OK)
		ck_assert_msg(strstr(err.msg, path), "%s", err.msg);
	fresh_qbuf_free(c);
	return st;
}

static void reseal(unsigned char *b, size_t len)
{
	fresh_put32(b + len - 4, fresh_crc32c(0, b, len - 4));
}

START_TEST(damaged_snapshot_refused)
{
	struct upd x[3];
	struct fresh_queries_buf *b = three_groups(x);
	char path[4200], bad[4200];
	unsigned char *raw, *m;
	size_t len, first;

	tu_path(path, sizeof path, dir, "queries.snap");
	tu_path(bad, sizeof bad, dir, "bad.snap");
	ck_assert_int_eq(fresh_qbuf_save(b, path, NULL), FRESH_OK);
	raw = slurp(path, &len);
	m = malloc(len);
	ck_assert_mem_eq(raw, "FRSHQUER", 8);
	ck_assert_uint_eq(fresh_get64(raw + 8), 3);
	ck_assert_int_eq(load_bytes(bad, raw, len, 3), FRESH_OK);
	for (size_t i = 0; i < len; i++) {
		memcpy(m, raw, len);
		m[i] ^= 0x01;
		ck_assert_msg(load_bytes(bad, m, len, 3) == FRESH_CHECKSUM,
			      "byte %zu", i);
	}
	for (size_t l = 0; l < len; l++)
		ck_assert_msg(load_bytes(bad, raw, l, 3) == FRESH_CHECKSUM,
			      "length %zu", l);
	/* Sealed lies: a count beyond the groups, a group length beyond the
	 * file, a record that does not decode, a CLEAR record. */
	memcpy(m, raw, len);
	fresh_put64(m + 8, 4);
	reseal(m, len);
	ck_assert_int_eq(load_bytes(bad, m, len, 3), FRESH_FORMAT);
	memcpy(m, raw, len);
	fresh_put64(m + 24, len);
	reseal(m, len);
	ck_assert_int_eq(load_bytes(bad, m, len, 3), FRESH_FORMAT);
	memcpy(m, raw, len);
	first = (size_t)fresh_get64(raw + 24);
	ck_assert_uint_eq(first % 8, 0);
	fresh_put64(m + 24, first - 8); /* the record's size is wrong */
	reseal(m, len);
	ck_assert_int_eq(load_bytes(bad, m, len, 3), FRESH_FORMAT);
	memcpy(m, raw, len);
	m[32] = 2; /* the first record claims to be a CLEAR */
	reseal(m, len);
	ck_assert_int_eq(load_bytes(bad, m, len, 3), FRESH_FORMAT);
	/* Another width: the groups do not fit this buffer. */
	ck_assert_int_eq(load_bytes(bad, raw, len, 4), FRESH_INVALID);
	/* Resealing alone changes nothing. */
	memcpy(m, raw, len);
	reseal(m, len);
	ck_assert_int_eq(load_bytes(bad, m, len, 3), FRESH_OK);
	free(m);
	free(raw);
	fresh_qbuf_free(b);
}
END_TEST

static Suite *queries_suite(void)
{
	Suite *s = suite_create("queries");
	TCase *buf = tcase_create("buffer");
	TCase *file = tcase_create("file");

	tcase_add_test(buf, groups_are_copies_oldest_first);
	tcase_add_test(buf, not_buffered);
	tcase_add_test(buf, oldest_groups_leave_first);
	tcase_add_test(buf, randomized_against_fifo);
	tcase_add_checked_fixture(file, setup, teardown);
	tcase_add_test(file, snapshot_file_round_trip);
	tcase_add_test(file, damaged_snapshot_refused);
	suite_add_tcase(s, buf);
	suite_add_tcase(s, file);
	return s;
}

int main(void)
{
	return tu_run(queries_suite());
}
