/*
 * test_reload.c - hot index reload (engine.h "Index reload"): a file of
 * another width, outside the data dir or missing is refused at once and
 * nothing changes; one that fails to load in the background leaves the old
 * index serving with its pairs; a good one is served under the next
 * version with the identity corrector and no pairs, and is recorded in
 * the data dir so that a restart serves it. Background work is awaited by
 * polling the reload status against a generous deadline.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "datadir.h"
#include "engine.h"
#include "index.h"
#include "testutil.h"

#define N 500
#define D 8
#define N2 300

static char root[4096], dir[4200];
static float stale[N * D], other[N2 * D];

static void setup(void)
{
	struct tu_rng r = {5};

	tu_tmpdir(root, sizeof root);
	snprintf(dir, sizeof dir, "%s/data", root);
	tu_fill_normal(&r, stale, N * D);
	tu_fill_normal(&r, other, N2 * D);
}

static void teardown(void)
{
	tu_rmdir(root);
}

static struct fresh_engine *open_on(struct fresh_index *idx)
{
	struct fresh_engine_config c = fresh_engine_config_default();
	struct fresh_engine *e;
	struct fresh_error err;

	c.data_dir = dir;
	c.kind = FRESH_CORRECTOR_AFFINE;
	c.refit_every_pairs = 0;
	c.refit_every_seconds = 0;
	c.search_threads = 2;
	ck_assert_msg(fresh_engine_open(&c, idx, &e, &err) == FRESH_OK, "%s",
		      err.msg);
	return e;
}

static struct fresh_engine *open_engine(void)
{
	struct fresh_index *idx;

	ck_assert_int_eq(
		fresh_index_create(N, D, stale, NULL, "test", &idx, NULL),
		FRESH_OK);
	return open_on(idx);
}

static void post(struct fresh_engine *e, uint64_t first, size_t n,
		 const float *vectors)
{
	uint64_t ids[100];
	struct fresh_update u;
	struct fresh_update_ack ack;
	struct fresh_error err;

	ck_assert_uint_le(n, 100);
	for (size_t i = 0; i < n; i++)
		ids[i] = first + i;
	memset(&u, 0, sizeof u);
	u.n_targets = n;
	u.ids = ids;
	u.vectors = vectors;
	u.dim = D;
	ck_assert_msg(fresh_engine_update(e, &u, &ack, &err) == FRESH_OK, "%s",
		      err.msg);
}

static uint64_t version_of(struct fresh_engine *e)
{
	struct fresh_model *m = fresh_engine_acquire(e);
	uint64_t v = fresh_model_version(m);

	fresh_model_release(m);
	return v;
}

static size_t buffered(struct fresh_engine *e)
{
	struct fresh_engine_status st;

	fresh_engine_status(e, &st);
	return st.pairs_buffered;
}

/* Polls until the reload is no longer loading (deadline: 60 s). */
static void wait_reload(struct fresh_engine *e, struct fresh_reload_status *s)
{
	time_t deadline = time(NULL) + 60;

	for (;;) {
		fresh_engine_reload_status(e, s);
		if (s->state != FRESH_RELOAD_LOADING)
			return;
		ck_assert_msg(time(NULL) < deadline, "reload still loading");
		usleep(2000);
	}
}

/* Target id serves the stale vector want (D floats). */
static void assert_serves(struct fresh_engine *e, uint64_t id,
			  const float *want)
{
	float s[D], c[D], g[D];
	struct fresh_target_view view;

	ck_assert_int_eq(fresh_engine_target(e, id, s, c, g, &view), FRESH_OK);
	ck_assert_mem_eq(s, want, sizeof s);
}

static void assert_unknown(struct fresh_engine *e, uint64_t id)
{
	float s[D], c[D], g[D];
	struct fresh_target_view view;

	ck_assert_int_eq(fresh_engine_target(e, id, s, c, g, &view),
			 FRESH_NOT_FOUND);
}

/* Nothing changed: old index, version, pairs; no reload recorded. */
static void assert_untouched(struct fresh_engine *e, uint64_t version,
			     size_t pairs)
{
	char p[4096], ids[4096];

	ck_assert_uint_eq(version_of(e), version);
	ck_assert_uint_eq(buffered(e), pairs);
	assert_serves(e, 0, stale);
	assert_serves(e, N - 1, stale + (N - 1) * D);
	ck_assert_int_eq(
		fresh_engine_recorded_index(dir, p, sizeof p, ids, sizeof ids),
		FRESH_NOT_FOUND);
}

