/*
 * test_pool.c - the worker pool: every task runs exactly once for many
 * task and thread counts, worker ids are in range and never shared by two
 * tasks running at once, every started thread really takes part, one pool
 * serves many jobs in a row and several callers at once (serialized), a
 * task may run a job on another pool, and a niced pool lowers its started
 * threads' priority but not the caller's.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "testutil.h"

#define MAX_THREADS 16

struct job {
	size_t threads;
	atomic_int *busy; /* per worker of the pool: inside a task */
	atomic_int *runs; /* per task */
	atomic_int errors;
	atomic_size_t by_worker[MAX_THREADS];
};

static void count_task(void *arg, size_t task, size_t worker)
{
	struct job *j = arg;

	if (worker >= j->threads) {
		atomic_fetch_add(&j->errors, 1);
		return;
	}
	if (atomic_exchange(&j->busy[worker], 1) != 0)
		atomic_fetch_add(&j->errors, 1);
	atomic_fetch_add(&j->runs[task], 1);
	atomic_fetch_add(&j->by_worker[worker], 1);
	/* A little work so that tasks overlap across workers. */
	for (volatile int i = 0; i < 50; i++) {
	}
	atomic_store(&j->busy[worker], 0);
}

/*
 * Runs ntasks counted tasks on p; busy is shared by every job of p (so
 * that overlapping jobs would be seen). Returns the problems found, so
 * that threads other than the test's can call it.
 */
static size_t counted(struct fresh_pool *p, atomic_int *busy, size_t ntasks)
{
	struct job j;
	size_t total = 0, bad = 0;

	memset(&j, 0, sizeof j);
	j.threads = fresh_pool_threads(p);
	j.busy = busy;
	j.runs = calloc(ntasks ? ntasks : 1, sizeof *j.runs);
	if (!j.runs)
		return 1;
	fresh_pool_run(p, ntasks, count_task, &j);
	for (size_t t = 0; t < ntasks; t++)
		bad += atomic_load(&j.runs[t]) != 1;
	bad += (size_t)atomic_load(&j.errors);
	for (size_t w = 0; w < MAX_THREADS; w++)
		total += atomic_load(&j.by_worker[w]);
	bad += total != ntasks;
	free(j.runs);
	return bad;
}

static void run_counted(struct fresh_pool *p, size_t ntasks)
{
	atomic_int busy[MAX_THREADS];

	for (size_t w = 0; w < MAX_THREADS; w++)
		atomic_init(&busy[w], 0);
	ck_assert_msg(counted(p, busy, ntasks) == 0, "%zu tasks on %zu threads",
		      ntasks, fresh_pool_threads(p));
}

START_TEST(every_task_once)
{
	static const size_t threads[] = {1, 2, 3, 4, 8};
	static const size_t tasks[] = {0, 1, 2, 3, 5, 8, 17, 64, 1000, 100000};

	for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
		struct fresh_pool *p;
		ck_assert_int_eq(fresh_pool_create(threads[i], 0, &p),
				 FRESH_OK);
		ck_assert_uint_eq(fresh_pool_threads(p), threads[i]);
		for (size_t k = 0; k < sizeof tasks / sizeof *tasks; k++)
			run_counted(p, tasks[k]);
		fresh_pool_free(p);
	}
}
END_TEST

START_TEST(one_thread_per_cpu_by_default)
{
	struct fresh_pool *p;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	ck_assert_int_eq(fresh_pool_create(0, 0, &p), FRESH_OK);
	ck_assert_uint_eq(fresh_pool_threads(p), cpus > 0 ? (size_t)cpus : 1);
	if (fresh_pool_threads(p) <= MAX_THREADS)
		run_counted(p, 5000);
	fresh_pool_free(p);
	fresh_pool_free(NULL);
}
END_TEST

START_TEST(many_jobs_in_a_row)
{
	struct fresh_pool *p;
	struct tu_rng r = {1};

	ck_assert_int_eq(fresh_pool_create(3, 0, &p), FRESH_OK);
	for (int i = 0; i < 2000; i++)
		run_counted(p, tu_next(&r) % 20);
	fresh_pool_free(p);
}
END_TEST

