/*
 * batch.c - scoring a batch of requests on one model (see batch.h).
 *
 * Design: three passes. Check each request on the model it will be scored
 * on (op, scoring, k, temperature, positives), marking the ones that are
 * refused; gather the queries and exclusion rows of the others in request
 * order; run one top-k or sampling pass with the largest k asked for and
 * scatter each query's first k hits back (the top k of the top kmax are
 * the top k; the first k Gumbel keys of kmax drawn are the k drawn).
 * Nothing here is shared between threads; the model is read-only.
 */
#include "batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "mem.h"
#include "sample.h"

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return (x > y) - (x < y);
}

static bool wants_logprob(enum fresh_op op)
{
	return op != FRESH_OP_TOPK;
}

/* Appends the rows of the known ids of list to rows; returns the count. */
static size_t append_rows(const struct fresh_index *idx,
			  const struct fresh_id_lists *l, size_t i,
			  size_t *rows)
{
	size_t m = 0, row;

	if (!l->lists)
		return 0;
	for (size_t t = 0; t < l->counts[i]; t++)
		if (fresh_index_find(idx, l->lists[i][t], &row))
			rows[m++] = row;
	return m;
}

/* Sorts rows[0..n) and drops repeats; returns the new count. */
static size_t sort_unique(size_t *rows, size_t n)
{
	size_t w = 1;

	if (n < 2)
		return n;
	qsort(rows, n, sizeof *rows, cmp_size);
	for (size_t i = 1; i < n; i++)
		if (rows[i] != rows[w - 1])
			rows[w++] = rows[i];
	return w;
}

/* Whether r can be scored on m; sets its status when not. */
static bool admit(const struct fresh_model *m, const struct fresh_request *r0,
		  struct fresh_request *r)
{
	const struct fresh_index *idx = fresh_model_index(m);

	r->version = fresh_model_version(m);
	if (r->op != r0->op || r->scoring != r0->scoring || r->k == 0 ||
	    r->k > FRESH_MAX_K ||
	    (wants_logprob(r->op) &&
	     !(r->temperature > 0.0f && isfinite(r->temperature)))) {
		r->status = FRESH_INVALID;
		return false;
	}
	for (size_t i = 0; r->positives.lists && i < r->b; i++)
		for (size_t t = 0; t < r->positives.counts[i]; t++) {
			size_t row;
			if (fresh_index_find(idx, r->positives.lists[i][t],
					     &row))
				continue;
			r->status = FRESH_NOT_FOUND;
			r->missing_query = i;
			r->missing_index = t;
			r->missing_id = r->positives.lists[i][t];
			return false;
		}
	if (r->scoring == FRESH_SCORING_CORRECTED &&
	    !fresh_model_can_correct(m)) {
		r->status = FRESH_NOT_READY;
		return false;
	}
	r->status = FRESH_OK;
	return true;
}

size_t fresh_batch_score(const struct fresh_model *m, struct fresh_pool *pool,
			 struct fresh_request *const *reqs, size_t n)
{
	const struct fresh_index *idx = fresh_model_index(m);
	enum fresh_op op;
	enum fresh_scoring scoring;
	size_t dim, total = 0, kmax = 0, nrows = 0, qi = 0, r = 0;
	bool *ok = NULL, has_excl = false;
	struct fresh_exclusion *excl = NULL;
	struct fresh_hit *hits = NULL;
	size_t *counts = NULL, *rows = NULL;
	float *q = NULL, *lp = NULL, *temps = NULL;
	uint64_t *seeds = NULL;
	double *keys = NULL, *log_z = NULL;
	struct fresh_sample_detail detail = {NULL, NULL};
	bool want_detail = false;
	enum fresh_status st = FRESH_OK;

