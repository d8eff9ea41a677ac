/*
 * logits.c - the logit-matching term (see logits.h).
 *
 * Per group and step: X = the stale rows of the group's targets (n x d),
 * H = h(X) (normalized if the corrector normalizes), Z = Q Hᵀ / tau,
 * dZ = (softmax(Z) - P) / n_queries, dH = dZᵀ Q / tau, then back through
 * the normalization and the corrector. Three small GEMMs and one backward.
 */
#include "logits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "mem.h"
#include "rows.h"

struct group {
	size_t nt, nq;
	float *x; /* nt x d stale */
	float *q; /* nq x dd */
	float *p; /* nq x nt fresh softmax */
};

struct fresh_logit_set {
	size_t d, dd, n, max_nt, max_nq;
	float tau;
	struct group *g;
	/* Scratch, sized for the largest group. */
	struct fresh_corrector_ws ws;
	size_t ws_hidden;
	float *h, *z, *dh, *inv;
};

static void softmax_rows(float *z, size_t rows, size_t cols)
{
	for (size_t r = 0; r < rows; r++) {
		float *v = z + r * cols, m = -INFINITY;
		double s = 0.0;
		for (size_t c = 0; c < cols; c++)
			m = v[c] > m ? v[c] : m;
		for (size_t c = 0; c < cols; c++) {
			v[c] = expf(v[c] - m);
			s += v[c];
		}
		for (size_t c = 0; c < cols; c++)
			v[c] = (float)(v[c] / s);
	}
}

void fresh_logits_free(struct fresh_logit_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		fresh_free(s->g[i].x);
		fresh_free(s->g[i].q);
		fresh_free(s->g[i].p);
	}
	free(s->g);
	fresh_corrector_ws_free(&s->ws);
	fresh_free(s->h);
	fresh_free(s->z);
	fresh_free(s->dh);
	fresh_free(s->inv);
	free(s);
}

size_t fresh_logits_groups(const struct fresh_logit_set *s)
{
	return s->n;
}

/* Builds one group; false (and nothing kept) when it cannot train. */
static enum fresh_status prepare_group(struct fresh_logit_set *s,
				       const struct fresh_index *idx,
				       const struct fresh_qgroup *src,
				       struct group *g)
{
	size_t row, known = 0;
	float *fresh;

	memset(g, 0, sizeof *g);
	for (size_t t = 0; t < src->n_targets; t++)
		known += fresh_index_find(idx, src->ids[t], &row);
	if (known < 2 || src->n_queries == 0)
		return FRESH_OK;
	g->x = fresh_alloc(known, s->d * sizeof(float));
	g->q = fresh_alloc(src->n_queries, s->dd * sizeof(float));
	g->p = fresh_alloc(src->n_queries, known * sizeof(float));
	fresh = fresh_alloc(known, s->dd * sizeof(float));
	if (!g->x || !g->q || !g->p || !fresh) {
		fresh_free(fresh);
		return FRESH_NOMEM;
	}
	for (size_t t = 0; t < src->n_targets; t++) {
		if (!fresh_index_find(idx, src->ids[t], &row))
			continue;
		memcpy(g->x + g->nt * s->d,
		       fresh_index_vectors(idx) + row * s->d,
		       s->d * sizeof(float));
		memcpy(fresh + g->nt * s->dd, src->targets + t * s->dd,
		       s->dd * sizeof(float));
		g->nt++;
	}
	g->nq = src->n_queries;
	memcpy(g->q, src->queries, g->nq * s->dd * sizeof(float));
	(void)fresh_sgemm(false, true, g->nq, g->nt, s->dd, 1.0f / s->tau, g->q,
			  s->dd, fresh, s->dd, 0.0f, g->p, g->nt);
	softmax_rows(g->p, g->nq, g->nt);
	fresh_free(fresh);
	return FRESH_OK;
}

enum fresh_status fresh_logits_prepare(const struct fresh_index *idx,
				       const struct fresh_qgroups *groups,
				       float temperature,
				       struct fresh_logit_set **out)
{
	struct fresh_logit_set *s = calloc(1, sizeof *s);
	enum fresh_status st = FRESH_OK;

