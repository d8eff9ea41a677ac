/*
 * pool.h - a fixed set of worker threads that run one parallel loop at a
 * time.
 *
 * freshd owns the cores: the search pool has one thread a core (the caller
 * counts as one), and each task calls single-threaded BLAS. The refit pool
 * runs at a lower scheduling priority, so that materializing a corrected
 * matrix soaks up idle cycles without taking them from searches.
 */
#ifndef FRESH_POOL_H
#define FRESH_POOL_H

#include <stddef.h>

#include "status.h"

struct fresh_pool;

/*
 * A pool of nthreads threads in all, the caller of fresh_pool_run being one
 * of them (so nthreads - 1 are started). nice > 0 lowers the priority of
 * the started threads (and, while it runs tasks, not of the caller).
 * nthreads 0 means one per online CPU. Free with fresh_pool_free.
 */
enum fresh_status fresh_pool_create(size_t nthreads, int nice,
				    struct fresh_pool **out);
/* Stops and joins the threads. Accepts NULL. */
void fresh_pool_free(struct fresh_pool *pool);
size_t fresh_pool_threads(const struct fresh_pool *pool);

/*
 * Runs fn(arg, task, worker) for every task in [0, ntasks), each exactly
 * once, on the pool's threads and the calling one; returns when all are
 * done. worker in [0, fresh_pool_threads) is unique among concurrently
 * running tasks (for per-thread scratch). Concurrent calls are serialized.
 */
void fresh_pool_run(struct fresh_pool *pool, size_t ntasks,
		    void (*fn)(void *arg, size_t task, size_t worker),
		    void *arg);

#endif
