/*
 * sample.h - hard negatives drawn from softmax(score / T) without
 * replacement, by Gumbel-top-k, with exact log-probabilities.
 *
 * For each query: every target y not excluded gets the key
 * z_y + G_y, z_y = score_y / T, G_y = -log(-log U_y) with U_y uniform from
 * a hash of (query seed, id); the n largest keys are a sample without
 * replacement from softmax(z) (in the order sequential draws would give).
 * log Z = logsumexp(z) over the same targets is accumulated in the same
 * pass, so logprob_y = z_y - log Z is exact up to float rounding. The
 * noise depends only on (seed, id), so results do not depend on threads,
 * tiles or how requests were batched.
 */
#ifndef FRESH_SAMPLE_H
#define FRESH_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool.h"
#include "scan.h"
#include "status.h"
#include "topk.h"

/* The seed of query t of a request whose seed is seed. */
uint64_t fresh_sample_seed(uint64_t seed, size_t t);

/* The uniform U in (0, 1) the sampler uses for (seed, id). */
double fresh_sample_uniform(uint64_t seed, uint64_t id);

/*
 * For each query q of qs (temps[q] > 0, seeds[q]): hits[q * n ..] receive
 * min(n, rows not excluded) sampled targets with their scores, in draw
 * order; logprob[q * n + i] the log-probability of hit i under
 * softmax(score / temps[q]) over the rows not excluded. Without gumbel
 * the n best scores are taken instead of a sample (exact top-n, ties by
 * id), with the same log-probabilities.
 */
enum fresh_status fresh_sample(struct fresh_pool *pool,
			       const struct fresh_matrix *m,
			       const struct fresh_queries *qs, size_t n,
			       bool gumbel, const struct fresh_exclusion *excl,
			       const float *temps, const uint64_t *seeds,
			       struct fresh_hit *hits, float *logprob,
			       size_t *counts);

/*
 * What a coordinator needs to merge samples drawn on shards of an index
 * (API.md --shards): the key of each hit (score / T plus its Gumbel noise,
 * or score / T without gumbel; hits are in descending key order, ties by
 * ascending id) and log Z of each query over the rows not excluded
 * (-inf when every row is excluded). Keys depend only on (seed, id,
 * score), so the n largest keys over all shards are the sample one
 * process over the whole index draws, and log Z combines by log-sum-exp.
 */
struct fresh_sample_detail {
	double *keys;  /* b x n, or NULL */
	double *log_z; /* b, or NULL */
};

/* fresh_sample, also writing detail's arrays (detail may be NULL). */
enum fresh_status fresh_sample_detailed(
	struct fresh_pool *pool, const struct fresh_matrix *m,
	const struct fresh_queries *qs, size_t n, bool gumbel,
	const struct fresh_exclusion *excl, const float *temps,
	const uint64_t *seeds, struct fresh_hit *hits, float *logprob,
	size_t *counts, const struct fresh_sample_detail *detail);

#endif