START_TEST(refused_up_front)
{
	struct fresh_engine *e = open_engine();
	struct fresh_reload_status rs;
	struct fresh_error err;
	char path[4300];
	float wide[N2 * (D + 1)];

	post(e, 0, 50, stale);
	memset(wide, 0, sizeof wide);
	snprintf(path, sizeof path, "%s/wide.npy", dir);
	tu_write_npy_f32(path, wide, N2, D + 1);
	err.msg[0] = '\0';
	ck_assert_int_eq(fresh_engine_reload(e, "wide.npy", NULL, &err),
			 FRESH_INVALID);
	ck_assert_msg(strstr(err.msg, "dimension 9") &&
			      strstr(err.msg, "the served index 8"),
		      "%s", err.msg);
	/* Outside the data dir: relative, absolute, through a symlink. */
	snprintf(path, sizeof path, "%s/outside.npy", root);
	tu_write_npy_f32(path, other, N2, D);
	ck_assert_int_eq(fresh_engine_reload(e, "../outside.npy", NULL, &err),
			 FRESH_INVALID);
	ck_assert_msg(strstr(err.msg, "outside the data dir"), "%s", err.msg);
	ck_assert_int_eq(fresh_engine_reload(e, path, NULL, &err),
			 FRESH_INVALID);
	{
		char link[4300];
		snprintf(link, sizeof link, "%s/link.npy", dir);
		ck_assert_int_eq(symlink(path, link), 0);
		ck_assert_int_eq(fresh_engine_reload(e, "link.npy", NULL, &err),
				 FRESH_INVALID);
		ck_assert_msg(strstr(err.msg, "outside the data dir"), "%s",
			      err.msg);
	}
	/* Missing: the index, or its ids. */
	ck_assert_int_eq(fresh_engine_reload(e, "nope.npy", NULL, &err),
			 FRESH_INVALID);
	ck_assert_msg(strstr(err.msg, "nope.npy"), "%s", err.msg);
	snprintf(path, sizeof path, "%s/good.npy", dir);
	tu_write_npy_f32(path, other, N2, D);
	ck_assert_int_eq(fresh_engine_reload(e, "good.npy", "noids.npy", &err),
			 FRESH_INVALID);
	ck_assert_msg(strstr(err.msg, "ids_path"), "%s", err.msg);

	fresh_engine_reload_status(e, &rs);
	ck_assert_int_eq(rs.state, FRESH_RELOAD_NONE);
	assert_untouched(e, 0, 50);
	fresh_engine_close(e);
}
END_TEST

START_TEST(failed_load_keeps_old_index)
{
	struct fresh_engine *e = open_engine();
	struct fresh_reload_status rs;
	struct fresh_error err;
	char path[4300];
	uint64_t dup_ids[N2];

	post(e, 0, 60, stale);
	/* The header says width 8, the data is cut short: only the
	 * background load can tell. */
	snprintf(path, sizeof path, "%s/short.npy", dir);
	tu_write_npy_raw(path,
			 "{'descr': '<f4', 'fortran_order': False, "
			 "'shape': (300, 8), }",
			 other, 100 * D * sizeof(float));
	ck_assert_int_eq(fresh_engine_reload(e, "short.npy", NULL, &err),
			 FRESH_OK);
	wait_reload(e, &rs);
	ck_assert_int_eq(rs.state, FRESH_RELOAD_FAILED);
	ck_assert_msg(strstr(rs.error, "short.npy"), "%s", rs.error);
	ck_assert(strstr(rs.path, "short.npy"));
	ck_assert_uint_eq(rs.version, 0);
	assert_untouched(e, 0, 60);

	/* A format nobody recognises. */
	snprintf(path, sizeof path, "%s/data.bin", dir);
	tu_write_file(path, "not an index at all", 19);
	ck_assert_int_eq(fresh_engine_reload(e, "data.bin", NULL, &err),
			 FRESH_OK);
	wait_reload(e, &rs);
	ck_assert_int_eq(rs.state, FRESH_RELOAD_FAILED);
	ck_assert_msg(strstr(rs.error, "unknown format"), "%s", rs.error);
	assert_untouched(e, 0, 60);

	/* Ids that repeat. */
	snprintf(path, sizeof path, "%s/good.npy", dir);
	tu_write_npy_f32(path, other, N2, D);
	for (size_t i = 0; i < N2; i++)
		dup_ids[i] = i % 7;
	snprintf(path, sizeof path, "%s/dup.npy", dir);
	tu_write_npy_ids(path, dup_ids, N2, false);
	ck_assert_int_eq(fresh_engine_reload(e, "good.npy", "dup.npy", &err),
			 FRESH_OK);
	wait_reload(e, &rs);
	ck_assert_int_eq(rs.state, FRESH_RELOAD_FAILED);
	assert_untouched(e, 0, 60);
	/* Updates still go to the old index. */
	post(e, 100, 10, stale + 100 * D);
	ck_assert_uint_eq(buffered(e), 70);
	fresh_engine_close(e);
}
END_TEST

