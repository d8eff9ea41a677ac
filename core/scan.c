/*
 * scan.c - tiled scoring (see scan.h).
 *
 * Design: tasks are contiguous row ranges, several per thread so that a
 * slow core does not hold up the pass; a task walks its range in blocks of
 * ROW_BLOCK rows and, for each block, scores every query block against it
 * while the block is hot in cache. Each worker owns a scratch tile of
 * QUERY_BLOCK x ROW_BLOCK floats, allocated once per scan.
 *
 * Cost model (DESIGN.md): with B queries the pass moves N*d*4 bytes and
 * does 2*B*N*d flops; below ~30 queries it is memory-bound, so splitting
 * rows across threads (not queries) is what keeps a small batch at one pass.
 */
#include "scan.h"

#include <stdlib.h>

#include "blas.h"
#include "index.h"
#include "mem.h"

#define QUERY_BLOCK ((size_t)256)
#define ROW_BLOCK ((size_t)512)

/*
 * Rows a tile covers, by the number of queries scored. Small batches are
 * memory-bound and OpenBLAS's small-matrix path wins on short row blocks;
 * measured on (B x 100k x 768) single-threaded sgemm, ms per pass:
 *   B = 8:  64 rows 30, 512 rows 41;  B = 32: 32 rows 63, 512 rows 75;
 *   B = 64: 64 rows 125, 512 rows 118.
 */
static size_t row_block_for(size_t nq)
{
	if (nq <= 2)
		return 128;
	if (nq <= 8)
		return 64;
	if (nq <= 48)
		return 32;
	return ROW_BLOCK;
}

_Static_assert(ROW_BLOCK <= FRESH_SCAN_MAX_TILE_ROWS,
	       "tiles must fit consumers' row buffers");

struct scan_job {
	const struct fresh_matrix *m;
	const struct fresh_queries *qs;
	size_t q0, nq, rows_per_task, row_block;
	fresh_tile_fn fn;
	void *ctx;
	float **scratch; /* per worker */
};

static void scan_task(void *arg, size_t task, size_t worker)
{
	struct scan_job *j = arg;
	const struct fresh_matrix *m = j->m;
	const struct fresh_queries *qs = j->qs;
	size_t r_begin = task * j->rows_per_task;
	size_t r_end = r_begin + j->rows_per_task;
	float *tile = j->scratch[worker];

	if (r_end > m->n)
		r_end = m->n;
	for (size_t r0 = r_begin; r0 < r_end; r0 += j->row_block) {
		size_t nr = r_end - r0 < j->row_block ? r_end - r0
						      : j->row_block;
		const float *xb = m->x + r0 * m->dim;

		for (size_t qb = 0; qb < j->nq; qb += QUERY_BLOCK) {
			size_t nq = j->nq - qb < QUERY_BLOCK ? j->nq - qb
							     : QUERY_BLOCK;
			size_t q0 = j->q0 + qb;

			/* Cannot fail: every size was checked in fresh_scan. */
			(void)fresh_sgemm(false, true, nq, nr, m->dim, 1.0f,
					  qs->q + q0 * m->dim, m->dim, xb,
					  m->dim, 0.0f, tile, nr);
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

void fresh_scan_plan(size_t threads, size_t n, size_t nq,
		     size_t *rows_per_task, size_t *ntasks)
{
	size_t block = row_block_for(nq);
	/* Whole row blocks per task, at most so many tasks a thread. */
	size_t per = n / (threads * FRESH_SCAN_TASKS_PER_THREAD) + 1;

	per = (per + block - 1) / block * block;
	*rows_per_task = per;
	*ntasks = (n + per - 1) / per;
}

enum fresh_status fresh_scan(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t q0,
			     size_t nq, fresh_tile_fn fn, void *ctx)
{
	size_t threads = fresh_pool_threads(pool);
	size_t tile_q = nq < QUERY_BLOCK ? nq : QUERY_BLOCK;
	size_t per, ntasks;
	struct scan_job j = {m, qs, q0, nq, 0, ROW_BLOCK, fn, ctx, NULL};
	enum fresh_status st = FRESH_OK;

	if (nq == 0 || m->n == 0)
		return FRESH_OK;
	if (m->dim == 0 || m->dim > FRESH_MAX_DIM || q0 + nq > qs->b)
		return FRESH_INVALID;
	j.row_block = row_block_for(nq);
	fresh_scan_plan(threads, m->n, nq, &per, &ntasks);
	j.rows_per_task = per;

	j.scratch = calloc(threads, sizeof *j.scratch);
	if (!j.scratch)
		return FRESH_NOMEM;
	for (size_t w = 0; w < threads; w++) {
		j.scratch[w] = fresh_alloc(tile_q * j.row_block, sizeof(float));
		if (!j.scratch[w]) {
			st = FRESH_NOMEM;
			goto out;
		}
	}
	fresh_pool_run(pool, ntasks, scan_task, &j);
out:
	for (size_t w = 0; w < threads; w++)
		fresh_free(j.scratch[w]);
	free(j.scratch);
	return st;
}
