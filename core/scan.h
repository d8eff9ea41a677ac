/*
 * scan.h - one pass of a query batch over a matrix, tile by tile.
 *
 * The scorer behind search and sampling: scores
 *     score(q, r) = (<Q[q], X[r]> + offset[q]) * row_scale[r]
 * (offset and row_scale optional) are computed with single-threaded sgemm
 * on (query block x row block) tiles, in parallel over row ranges, and
 * handed tile by tile to a consumer (top-k heaps, Gumbel sampling). A batch
 * smaller than a query block is served by one pass over the matrix: tiles
 * of rows stay in cache while every query of the block is scored.
 */
#ifndef FRESH_SCAN_H
#define FRESH_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "status.h"

/* No tile has more rows than this (consumers may size buffers by it). */
#define FRESH_SCAN_MAX_TILE_ROWS ((size_t)1024)

struct fresh_matrix {
	const float *x;         /* n x dim, row-major */
	size_t n, dim;
	const uint64_t *ids;    /* n: the id of each row */
	const float *row_scale; /* n or NULL */
};

struct fresh_queries {
	const float *q;      /* b x dim (the matrix's dim), row-major */
	size_t b;
	const float *offset; /* b or NULL */
};

/*
 * Called once per tile: scores[i * nr + j] is the score of query q0 + i
 * against row r0 + j (0 <= i < nq, 0 <= j < nr). worker identifies the
 * calling thread (0 <= worker < fresh_pool_threads); tiles of one worker
 * never run concurrently, tiles of different workers do.
 */
typedef void (*fresh_tile_fn)(void *ctx, size_t worker, size_t q0, size_t nq,
			      size_t r0, size_t nr, const float *scores);

/*
 * How a scan of nq queries over n rows with the given number of threads
 * splits the rows: tasks of *rows_per_task consecutive rows (the last may
 * be shorter), *ntasks <= FRESH_SCAN_TASKS_PER_THREAD * threads of them;
 * task t covers rows from t * *rows_per_task, and one worker walks a
 * task's tiles in row order.
 * A consumer that accumulates per task and combines the tasks in order
 * gets the same result whichever worker ran which task.
 */
#define FRESH_SCAN_TASKS_PER_THREAD 8
void fresh_scan_plan(size_t threads, size_t n, size_t nq,
		     size_t *rows_per_task, size_t *ntasks);

/*
 * Scores queries [q0, q0 + nq) of qs against every row of m and feeds the
 * tiles to fn. FRESH_NOMEM when scratch cannot be allocated.
 */
enum fresh_status fresh_scan(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t q0,
			     size_t nq, fresh_tile_fn fn, void *ctx);

#endif
