/*
 * trainer.c - the refit recipe (see trainer.h): the held-out split, the
 * closed-form start, the gate against the published corrector. The
 * gradient stage is fit.c's.
 *
 * Design: the trainer works only on copies: the pair snapshot, its own
 * corrector, its own optimizer state; it never touches a published model,
 * so a refit can be abandoned at any point (cancel) without cleanup
 * beyond its own buffers.
 */
#include "trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "fit.h"
#include "hash.h"
#include "logits.h"
#include "mem.h"
#include "ridge.h"
#include "rows.h"

#define HOLDOUT_SALT UINT64_C(0x5eed0f4e1d0a7c3b)
#define EVAL_CHUNK ((size_t)1024)
#define UNIT_NORM_TOL 1e-3

struct fresh_refit_config fresh_refit_config_default(void)
{
	struct fresh_refit_config c;

	memset(&c, 0, sizeof c);
	c.min_pairs = 64;
	c.holdout_permille = 100;
	c.max_epochs = 200;
	c.max_steps = 4000;
	c.max_seconds = 60.0;
	c.patience = 12;
	c.batch = 256;
	c.lr = 1e-3f;
	c.clip_norm = 10.0f;
	c.seed = 1;
	c.normalize = FRESH_NORMALIZE_AUTO;
	c.logit_weight = 0.0f;
	c.logit_temperature = 0.05f;
	return c;
}

bool fresh_refit_is_holdout(uint64_t id, unsigned permille)
{
	return fresh_mix64(id ^ HOLDOUT_SALT) % 1000 < permille;
}

/*
 * Adds the squared distance and relative squared error of x vs g rows;
 * each row's squared distance also in rows when not NULL.
 */
static void accumulate(const float *x, const float *g, size_t n, size_t d,
		       double *mse, double *rel, double *rows)
{
	for (size_t i = 0; i < n; i++) {
		double dist = 0.0, gg = fresh_sq_norm(g + i * d, d);
		for (size_t c = 0; c < d; c++) {
			double e = (double)x[i * d + c] - g[i * d + c];
			dist += e * e;
		}
		*mse += dist;
		*rel += gg > 0.0 ? dist / gg : dist;
		if (rows)
			rows[i] = dist;
	}
}

static enum fresh_status evaluate(const struct fresh_corrector *c,
				  const float *x, const float *g, size_t n,
				  struct fresh_holdout *out, double *rows);

enum fresh_status fresh_refit_evaluate(const struct fresh_corrector *c,
				       const float *x, const float *g, size_t n,
				       struct fresh_holdout *out)
{
	return evaluate(c, x, g, n, out, NULL);
}

/* fresh_refit_evaluate, with each row's squared error in rows if asked. */
static enum fresh_status evaluate(const struct fresh_corrector *c,
				  const float *x, const float *g, size_t n,
				  struct fresh_holdout *out, double *rows)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(c);
	struct fresh_corrector_ws ws;
	enum fresh_status st;
	float *y;
	size_t chunk = n < EVAL_CHUNK ? n : EVAL_CHUNK;

	memset(out, 0, sizeof *out);
	out->n = n;
	out->stale_defined = sh->d_in == sh->d_out;
	if (n == 0)
		return FRESH_OK;
	y = fresh_alloc(chunk, sh->d_out * sizeof(float));
	if (!y)
		return FRESH_NOMEM;
	st = fresh_corrector_ws_init(&ws, chunk, sh->hidden);
	for (size_t r = 0; r < n && st == FRESH_OK; r += chunk) {
		size_t m = n - r < chunk ? n - r : chunk;
		st = fresh_corrector_forward(c, x + r * sh->d_in, m, y, &ws);
		if (st != FRESH_OK)
			break;
		if (fresh_corrector_normalize(c))
			fresh_normalize_rows(y, m, sh->d_out, NULL, 1);
		accumulate(y, g + r * sh->d_out, m, sh->d_out,
			   &out->corrected_mse, &out->corrected_rel_err,
			   rows ? rows + r : NULL);
		if (out->stale_defined)
			accumulate(x + r * sh->d_in, g + r * sh->d_out, m,
				   sh->d_out, &out->stale_mse,
				   &out->stale_rel_err, NULL);
	}
	fresh_corrector_ws_free(&ws);
	fresh_free(y);
	out->corrected_mse /= (double)n;
	out->corrected_rel_err /= (double)n;
	out->stale_mse /= (double)n;
	out->stale_rel_err /= (double)n;
	return st;
}

static void split_free(struct fresh_fit_data *s)
{
	fresh_free(s->xtr);
	fresh_free(s->gtr);
	fresh_free(s->xho);
	fresh_free(s->gho);
}