/* Blocks each task until `threads` tasks are inside at once. */
struct gather {
	size_t threads;
	atomic_size_t arrived;
	atomic_int timed_out;
	atomic_int worker_seen[MAX_THREADS];
	int nice_of[MAX_THREADS];
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void gather_task(void *arg, size_t task, size_t worker)
{
	struct gather *g = arg;
	double deadline = now() + 60.0; /* generous: a loaded machine */

	(void)task;
	atomic_fetch_add(&g->worker_seen[worker], 1);
	g->nice_of[worker] =
		getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	atomic_fetch_add(&g->arrived, 1);
	while (atomic_load(&g->arrived) < g->threads) {
		if (now() > deadline) {
			atomic_store(&g->timed_out, 1);
			return;
		}
		sched_yield();
	}
}

/*
 * With as many tasks as threads, each blocking until all are inside, the
 * job can only finish if every started thread took one: each worker id
 * appears exactly once.
 */
static void gather_all(struct fresh_pool *p, struct gather *g)
{
	memset(g, 0, sizeof *g);
	g->threads = fresh_pool_threads(p);
	fresh_pool_run(p, g->threads, gather_task, g);
	ck_assert_int_eq(atomic_load(&g->timed_out), 0);
	for (size_t w = 0; w < g->threads; w++)
		ck_assert_int_eq(atomic_load(&g->worker_seen[w]), 1);
}

START_TEST(every_thread_takes_part)
{
	struct fresh_pool *p;
	struct gather g;

	ck_assert_int_eq(fresh_pool_create(4, 0, &p), FRESH_OK);
	for (int i = 0; i < 20; i++)
		gather_all(p, &g);
	fresh_pool_free(p);
}
END_TEST

START_TEST(niced_pool_lowers_started_threads)
{
	struct fresh_pool *p;
	struct gather g;
	int caller;

	errno = 0;
	caller = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	ck_assert_int_eq(errno, 0);
	ck_assert_int_eq(fresh_pool_create(3, 10, &p), FRESH_OK);
	gather_all(p, &g);
	/* Worker 0 is the caller: its priority is left alone. */
	ck_assert_int_eq(g.nice_of[0], caller);
	/* The started ones run at nice 10, or stay lower still when the
	 * test itself already runs above 10 and may not raise it back. */
	for (size_t w = 1; w < 3; w++)
		ck_assert_msg(g.nice_of[w] == 10 ||
				      (caller > 10 && g.nice_of[w] == caller),
			      "worker %zu at nice %d, caller %d", w,
			      g.nice_of[w], caller);
	errno = 0;
	ck_assert_int_eq(getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)),
			 caller);
	fresh_pool_free(p);
	/* nice 0: the started threads keep the caller's priority. */
	ck_assert_int_eq(fresh_pool_create(3, 0, &p), FRESH_OK);
	gather_all(p, &g);
	for (size_t w = 0; w < 3; w++)
		ck_assert_int_eq(g.nice_of[w], caller);
	fresh_pool_free(p);
}
END_TEST

struct caller {
	struct fresh_pool *p;
	atomic_int *busy;
	size_t problems;
	uint64_t seed;
};

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	struct tu_rng r = {c->seed};

	for (int i = 0; i < 300; i++)
		c->problems += counted(c->p, c->busy, 1 + tu_next(&r) % 200);
	return NULL;
}

START_TEST(concurrent_callers_are_serialized)
{
	/* Every caller runs tasks as worker 0: were two jobs to overlap,
	 * count_task would find worker 0 busy. */
	struct fresh_pool *p;
	struct caller c[3];
	pthread_t th[3];
	atomic_int busy[MAX_THREADS];

	for (size_t w = 0; w < MAX_THREADS; w++)
		atomic_init(&busy[w], 0);
	ck_assert_int_eq(fresh_pool_create(3, 0, &p), FRESH_OK);
	for (int i = 0; i < 3; i++) {
		c[i].p = p;
		c[i].busy = busy;
		c[i].problems = 0;
		c[i].seed = (uint64_t)i + 1;
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, caller_main, &c[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(c[i].problems, 0);
	}
	fresh_pool_free(p);
}
END_TEST

struct outer {
	struct fresh_pool *inner;
	atomic_int busy[MAX_THREADS]; /* the inner pool's workers */
	atomic_size_t problems;
};

static void outer_task(void *arg, size_t task, size_t worker)
{
	struct outer *o = arg;

	(void)worker;
	atomic_fetch_add(&o->problems, counted(o->inner, o->busy, 50 + task));
}

START_TEST(task_runs_a_job_on_another_pool)
{
	struct fresh_pool *a, *b;
	struct outer o;

	ck_assert_int_eq(fresh_pool_create(3, 0, &a), FRESH_OK);
	ck_assert_int_eq(fresh_pool_create(2, 0, &b), FRESH_OK);
	o.inner = b;
	for (size_t w = 0; w < MAX_THREADS; w++)
		atomic_init(&o.busy[w], 0);
	atomic_init(&o.problems, 0);
	fresh_pool_run(a, 40, outer_task, &o);
	ck_assert_uint_eq(atomic_load(&o.problems), 0);
	fresh_pool_free(a);
	fresh_pool_free(b);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("pool");
	TCase *tasks = tcase_create("tasks");
	TCase *threads = tcase_create("threads");

	tcase_set_timeout(threads, 120);
	tcase_add_test(tasks, every_task_once);
	tcase_add_test(tasks, one_thread_per_cpu_by_default);
	tcase_add_test(tasks, many_jobs_in_a_row);
	tcase_add_test(threads, every_thread_takes_part);
	tcase_add_test(threads, niced_pool_lowers_started_threads);
	tcase_add_test(threads, concurrent_callers_are_serialized);
	tcase_add_test(threads, task_runs_a_job_on_another_pool);
	suite_add_tcase(s, tasks);
	suite_add_tcase(s, threads);
	return s;
}

int main(void)
{
	return tu_run(pool_suite());
}