	if (!s)
		return FRESH_NOMEM;
	s->d = fresh_index_dim(idx);
	s->dd = groups->n ? groups->g[0].dim : s->d;
	s->tau = temperature > 0 ? temperature : 0.05f;
	s->g = calloc(groups->n ? groups->n : 1, sizeof *s->g);
	if (!s->g)
		st = FRESH_NOMEM;
	for (size_t i = 0; i < groups->n && st == FRESH_OK; i++) {
		struct group g;
		if (groups->g[i].dim != s->dd)
			continue;
		st = prepare_group(s, idx, &groups->g[i], &g);
		if (st == FRESH_OK && g.nt) {
			s->g[s->n++] = g;
			s->max_nt = g.nt > s->max_nt ? g.nt : s->max_nt;
			s->max_nq = g.nq > s->max_nq ? g.nq : s->max_nq;
		}
	}
	if (st == FRESH_OK && s->n) {
		s->h = fresh_alloc(s->max_nt, s->dd * sizeof(float));
		s->dh = fresh_alloc(s->max_nt, s->dd * sizeof(float));
		s->z = fresh_alloc(s->max_nq, s->max_nt * sizeof(float));
		s->inv = fresh_alloc(s->max_nt, sizeof(float));
		if (!s->h || !s->dh || !s->z || !s->inv)
			st = FRESH_NOMEM;
	}
	if (st != FRESH_OK) {
		fresh_logits_free(s);
		return st;
	}
	s->ws_hidden = (size_t)-1; /* sized on first use */
	*out = s;
	return FRESH_OK;
}

double fresh_logits_step(struct fresh_logit_set *s,
			 const struct fresh_corrector *c, size_t i,
			 float weight, unsigned mask, float *grad,
			 float *scratch)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(c);
	size_t total = fresh_corrector_layout(c).total, dd = s->dd;
	struct group *g = &s->g[i];
	bool norm = fresh_corrector_normalize(c);
	double loss = 0.0;

	if (s->ws_hidden != sh->hidden) {
		fresh_corrector_ws_free(&s->ws);
		if (fresh_corrector_ws_init(&s->ws, s->max_nt, sh->hidden) !=
		    FRESH_OK)
			return NAN;
		s->ws_hidden = sh->hidden;
	}
	if (fresh_corrector_forward(c, g->x, g->nt, s->h, &s->ws) != FRESH_OK)
		return NAN;
	if (norm)
		fresh_normalize_rows(s->h, g->nt, dd, s->inv, 1);
	/* Z = Q Hᵀ / tau; then softmax and the cross-entropy with P. */
	(void)fresh_sgemm(false, true, g->nq, g->nt, dd, 1.0f / s->tau, g->q,
			  dd, s->h, dd, 0.0f, s->z, g->nt);
	softmax_rows(s->z, g->nq, g->nt);
	for (size_t k = 0; k < g->nq * g->nt; k++) {
		loss -= (double)g->p[k] * log((double)s->z[k] + 1e-30);
		s->z[k] = (s->z[k] - g->p[k]) / (float)g->nq; /* dL/dZ */
	}
	loss /= (double)g->nq;
	if (!isfinite(loss))
		return NAN;
	/* dH = dZᵀ Q / tau (nt x dd), then through the normalization. */
	(void)fresh_sgemm(true, false, g->nt, dd, g->nq, 1.0f / s->tau, s->z,
			  g->nt, g->q, dd, 0.0f, s->dh, dd);
	if (norm)
		fresh_normalize_backward(s->dh, s->h, s->inv, g->nt, dd);
	/* ws still holds this group's forward cache. */
	if (fresh_corrector_backward(c, g->x, g->nt, s->dh, scratch, mask,
				     &s->ws) != FRESH_OK)
		return NAN;
	for (size_t k = 0; k < total; k++)
		grad[k] += weight * scratch[k];
	return loss;
}
