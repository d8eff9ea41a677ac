/*
 * test_reloader_host.c - the reloader alone, driven through a host of the
 * test's own (no engine, no log, no model): a reload loads the file and
 * hands the index to the host's install, and its status says what the
 * install answered; what can be checked without loading is refused up
 * front, naming the field, and never reaches the host; one reload runs
 * at a time, a stop waits for it and refuses the next; DIR/index.ref
 * round-trips.
 *
 * Timing: the reload thread is awaited through the reloader's status and
 * the fake host's counters against a generous deadline; nothing asserts
 * elapsed time.
 */
#include <check.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "index.h"
#include "reloader.h"
#include "testutil.h"

#define D 8
#define DEADLINE 120.0

struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned installs, logs;
	size_t installed_size;
	char path[PATH_MAX], ids[PATH_MAX];
	uint64_t next_version;
	bool fail;	  /* install answers FRESH_IO */
	bool gate_closed; /* install blocks while true */
	bool in_install;
};

static struct fake F;
static char dir[256];

static size_t fk_dim(void *ctx)
{
	(void)ctx;
	return D;
}

static enum fresh_status fk_install(void *ctx, struct fresh_index *idx,
				    const char *path, const char *ids_path,
				    uint64_t *version, struct fresh_error *err)
{
	struct fake *f = ctx;
	enum fresh_status st = FRESH_OK;

	pthread_mutex_lock(&f->mu);
	f->in_install = true;
	pthread_cond_broadcast(&f->cv);
	while (f->gate_closed)
		pthread_cond_wait(&f->cv, &f->mu);
	f->in_install = false;
	f->installs++;
	if (f->fail) {
		st = fresh_fail(err, FRESH_IO, "the fake disk is full");
	} else {
		f->installed_size = fresh_index_size(idx);
		snprintf(f->path, sizeof f->path, "%s", path);
		snprintf(f->ids, sizeof f->ids, "%s", ids_path);
		*version = f->next_version++;
	}
	pthread_mutex_unlock(&f->mu);
	return st;
}

static void fk_log(void *ctx, enum fresh_log_level level, const char *msg)
{
	struct fake *f = ctx;

	(void)level;
	(void)msg;
	pthread_mutex_lock(&f->mu);
	f->logs++;
	pthread_mutex_unlock(&f->mu);
}