static enum fresh_status split_pairs(const struct fresh_index *idx,
				     const struct fresh_pairs_snapshot *p,
				     unsigned permille,
				     struct fresh_fit_data *s)
{
	const float *sv = fresh_index_vectors(idx);
	size_t d = fresh_index_dim(idx), dd = p->dim, row;

	memset(s, 0, sizeof *s);
	s->d = d;
	s->dd = dd;
	for (size_t i = 0; i < p->n; i++) {
		if (!fresh_index_find(idx, p->ids[i], &row))
			continue;
		if (fresh_refit_is_holdout(p->ids[i], permille))
			s->nho++;
		else
			s->ntr++;
	}
	s->xtr = fresh_alloc(s->ntr + 1, d * sizeof(float));
	s->gtr = fresh_alloc(s->ntr + 1, dd * sizeof(float));
	s->xho = fresh_alloc(s->nho + 1, d * sizeof(float));
	s->gho = fresh_alloc(s->nho + 1, dd * sizeof(float));
	if (!s->xtr || !s->gtr || !s->xho || !s->gho) {
		split_free(s);
		return FRESH_NOMEM;
	}
	s->ntr = s->nho = 0;
	for (size_t i = 0; i < p->n; i++) {
		float *x, *g;
		if (!fresh_index_find(idx, p->ids[i], &row))
			continue;
		if (fresh_refit_is_holdout(p->ids[i], permille)) {
			x = s->xho + s->nho * d;
			g = s->gho + s->nho++ * dd;
		} else {
			x = s->xtr + s->ntr * d;
			g = s->gtr + s->ntr++ * dd;
		}
		memcpy(x, sv + row * d, d * sizeof(float));
		memcpy(g, p->g + i * dd, dd * sizeof(float));
	}
	return FRESH_OK;
}

static bool all_unit_norm(const struct fresh_fit_data *s)
{
	for (size_t i = 0; i < s->ntr; i++)
		if (fabs(sqrt(fresh_sq_norm(s->gtr + i * s->dd, s->dd)) - 1.0) >
		    UNIT_NORM_TOL)
			return false;
	for (size_t i = 0; i < s->nho; i++)
		if (fabs(sqrt(fresh_sq_norm(s->gho + i * s->dd, s->dd)) - 1.0) >
		    UNIT_NORM_TOL)
			return false;
	return true;
}

/* Closed-form start: A, b by ridge (of g - s on s when residual). */
static enum fresh_status fit_affine(struct fresh_corrector *c,
				    const struct fresh_fit_data *s,
				    struct fresh_refit_report *rep)
{
	struct fresh_corrector_layout l = fresh_corrector_layout(c);
	float *p = fresh_corrector_params(c);
	struct fresh_ridge_result rr;
	const float *target = s->gtr;
	float *resid = NULL;
	enum fresh_status st;

	if (fresh_corrector_residual(c)) {
		resid = fresh_alloc(s->ntr, s->dd * sizeof(float));
		if (!resid)
			return FRESH_NOMEM;
		for (size_t i = 0; i < s->ntr * s->dd; i++)
			resid[i] = s->gtr[i] - s->xtr[i];
		target = resid;
	}
	st = fresh_ridge_fit(s->xtr, target, s->ntr, s->d, s->dd, 0.0, p + l.a,
			     p + l.b, &rr);
	if (st == FRESH_OK)
		rep->lambda = rr.lambda;
	fresh_free(resid);
	return st;
}

/*
 * Whether corrector a is clearly better than b on the held-out pairs: the
 * mean of the paired differences of squared error is more than two of
 * its standard errors. A residual MLP that beats its ridge start by less
 * is noise the held-out set happened to favour, and the simpler fit
 * (refit on every pair, below) generalizes better.
 */
static enum fresh_status clearly_better(const struct fresh_corrector *a,
					const struct fresh_corrector *b,
					const struct fresh_fit_data *s,
					bool *yes)
{
	struct fresh_holdout ha, hb;
	double *ea = malloc(s->nho * sizeof *ea);
	double *eb = malloc(s->nho * sizeof *eb);
	double mean = 0.0, var = 0.0;
	enum fresh_status st = FRESH_NOMEM;

	*yes = false;
	if (ea && eb)
		st = evaluate(a, s->xho, s->gho, s->nho, &ha, ea);
	if (st == FRESH_OK)
		st = evaluate(b, s->xho, s->gho, s->nho, &hb, eb);
	if (st == FRESH_OK && s->nho >= 2) {
		for (size_t i = 0; i < s->nho; i++)
			mean += eb[i] - ea[i];
		mean /= (double)s->nho;
		for (size_t i = 0; i < s->nho; i++) {
			double e = eb[i] - ea[i] - mean;
			var += e * e;
		}
		var /= (double)(s->nho - 1);
		*yes = mean > 2.0 * sqrt(var / (double)s->nho);
	}
	free(ea);
	free(eb);
	return st;
}

