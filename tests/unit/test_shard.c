/*
 * test_shard.c - the engine's side of sharding (core/shard.c): a shard's
 * ids and its pair export (every pair with its stale row, as buffered),
 * damaged exports refused, and the coordinator's fit on pairs gathered
 * from two shards: accepted on a planted drift at the next version, as
 * good on held-out pairs as a daemon's own refit on the same pairs, and
 * refused with a reason below --min-pairs.
 */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "mem.h"
#include "testutil.h"

#define N 600
#define D 12

static char dir[4096], dir2[4200];
static float stale[N * D], fresh[N * D];

static void setup(void)
{
	struct tu_rng r = {21};

	tu_tmpdir(dir, sizeof dir);
	snprintf(dir2, sizeof dir2, "%s/second", dir);
	tu_linear_drift(&r, stale, fresh, N, D, 0.3);
}

static void teardown(void)
{
	tu_rmdir(dir);
}

/* A shard over rows [from, to) with ids 1000 + row. */
static struct fresh_engine *open_shard(const char *data_dir, size_t from,
				       size_t to)
{
	struct fresh_engine_config c = fresh_engine_config_default();
	struct fresh_index *idx;
	struct fresh_engine *e;
	struct fresh_error err;
	uint64_t ids[N];

	for (size_t i = from; i < to; i++)
		ids[i - from] = 1000 + i;
	c.data_dir = data_dir;
	c.kind = FRESH_CORRECTOR_AFFINE;
	c.refit_every_pairs = 0;
	c.refit_every_seconds = 0;
	c.search_threads = 1;
	ck_assert_int_eq(fresh_index_create(to - from, D, stale + from * D, ids,
					    "part", &idx, NULL),
			 FRESH_OK);
	ck_assert_msg(fresh_engine_open(&c, idx, &e, &err) == FRESH_OK, "%s",
		      err.msg);
	return e;
}

/* Fresh vectors of rows [from, to) (ids 1000 + row), step = row. */
static void post(struct fresh_engine *e, size_t from, size_t to)
{
	for (size_t b = from; b < to; b += 50) {
		size_t n = to - b < 50 ? to - b : 50;
		uint64_t ids[50];
		struct fresh_update u;
		struct fresh_update_ack ack;
		struct fresh_error err;

		for (size_t i = 0; i < n; i++)
			ids[i] = 1000 + b + i;
		memset(&u, 0, sizeof u);
		u.n_targets = n;
		u.ids = ids;
		u.vectors = fresh + b * D;
		u.dim = D;
		u.has_step = true;
		u.step = (int64_t)b;
		ck_assert_msg(fresh_engine_update(e, &u, &ack, &err) ==
				      FRESH_OK,
			      "%s", err.msg);
	}
}

START_TEST(ids_are_the_index)
{
	struct fresh_engine *e = open_shard(dir, 100, 250);
	uint64_t *ids, fp;
	size_t n;
	struct fresh_engine_info info;

	ck_assert_int_eq(fresh_engine_ids(e, &ids, &n, &fp), FRESH_OK);
	fresh_engine_info(e, &info);
	ck_assert_uint_eq(n, 150);
	ck_assert_uint_eq(fp, info.fingerprint);
	for (size_t i = 0; i < n; i++)
		ck_assert_uint_eq(ids[i], 1100 + i);
	free(ids);
	fresh_engine_close(e);
}
END_TEST

START_TEST(export_round_trips_pairs_with_stale_rows)
{
	struct fresh_engine *e = open_shard(dir, 0, 300);
	struct fresh_shard_pairs p;
	struct fresh_error err;
	void *buf;
	size_t len;

	post(e, 40, 140);
	ck_assert_int_eq(fresh_engine_export_pairs(e, &buf, &len), FRESH_OK);
	ck_assert_uint_eq(len, 40 + 100 * fresh_engine_pairs_record(D, D));
	memset(&p, 0, sizeof p);
	ck_assert_msg(fresh_engine_pairs_import(buf, len, &p, &err) == FRESH_OK,
		      "%s", err.msg);
	ck_assert_uint_eq(p.n, 100);
	ck_assert_uint_eq(p.d_in, D);
	ck_assert_uint_eq(p.d_out, D);
	for (size_t i = 0; i < p.n; i++) {
		size_t row = p.ids[i] - 1000;
		ck_assert(row >= 40 && row < 140);
		ck_assert(p.has_step[i]);
		ck_assert_int_eq(p.steps[i],
				 (int64_t)(40 + (row - 40) / 50 * 50));
		ck_assert(memcmp(p.stale + i * D, stale + row * D,
				 D * sizeof(float)) == 0);
		ck_assert(memcmp(p.fresh + i * D, fresh + row * D,
				 D * sizeof(float)) == 0);
	}
	/* A second export appends (the coordinator gathers shards). */
	ck_assert_int_eq(fresh_engine_pairs_import(buf, len, &p, &err),
			 FRESH_OK);
	ck_assert_uint_eq(p.n, 200);
	fresh_engine_pairs_free(&p);
	free(buf);
	fresh_engine_close(e);
}
END_TEST

