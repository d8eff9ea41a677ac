/*
 * adam.c - see adam.h. Bias corrections are computed in double once a
 * step; the update loop is branch-free and vectorizes.
 */
#include "adam.h"

#include <math.h>
#include <string.h>

#include "mem.h"

struct fresh_adam_config fresh_adam_config_default(void)
{
	struct fresh_adam_config c = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f};
	return c;
}

enum fresh_status fresh_adam_init(struct fresh_adam *a, size_t n,
				  struct fresh_adam_config cfg)
{
	memset(a, 0, sizeof *a);
	a->cfg = cfg;
	a->n = n;
	a->m = fresh_calloc(n ? n : 1, sizeof(float));
	a->v = fresh_calloc(n ? n : 1, sizeof(float));
	if (!a->m || !a->v) {
		fresh_adam_free(a);
		return FRESH_NOMEM;
	}
	return FRESH_OK;
}

void fresh_adam_free(struct fresh_adam *a)
{
	fresh_free(a->m);
	fresh_free(a->v);
	a->m = a->v = NULL;
}

void fresh_adam_reset(struct fresh_adam *a)
{
	memset(a->m, 0, a->n * sizeof(float));
	memset(a->v, 0, a->n * sizeof(float));
	a->t = 0;
}

void fresh_adam_step(struct fresh_adam *a, float *params, const float *grad,
		     size_t begin, size_t end)
{
	const struct fresh_adam_config *c = &a->cfg;
	float b1 = c->beta1, b2 = c->beta2;
	float step, corr2, wd = c->lr * c->weight_decay;

	a->t++;
	step = (float)((double)c->lr / (1.0 - pow((double)b1, (double)a->t)));
	corr2 = (float)(1.0 / (1.0 - pow((double)b2, (double)a->t)));
	for (size_t i = begin; i < end && i < a->n; i++) {
		float g = grad[i];
		float m = a->m[i] = b1 * a->m[i] + (1.0f - b1) * g;
		float v = a->v[i] = b2 * a->v[i] + (1.0f - b2) * g * g;
		params[i] -=
			step * m / (sqrtf(v * corr2) + c->eps) + wd * params[i];
	}
}
