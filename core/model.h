/*
 * model.h - a published model: the stale index, a corrector, and what
 * scoring needs precomputed from them (the corrected matrix C = h(S) for
 * mlp, per-row norms for a normalized affine corrector). Immutable once
 * built; readers hold counted references (retain/release) and the last
 * release frees it (see swap.h for how it is published).
 */
#ifndef FRESH_MODEL_H
#define FRESH_MODEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "corrector.h"
#include "index.h"
#include "pool.h"
#include "sample.h"
#include "status.h"
#include "topk.h"

struct fresh_model;

enum fresh_scoring {
	FRESH_SCORING_CORRECTED = 0,
	FRESH_SCORING_STALE = 1,
};

/* Progress of long work, readable from any thread. */
struct fresh_progress {
	atomic_size_t done, total;
};

double fresh_progress_fraction(const struct fresh_progress *p);

/*
 * Builds a model of idx (retained) and corr (owned by the model on
 * success, untouched on failure). Materializes what scoring needs on pool,
 * counting rows in prog (may be NULL); stops early with FRESH_CANCELLED
 * when *cancel becomes true (cancel may be NULL). An mlp corrector over a
 * bf16 index keeps h(S) in float32 in an unnamed file in spill_dir and its
 * bf16 copy in memory; with spill_dir NULL, h(S) is float32 in memory
 * whatever the store.
 */
enum fresh_status fresh_model_build(
	struct fresh_index *idx, struct fresh_corrector *corr,
	struct fresh_pool *pool, struct fresh_progress *prog,
	const atomic_bool *cancel, const char *spill_dir,
	struct fresh_model **out, struct fresh_error *err);

/*
 * As fresh_model_build, and cheaper when base, a model of idx, scores
 * through the same network as corr (same shape, normalization and
 * parameters: a publish of fresh rows only) and holds C in float32 in
 * memory: base's C is copied and only the rows whose fresh row changed,
 * came or went are redone. Otherwise a full build. Same bits either way.
 */
enum fresh_status fresh_model_build_like(
	const struct fresh_model *base, struct fresh_index *idx,
	struct fresh_corrector *corr, struct fresh_pool *pool,
	struct fresh_progress *prog, const atomic_bool *cancel,
	const char *spill_dir, struct fresh_model **out,
	struct fresh_error *err);

/*
 * Sets the version and trained-through sequence of a model's corrector.
 * Only before the model is published: published models are immutable.
 */
void fresh_model_stamp(struct fresh_model *m, uint64_t version,
		       uint64_t trained_through);

void fresh_model_retain(struct fresh_model *m);
/* Drops a reference; the last one frees. Accepts NULL. */
void fresh_model_release(struct fresh_model *m);

uint64_t fresh_model_version(const struct fresh_model *m);
/* Borrowed for as long as the model is held. */
struct fresh_index *fresh_model_index(const struct fresh_model *m);
const struct fresh_corrector *fresh_model_corrector(
	const struct fresh_model *m);
/* Width of a query for that scoring (fresh width for corrected). */
size_t fresh_model_query_dim(const struct fresh_model *m,
			     enum fresh_scoring scoring);
/*
 * False while corrected scoring is impossible: a fresh width differs from
 * the stale one and no corrector has been fitted yet.
 */
bool fresh_model_can_correct(const struct fresh_model *m);
/* How many rows it serves as the corrector's fresh rows, not h(s). */
size_t fresh_model_fresh_rows(const struct fresh_model *m);
/*
 * Bytes of memory the model adds to the index (corrected matrix, norms,
 * the corrector's fresh rows).
 */
size_t fresh_model_extra_bytes(const struct fresh_model *m);
/* Bytes it keeps in a file, mapped (h(S) in float32 under bf16), or 0. */
size_t fresh_model_mapped_bytes(const struct fresh_model *m);

/*
 * Exact top-k of b queries (b x query_dim) under the given scoring; excl
 * (NULL or b entries) lists rows per query. See fresh_topk for the output.
 */
enum fresh_status fresh_model_search(const struct fresh_model *m,
				     struct fresh_pool *pool,
				     enum fresh_scoring scoring, const float *q,
				     size_t b, size_t k,
				     const struct fresh_exclusion *excl,
				     struct fresh_hit *hits, size_t *counts);

/*
 * Hard negatives sampled from softmax(score / temps[q]) under the given
 * scoring (see sample.h for the method and the outputs; detail may be
 * NULL).
 */
enum fresh_status fresh_model_sample(
	const struct fresh_model *m, struct fresh_pool *pool,
	enum fresh_scoring scoring, const float *q, size_t b, size_t n,
	bool gumbel, const struct fresh_exclusion *excl, const float *temps,
	const uint64_t *seeds, struct fresh_hit *hits, float *logprob,
	size_t *counts, const struct fresh_sample_detail *detail);

/*
 * The corrected vectors of rows[0..n) as scored (normalized when the
 * corrector normalizes), into out (n x d_out).
 */
enum fresh_status fresh_model_corrected_rows(const struct fresh_model *m,
					     const size_t *rows, size_t n,
					     float *out);

/*
 * The corrected score as an affine map of the stale vector, when it is one
 * (API.md "query map"): <q, h(s)> = <Wᵀq, s> + <q, b> for every s, with
 * w (d_out x d_in, row-major) and b (d_out) the caller's. FRESH_CONFLICT
 * when the model scores through an MLP or normalizes corrected rows, and
 * FRESH_NOT_READY when corrected scoring is not possible yet.
 */
enum fresh_status fresh_model_query_map(const struct fresh_model *m, float *w,
					float *b);

/*
 * What scoring scans, for callers that drive their own selection (the
 * sampler): the matrix to scan and the query transform. For scoring
 * corrected with a folded affine corrector, q must first go through
 * fresh_model_prepare_queries.
 */
struct fresh_scan_plan {
	struct fresh_matrix matrix;
	bool fold; /* queries need fresh_corrector_fold */
};
void fresh_model_plan(const struct fresh_model *m, enum fresh_scoring scoring,
		      struct fresh_scan_plan *plan);

/*
 * Transforms b queries for the plan: q2 (b x matrix.dim) and offsets (b).
 * When the plan has no fold, q2 is a copy and offsets are zero.
 */
enum fresh_status fresh_model_prepare_queries(
	const struct fresh_model *m, const struct fresh_scan_plan *plan,
	const float *q, size_t b, float *q2, float *offsets);

#endif
