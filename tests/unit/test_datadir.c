/*
 * test_datadir.c - the data dir's own files: a pair snapshot round trip
 * (every pair, its step, sequence and arrival order, and the metadata),
 * damaged snapshots refused (any flipped byte, truncation, a wrong magic,
 * format or count, another width), and checkpoint files: their names,
 * listing newest first among unrelated files, pruning to the newest N.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "bytes.h"
#include "crc32c.h"
#include "datadir.h"
#include "pairs.h"
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

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A buffer of n pairs of width d, some with steps, ids scattered. */
static struct fresh_pairs *filled(size_t d, size_t n, uint64_t seed)
{
	struct fresh_pairs *p;
	struct tu_rng r = {seed};
	float *g = malloc(d * sizeof *g);
	bool kept;

	ck_assert_int_eq(fresh_pairs_create(d, 2 * n + 1, &p), FRESH_OK);
	for (size_t i = 0; i < n; i++) {
		bool has_step = i % 3 != 0;
		int64_t step = (int64_t)(tu_next(&r) % 1000) - 200;
		tu_fill_normal(&r, g, d);
		ck_assert_int_eq(fresh_pairs_put(p, tu_next(&r) % 100000 + i, g,
						 has_step, step, 10 + i, &kept),
				 FRESH_OK);
	}
	free(g);
	return p;
}

static void assert_same_snapshot(const struct fresh_pairs_snapshot *a,
				 const struct fresh_pairs_snapshot *b)
{
	ck_assert_uint_eq(a->n, b->n);
	ck_assert_uint_eq(a->dim, b->dim);
	ck_assert_uint_eq(a->max_seq, b->max_seq);
	for (size_t i = 0; i < a->n; i++) {
		ck_assert_uint_eq(a->ids[i], b->ids[i]);
		ck_assert(a->has_step[i] == b->has_step[i]);
		if (a->has_step[i])
			ck_assert_int_eq(a->steps[i], b->steps[i]);
		ck_assert_uint_eq(a->seqs[i], b->seqs[i]);
	}
	ck_assert_mem_eq(a->g, b->g, a->n * a->dim * sizeof *a->g);
}

static void save(const char *path, struct fresh_pairs *p,
		 const struct fresh_pairs_file *meta)
{
	struct fresh_pairs_snapshot snap;
	struct fresh_error err;

	ck_assert_int_eq(fresh_pairs_snapshot(p, 0, &snap), FRESH_OK);
	ck_assert_msg(fresh_pairs_file_save(path, &snap, meta, &err) ==
			      FRESH_OK,
		      "%s", err.msg);
	fresh_pairs_snapshot_free(&snap);
}

START_TEST(pairs_round_trip)
{
	static const size_t dims[] = {1, 5, 64};
	static const size_t counts[] = {0, 1, 300};

	for (size_t di = 0; di < 3; di++)
		for (size_t ci = 0; ci < 3; ci++) {
			size_t d = dims[di], n = counts[ci];
			struct fresh_pairs *p = filled(d, n, d * 31 + n), *q;
			struct fresh_pairs_file meta = {1234 + n, 99999, 0},
						got = {0, 0, 0};
			struct fresh_pairs_snapshot a, b;
			struct fresh_error err;
			char path[4200];
			size_t len;
			char *raw;

			meta.fingerprint = UINT64_C(0xfeedfacecafebeef) ^ d;
			tu_path(path, sizeof path, dir, "pairs.snap");
			save(path, p, &meta);
			/* Size as documented: header, entries, CRC. */
			raw = slurp(path, &len);
			ck_assert_uint_eq(
				len,
				56 + fresh_pairs_count(p) * (32 + 4 * d) + 4);
			ck_assert_mem_eq(raw, "FRSHPAIR", 8);
			free(raw);
			ck_assert_int_eq(fresh_pairs_create(d, 2 * n + 1, &q),
					 FRESH_OK);
			ck_assert_msg(fresh_pairs_file_load(path, q, &got,
							    &err) == FRESH_OK,
				      "%s", err.msg);
			ck_assert_uint_eq(got.through_seq, meta.through_seq);
			ck_assert_uint_eq(got.total, meta.total);
			ck_assert_uint_eq(got.fingerprint, meta.fingerprint);
			ck_assert_int_eq(fresh_pairs_snapshot(p, 0, &a),
					 FRESH_OK);
			ck_assert_int_eq(fresh_pairs_snapshot(q, 0, &b),
					 FRESH_OK);
			assert_same_snapshot(&a, &b);
			fresh_pairs_snapshot_free(&a);
			fresh_pairs_snapshot_free(&b);
			fresh_pairs_free(p);
			fresh_pairs_free(q);
		}
}
END_TEST

