/*
 * scan.c - tiled scoring (see scan.h).
 *
 * Design: tasks are contiguous runs of row groups, several per thread so
 * that a slow core does not hold up the pass; a task walks its rows in
 * tiles of FRESH_SCAN_TILE_ROWS and, for each tile, scores every block of
 * QUERY_BLOCK queries against it with the fixed-order kernel (dot.h)
 * while the tile is hot in cache. Each worker owns a scratch tile of
 * QUERY_BLOCK x FRESH_SCAN_TILE_ROWS floats, allocated once per scan.
 * Nothing here changes a score's bits: the kernel's order is per pair, and
 * the offset and row scale are one rounding each, in that order.
 *
 * Cost model (DESIGN.md): with B queries the pass moves N*d*4 bytes and
 * does 2*B*N*d flops; a small batch is memory-bound, so rows (not queries)
 * are split across threads and a batch smaller than a query block costs
 * one pass over the matrix.
 */
#include "scan.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bf16.h"
#include "dot.h"
#include "index.h"
#include "mem.h"

/* 256 queries of d = 768 are 768 KB: they stay in a core's L2. */
#define QUERY_BLOCK ((size_t)256)

struct scan_job {
	const struct fresh_matrix *m;
	const struct fresh_queries *qs;
	size_t q0, nq, rows_per_task;
	fresh_tile_fn fn;
	void *ctx;
	float **scratch; /* per worker */
	/* bf16 scans: the queries rounded (nq x dim, from q0), and per worker
	 * a tile of rows widened to float32 for the path without BF16. */
	const uint16_t *qh;
	float **widen;
};

/*
 * Under --store bf16 the float32 rows that a float32 scan reads (the
 * sampler's) are a file mapping advised for random access (the rescoring's
 * pattern): ask the kernel for the rows a few tiles ahead, so that a scan
 * of rows not in the page cache reads the file in large requests.
 */
#define AHEAD_TILES 8
static void advise_ahead(const struct fresh_matrix *m, size_t r, size_t end)
{
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a, b;
	size_t nr = FRESH_SCAN_TILE_ROWS;

	if (!m->xh || r >= end)
		return;
	if (end - r < nr)
		nr = end - r;
	a = (uintptr_t)(m->x + r * m->dim);
	b = (uintptr_t)(m->x + (r + nr) * m->dim);
	a &= ~(page - 1);
	(void)madvise((void *)a, b - a, MADV_WILLNEED);
}

static void scan_task(void *arg, size_t task, size_t worker)
{
	struct scan_job *j = arg;
	const struct fresh_matrix *m = j->m;
	const struct fresh_queries *qs = j->qs;
	size_t r_begin = task * j->rows_per_task;
	size_t r_end = r_begin + j->rows_per_task;
	size_t dim = m->dim;
	float *tile = j->scratch[worker];

	if (r_end > m->n)
		r_end = m->n;
	if (!j->qh)
		for (size_t t = 0; t < AHEAD_TILES; t++)
			advise_ahead(m, r_begin + t * FRESH_SCAN_TILE_ROWS,
				     r_end);
	for (size_t r0 = r_begin; r0 < r_end; r0 += FRESH_SCAN_TILE_ROWS) {
		size_t nr = r_end - r0 < FRESH_SCAN_TILE_ROWS
				    ? r_end - r0
				    : FRESH_SCAN_TILE_ROWS;
		const float *xb = m->x + r0 * dim;

		if (!j->qh)
			advise_ahead(m, r0 + AHEAD_TILES * FRESH_SCAN_TILE_ROWS,
				     r_end);

		for (size_t qb = 0; qb < j->nq; qb += QUERY_BLOCK) {
			size_t nq = j->nq - qb < QUERY_BLOCK ? j->nq - qb
							     : QUERY_BLOCK;
			size_t q0 = j->q0 + qb;

			if (j->qh) {
				fresh_bf16_tile(qs->q + q0 * dim,
						j->qh + (q0 - j->q0) * dim, dim,
						nq, m->xh + r0 * dim, dim, nr,
						dim, tile, nr,
						j->widen[worker]);
				j->fn(j->ctx, worker, q0, nq, r0, nr, tile);
				continue;
			}
			fresh_dot_tile(qs->q + q0 * dim, dim, nq, xb, dim, nr,
				       dim, tile, nr);
			if (qs->offset) {
				for (size_t i = 0; i < nq; i++) {
					float o = qs->offset[q0 + i];
					float *s = tile + i * nr;
					for (size_t c = 0; c < nr; c++)
						s[c] += o;
				}
			}
			if (m->row_scale) {
				const float *rs = m->row_scale + r0;
				for (size_t i = 0; i < nq; i++) {
					float *s = tile + i * nr;
					for (size_t c = 0; c < nr; c++)
						s[c] *= rs[c];
				}
			}
			j->fn(j->ctx, worker, q0, nq, r0, nr, tile);
		}
	}
}

