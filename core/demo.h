/*
 * demo.h - the built-in demo corpus: a seeded stale index and the "new
 * encoder" that drifted from it, so every endpoint works with no files.
 *
 * Stale embeddings are unit vectors drawn around a few hundred topic
 * centres (a corpus has topics). The fresh encoder maps a target's stale
 * vector s to normalize(s + A s + c * tanh(B s)): a smooth, partly
 * nonlinear drift of the kind fine-tuning produces, strong enough that
 * stale neighbours differ from fresh ones and learnable from a few
 * percent of targets.
 */
#ifndef FRESH_DEMO_H
#define FRESH_DEMO_H

#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "pool.h"
#include "status.h"
#include "topk.h"

struct fresh_demo;

/* n targets of width d from seed; the stale index has ids 0..n-1. */
enum fresh_status fresh_demo_create(size_t n, size_t d, uint64_t seed,
				    struct fresh_demo **out);
void fresh_demo_free(struct fresh_demo *demo);

/* A new reference to the stale index (release it). */
struct fresh_index *fresh_demo_index(struct fresh_demo *demo);
/* The fresh embeddings of rows[0..n) into out (n x d). */
enum fresh_status fresh_demo_fresh(const struct fresh_demo *demo,
				   const size_t *rows, size_t n, float *out);
/* All fresh embeddings (n x d), computed once on first use; NULL on OOM. */
const float *fresh_demo_fresh_all(struct fresh_demo *demo);
/*
 * The exact top-k of queries q (b x d) under the fresh embeddings: what a
 * perfect corrector would answer. hits b x k, counts b (see fresh_topk).
 */
enum fresh_status fresh_demo_truth(struct fresh_demo *demo,
				   struct fresh_pool *pool, const float *q,
				   size_t b, size_t k, struct fresh_hit *hits,
				   size_t *counts);

#endif