/* Whether the MLP adds nothing (W2 = 0): h is its affine part alone. */
static bool mlp_part_is_zero(const struct fresh_corrector *c)
{
	struct fresh_corrector_layout l = fresh_corrector_layout(c);
	const float *p = fresh_corrector_params_const(c);

	for (size_t i = l.w2; i < l.total; i++)
		if (p[i] != 0.0f)
			return false;
	return true;
}

/*
 * Once the held-out pairs have done their work (choosing the winner and
 * gating the publish), a closed-form candidate is fitted again on every
 * pair with the penalty cross-validation chose: with a few hundred pairs
 * the tenth held out is worth having. Only when the affine map is all
 * there is: an MLP that moved off its ridge start was trained around the
 * fit it has.
 */
static enum fresh_status refit_affine_on_all(struct fresh_corrector *c,
					     const struct fresh_fit_data *s,
					     double lambda)
{
	struct fresh_corrector_layout l = fresh_corrector_layout(c);
	float *p = fresh_corrector_params(c);
	size_t n = s->ntr + s->nho;
	float *x = fresh_alloc(n, s->d * sizeof(float));
	float *y = fresh_alloc(n, s->dd * sizeof(float));
	struct fresh_ridge_result rr;
	enum fresh_status st = FRESH_NOMEM;

	if (x && y) {
		memcpy(x, s->xtr, s->ntr * s->d * sizeof(float));
		memcpy(x + s->ntr * s->d, s->xho,
		       s->nho * s->d * sizeof(float));
		memcpy(y, s->gtr, s->ntr * s->dd * sizeof(float));
		memcpy(y + s->ntr * s->dd, s->gho,
		       s->nho * s->dd * sizeof(float));
		if (fresh_corrector_residual(c))
			for (size_t i = 0; i < n * s->dd; i++)
				y[i] -= x[i];
		st = fresh_ridge_fit(x, y, n, s->d, s->dd, lambda, p + l.a,
				     p + l.b, &rr);
	}
	fresh_free(x);
	fresh_free(y);
	return st;
}

/*
 * c (a clone or candidate of current's shape) gets pairs' rows, aged when
 * cfg says so, with the records they came from.
 */
static enum fresh_status put_rows(const struct fresh_corrector *current,
				  const struct fresh_pairs_snapshot *pairs,
				  const struct fresh_refit_config *cfg,
				  struct fresh_corrector *c,
				  struct fresh_refit_report *rep)
{
	float *rows = NULL;
	enum fresh_status st;

	if (!cfg->age_fresh_rows || !pairs->n)
		return fresh_corrector_set_fresh_rows_seqs(
			c, pairs->ids, pairs->g, pairs->seqs, pairs->n);
	rows = fresh_alloc(pairs->n, pairs->dim * sizeof *rows);
	if (!rows)
		return FRESH_NOMEM;
	st = fresh_rowage_apply(current, pairs, cfg->min_pairs,
				fresh_corrector_normalize(c), rows,
				&rep->rowage);
	if (st == FRESH_OK)
		st = fresh_corrector_set_fresh_rows_seqs(c, pairs->ids, rows,
							 pairs->seqs, pairs->n);
	fresh_free(rows);
	return st;
}

/* Whether the serving network maps the stale rows at all (a width change
 * needs a fit first). */
static bool can_correct(const struct fresh_corrector *c)
{
	const struct fresh_corrector_layout l = fresh_corrector_layout(c);
	const float *p = fresh_corrector_params_const(c);

	if (fresh_corrector_residual(c))
		return true;
	for (size_t i = l.a; i < l.b; i++)
		if (p[i] != 0.0f)
			return true;
	return false;
}

bool fresh_refit_report_serving(const struct fresh_corrector *current,
				struct fresh_refit_report *rep)
{
	if (!fresh_corrector_holdout(current, &rep->holdout))
		return false;
	rep->current_mse = rep->holdout.corrected_mse;
	rep->current_rel_err = rep->holdout.corrected_rel_err;
	return true;
}

enum fresh_status fresh_refit_rows(const struct fresh_corrector *current,
				   const struct fresh_pairs_snapshot *pairs,
				   const struct fresh_refit_config *cfg,
				   struct fresh_corrector **out,
				   struct fresh_refit_report *rep,
				   struct fresh_error *err)
{
	struct fresh_corrector *c = NULL;
	enum fresh_status st;