size_t fresh_scan_group_rows(size_t n)
{
	size_t per = (n + FRESH_SCAN_MAX_GROUPS - 1) / FRESH_SCAN_MAX_GROUPS;
	size_t tiles = (per + FRESH_SCAN_TILE_ROWS - 1) / FRESH_SCAN_TILE_ROWS;

	return (tiles ? tiles : 1) * FRESH_SCAN_TILE_ROWS;
}

void fresh_scan_plan(size_t threads, size_t n, size_t *rows_per_task,
		     size_t *ntasks)
{
	size_t g = fresh_scan_group_rows(n);
	size_t groups = (n + g - 1) / g;
	size_t most = threads * FRESH_SCAN_TASKS_PER_THREAD;
	size_t per = (groups + most - 1) / most;

	*rows_per_task = (per ? per : 1) * g;
	*ntasks = (n + *rows_per_task - 1) / *rows_per_task;
}

static enum fresh_status scan(struct fresh_pool *pool,
			      const struct fresh_matrix *m,
			      const struct fresh_queries *qs, size_t q0,
			      size_t nq, fresh_tile_fn fn, void *ctx, bool bf16)
{
	size_t threads = fresh_pool_threads(pool);
	size_t tile_q = nq < QUERY_BLOCK ? nq : QUERY_BLOCK;
	size_t per, ntasks;
	struct scan_job j = {m, qs, q0, nq, 0, fn, ctx, NULL, NULL, NULL};
	uint16_t *qh = NULL;
	enum fresh_status st = FRESH_OK;

	if (nq == 0 || m->n == 0)
		return FRESH_OK;
	if (m->dim == 0 || m->dim > FRESH_MAX_DIM || q0 + nq > qs->b ||
	    (bf16 && !m->xh))
		return FRESH_INVALID;
	fresh_scan_plan(threads, m->n, &per, &ntasks);
	j.rows_per_task = per;

	j.scratch = calloc(threads, sizeof *j.scratch);
	j.widen = calloc(threads, sizeof *j.widen);
	if (!j.scratch || !j.widen) {
		st = FRESH_NOMEM;
		goto out;
	}
	if (bf16) {
		qh = fresh_alloc(nq * m->dim, sizeof *qh);
		if (!qh) {
			st = FRESH_NOMEM;
			goto out;
		}
		/* Out of bf16's range: infinite products, and the consumer
		 * keeps every such row for exact scoring. */
		for (size_t i = 0; i < nq * m->dim; i++)
			(void)fresh_bf16_from_f32(qs->q[q0 * m->dim + i],
						  &qh[i]);
		j.qh = qh;
	}
	for (size_t w = 0; w < threads; w++) {
		j.scratch[w] = fresh_alloc(tile_q * FRESH_SCAN_TILE_ROWS,
					   sizeof(float));
		if (bf16)
			j.widen[w] = fresh_alloc(FRESH_SCAN_TILE_ROWS * m->dim,
						 sizeof(float));
		if (!j.scratch[w] || (bf16 && !j.widen[w])) {
			st = FRESH_NOMEM;
			goto out;
		}
	}
	fresh_pool_run(pool, ntasks, scan_task, &j);
out:
	for (size_t w = 0; j.scratch && w < threads; w++)
		fresh_free(j.scratch[w]);
	for (size_t w = 0; j.widen && w < threads; w++)
		fresh_free(j.widen[w]);
	free(j.scratch);
	free(j.widen);
	fresh_free(qh);
	return st;
}

enum fresh_status fresh_scan(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t q0,
			     size_t nq, fresh_tile_fn fn, void *ctx)
{
	return scan(pool, m, qs, q0, nq, fn, ctx, false);
}

enum fresh_status fresh_scan_bf16(struct fresh_pool *pool,
				  const struct fresh_matrix *m,
				  const struct fresh_queries *qs, size_t q0,
				  size_t nq, fresh_tile_fn fn, void *ctx)
{
	return scan(pool, m, qs, q0, nq, fn, ctx, true);
}