static const struct fresh_reload_host HOST = {
	.ctx = &F,
	.dim = fk_dim,
	.install = fk_install,
	.log = fk_log,
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Writes a random float32 index of n x d rows as DIR/name. */
static void write_index(const char *name, size_t n, size_t d, uint64_t seed)
{
	struct tu_rng rng = {seed};
	float *x = malloc(n * d * sizeof *x);
	char path[512];

	ck_assert_ptr_nonnull(x);
	tu_fill_normal(&rng, x, n * d);
	tu_path(path, sizeof path, dir, name);
	tu_write_npy_f32(path, x, n, d);
	free(x);
}

static struct fresh_reloader *new_reloader(void)
{
	struct fresh_reloader_config cfg = {.data_dir = dir,
					    .store = FRESH_STORE_F32};
	struct fresh_reloader *r;

	ck_assert_int_eq(fresh_reloader_new(&cfg, &HOST, &r), FRESH_OK);
	return r;
}

/* Waits until the reload is no longer loading; its final status. */
static struct fresh_reload_status settle(struct fresh_reloader *r)
{
	struct fresh_reload_status s;
	double end = now() + DEADLINE;
	struct timespec nap = {0, 1000000};

	for (;;) {
		fresh_reloader_status(r, &s);
		if (s.state != FRESH_RELOAD_LOADING)
			return s;
		ck_assert_msg(now() < end, "reload did not finish");
		nanosleep(&nap, NULL);
	}
}

static void setup(void)
{
	memset(&F, 0, sizeof F);
	pthread_mutex_init(&F.mu, NULL);
	pthread_cond_init(&F.cv, NULL);
	F.next_version = 7;
	tu_tmpdir(dir, sizeof dir);
}

static void teardown(void)
{
	tu_rmdir(dir);
	pthread_cond_destroy(&F.cv);
	pthread_mutex_destroy(&F.mu);
}

START_TEST(reload_installs_through_the_host)
{
	struct fresh_reloader *r = new_reloader();
	struct fresh_reload_status s;
	struct fresh_error err;
	char want[PATH_MAX], rel[512];
	uint64_t ids[40];

	for (size_t i = 0; i < 40; i++)
		ids[i] = 1000 + 3 * i;
	write_index("next.npy", 40, D, 1);
	tu_path(rel, sizeof rel, dir, "next_ids.npy");
	tu_write_npy_ids(rel, ids, 40, false);
	fresh_reloader_status(r, &s);
	ck_assert_int_eq(s.state, FRESH_RELOAD_NONE);

	ck_assert_int_eq(
		fresh_reloader_start(r, "next.npy", "next_ids.npy", &err),
		FRESH_OK);
	s = settle(r);
	ck_assert_int_eq(s.state, FRESH_RELOAD_DONE);
	ck_assert_uint_eq(s.version, 7);
	ck_assert_str_eq(s.error, "");
	ck_assert_double_le(s.started_at, s.finished_at);
	ck_assert_uint_eq(F.installs, 1);
	ck_assert_uint_eq(F.installed_size, 40);
	/* The host is given the resolved paths: what a restart reads. */
	tu_path(rel, sizeof rel, dir, "next.npy");
	ck_assert_ptr_nonnull(realpath(rel, want));
	ck_assert_str_eq(F.path, want);
	ck_assert_str_eq(s.path, want);
	tu_path(rel, sizeof rel, dir, "next_ids.npy");
	ck_assert_ptr_nonnull(realpath(rel, want));
	ck_assert_str_eq(F.ids, want);
	ck_assert_uint_ge(F.logs, 2); /* loading, serving */

	/* A second reload after the first finished: its thread is reaped
	 * and the next one runs (no ids this time). */
	write_index("again.npy", 25, D, 2);
	ck_assert_int_eq(fresh_reloader_start(r, "again.npy", NULL, &err),
			 FRESH_OK);
	s = settle(r);
	ck_assert_int_eq(s.state, FRESH_RELOAD_DONE);
	ck_assert_uint_eq(s.version, 8);
	ck_assert_uint_eq(F.installed_size, 25);
	ck_assert_str_eq(F.ids, "");
	fresh_reloader_free(r);
}
END_TEST

START_TEST(refused_up_front_never_reach_the_host)
{
	struct fresh_reloader *r = new_reloader();
	struct fresh_reload_status s;
	struct fresh_error err;

	write_index("narrow.npy", 10, D / 2, 3);
	write_index("good.npy", 10, D, 4);

	ck_assert_int_eq(fresh_reloader_start(r, "missing.npy", NULL, &err),
			 FRESH_INVALID);
	ck_assert_ptr_nonnull(strstr(err.msg, "path: missing.npy"));
	ck_assert_int_eq(fresh_reloader_start(r, "/etc/hostname", NULL, &err),
			 FRESH_INVALID);
	ck_assert_ptr_nonnull(strstr(err.msg, "outside the data dir"));
	ck_assert_int_eq(fresh_reloader_start(r, "../", NULL, &err),
			 FRESH_INVALID);
	ck_assert_int_eq(fresh_reloader_start(r, "narrow.npy", NULL, &err),
			 FRESH_INVALID);
	ck_assert_ptr_nonnull(strstr(err.msg, "dimension 4"));
	ck_assert_int_eq(fresh_reloader_start(r, "good.npy", "nope.npy", &err),
			 FRESH_INVALID);
	ck_assert_ptr_nonnull(strstr(err.msg, "ids_path: nope.npy"));

	fresh_reloader_status(r, &s);
	ck_assert_int_eq(s.state, FRESH_RELOAD_NONE);
	ck_assert_uint_eq(F.installs, 0);
	fresh_reloader_free(r);
}
END_TEST

START_TEST(failures_leave_the_host_untouched_or_say_why)
{
	struct fresh_reloader *r = new_reloader();
	struct fresh_reload_status s;
	struct fresh_error err;
	char path[512];

	/* A file the header check passes but the loader refuses (its
	 * rows are truncated): failed, and the host never asked. */
	write_index("short.npy", 10, D, 5);
	tu_path(path, sizeof path, dir, "short.npy");
	ck_assert_int_eq(truncate(path, 128 + 4 * D * 3), 0);
	ck_assert_int_eq(fresh_reloader_start(r, "short.npy", NULL, &err),
			 FRESH_OK);
	s = settle(r);
	ck_assert_int_eq(s.state, FRESH_RELOAD_FAILED);
	ck_assert_str_ne(s.error, "");
	ck_assert_uint_eq(s.version, 0);
	ck_assert_uint_eq(F.installs, 0);

	/* The host refuses the switch: failed with the host's reason. */
	F.fail = true;
	write_index("good.npy", 10, D, 6);
	ck_assert_int_eq(fresh_reloader_start(r, "good.npy", NULL, &err),
			 FRESH_OK);
	s = settle(r);
	ck_assert_int_eq(s.state, FRESH_RELOAD_FAILED);
	ck_assert_ptr_nonnull(strstr(s.error, "the fake disk is full"));
	ck_assert_uint_eq(F.installs, 1);

	/* And the next reload is not held back by the failures. */
	F.fail = false;
	ck_assert_int_eq(fresh_reloader_start(r, "good.npy", NULL, &err),
			 FRESH_OK);
	s = settle(r);
	ck_assert_int_eq(s.state, FRESH_RELOAD_DONE);
	fresh_reloader_free(r);
}
END_TEST

static void *stop_main(void *arg)
{
	fresh_reloader_stop(arg);
	return NULL;
}

START_TEST(one_at_a_time_and_stop_waits)
{
	struct fresh_reloader *r = new_reloader();
	struct fresh_reload_status s;
	struct fresh_error err;
	pthread_t stopper;
	double end = now() + DEADLINE;

	write_index("a.npy", 10, D, 7);
	F.gate_closed = true;
	ck_assert_int_eq(fresh_reloader_start(r, "a.npy", NULL, &err),
			 FRESH_OK);
	pthread_mutex_lock(&F.mu);
	while (!F.in_install) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&F.cv, &F.mu, &ts);
		ck_assert_msg(now() < end, "install never reached");
	}
	pthread_mutex_unlock(&F.mu);

	/* While one is switching, another is a conflict naming it. */
	ck_assert_int_eq(fresh_reloader_start(r, "a.npy", NULL, &err),
			 FRESH_CONFLICT);
	ck_assert_ptr_nonnull(strstr(err.msg, "a.npy is already running"));
	fresh_reloader_status(r, &s);
	ck_assert_int_eq(s.state, FRESH_RELOAD_LOADING);

	/* A stop waits for the running reload: let it finish, then the
	 * stop returns and the reload is done, not abandoned. */
	ck_assert_int_eq(pthread_create(&stopper, NULL, stop_main, r), 0);
	pthread_mutex_lock(&F.mu);
	F.gate_closed = false;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
	ck_assert_int_eq(pthread_join(stopper, NULL), 0);
	fresh_reloader_status(r, &s);
	ck_assert_int_eq(s.state, FRESH_RELOAD_DONE);
	ck_assert_uint_eq(F.installs, 1);

	/* Stopped: no further reload starts. */
	ck_assert_int_eq(fresh_reloader_start(r, "a.npy", NULL, &err),
			 FRESH_CONFLICT);
	ck_assert_ptr_nonnull(strstr(err.msg, "shutting down"));
	fresh_reloader_stop(r); /* idempotent */
	fresh_reloader_free(r);
	fresh_reloader_free(NULL);
}
END_TEST

