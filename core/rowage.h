/*
 * rowage.h - bringing the fresh rows a corrector serves up to date
 * (--age-fresh-rows).
 *
 * A fresh row is the target encoder's output at the step the client sent
 * it; by the time it is served the encoder has moved on, and on a
 * training loop most served rows are hundreds of steps old. Much of that
 * move is common to all targets (a dense head changing), so it can be
 * learnt from what the client sends anyway: each time a target's row is
 * replaced, the row served until now and the new one form a pair. A publish
 * fits one affine map from served rows to new rows on the pairs replaced
 * since the last publish (ridge, penalty by leave-one-out CV: ridge.h) and
 * moves every row that was not replaced by it. Rows are thereby aged in a
 * chain, one map per publish, and a row's served value stays its own fresh
 * row moved by the maps of the publishes since it came.
 *
 * Which rows were replaced is told by the update-log record each served
 * row came from (corrector.h, soft state). Without records (a corrector
 * read back from a checkpoint), or with fewer replaced rows than the fit
 * needs, rows are served as they are: raw where new, as served where not.
 */
#ifndef FRESH_ROWAGE_H
#define FRESH_ROWAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "corrector.h"
#include "pairs.h"
#include "status.h"

struct fresh_rowage_report {
	size_t replaced; /* pairs whose row replaced a served row (known
			  * only with records) */
	size_t added;	 /* pairs of targets not served a row before */
	size_t aged;	 /* rows moved by the map */
	bool fitted;	 /* a map was fitted (enough replaced rows) */
	double lambda;	 /* its ridge penalty */
};

/* Replaced rows a fit needs at width d (and at least min_pairs). */
size_t fresh_rowage_min_pairs(size_t d, size_t min_pairs);

/*
 * The rows to serve for pairs (out: pairs->n x d_out, in the pairs'
 * order), given current's served rows and their records. A row is moved
 * to unit norm when normalize, else kept at its norm. FRESH_NOMEM leaves
 * out undefined.
 */
enum fresh_status fresh_rowage_apply(const struct fresh_corrector *current,
				     const struct fresh_pairs_snapshot *pairs,
				     size_t min_pairs, bool normalize,
				     float *out,
				     struct fresh_rowage_report *rep);

/*
 * Whether serving pairs' rows (aged) would change what current serves:
 * a pair new or replaced since, or a served row whose pair is gone.
 * Without records, whether the raw rows differ.
 */
bool fresh_rowage_changed(const struct fresh_corrector *current,
			  const struct fresh_pairs_snapshot *pairs);

#endif
