/*
 * scan.h - one pass of a query batch over a matrix, tile by tile.
 *
 * The scorer behind search and sampling: scores
 *     score(q, r) = (<Q[q], X[r]> + offset[q]) * row_scale[r]
 * (offset and row_scale optional), the inner product in the fixed order of
 * dot.h, so that a score's bits depend on the query and the row only:
 * never on the batch, the tile, the thread count or the CPU. Rows are
 * split into tasks run in parallel; each task hands its tiles, in row
 * order, to a consumer (top-k heaps, Gumbel sampling). The tiling itself
 * is fixed by the matrix alone: FRESH_SCAN_TILE_ROWS rows a tile, tiles
 * grouped into groups of fresh_scan_group_rows(n) rows that never straddle
 * two tasks, so a consumer that sums per group and combines the groups in
 * order gets the same bits whatever the batch or the thread count.
 */
#ifndef FRESH_SCAN_H
#define FRESH_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "status.h"

/*
 * Tiles start at multiples of this row and have this many rows (the last
 * one of the matrix fewer); consumers may size buffers by it.
 */
#define FRESH_SCAN_TILE_ROWS ((size_t)256)

struct fresh_matrix {
	const float *x; /* n x dim, row-major */
	size_t n, dim;
	const uint64_t *ids;	/* n: the id of each row */
	const float *row_scale; /* n or NULL */
	/*
	 * With --store bf16: the same rows rounded to bfloat16 (n x dim) and
	 * an upper bound of each row's float32 norm (n); NULL otherwise.
	 * x stays the float32 rows, for exact scoring.
	 */
	const uint16_t *xh;
	const float *row_norm;
	float max_norm; /* of row_norm */
};

struct fresh_queries {
	const float *q; /* b x dim (the matrix's dim), row-major */
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
 * The rows of one group of tiles for a matrix of n rows: a multiple of
 * FRESH_SCAN_TILE_ROWS that depends on n only; there are at most
 * FRESH_SCAN_MAX_GROUPS groups (group g covers rows from g * group rows).
 */
#define FRESH_SCAN_MAX_GROUPS ((size_t)512)
size_t fresh_scan_group_rows(size_t n);

/*
 * How a scan over n rows with the given number of threads splits the
 * rows: tasks of *rows_per_task consecutive rows (a whole number of
 * groups; the last task may be shorter), *ntasks <=
 * FRESH_SCAN_TASKS_PER_THREAD * threads of them; task t covers rows from
 * t * *rows_per_task, and one worker walks a task's tiles in row order.
 */
#define FRESH_SCAN_TASKS_PER_THREAD 8
void fresh_scan_plan(size_t threads, size_t n, size_t *rows_per_task,
		     size_t *ntasks);

/*
 * Scores queries [q0, q0 + nq) of qs against every row of m and feeds the
 * tiles to fn. FRESH_NOMEM when scratch cannot be allocated.
 */
enum fresh_status fresh_scan(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t q0,
			     size_t nq, fresh_tile_fn fn, void *ctx);

/*
 * As fresh_scan, over the bf16 rows m->xh (which must be set): the tiles
 * hold approximate inner products <Q[q], X[r]> within bf16.h's bound, with
 * neither offset nor row scale applied (the consumer bounds them).
 */
enum fresh_status fresh_scan_bf16(struct fresh_pool *pool,
				  const struct fresh_matrix *m,
				  const struct fresh_queries *qs, size_t q0,
				  size_t nq, fresh_tile_fn fn, void *ctx);

#endif
