/*
 * batch.h - scoring requests: what /v1/search and /v1/negatives ask of the
 * engine, scored together in one pass.
 *
 * A batch is scored on one model, acquired once: every request of it is
 * validated (its positives must exist), excluded and scored against that
 * model, and reports its version. A query's answer does not depend on the
 * batch it lands in (scan.h), so batching is a matter of speed only.
 */
#ifndef FRESH_BATCH_H
#define FRESH_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "pool.h"
#include "status.h"
#include "topk.h"

enum fresh_op {
	FRESH_OP_TOPK,	       /* the k best scores */
	FRESH_OP_SAMPLE,       /* k targets drawn by Gumbel-top-k, logprobs */
	FRESH_OP_TOPK_LOGPROB, /* the k best, with logprobs */
};

/* One list of target ids per query of a request (lists NULL: none). */
struct fresh_id_lists {
	const uint64_t *const *lists;
	const size_t *counts;
};

struct fresh_request {
	/* In: */
	enum fresh_op op;
	enum fresh_scoring scoring;
	const float *q;			 /* b x the scoring's query width */
	size_t b, k;			 /* k in 1..FRESH_MAX_K */
	struct fresh_id_lists positives; /* must exist; never returned */
	struct fresh_id_lists exclude;	 /* never returned; unknown ids ok */
	float temperature;		 /* ops with logprobs */
	uint64_t seed;			 /* FRESH_OP_SAMPLE */
	/* Out, into the caller's buffers: */
	struct fresh_hit *hits; /* b x k; hits[i * k ..] for query i */
	size_t *counts;		/* b */
	float *logprob;		/* b x k, ops with logprobs */
	double *keys;		/* b x k or NULL (sample.h detail) */
	double *log_z;		/* b or NULL (sample.h detail) */
	uint64_t version;	/* of the model that scored it */
	enum fresh_status status;
	/* With FRESH_NOT_FOUND: positives.lists[query][index] is unknown. */
	size_t missing_query, missing_index;
	uint64_t missing_id;
};

/*
 * Scores reqs[0..n) on model m (the caller holds a reference), on pool.
 * Requests that do not share reqs[0]'s op and scoring get FRESH_INVALID.
 * Each request's status: FRESH_OK; FRESH_NOT_FOUND for an unknown
 * positive (the others are still scored); FRESH_NOT_READY when corrected
 * scoring is not possible yet; FRESH_INVALID for a bad k or temperature;
 * FRESH_NOMEM. Returns the number of queries scored.
 */
size_t fresh_batch_score(const struct fresh_model *m, struct fresh_pool *pool,
			 struct fresh_request *const *reqs, size_t n);

#endif
