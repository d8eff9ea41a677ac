/*
 * topk.h - exact top-k by inner product, with exclusions.
 *
 * Results are what a brute-force loop gives: the k highest scores, ties
 * broken by ascending id, so that answers are deterministic whatever the
 * thread count or tile sizes.
 */
#ifndef FRESH_TOPK_H
#define FRESH_TOPK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "scan.h"
#include "status.h"

#define FRESH_MAX_K ((size_t)1000)

struct fresh_hit {
	uint64_t id;
	float score;
};

/* Rows a query must not return: sorted ascending, no duplicates. */
struct fresh_exclusion {
	const size_t *rows;
	size_t count;
};

/* True when a ranks before b: higher score, or equal score and lower id. */
static inline bool fresh_hit_before(const struct fresh_hit *a,
				    const struct fresh_hit *b)
{
	return a->score > b->score || (a->score == b->score && a->id < b->id);
}

/*
 * For each query q of qs: hits[q * k .. q * k + counts[q]) receives the
 * best min(k, rows not excluded) rows of m in rank order. excl is NULL or
 * has qs->b entries. k is in 1..FRESH_MAX_K. Caller owns hits and counts.
 */
enum fresh_status fresh_topk(struct fresh_pool *pool,
			     const struct fresh_matrix *m,
			     const struct fresh_queries *qs, size_t k,
			     const struct fresh_exclusion *excl,
			     struct fresh_hit *hits, size_t *counts);

/*
 * The same answer from m's bf16 rows (m->xh and m->row_norm set): a bf16
 * pass bounds every score, and only the rows that can reach the k-th are
 * scored in float32 (topk_bounded.c). Bitwise equal to fresh_topk on the
 * float32 rows; fresh_topk calls it when m->xh is set.
 */
enum fresh_status fresh_topk_bounded(struct fresh_pool *pool,
				     const struct fresh_matrix *m,
				     const struct fresh_queries *qs, size_t k,
				     const struct fresh_exclusion *excl,
				     struct fresh_hit *hits, size_t *counts);
/* Rows fresh_topk_bounded has rescored in float32 since the start. */
unsigned long long fresh_topk_bounded_rescored(void);
/* fresh_topk on the float32 rows only, whatever m->xh says. */
enum fresh_status fresh_topk_f32(struct fresh_pool *pool,
				 const struct fresh_matrix *m,
				 const struct fresh_queries *qs, size_t k,
				 const struct fresh_exclusion *excl,
				 struct fresh_hit *hits, size_t *counts);

/*
 * Bounded heap of the best k hits seen, worst at the root; exposed for the
 * sampler, which keeps its own keys. fresh_heap_offer returns whether the
 * hit was kept; fresh_heap_sort leaves h[0..n) in rank order.
 */
void fresh_heap_offer(struct fresh_hit *h, size_t *n, size_t k,
		      struct fresh_hit hit);
void fresh_heap_sort(struct fresh_hit *h, size_t n);

/* Whether row is in the sorted exclusion list. */
bool fresh_excluded(const struct fresh_exclusion *e, size_t row);

#endif