	*out = NULL;
	if (!cfg->serve_fresh_rows ||
	    fresh_corrector_shape(current)->kind != FRESH_CORRECTOR_MLP) {
		snprintf(rep->reason, sizeof rep->reason,
			 "publishing rows only needs --serve-fresh-rows and "
			 "an mlp corrector");
		return FRESH_OK;
	}
	if (!can_correct(current)) {
		snprintf(rep->reason, sizeof rep->reason,
			 "no network maps the stale width to the fresh one "
			 "yet: a refit must train one before rows are served");
		return FRESH_OK;
	}
	if (!fresh_rowage_changed(current, pairs)) {
		snprintf(rep->reason, sizeof rep->reason,
			 "no fresh rows other than the %zu served", pairs->n);
		return FRESH_OK;
	}
	st = fresh_corrector_clone(current, &c);
	if (st == FRESH_OK)
		st = put_rows(current, pairs, cfg, c, rep);
	if (st != FRESH_OK) {
		fresh_corrector_free(c);
		return fresh_fail(err, st, "no memory for %zu fresh rows",
				  pairs->n);
	}
	/* What was trained, if anything, is not what is published. */
	rep->epochs = rep->steps = rep->skipped_steps = rep->rollbacks = 0;
	rep->lambda = 0.0;
	rep->refit_on_all = rep->mlp_dropped = false;
	rep->logit_groups = 0;
	rep->normalize = fresh_corrector_normalize(current);
	rep->method = "fresh-rows";
	rep->network_kept = true;
	rep->accepted = true;
	rep->reason[0] = '\0';
	*out = c;
	return FRESH_OK;
}