START_TEST(missing_and_other_width)
{
	struct fresh_pairs *p = filled(4, 10, 1), *q;
	struct fresh_pairs_file meta = {5, 10, 7}, got;
	struct fresh_error err;
	char path[4200];

	tu_path(path, sizeof path, dir, "pairs.snap");
	ck_assert_int_eq(fresh_pairs_create(4, 100, &q), FRESH_OK);
	ck_assert_int_eq(fresh_pairs_file_load(path, q, &got, &err),
			 FRESH_NOT_FOUND);
	save(path, p, &meta);
	fresh_pairs_free(q);
	ck_assert_int_eq(fresh_pairs_create(5, 100, &q), FRESH_OK);
	err.msg[0] = '\0';
	ck_assert_int_eq(fresh_pairs_file_load(path, q, &got, &err),
			 FRESH_CONFLICT);
	ck_assert_msg(strstr(err.msg, "width 4") &&
			      strstr(err.msg, "expects 5"),
		      "%s", err.msg);
	ck_assert_uint_eq(fresh_pairs_count(q), 0);
	fresh_pairs_free(q);
	/* A directory where the file should be. */
	ck_assert_int_eq(fresh_pairs_create(4, 100, &q), FRESH_OK);
	ck_assert_int_eq(fresh_pairs_file_load(dir, q, &got, &err), FRESH_IO);
	fresh_pairs_free(q);
	fresh_pairs_free(p);
}
END_TEST

static enum fresh_status load_bytes(const char *path, const void *data,
				    size_t len, struct fresh_error *err)
{
	struct fresh_pairs *q;
	struct fresh_pairs_file got;
	enum fresh_status st;

	tu_write_file(path, data, len);
	ck_assert_int_eq(fresh_pairs_create(3, 100, &q), FRESH_OK);
	err->msg[0] = '\0';
	st = fresh_pairs_file_load(path, q, &got, err);
	if (st != FRESH_OK)
		ck_assert_uint_eq(fresh_pairs_count(q), 0);
	fresh_pairs_free(q);
	return st;
}

/* Recomputes the trailing CRC so that only the field under test is bad. */
static void reseal(unsigned char *b, size_t len)
{
	fresh_put32(b + len - 4, fresh_crc32c(0, b, len - 4));
}

