/*
 * adam.h - the Adam optimizer (Kingma & Ba) with bias correction,
 * optional decoupled weight decay (AdamW) and per-range freezing.
 */
#ifndef FRESH_ADAM_H
#define FRESH_ADAM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct fresh_adam_config {
	float lr, beta1, beta2, eps, weight_decay;
};

/* lr 1e-3, betas 0.9 / 0.999, eps 1e-8, no weight decay. */
struct fresh_adam_config fresh_adam_config_default(void);

struct fresh_adam {
	struct fresh_adam_config cfg;
	size_t n;
	uint64_t t;   /* steps taken */
	float *m, *v; /* first and second moments */
};

enum fresh_status fresh_adam_init(struct fresh_adam *a, size_t n,
				  struct fresh_adam_config cfg);
void fresh_adam_free(struct fresh_adam *a);
/* Forgets the moments and the step count (after a roll-back). */
void fresh_adam_reset(struct fresh_adam *a);

/*
 * One step on params[begin, end) with gradient grad (same indexing as
 * params): p -= lr * (m̂ / (sqrt(v̂) + eps) + wd * p).
 */
void fresh_adam_step(struct fresh_adam *a, float *params, const float *grad,
		     size_t begin, size_t end);

#endif