	if (n == 0)
		return 0;
	op = reqs[0]->op;
	scoring = reqs[0]->scoring;
	dim = fresh_model_query_dim(m, scoring);
	ok = calloc(n, sizeof *ok);
	if (!ok) {
		for (size_t j = 0; j < n; j++)
			reqs[j]->status = FRESH_NOMEM;
		return 0;
	}
	for (size_t j = 0; j < n; j++) {
		struct fresh_request *rq = reqs[j];
		ok[j] = admit(m, reqs[0], rq);
		if (!ok[j])
			continue;
		total += rq->b;
		kmax = rq->k > kmax ? rq->k : kmax;
		for (size_t i = 0; i < rq->b; i++) {
			if (rq->positives.lists)
				nrows += rq->positives.counts[i];
			if (rq->exclude.lists)
				nrows += rq->exclude.counts[i];
		}
		has_excl |= rq->positives.lists || rq->exclude.lists;
	}
	if (total == 0)
		goto done;
	q = fresh_alloc(total, dim * sizeof(float));
	hits = malloc(total * kmax * sizeof *hits);
	counts = malloc(total * sizeof *counts);
	for (size_t j = 0; j < n; j++)
		want_detail |= ok[j] && (reqs[j]->keys || reqs[j]->log_z);
	if (wants_logprob(op) && want_detail) {
		keys = malloc(total * kmax * sizeof *keys);
		log_z = malloc(total * sizeof *log_z);
		if (!keys || !log_z) {
			st = FRESH_NOMEM;
			goto out;
		}
		detail.keys = keys;
		detail.log_z = log_z;
	}
	if (wants_logprob(op)) {
		lp = malloc(total * kmax * sizeof *lp);
		temps = malloc(total * sizeof *temps);
		seeds = malloc(total * sizeof *seeds);
	}
	if (has_excl) {
		excl = calloc(total, sizeof *excl);
		rows = malloc((nrows ? nrows : 1) * sizeof *rows);
	}
	if (!q || !hits || !counts ||
	    (wants_logprob(op) && (!lp || !temps || !seeds)) ||
	    (has_excl && (!excl || !rows))) {
		st = FRESH_NOMEM;
		goto out;
	}
	/* Gather queries, exclusions, temperatures and seeds in order. */
	for (size_t j = 0; j < n; j++) {
		struct fresh_request *rq = reqs[j];
		if (!ok[j])
			continue;
		memcpy(q + qi * dim, rq->q, rq->b * dim * sizeof(float));
		for (size_t i = 0; i < rq->b; i++) {
			if (excl) {
				size_t c = append_rows(idx, &rq->positives, i,
						       rows + r);
				c += append_rows(idx, &rq->exclude, i,
						 rows + r + c);
				excl[qi + i].rows = rows + r;
				excl[qi + i].count = sort_unique(rows + r, c);
				r += excl[qi + i].count;
			}
			if (temps) {
				temps[qi + i] = rq->temperature;
				seeds[qi + i] = fresh_sample_seed(rq->seed, i);
			}
		}
		qi += rq->b;
	}
	if (op == FRESH_OP_TOPK)
		st = fresh_model_search(m, pool, scoring, q, total, kmax, excl,
					hits, counts);
	else
		st = fresh_model_sample(m, pool, scoring, q, total, kmax,
					op == FRESH_OP_SAMPLE, excl, temps,
					seeds, hits, lp, counts,
					keys ? &detail : NULL);
	if (st != FRESH_OK)
		goto out;
	qi = 0;
	for (size_t j = 0; j < n; j++) {
		struct fresh_request *rq = reqs[j];
		if (!ok[j])
			continue;
		for (size_t i = 0; i < rq->b; i++, qi++) {
			size_t c = counts[qi] < rq->k ? counts[qi] : rq->k;
			rq->counts[i] = c;
			memcpy(rq->hits + i * rq->k, hits + qi * kmax,
			       c * sizeof *hits);
			if (lp && rq->logprob)
				memcpy(rq->logprob + i * rq->k, lp + qi * kmax,
				       c * sizeof *lp);
			if (keys && rq->keys)
				memcpy(rq->keys + i * rq->k, keys + qi * kmax,
				       c * sizeof *keys);
			if (log_z && rq->log_z)
				rq->log_z[i] = log_z[qi];
		}
	}
out:
	if (st != FRESH_OK) {
		for (size_t j = 0; j < n; j++)
			if (ok[j])
				reqs[j]->status = st;
		total = 0;
	}
	fresh_free(q);
	free(hits);
	free(counts);
	free(lp);
	free(keys);
	free(log_z);
	free(temps);
	free(seeds);
	free(excl);
	free(rows);
done:
	free(ok);
	return total;
}