START_TEST(damaged_snapshots_refused)
{
	struct fresh_pairs *p = filled(3, 7, 2);
	struct fresh_pairs_file meta = {5, 10, 7};
	struct fresh_error err;
	char path[4200], bad[4200];
	unsigned char *raw, *b;
	size_t len;

	tu_path(path, sizeof path, dir, "pairs.snap");
	tu_path(bad, sizeof bad, dir, "bad.snap");
	save(path, p, &meta);
	raw = (unsigned char *)slurp(path, &len);
	b = malloc(len);
	ck_assert_int_eq(load_bytes(bad, raw, len, &err), FRESH_OK);

	/* Any flipped byte: the magic and format say FORMAT, the rest
	 * CHECKSUM (the CRC covers every byte before it). */
	for (size_t i = 0; i < len; i++) {
		enum fresh_status st;
		memcpy(b, raw, len);
		b[i] ^= 0x10;
		st = load_bytes(bad, b, len, &err);
		if (i < 12)
			ck_assert_msg(st == FRESH_FORMAT, "byte %zu: %s", i,
				      fresh_status_name(st));
		else
			ck_assert_msg(st == FRESH_CHECKSUM, "byte %zu: %s", i,
				      fresh_status_name(st));
		ck_assert_msg(strstr(err.msg, bad), "%s", err.msg);
	}
	/* Every truncation. */
	for (size_t l = 0; l < len; l++) {
		enum fresh_status st = load_bytes(bad, raw, l, &err);
		ck_assert_msg(st == FRESH_FORMAT || st == FRESH_CHECKSUM,
			      "length %zu: %s", l, fresh_status_name(st));
	}
	/* A count that does not match the size, with a valid CRC. */
	memcpy(b, raw, len);
	ck_assert_uint_eq(fresh_get64(raw + 48), 7);
	fresh_put64(b + 48, 8); /* one entry more than the file holds */
	reseal(b, len);
	ck_assert_int_eq(load_bytes(bad, b, len, &err), FRESH_FORMAT);
	fresh_put64(b + 48, 6); /* one entry left over */
	reseal(b, len);
	ck_assert_int_eq(load_bytes(bad, b, len, &err), FRESH_FORMAT);
	fresh_put64(b + 48, UINT64_MAX / 2);
	reseal(b, len);
	ck_assert_int_eq(load_bytes(bad, b, len, &err), FRESH_FORMAT);
	/* Another format version, sealed. */
	memcpy(b, raw, len);
	fresh_put32(b + 8, 2);
	reseal(b, len);
	ck_assert_int_eq(load_bytes(bad, b, len, &err), FRESH_FORMAT);
	/* Resealed unchanged: fine again (the helper is not the cause). */
	memcpy(b, raw, len);
	reseal(b, len);
	ck_assert_int_eq(load_bytes(bad, b, len, &err), FRESH_OK);
	free(b);
	free(raw);
	fresh_pairs_free(p);
}
END_TEST

START_TEST(save_is_atomic_replacement)
{
	struct fresh_pairs *p = filled(2, 20, 3), *q;
	struct fresh_pairs_file meta = {1, 2, 3}, got;
	struct fresh_error err;
	char path[4200], tmp[4300];

	tu_path(path, sizeof path, dir, "pairs.snap");
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	save(path, p, &meta);
	meta.through_seq = 77;
	fresh_pairs_clear(p);
	save(path, p, &meta); /* an empty buffer replaces the full one */
	ck_assert_int_ne(access(tmp, F_OK), 0);
	ck_assert_int_eq(fresh_pairs_create(2, 100, &q), FRESH_OK);
	ck_assert_int_eq(fresh_pairs_file_load(path, q, &got, &err), FRESH_OK);
	ck_assert_uint_eq(got.through_seq, 77);
	ck_assert_uint_eq(fresh_pairs_count(q), 0);
	fresh_pairs_free(q);
	fresh_pairs_free(p);
}
END_TEST

START_TEST(checkpoint_path_format)
{
	char buf[4200], small[20];

	fresh_checkpoint_path("/data", 42, buf, sizeof buf);
	ck_assert_str_eq(buf,
			 "/data/checkpoints/ckpt-00000000000000000042.bin");
	fresh_checkpoint_path("d", UINT64_MAX, buf, sizeof buf);
	ck_assert_str_eq(buf, "d/checkpoints/ckpt-18446744073709551615.bin");
	/* A buffer too small gives "", never a truncated name. */
	fresh_checkpoint_path("/data", 1, small, sizeof small);
	ck_assert_str_eq(small, "");
}
END_TEST

static void touch_ckpt(uint64_t v)
{
	char path[4200];

	fresh_checkpoint_path(dir, v, path, sizeof path);
	tu_write_file(path, "c", 1);
}

static void touch(const char *name)
{
	char path[4200];

	snprintf(path, sizeof path, "%s/checkpoints/%s", dir, name);
	tu_write_file(path, "x", 1);
}

