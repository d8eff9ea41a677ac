/*
 * fit.h - the gradient stage of a refit: the recipe (trainer.c) splits the
 * pairs and starts from a closed-form fit; this trains on from there.
 */
#ifndef FRESH_FIT_H
#define FRESH_FIT_H

#include <stdatomic.h>
#include <stddef.h>

#include "corrector.h"
#include "logits.h"
#include "trainer.h"

/* Pairs split into training and held-out rows, gathered contiguously. */
struct fresh_fit_data {
	size_t d, dd, ntr, nho; /* stale and fresh widths, row counts */
	float *xtr, *gtr, *xho, *gho;
};

/*
 * Adam on the parameters of c selected by mask (FRESH_GRAD_*), from
 * where c is, on the drift loss plus (with logits) the logit term,
 * early-stopped on the held-out drift loss; c ends at the best held-out
 * parameters. Stops early on cancel or cfg->max_seconds; fills rep's
 * epochs, rollbacks and held-out figures.
 */
enum fresh_status fresh_fit_gradient(
	struct fresh_corrector *c, const struct fresh_fit_data *s,
	struct fresh_logit_set *logits, unsigned mask,
	const struct fresh_refit_config *cfg, struct fresh_progress *prog,
	const atomic_bool *cancel, struct fresh_refit_report *rep);

#endif
