/*
 * pairs.h - the buffer of fresh pairs: for each target id, the newest
 * fresh embedding g(y) a client sent, with its trainer step.
 *
 * Policy (API.md "Pairs"): at most one pair per target. An incoming pair
 * replaces the held one when both carry a step and the incoming step is
 * >= the held one (equal steps: the later arrival wins), or when either
 * lacks a step (then arrival order decides). The buffer holds at most
 * max_pairs targets; when a new target arrives at a full buffer, the
 * target whose pair arrived longest ago is evicted.
 *
 * Not thread-safe: the engine serializes access under its own lock.
 */
#ifndef FRESH_PAIRS_H
#define FRESH_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct fresh_pairs;

/* A pair as stored, borrowed until the next change of the buffer. */
struct fresh_pair {
	uint64_t id;
	const float *g; /* dim floats */
	bool has_step;
	int64_t step;
	uint64_t seq; /* the update-log record that brought it */
};

/* A copy of the buffer for a refit, in arrival order. Owned by caller. */
struct fresh_pairs_snapshot {
	size_t n, dim;
	uint64_t *ids;
	float *g;	/* n x dim */
	int64_t *steps; /* meaningful where has_step */
	bool *has_step;
	uint64_t *seqs;	  /* the record each pair came from */
	uint64_t max_seq; /* newest record any pair came from */
};

enum fresh_status fresh_pairs_create(size_t dim, size_t max_pairs,
				     struct fresh_pairs **out);
void fresh_pairs_free(struct fresh_pairs *p);

size_t fresh_pairs_count(const struct fresh_pairs *p);
size_t fresh_pairs_dim(const struct fresh_pairs *p);
size_t fresh_pairs_capacity(const struct fresh_pairs *p);

/*
 * Offers a pair. *kept tells whether it is now the held pair for id (false
 * when the held one is newer by step). FRESH_NOMEM leaves the buffer as it
 * was.
 */
enum fresh_status fresh_pairs_put(struct fresh_pairs *p, uint64_t id,
				  const float *g, bool has_step, int64_t step,
				  uint64_t seq, bool *kept);

/* Whether a pair for id would be kept (see the policy) without storing. */
bool fresh_pairs_would_keep(const struct fresh_pairs *p, uint64_t id,
			    bool has_step, int64_t step);

bool fresh_pairs_get(const struct fresh_pairs *p, uint64_t id,
		     struct fresh_pair *out);
bool fresh_pairs_remove(struct fresh_pairs *p, uint64_t id);
void fresh_pairs_clear(struct fresh_pairs *p);

/* The newest step any held pair carries; false when none carries one. */
bool fresh_pairs_newest_step(const struct fresh_pairs *p, int64_t *step);
/* How many pairs carry a step below min_step. */
size_t fresh_pairs_count_below(const struct fresh_pairs *p, int64_t min_step);
/* Removes the pairs whose step is below min_step; returns how many. */
size_t fresh_pairs_expire(struct fresh_pairs *p, int64_t min_step);

/* Removes every pair for which keep(arg, id) is false; returns how many. */
size_t fresh_pairs_filter(struct fresh_pairs *p,
			  bool (*keep)(void *arg, uint64_t id), void *arg);

/*
 * Copies the buffer, in arrival order. With max_step_lag > 0, pairs
 * whose step is more than max_step_lag behind the newest step held are
 * left out (pairs without a step are always included).
 */
enum fresh_status fresh_pairs_snapshot(const struct fresh_pairs *p,
				       int64_t max_step_lag,
				       struct fresh_pairs_snapshot *snap);
void fresh_pairs_snapshot_free(struct fresh_pairs_snapshot *snap);

#endif
