/*
 * topk.c - exact top-k over scan tiles (see topk.h).
 *
 * Design: each worker keeps one bounded heap per query (worst hit at the
 * root). A tile is swept with the query's current k-th score as a guard, so
 * that after the first few tiles almost every score costs one compare; a
 * score equal to the guard still goes to the full (score, id) comparison,
 * which is what makes ties come out by ascending id. At the end the
 * workers' heaps are merged per query and sorted.
 *
 * Queries are processed in super-blocks whose heaps fit a fixed budget, so
 * that k = 1000 with thousands of queries does not allocate gigabytes.
 */
#include "topk.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

#define HEAP_BUDGET_BYTES ((size_t)64 << 20)

/* a is worse than b: lower score, or equal score and higher id. */
static inline bool worse(const struct fresh_hit *a, const struct fresh_hit *b)
{
	return a->score < b->score || (a->score == b->score && a->id > b->id);
}

FRESH_HEAP_DEFINE(hit_heap, struct fresh_hit, worse)

void fresh_heap_offer(struct fresh_hit *h, size_t *n, size_t k,
		      struct fresh_hit hit)
{
	hit_heap_offer(h, n, k, hit);
}

void fresh_heap_sort(struct fresh_hit *h, size_t n)
{
	hit_heap_sort(h, n);
}

bool fresh_excluded(const struct fresh_exclusion *e, size_t row)
{
	size_t lo = 0, hi = e->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (e->rows[mid] < row)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < e->count && e->rows[lo] == row;
}

struct topk_job {
	const struct fresh_matrix *m;
	const struct fresh_exclusion *excl;
	size_t k, q_begin, nq;
	struct fresh_hit **heaps; /* [worker][(q - q_begin) * k + i] */
	size_t **sizes;		  /* [worker][q - q_begin] */
};

static void topk_tile(void *ctx, size_t worker, size_t q0, size_t nq, size_t r0,
		      size_t nr, const float *scores)
{
	struct topk_job *j = ctx;
	const uint64_t *ids = j->m->ids + r0;
	size_t k = j->k;

	for (size_t i = 0; i < nq; i++) {
		size_t slot = q0 + i - j->q_begin;
		struct fresh_hit *h = j->heaps[worker] + slot * k;
		size_t *n = &j->sizes[worker][slot];
		const struct fresh_exclusion *e =
			j->excl && j->excl[q0 + i].count ? &j->excl[q0 + i]
							 : NULL;
		const float *s = scores + i * nr;
		float guard = *n == k ? h[0].score : -INFINITY;

		for (size_t c = 0; c < nr; c++) {
			struct fresh_hit hit;

			/* Also skips NaN, which no ranking can place. */
			if (!(s[c] >= guard))
				continue;
			hit.id = ids[c];
			hit.score = s[c];
			if (*n == k && !worse(&h[0], &hit))
				continue;
			if (e && fresh_excluded(e, r0 + c))
				continue;
			fresh_heap_offer(h, n, k, hit);
			if (*n == k)
				guard = h[0].score;
		}
	}
}

enum fresh_status fresh_topk(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t k,
			     const struct fresh_exclusion *excl,
			     struct fresh_hit *hits, size_t *counts)
{
	if (m->xh)
		return fresh_topk_bounded(pool, m, qs, k, excl, hits, counts);
	return fresh_topk_f32(pool, m, qs, k, excl, hits, counts);
}

enum fresh_status fresh_topk_f32(struct fresh_pool *pool,
				 const struct fresh_matrix *m,
				 const struct fresh_queries *qs, size_t k,
				 const struct fresh_exclusion *excl,
				 struct fresh_hit *hits, size_t *counts)
{
	size_t threads = fresh_pool_threads(pool);
	size_t block, per_query;
	struct topk_job j;
	enum fresh_status st = FRESH_OK;

	if (k == 0 || k > FRESH_MAX_K)
		return FRESH_INVALID;
	memset(&j, 0, sizeof j);
	j.m = m;
	j.excl = excl;
	j.k = k;
	per_query = threads * k * sizeof(struct fresh_hit);
	block = HEAP_BUDGET_BYTES / per_query;
	if (block < 256)
		block = 256;
	if (block > qs->b)
		block = qs->b;

	j.heaps = calloc(threads, sizeof *j.heaps);
	j.sizes = calloc(threads, sizeof *j.sizes);
	if (!j.heaps || !j.sizes) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t w = 0; w < threads; w++) {
		j.heaps[w] = malloc(block * k * sizeof **j.heaps);
		j.sizes[w] = malloc(block * sizeof **j.sizes);
		if (!j.heaps[w] || !j.sizes[w]) {
			st = FRESH_NOMEM;
			goto out;
		}
	}
	for (size_t q0 = 0; q0 < qs->b && st == FRESH_OK; q0 += block) {
		size_t nq = qs->b - q0 < block ? qs->b - q0 : block;

		j.q_begin = q0;
		j.nq = nq;
		for (size_t w = 0; w < threads; w++)
			memset(j.sizes[w], 0, nq * sizeof **j.sizes);
		st = fresh_scan(pool, m, qs, q0, nq, topk_tile, &j);
		if (st != FRESH_OK)
			break;
		for (size_t i = 0; i < nq; i++) {
			struct fresh_hit *out = hits + (q0 + i) * k;
			size_t n = 0;

			for (size_t w = 0; w < threads; w++) {
				const struct fresh_hit *h = j.heaps[w] + i * k;
				for (size_t c = 0; c < j.sizes[w][i]; c++)
					fresh_heap_offer(out, &n, k, h[c]);
			}
			fresh_heap_sort(out, n);
			counts[q0 + i] = n;
		}
	}
out:
	for (size_t w = 0; j.heaps && w < threads; w++)
		free(j.heaps[w]);
	for (size_t w = 0; j.sizes && w < threads; w++)
		free(j.sizes[w]);
	free(j.heaps);
	free(j.sizes);
	return st;
}