START_TEST(index_ref_round_trip)
{
	struct fresh_error err;
	char path[PATH_MAX], ids[PATH_MAX], file[512];
	uint64_t seq, version;

	fresh_index_ref_switch(dir, &seq, &version);
	ck_assert_uint_eq(seq, 0);
	ck_assert_uint_eq(version, 0);
	ck_assert_int_eq(fresh_engine_recorded_index(dir, path, sizeof path,
						     ids, sizeof ids),
			 FRESH_NOT_FOUND);

	ck_assert_int_eq(fresh_index_ref_write(dir, "/data/b.npy", "", 41,
					       UINT64_MAX, &err),
			 FRESH_OK);
	fresh_index_ref_switch(dir, &seq, &version);
	ck_assert_uint_eq(seq, 41);
	ck_assert_uint_eq(version, UINT64_MAX);
	ck_assert_int_eq(fresh_engine_recorded_index(dir, path, sizeof path,
						     ids, sizeof ids),
			 FRESH_OK);
	ck_assert_str_eq(path, "/data/b.npy");
	ck_assert_str_eq(ids, "");

	/* A record from before switches were recorded: no switch, but the
	 * index it names still serves. */
	tu_path(file, sizeof file, dir, "index.ref");
	tu_write_file(file, "/data/c.npy\n/data/c_ids.npy\n", 28);
	fresh_index_ref_switch(dir, &seq, &version);
	ck_assert_uint_eq(seq, 0);
	ck_assert_uint_eq(version, 0);
	ck_assert_int_eq(fresh_engine_recorded_index(dir, path, sizeof path,
						     ids, sizeof ids),
			 FRESH_OK);
	ck_assert_str_eq(ids, "/data/c_ids.npy");

	/* An empty index path is not a record. */
	tu_write_file(file, "\n\nswitch 3 4\n", 13);
	ck_assert_int_eq(fresh_engine_recorded_index(dir, path, sizeof path,
						     ids, sizeof ids),
			 FRESH_FORMAT);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("reloader_host");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, DEADLINE + 30);
	tcase_add_test(tc, reload_installs_through_the_host);
	tcase_add_test(tc, refused_up_front_never_reach_the_host);
	tcase_add_test(tc, failures_leave_the_host_untouched_or_say_why);
	tcase_add_test(tc, one_at_a_time_and_stop_waits);
	tcase_add_test(tc, index_ref_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run(suite());
}
