/*
 * pool.c - the worker pool (see pool.h).
 *
 * Design: one job at a time (run_lock serializes callers). A job is
 * published under mu by bumping generation; workers wake, claim task
 * numbers from an atomic counter until it runs past ntasks, and the last
 * one to finish signals the caller. Workers sleep on a condition variable
 * between jobs: no spinning, so two pools (search and refit) can share the
 * cores without burning them.
 *
 * Locks: run_lock, then mu. Threads: this file and core/worker.c are the
 * only users of pthreads in the core besides plain mutexes.
 */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

struct fresh_pool {
	pthread_mutex_t run_lock;
	pthread_mutex_t mu;
	pthread_cond_t wake, done;
	size_t nthreads;
	int nice;
	pthread_t *threads;
	size_t started;

	/* The current job, written under mu before generation changes. */
	unsigned long generation;
	bool stopping;
	void (*fn)(void *, size_t, size_t);
	void *arg;
	size_t ntasks;
	atomic_size_t next;
	size_t active; /* workers still inside the current job */
};

struct worker_arg {
	struct fresh_pool *pool;
	size_t id;
};

static void drain(struct fresh_pool *p, void (*fn)(void *, size_t, size_t),
		  void *arg, size_t ntasks, size_t worker)
{
	for (;;) {
		size_t t = atomic_fetch_add_explicit(&p->next, 1,
						     memory_order_relaxed);
		if (t >= ntasks)
			break;
		fn(arg, t, worker);
	}
}

static void *worker_main(void *varg)
{
	struct worker_arg *wa = varg;
	struct fresh_pool *p = wa->pool;
	size_t id = wa->id;
	unsigned long seen = 0;

	free(wa);
	if (p->nice > 0)
		(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid),
				  p->nice);
	pthread_mutex_lock(&p->mu);
	for (;;) {
		void (*fn)(void *, size_t, size_t);
		void *arg;
		size_t ntasks;

		while (!p->stopping && p->generation == seen)
			pthread_cond_wait(&p->wake, &p->mu);
		if (p->stopping)
			break;
		seen = p->generation;
		fn = p->fn;
		arg = p->arg;
		ntasks = p->ntasks;
		pthread_mutex_unlock(&p->mu);

		drain(p, fn, arg, ntasks, id);

		pthread_mutex_lock(&p->mu);
		if (--p->active == 0)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

enum fresh_status fresh_pool_create(size_t nthreads, int nice,
				    struct fresh_pool **out)
{
	struct fresh_pool *p;

	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (size_t)n : 1;
	}
	p = calloc(1, sizeof *p);
	if (!p)
		return FRESH_NOMEM;
	p->nthreads = nthreads;
	p->nice = nice;
	atomic_init(&p->next, 0);
	pthread_mutex_init(&p->run_lock, NULL);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	pthread_cond_init(&p->done, NULL);
	p->threads = calloc(nthreads, sizeof *p->threads);
	if (!p->threads) {
		fresh_pool_free(p);
		return FRESH_NOMEM;
	}
	for (size_t i = 1; i < nthreads; i++) {
		struct worker_arg *wa = malloc(sizeof *wa);
		if (wa) {
			wa->pool = p;
			wa->id = i;
		}
		if (!wa || pthread_create(&p->threads[p->started], NULL,
					  worker_main, wa) != 0) {
			free(wa);
			fresh_pool_free(p);
			return FRESH_NOMEM;
		}
		p->started++;
	}
	*out = p;
	return FRESH_OK;
}

void fresh_pool_free(struct fresh_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (size_t i = 0; i < p->started; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	pthread_cond_destroy(&p->wake);
	pthread_cond_destroy(&p->done);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->run_lock);
	free(p);
}

size_t fresh_pool_threads(const struct fresh_pool *p)
{
	return p->nthreads;
}

void fresh_pool_run(struct fresh_pool *p, size_t ntasks,
		    void (*fn)(void *arg, size_t task, size_t worker),
		    void *arg)
{
	if (ntasks == 0)
		return;
	pthread_mutex_lock(&p->run_lock);
	if (ntasks == 1 || p->started == 0) {
		atomic_store_explicit(&p->next, 0, memory_order_relaxed);
		drain(p, fn, arg, ntasks, 0);
		pthread_mutex_unlock(&p->run_lock);
		return;
	}
	pthread_mutex_lock(&p->mu);
	p->fn = fn;
	p->arg = arg;
	p->ntasks = ntasks;
	atomic_store_explicit(&p->next, 0, memory_order_relaxed);
	p->active = p->started;
	p->generation++;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);

	drain(p, fn, arg, ntasks, 0);

	pthread_mutex_lock(&p->mu);
	while (p->active > 0)
		pthread_cond_wait(&p->done, &p->mu);
	pthread_mutex_unlock(&p->mu);
	pthread_mutex_unlock(&p->run_lock);
}