START_TEST(checkpoint_list_and_prune)
{
	static const uint64_t made[] = {7, 3, 12, 100000000000ull, 1, 9};
	static const uint64_t newest_first[] = {
		100000000000ull, 12, 9, 7, 3, 1};
	char sub[4200], path[4300];
	uint64_t *v;
	size_t n;

	/* No checkpoints directory: an empty list, not an error. */
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 0);
	free(v);
	snprintf(sub, sizeof sub, "%s/checkpoints", dir);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 0);
	free(v);
	for (size_t i = 0; i < 6; i++)
		touch_ckpt(made[i]);
	/* Not checkpoints: other names, a temp file, short digits. */
	touch("ckpt-00000000000000000005.bin.tmp");
	touch("ckpt-5.bin");
	touch("ckpt-00000000000000000005.bix");
	touch("ckpt-0000000000000000000x.bin");
	touch("pairs.snap");
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 6);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(v[i], newest_first[i]);
	free(v);

	fresh_checkpoint_prune(dir, 10); /* fewer than keep: nothing goes */
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 6);
	free(v);
	fresh_checkpoint_prune(dir, 3);
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 3);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(v[i], newest_first[i]);
	free(v);
	for (size_t i = 3; i < 6; i++) {
		fresh_checkpoint_path(dir, newest_first[i], path, sizeof path);
		ck_assert_int_ne(access(path, F_OK), 0);
	}
	/* The other files are left alone. */
	snprintf(path, sizeof path, "%s/ckpt-5.bin", sub);
	ck_assert_int_eq(access(path, F_OK), 0);
	snprintf(path, sizeof path, "%s/ckpt-00000000000000000005.bin.tmp",
		 sub);
	ck_assert_int_eq(access(path, F_OK), 0);
	fresh_checkpoint_prune(dir, 1);
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(v[0], 100000000000ull);
	free(v);
	fresh_checkpoint_prune(dir, 0);
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 0);
	free(v);
}
END_TEST

START_TEST(checkpoint_list_many)
{
	/* More than the list's first allocation, in random order. */
	enum { N = 500 };
	char sub[4200];
	uint64_t *v;
	size_t n;
	struct tu_rng r = {4};
	static bool made[N];

	snprintf(sub, sizeof sub, "%s/checkpoints", dir);
	ck_assert_int_eq(mkdir(sub, 0755), 0);
	memset(made, 0, sizeof made);
	for (size_t i = 0; i < N; i++) {
		size_t k = tu_next(&r) % N;
		if (!made[k])
			touch_ckpt(k * 1000 + 1);
		made[k] = true;
	}
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	for (size_t i = 1; i < n; i++)
		ck_assert_uint_gt(v[i - 1], v[i]);
	{
		size_t want = 0;
		for (size_t k = 0; k < N; k++)
			want += made[k];
		ck_assert_uint_eq(n, want);
	}
	free(v);
	fresh_checkpoint_prune(dir, 5);
	ck_assert_int_eq(fresh_checkpoint_list(dir, &v, &n), FRESH_OK);
	ck_assert_uint_eq(n, 5);
	free(v);
}
END_TEST

static Suite *datadir_suite(void)
{
	Suite *s = suite_create("datadir");
	TCase *pairs = tcase_create("pairs_file");
	TCase *ckpt = tcase_create("checkpoints");

	tcase_add_checked_fixture(pairs, setup, teardown);
	tcase_add_checked_fixture(ckpt, setup, teardown);
	tcase_add_test(pairs, pairs_round_trip);
	tcase_add_test(pairs, missing_and_other_width);
	tcase_add_test(pairs, damaged_snapshots_refused);
	tcase_add_test(pairs, save_is_atomic_replacement);
	tcase_add_test(ckpt, checkpoint_path_format);
	tcase_add_test(ckpt, checkpoint_list_and_prune);
	tcase_add_test(ckpt, checkpoint_list_many);
	suite_add_tcase(s, pairs);
	suite_add_tcase(s, ckpt);
	return s;
}

int main(void)
{
	return tu_run(datadir_suite());
}