enum fresh_status fresh_refit_train(
	const struct fresh_index *idx, const struct fresh_pairs_snapshot *pairs,
	const struct fresh_qgroups *groups,
	const struct fresh_corrector *current,
	const struct fresh_refit_config *cfg, struct fresh_progress *prog,
	const atomic_bool *cancel, struct fresh_corrector **out,
	struct fresh_refit_report *rep, struct fresh_error *err)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(current);
	struct fresh_corrector *cand = NULL;
	struct fresh_logit_set *logits = NULL;
	struct fresh_holdout cur;
	struct fresh_fit_data s;
	double t0 = fresh_monotonic();
	bool evaluated = false;
	enum fresh_status st;

	*out = NULL;
	memset(rep, 0, sizeof *rep);
	rep->method = "none";
	if (pairs->dim != sh->d_out || fresh_index_dim(idx) != sh->d_in)
		return fresh_fail(
			err, FRESH_CONFLICT,
			"pairs of width %zu for a corrector %zu -> %zu",
			pairs->dim, sh->d_in, sh->d_out);
	if (sh->kind == FRESH_CORRECTOR_NONE) {
		snprintf(rep->reason, sizeof rep->reason,
			 "corrector 'none' has nothing to fit");
		return FRESH_OK;
	}
	if (cfg->rows_only) {
		rep->pairs = pairs->n;
		fresh_refit_report_serving(current, rep);
		return fresh_refit_rows(current, pairs, cfg, out, rep, err);
	}
	st = split_pairs(idx, pairs, cfg->holdout_permille, &s);
	if (st != FRESH_OK)
		return fresh_fail(err, st, "no memory for %zu pairs", pairs->n);
	rep->pairs = s.ntr + s.nho;
	rep->train = s.ntr;
	rep->held_out = s.nho;
	if (rep->pairs < cfg->min_pairs || s.nho == 0 || s.ntr < 2) {
		snprintf(rep->reason, sizeof rep->reason,
			 "%zu pairs buffered (%zu held out); at least %zu "
			 "needed with one held out",
			 rep->pairs, s.nho,
			 cfg->min_pairs > 2 ? cfg->min_pairs : 2);
		goto done;
	}
	st = fresh_corrector_create(sh, &cand, err);
	if (st != FRESH_OK)
		goto done;
	rep->normalize =
		cfg->normalize == FRESH_NORMALIZE_ON ||
		(cfg->normalize == FRESH_NORMALIZE_AUTO && all_unit_norm(&s));
	fresh_corrector_set_normalize(cand, rep->normalize);
	st = fit_affine(cand, &s, rep);
	rep->method = "ridge";
	if (st == FRESH_OK && cfg->logit_weight > 0 && groups && groups->n) {
		st = fresh_logits_prepare(idx, groups, cfg->logit_temperature,
					  &logits);
		if (st == FRESH_OK)
			rep->logit_groups = fresh_logits_groups(logits);
	}
	if (st == FRESH_OK && sh->kind == FRESH_CORRECTOR_MLP) {
		struct fresh_corrector *ridge = NULL;
		bool keep = true;

		st = fresh_corrector_clone(cand, &ridge);
		if (st == FRESH_OK)
			st = fresh_fit_gradient(cand, &s, logits,
						FRESH_GRAD_MLP, cfg, prog,
						cancel, rep);
		rep->method =
			rep->logit_groups ? "ridge+mlp+logits" : "ridge+mlp";
		if (st == FRESH_OK && !rep->logit_groups)
			st = clearly_better(cand, ridge, &s, &keep);
		if (st == FRESH_OK && !keep) {
			fresh_corrector_free(cand);
			cand = ridge;
			ridge = NULL;
			rep->method = "ridge";
			rep->mlp_dropped = true;
		}
		fresh_corrector_free(ridge);
	} else if (st == FRESH_OK && rep->logit_groups) {
		st = fresh_fit_gradient(cand, &s, logits, FRESH_GRAD_LINEAR,
					cfg, prog, cancel, rep);
		rep->method = "ridge+logits";
	}
	if (st == FRESH_OK)
		st = fresh_refit_evaluate(cand, s.xho, s.gho, s.nho,
					  &rep->holdout);
	if (st == FRESH_OK)
		st = fresh_refit_evaluate(current, s.xho, s.gho, s.nho, &cur);
	if (st != FRESH_OK) {
		st = fresh_fail(err, st, "refit failed: %s",
				fresh_status_str(st));
		goto done;
	}
	rep->current_mse = cur.corrected_mse;
	rep->current_rel_err = cur.corrected_rel_err;
	evaluated = true;
	if (!isfinite(rep->holdout.corrected_mse)) {
		snprintf(rep->reason, sizeof rep->reason,
			 "held-out error is not finite");
	} else if (!(rep->holdout.corrected_mse < cur.corrected_mse)) {
		snprintf(rep->reason, sizeof rep->reason,
			 "held-out MSE %.6g does not beat the published "
			 "corrector's %.6g",
			 rep->holdout.corrected_mse, cur.corrected_mse);
	} else if (rep->holdout.stale_defined &&
		   !(rep->holdout.corrected_mse < rep->holdout.stale_mse)) {
		snprintf(rep->reason, sizeof rep->reason,
			 "held-out MSE %.6g does not beat the stale "
			 "embeddings' %.6g",
			 rep->holdout.corrected_mse, rep->holdout.stale_mse);
	} else {
		rep->accepted = true;
		if (!rep->logit_groups && rep->lambda > 0.0 &&
		    mlp_part_is_zero(cand)) {
			/* On failure the 90% fit stands: it was accepted. */
			struct fresh_corrector *all = NULL;
			if (fresh_corrector_clone(cand, &all) == FRESH_OK &&
			    refit_affine_on_all(all, &s, rep->lambda) ==
				    FRESH_OK) {
				fresh_corrector_free(cand);
				cand = all;
				rep->refit_on_all = true;
			} else {
				fresh_corrector_free(all);
			}
		}
		if (cfg->serve_fresh_rows && sh->kind == FRESH_CORRECTOR_MLP &&
		    put_rows(current, pairs, cfg, cand, rep) != FRESH_OK) {
			st = fresh_fail(err, FRESH_NOMEM,
					"no memory for %zu fresh rows",
					pairs->n);
			goto done;
		}
		*out = cand;
		cand = NULL;
	}
done:
	if (st == FRESH_OK && !*out && cfg->serve_fresh_rows &&
	    sh->kind == FRESH_CORRECTOR_MLP) {
		/*
		 * Not published (too few pairs, not better): the serving
		 * network stays, with the buffer's rows if they are new.
		 */
		struct fresh_refit_report r = *rep;
		if (evaluated) { /* the serving network on these pairs */
			rep->holdout.corrected_mse = cur.corrected_mse;
			rep->holdout.corrected_rel_err = cur.corrected_rel_err;
		} else if (!fresh_refit_report_serving(current, rep)) {
			rep->held_out = 0; /* nothing was evaluated */
		}
		st = fresh_refit_rows(current, pairs, cfg, out, rep, err);
		if (st == FRESH_OK && !*out)
			*rep = r; /* the training's reason, not "no new rows" */
	}
	fresh_corrector_free(cand);
	fresh_logits_free(logits);
	split_free(&s);
	rep->seconds = fresh_monotonic() - t0;
	return st;
}