START_TEST(good_reload_serves_and_is_recorded)
{
	struct fresh_engine *e = open_engine();
	struct fresh_reload_status rs;
	struct fresh_error err;
	char path[4300], ids_path[4300], got[4096], got_ids[4096];
	char want[4096], want_ids[4096], ckpt[4300];
	uint64_t ids[N2];
	struct fresh_index *idx;
	uint64_t v;

	post(e, 0, 80, stale);
	ck_assert_int_eq(fresh_engine_reset(e, &v, &err), FRESH_OK);
	ck_assert_uint_eq(v, 1);
	snprintf(path, sizeof path, "%s/new.npy", dir);
	tu_write_npy_f32(path, other, N2, D);
	for (size_t i = 0; i < N2; i++)
		ids[i] = 1000 + i;
	snprintf(ids_path, sizeof ids_path, "%s/new_ids.npy", dir);
	tu_write_npy_ids(ids_path, ids, N2, true);
	ck_assert_msg(fresh_engine_reload(e, "new.npy", "new_ids.npy", &err) ==
			      FRESH_OK,
		      "%s", err.msg);
	wait_reload(e, &rs);
	ck_assert_msg(rs.state == FRESH_RELOAD_DONE, "%s", rs.error);
	ck_assert_uint_eq(rs.version, 2);
	ck_assert_str_eq(rs.error, "");
	ck_assert_uint_eq(version_of(e), 2);
	ck_assert_uint_eq(buffered(e), 0); /* old pairs cleared */
	assert_serves(e, 1000, other);
	assert_serves(e, 1000 + N2 - 1, other + (N2 - 1) * D);
	assert_unknown(e, 0);
	{
		struct fresh_model *m = fresh_engine_acquire(e);
		ck_assert(
			fresh_corrector_is_identity(fresh_model_corrector(m)));
		ck_assert_uint_eq(fresh_index_size(fresh_model_index(m)), N2);
		fresh_model_release(m);
	}
	fresh_checkpoint_path(dir, 2, ckpt, sizeof ckpt);
	ck_assert_int_eq(access(ckpt, F_OK), 0);
	/* Recorded by real path. */
	ck_assert_ptr_nonnull(realpath(path, want));
	ck_assert_ptr_nonnull(realpath(ids_path, want_ids));
	ck_assert_int_eq(fresh_engine_recorded_index(dir, got, sizeof got,
						     got_ids, sizeof got_ids),
			 FRESH_OK);
	ck_assert_str_eq(got, want);
	ck_assert_str_eq(got_ids, want_ids);
	/* New updates address the new ids. */
	post(e, 1000, 20, other);
	ck_assert_uint_eq(buffered(e), 20);
	fresh_engine_close(e);

	/* A restart on the recorded index: same version, its pairs only. */
	ck_assert_int_eq(fresh_index_load(got, got_ids, &idx, &err), FRESH_OK);
	e = open_on(idx);
	ck_assert_uint_eq(version_of(e), 2);
	ck_assert_uint_eq(buffered(e), 20);
	assert_serves(e, 1001, other + D);
	fresh_engine_close(e);
}
END_TEST

START_TEST(recorded_index_file)
{
	char p[4096], ids[4096], ref[4300];

	ck_assert_int_eq(
		fresh_engine_recorded_index(root, p, sizeof p, ids, sizeof ids),
		FRESH_NOT_FOUND);
	snprintf(ref, sizeof ref, "%s/index.ref", root);
	tu_write_file(ref, "/x/a.npy\n\n", 10);
	ck_assert_int_eq(
		fresh_engine_recorded_index(root, p, sizeof p, ids, sizeof ids),
		FRESH_OK);
	ck_assert_str_eq(p, "/x/a.npy");
	ck_assert_str_eq(ids, "");
	tu_write_file(ref, "\n/x/ids.npy\n", 12); /* no index path */
	ck_assert_int_eq(
		fresh_engine_recorded_index(root, p, sizeof p, ids, sizeof ids),
		FRESH_FORMAT);
	tu_write_file(ref, "/x/a.npy\n", 9); /* one line */
	ck_assert_int_eq(
		fresh_engine_recorded_index(root, p, sizeof p, ids, sizeof ids),
		FRESH_FORMAT);
}
END_TEST

START_TEST(state_names)
{
	ck_assert_str_eq(fresh_reload_state_name(FRESH_RELOAD_NONE), "none");
	ck_assert_str_eq(fresh_reload_state_name(FRESH_RELOAD_LOADING),
			 "loading");
	ck_assert_str_eq(fresh_reload_state_name(FRESH_RELOAD_DONE), "done");
	ck_assert_str_eq(fresh_reload_state_name(FRESH_RELOAD_FAILED),
			 "failed");
}
END_TEST

static Suite *reload_suite(void)
{
	Suite *s = suite_create("reload");
	TCase *tc = tcase_create("reload");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, refused_up_front);
	tcase_add_test(tc, failed_load_keeps_old_index);
	tcase_add_test(tc, good_reload_serves_and_is_recorded);
	tcase_add_test(tc, recorded_index_file);
	tcase_add_test(tc, state_names);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(reload_suite());
}
