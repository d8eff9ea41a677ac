/*
 * trainer.h - a refit: fit a new corrector on the buffered fresh pairs and
 * decide whether it may be published.
 *
 * The recipe (DESIGN.md "Refit", API.md "What a refit trains on"):
 *  1. split the pairs by a hash of the id: ~10% held out, stable as the
 *     buffer changes;
 *  2. fit the affine part in closed form (ridge regression of g - s on s,
 *     or of g on s when the widths differ; penalty by leave-one-out CV);
 *  3. for mlp, train the residual MLP from there with Adam on the mean
 *     squared drift ||h(s) - g||² (through the normalization when scoring
 *     normalizes), early-stopped on the held-out loss; the epoch-0 state is
 *     the ridge fit, so the result is never worse than it on held-out pairs;
 *  4. accept only if the candidate's held-out error beats both the
 *     published corrector's and the stale embeddings' (identity's).
 * With a logit weight and query groups (updates that carried queries), the
 * gradient stage also minimizes the logit-matching term (logits.h); an
 * affine corrector then gets that stage too, starting from the ridge fit.
 */
#ifndef FRESH_TRAINER_H
#define FRESH_TRAINER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "corrector.h"
#include "index.h"
#include "model.h"
#include "pairs.h"
#include "queries.h"
#include "rowage.h"
#include "status.h"

enum fresh_normalize_mode {
	FRESH_NORMALIZE_AUTO = 0, /* on when every fresh vector is unit-norm */
	FRESH_NORMALIZE_ON = 1,
	FRESH_NORMALIZE_OFF = 2,
};

struct fresh_refit_config {
	size_t min_pairs;	   /* fewer pairs: no refit (default 64) */
	unsigned holdout_permille; /* share held out, per mille (100) */
	size_t max_epochs;	   /* MLP epochs at most (200) */
	size_t max_steps;	   /* MLP optimizer steps at most (4000) */
	double max_seconds;	   /* wall-clock budget of the MLP (60) */
	size_t patience;	   /* epochs without held-out gain (12) */
	size_t batch;		   /* minibatch (256) */
	float lr;		   /* Adam step size (1e-3) */
	float clip_norm;	   /* global gradient norm clip (10) */
	uint64_t seed;		   /* initialisation and shuffling */
	enum fresh_normalize_mode normalize;
	float logit_weight;	 /* weight of the logit-matching term (0) */
	float logit_temperature; /* its softmax temperature (0.05) */
	/*
	 * An mlp corrector also carries the pairs' fresh rows, served in
	 * place of h(s) for those targets (corrector.h); off by default.
	 */
	bool serve_fresh_rows;
	/*
	 * No training: the current corrector's network with the pairs' rows
	 * (needs serve_fresh_rows and an mlp), published when they differ
	 * from the rows it serves.
	 */
	bool rows_only;
	/*
	 * The rows served are aged (rowage.h): each publish fits a map
	 * from served rows to the rows that replaced them and moves the
	 * rest by it (needs serve_fresh_rows).
	 */
	bool age_fresh_rows;
};

struct fresh_refit_config fresh_refit_config_default(void);

struct fresh_refit_report {
	bool accepted;
	char reason[256];		     /* why not, when not accepted */
	struct fresh_holdout holdout;	     /* the candidate's */
	double current_mse, current_rel_err; /* published one, same pairs */
	size_t pairs, train, held_out;
	size_t epochs, steps, skipped_steps, rollbacks;
	double lambda;	     /* ridge penalty chosen */
	bool refit_on_all;   /* the affine fit was redone on every pair */
	bool mlp_dropped;    /* trained, not clearly better than ridge */
	const char *method;  /* "ridge", "ridge+mlp", "ridge+logits" */
	size_t logit_groups; /* query groups the logit term used */
	bool normalize;
	bool network_kept; /* "fresh-rows": the serving network, new rows */
	struct fresh_rowage_report rowage; /* with age_fresh_rows */
	double seconds;
};

/*
 * Trains on pairs (ids must be in idx; unknown ones are skipped), and on
 * groups (may be NULL) when cfg->logit_weight > 0, a corrector of
 * current's shape. On FRESH_OK, rep says whether it was
 * accepted; if so *out is the new corrector (version and trained-through
 * not yet set; caller owns it), else *out is NULL. prog counts epochs.
 * Errors (FRESH_NOMEM, FRESH_CANCELLED) leave *out NULL.
 */
enum fresh_status fresh_refit_train(
	const struct fresh_index *idx, const struct fresh_pairs_snapshot *pairs,
	const struct fresh_qgroups *groups,
	const struct fresh_corrector *current,
	const struct fresh_refit_config *cfg, struct fresh_progress *prog,
	const atomic_bool *cancel, struct fresh_corrector **out,
	struct fresh_refit_report *rep, struct fresh_error *err);

/*
 * A publish that keeps current's network reports that network's own
 * held-out errors: rep->holdout and current_* from current (false, and
 * rep untouched, when it has none).
 */
bool fresh_refit_report_serving(const struct fresh_corrector *current,
				struct fresh_refit_report *rep);

/*
 * No training: current's network with the pairs' rows (cfg->rows_only,
 * and what a refit that publishes nothing falls back to under
 * serve_fresh_rows). Accepted ("fresh-rows", network_kept) when the rows
 * differ from the ones current serves; otherwise rep->reason says why not
 * and *out is NULL. Fills only the fields that describe the publish.
 */
enum fresh_status fresh_refit_rows(const struct fresh_corrector *current,
				   const struct fresh_pairs_snapshot *pairs,
				   const struct fresh_refit_config *cfg,
				   struct fresh_corrector **out,
				   struct fresh_refit_report *rep,
				   struct fresh_error *err);

/* Whether the pair of id is held out (the fixed hash split). */
bool fresh_refit_is_holdout(uint64_t id, unsigned permille);

/*
 * Held-out errors of c on x (n x d_in) against g (n x d_out), as scored
 * (normalized when c normalizes): mean squared distance and mean relative
 * squared error. Also the stale errors when the widths agree.
 */
enum fresh_status fresh_refit_evaluate(const struct fresh_corrector *c,
				       const float *x, const float *g, size_t n,
				       struct fresh_holdout *out);

#endif
