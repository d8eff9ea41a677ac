/*
 * fit.c - the gradient stage of a refit (see fit.h): minibatch Adam on the
 * drift loss (and the logit term), early-stopped on held-out pairs.
 *
 * Design: minibatches are gathered into contiguous scratch so each step
 * is three or four sgemm calls. Guards: a step whose loss is not finite
 * is skipped; a held-out loss that is not finite or four times the best
 * so far rolls the parameters back to the best, resets Adam and halves
 * the step size (at most three times).
 */
#include "fit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adam.h"
#include "clock.h"
#include "hash.h"
#include "mem.h"
#include "rows.h"

#define MAX_ROLLBACKS 3

static uint64_t rng_next(uint64_t *state)
{
	*state += UINT64_C(0x9e3779b97f4a7c15);
	return fresh_mix64(*state);
}

static double rng_normal(uint64_t *state)
{
	double u1 = fresh_unit_open(rng_next(state));
	double u2 = fresh_unit_open(rng_next(state));
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

struct mlp_state {
	float *xb, *gb, *y, *dy, *grad, *best, *inv, *scratch;
	size_t *perm;
	struct fresh_corrector_ws ws;
	struct fresh_adam adam;
};

static void mlp_state_free(struct mlp_state *m)
{
	fresh_free(m->xb);
	fresh_free(m->gb);
	fresh_free(m->y);
	fresh_free(m->dy);
	fresh_free(m->grad);
	fresh_free(m->best);
	fresh_free(m->inv);
	fresh_free(m->scratch);
	free(m->perm);
	fresh_corrector_ws_free(&m->ws);
	fresh_adam_free(&m->adam);
}

/*
 * One minibatch: loss gradient into m->dy. Returns the mean loss (squared
 * distance per pair), NaN when not finite.
 */
static double batch_loss(const struct fresh_corrector *c, struct mlp_state *m,
			 size_t nb, size_t dd)
{
	bool norm = fresh_corrector_normalize(c);
	double loss = 0.0;

	if (norm)
		fresh_normalize_rows(m->y, nb, dd, m->inv, 1);
	for (size_t i = 0; i < nb * dd; i++) {
		float e = m->y[i] - m->gb[i];
		loss += (double)e * e;
		m->dy[i] = 2.0f * e / (float)nb;
	}
	if (norm)
		fresh_normalize_backward(m->dy, m->y, m->inv, nb, dd);
	loss /= (double)nb;
	return isfinite(loss) ? loss : NAN;
}

static void clip(float *g, size_t begin, size_t end, float max_norm)
{
	double ss = 0.0;

	for (size_t i = begin; i < end; i++)
		ss += (double)g[i] * g[i];
	if (ss > (double)max_norm * max_norm) {
		float s = (float)(max_norm / sqrt(ss));
		for (size_t i = begin; i < end; i++)
			g[i] *= s;
	}
}

enum fresh_status fresh_fit_gradient(
	struct fresh_corrector *c, const struct fresh_fit_data *s,
	struct fresh_logit_set *logits, unsigned mask,
	const struct fresh_refit_config *cfg, struct fresh_progress *prog,
	const atomic_bool *cancel, struct fresh_refit_report *rep)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(c);
	struct fresh_corrector_layout l = fresh_corrector_layout(c);
	float *p = fresh_corrector_params(c);
	size_t nb_max = cfg->batch < s->ntr ? cfg->batch : s->ntr;
	size_t d = s->d, dd = s->dd, since = 0;
	struct fresh_adam_config acfg = fresh_adam_config_default();
	struct fresh_holdout ho;
	struct mlp_state m;
	uint64_t rng = cfg->seed;
	double best, t0 = fresh_monotonic();
	enum fresh_status st;
	bool stop = false;

	size_t begin = mask & FRESH_GRAD_LINEAR ? l.a : l.b, next_group = 0;

	memset(&m, 0, sizeof m);
	/* He initialisation of W1; W2 stays zero so h starts at the ridge. */
	for (size_t i = 0; i < sh->hidden * d; i++)
		p[l.w1 + i] = (float)(rng_normal(&rng) * sqrt(2.0 / (double)d));
	acfg.lr = cfg->lr;
	m.xb = fresh_alloc(nb_max, d * sizeof(float));
	m.gb = fresh_alloc(nb_max, dd * sizeof(float));
	m.y = fresh_alloc(nb_max, dd * sizeof(float));
	m.dy = fresh_alloc(nb_max, dd * sizeof(float));
	m.inv = fresh_alloc(nb_max, sizeof(float));
	m.grad = fresh_alloc(l.total, sizeof(float));
	m.best = fresh_alloc(l.total, sizeof(float));
	m.scratch = fresh_alloc(l.total, sizeof(float));
	m.perm = malloc(s->ntr * sizeof *m.perm);
	if (!m.xb || !m.gb || !m.y || !m.dy || !m.inv || !m.grad || !m.best ||
	    !m.scratch || !m.perm) {
		st = FRESH_NOMEM;
		goto out;
	}
	st = fresh_corrector_ws_init(&m.ws, nb_max, sh->hidden);
	if (st == FRESH_OK)
		st = fresh_adam_init(&m.adam, l.total, acfg);
	if (st == FRESH_OK)
		st = fresh_refit_evaluate(c, s->xho, s->gho, s->nho, &ho);
	if (st != FRESH_OK)
		goto out;
	best = ho.corrected_mse;
	memcpy(m.best, p, l.total * sizeof(float));
	for (size_t i = 0; i < s->ntr; i++)
		m.perm[i] = i;
	if (prog) {
		atomic_store(&prog->done, 0);
		atomic_store(&prog->total, cfg->max_epochs);
	}

	for (size_t epoch = 0; epoch < cfg->max_epochs && !stop; epoch++) {
		for (size_t i = s->ntr; i > 1; i--) { /* Fisher-Yates */
			size_t j = rng_next(&rng) % i, t = m.perm[i - 1];
			m.perm[i - 1] = m.perm[j];
			m.perm[j] = t;
		}
		for (size_t b0 = 0; b0 < s->ntr && !stop; b0 += nb_max) {
			size_t nb = s->ntr - b0 < nb_max ? s->ntr - b0 : nb_max;
			double loss;

			if (cancel && atomic_load(cancel)) {
				st = FRESH_CANCELLED;
				goto out;
			}
			for (size_t i = 0; i < nb; i++) {
				size_t r = m.perm[b0 + i];
				memcpy(m.xb + i * d, s->xtr + r * d,
				       d * sizeof(float));
				memcpy(m.gb + i * dd, s->gtr + r * dd,
				       dd * sizeof(float));
			}
			st = fresh_corrector_forward(c, m.xb, nb, m.y, &m.ws);
			if (st != FRESH_OK)
				goto out;
			loss = batch_loss(c, &m, nb, dd);
			if (isnan(loss)) {
				rep->skipped_steps++;
				continue;
			}
			st = fresh_corrector_backward(c, m.xb, nb, m.dy, m.grad,
						      mask, &m.ws);
			if (st != FRESH_OK)
				goto out;
			if (logits && fresh_logits_groups(logits)) {
				size_t gi = next_group++ %
					    fresh_logits_groups(logits);
				if (isnan(fresh_logits_step(
					    logits, c, gi, cfg->logit_weight,
					    mask, m.grad, m.scratch))) {
					rep->skipped_steps++;
					continue;
				}
			}
			clip(m.grad, begin, l.total, cfg->clip_norm);
			fresh_adam_step(&m.adam, p, m.grad, begin, l.total);
			rep->steps++;
			stop = rep->steps >= cfg->max_steps ||
			       fresh_monotonic() - t0 > cfg->max_seconds;
		}
		rep->epochs = epoch + 1;
		if (prog)
			atomic_store(&prog->done, epoch + 1);
		st = fresh_refit_evaluate(c, s->xho, s->gho, s->nho, &ho);
		if (st != FRESH_OK)
			goto out;
		if (!isfinite(ho.corrected_mse) ||
		    ho.corrected_mse > 4.0 * best) {
			/* A spike: back to the best, gentler steps. */
			memcpy(p, m.best, l.total * sizeof(float));
			fresh_adam_reset(&m.adam);
			m.adam.cfg.lr *= 0.5f;
			if (++rep->rollbacks > MAX_ROLLBACKS)
				break;
			continue;
		}
		if (ho.corrected_mse < best * (1.0 - 1e-4)) {
			best = ho.corrected_mse;
			memcpy(m.best, p, l.total * sizeof(float));
			since = 0;
		} else if (++since >= cfg->patience) {
			break;
		}
	}
	memcpy(p, m.best, l.total * sizeof(float));
out:
	mlp_state_free(&m);
	return st;
}
