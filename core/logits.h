/*
 * logits.h - the refit's logit-matching term (Monath et al.'s alternative
 * to the plain drift loss): for a query q of an update whose targets are
 * T, match softmax_t(<q, h(s_t)> / tau) to softmax_t(<q, g_t> / tau), g the
 * fresh embeddings the update carried, by the cross-entropy
 *   L = - sum_t p_t log p̂_t,  averaged over queries.
 * The trainer adds weight * L to the squared drift loss.
 */
#ifndef FRESH_LOGITS_H
#define FRESH_LOGITS_H

#include <stddef.h>

#include "corrector.h"
#include "index.h"
#include "queries.h"
#include "status.h"

struct fresh_logit_set;

/*
 * Prepares the groups for training: stale rows of their targets (targets
 * unknown to idx are left out; groups with fewer than two are dropped) and
 * the fresh softmax p of each query. Caller owns *out.
 */
enum fresh_status fresh_logits_prepare(const struct fresh_index *idx,
				       const struct fresh_qgroups *groups,
				       float temperature,
				       struct fresh_logit_set **out);
void fresh_logits_free(struct fresh_logit_set *s);
size_t fresh_logits_groups(const struct fresh_logit_set *s);

/*
 * For group i: adds weight * dL/dparams (the parameters selected by mask,
 * see fresh_corrector_backward) to grad, using scratch (layout.total
 * floats). Returns L (mean over the group's queries), NaN if not finite.
 * normalize: scores use h(s)/||h(s)||.
 */
double fresh_logits_step(struct fresh_logit_set *s,
			 const struct fresh_corrector *c, size_t i,
			 float weight, unsigned mask, float *grad,
			 float *scratch);

#endif