START_TEST(damaged_exports_are_refused)
{
	struct fresh_engine *e = open_shard(dir, 0, 100);
	struct fresh_shard_pairs p;
	struct fresh_error err;
	unsigned char *buf;
	void *raw;
	size_t len;

	post(e, 0, 60);
	ck_assert_int_eq(fresh_engine_export_pairs(e, &raw, &len), FRESH_OK);
	buf = raw;
	memset(&p, 0, sizeof p);
	for (size_t cut = 0; cut < len; cut += 37)
		ck_assert_int_eq(fresh_engine_pairs_import(buf, cut, &p, &err),
				 FRESH_FORMAT);
	ck_assert_int_eq(fresh_engine_pairs_import(buf, len + 0, &p, &err),
			 FRESH_OK);
	buf[0] ^= 1;
	ck_assert_int_eq(fresh_engine_pairs_import(buf, len, &p, &err),
			 FRESH_FORMAT);
	buf[0] ^= 1;
	buf[8] ^= 0x40; /* a count the length cannot hold */
	ck_assert_int_eq(fresh_engine_pairs_import(buf, len, &p, &err),
			 FRESH_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.msg, "pairs"));
	ck_assert_uint_eq(p.n, 60);
	fresh_engine_pairs_free(&p);
	free(raw);
	fresh_engine_close(e);
}
END_TEST

START_TEST(fit_on_two_shards_matches_a_daemon)
{
	struct fresh_engine *a = open_shard(dir, 0, 300);
	struct fresh_engine *b = open_shard(dir2, 300, 600);
	struct fresh_engine *whole;
	struct fresh_engine_config c = fresh_engine_config_default();
	struct fresh_shard_pairs p;
	struct fresh_refit_report rep;
	struct fresh_refit_outcome out;
	struct fresh_error err;
	char dir3[4300];
	void *ea, *eb, *cur, *ckpt;
	size_t la, lb, lc, lk;
	uint64_t v;

	post(a, 0, 300);
	post(b, 300, 600);
	ck_assert_int_eq(fresh_engine_export_pairs(a, &ea, &la), FRESH_OK);
	ck_assert_int_eq(fresh_engine_export_pairs(b, &eb, &lb), FRESH_OK);
	memset(&p, 0, sizeof p);
	ck_assert_int_eq(fresh_engine_pairs_import(ea, la, &p, &err), FRESH_OK);
	ck_assert_int_eq(fresh_engine_pairs_import(eb, lb, &p, &err), FRESH_OK);
	ck_assert_uint_eq(p.n, N);
	ck_assert_int_eq(fresh_engine_checkpoint_get(a, &cur, &lc, &v),
			 FRESH_OK);
	ck_assert_uint_eq(v, 0);
	ck_assert_msg(fresh_engine_fit(cur, lc, &p, &c.refit, NULL, &ckpt, &lk,
				       &rep, &err) == FRESH_OK,
		      "%s", err.msg);
	ck_assert_msg(rep.accepted, "%s", rep.reason);
	ck_assert_ptr_nonnull(ckpt);
	ck_assert_uint_eq(fresh_engine_checkpoint_version(ckpt, lk), 1);
	ck_assert(rep.holdout.corrected_mse < 0.1 * rep.holdout.stale_mse);
	/* Installed on both shards: they serve version 1. */
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(a, ckpt, lk, false, &v, &err),
		FRESH_OK);
	ck_assert_int_eq(
		fresh_engine_checkpoint_put(b, ckpt, lk, false, &v, &err),
		FRESH_OK);
	ck_assert_uint_eq(fresh_engine_version(b), 1);
	/* A daemon over the whole index, its own refit on the same pairs:
	 * the same held-out error (the same recipe, the same split). */
	snprintf(dir3, sizeof dir3, "%s/whole", dir);
	whole = open_shard(dir3, 0, 600);
	post(whole, 0, 600);
	ck_assert_int_eq(fresh_engine_refit(whole, true, &out), FRESH_OK);
	ck_assert(out.report.accepted);
	ck_assert_uint_eq(out.report.held_out, rep.held_out);
	ck_assert(fabs(out.report.holdout.corrected_mse -
		       rep.holdout.corrected_mse) <=
		  1e-3 * rep.holdout.corrected_mse + 1e-9);
	fresh_engine_close(whole);
	/* Too few pairs: not accepted, and says why. */
	c.refit.min_pairs = 2 * N;
	free(ckpt);
	ck_assert_int_eq(fresh_engine_fit(cur, lc, &p, &c.refit, NULL, &ckpt,
					  &lk, &rep, &err),
			 FRESH_OK);
	ck_assert(!rep.accepted);
	ck_assert_ptr_null(ckpt);
	ck_assert_ptr_nonnull(strstr(rep.reason, "min-pairs"));
	fresh_engine_pairs_free(&p);
	free(ea);
	free(eb);
	free(cur);
	fresh_engine_close(a);
	fresh_engine_close(b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shard");
	TCase *t = tcase_create("shard");

	tcase_set_timeout(t, 120);
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, ids_are_the_index);
	tcase_add_test(t, export_round_trips_pairs_with_stale_rows);
	tcase_add_test(t, damaged_exports_are_refused);
	tcase_add_test(t, fit_on_two_shards_matches_a_daemon);
	suite_add_tcase(s, t);
	return tu_run(s);
}
