/*
 * sample.c - Gumbel-top-k sampling over scan tiles (see sample.h).
 *
 * Design: per worker and query, a running log-sum-exp (max m, sum s in
 * double) and a bounded heap of the n best keys. A tile first raises m to
 * its own maximum (rescaling s), then adds w = exp(z - m) for every row.
 * The Gumbel key of a row beats the heap's worst key thr exactly when
 * E = -log U <= exp(z - thr) = w * exp(m - thr) =: x; since
 * exp(-x) >= 1 - x, U < 1 - x rules a row out without a logarithm, so a
 * row costs one exp and one hash unless it is likely to be drawn.
 * Excluded rows are masked to -inf in a copy of the tile's row.
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "mem.h"

#define HEAP_BUDGET_BYTES ((size_t)64 << 20)

struct entry {
	double key;
	float score;
	uint64_t id;
};

struct qstate {
	double m, s;
	size_t n;
};

uint64_t fresh_sample_seed(uint64_t seed, size_t t)
{
	return fresh_mix64(seed ^ fresh_mix64((uint64_t)t + 0x51ed27u));
}

double fresh_sample_uniform(uint64_t seed, uint64_t id)
{
	return fresh_unit_open(fresh_mix64(seed ^ fresh_mix64(id)));
}

/* a ranks below b: lower key, or equal key and higher id. */
static inline bool below(const struct entry *a, const struct entry *b)
{
	return a->key < b->key || (a->key == b->key && a->id > b->id);
}

static void sift_down(struct entry *h, size_t n, size_t i)
{
	struct entry x = h[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && below(&h[c + 1], &h[c]))
			c++;
		if (!below(&h[c], &x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

static void offer(struct entry *h, size_t *n, size_t k, struct entry e)
{
	if (*n < k) {
		size_t i = (*n)++;
		while (i > 0 && below(&e, &h[(i - 1) / 2])) {
			h[i] = h[(i - 1) / 2];
			i = (i - 1) / 2;
		}
		h[i] = e;
	} else if (below(&h[0], &e)) {
		h[0] = e;
		sift_down(h, k, 0);
	}
}

struct job {
	const struct fresh_exclusion *excl;
	const float *temps;
	const uint64_t *seeds;
	const uint64_t *ids;
	size_t n, q_begin;
	bool gumbel;
	struct entry **heaps;   /* [worker][(q - q_begin) * n] */
	struct qstate **states; /* [worker][q - q_begin] */
	float **masked;         /* [worker]: one tile row */
};

static void sample_tile(void *ctx, size_t worker, size_t q0, size_t nq,
			size_t r0, size_t nr, const float *scores)
{
	struct job *j = ctx;

	for (size_t i = 0; i < nq; i++) {
		size_t q = q0 + i, slot = q - j->q_begin;
		struct entry *h = j->heaps[worker] + slot * j->n;
		struct qstate *st = &j->states[worker][slot];
		const float *s = scores + i * nr;
		double inv_t = 1.0 / (double)j->temps[q], tile_max = -INFINITY;
		uint64_t seed = j->seeds[q];
		double c;

		if (j->excl && j->excl[q].count) {
			float *w = j->masked[worker];
			memcpy(w, s, nr * sizeof *w);
			for (size_t c2 = 0; c2 < nr; c2++)
				if (fresh_excluded(&j->excl[q], r0 + c2))
					w[c2] = -INFINITY;
			s = w;
		}
		for (size_t c2 = 0; c2 < nr; c2++)
			if ((double)s[c2] * inv_t > tile_max)
				tile_max = (double)s[c2] * inv_t;
		if (tile_max == -INFINITY)
			continue;
		if (tile_max > st->m) {
			st->s *= exp(st->m - tile_max);
			st->m = tile_max;
		}
		c = st->n == j->n ? exp(st->m - h[0].key) : INFINITY;
		for (size_t c2 = 0; c2 < nr; c2++) {
			double z = (double)s[c2] * inv_t, w, x, u;
			struct entry e;

			if (z == -INFINITY)
				continue;
			w = exp(z - st->m);
			st->s += w;
			if (!j->gumbel) {
				/* Exact top-n by score, ties by ascending id. */
				if (st->n == j->n && z < h[0].key)
					continue;
				e.key = z;
				e.score = s[c2];
				e.id = j->ids[r0 + c2];
				offer(h, &st->n, j->n, e);
				continue;
			}
			x = w * c;
			u = fresh_sample_uniform(seed, j->ids[r0 + c2]);
			if (x < 1.0 && u < 1.0 - x)
				continue; /* cannot beat the heap's worst */
			e.key = z - log(-log(u));
			e.score = s[c2];
			e.id = j->ids[r0 + c2];
			offer(h, &st->n, j->n, e);
			if (st->n == j->n)
				c = exp(st->m - h[0].key);
		}
	}
}

static int cmp_entry_desc(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return below(x, y) ? 1 : below(y, x) ? -1 : 0;
}

enum fresh_status fresh_sample(struct fresh_pool *pool,
			       const struct fresh_matrix *m,
			       const struct fresh_queries *qs, size_t n,
			       bool gumbel, const struct fresh_exclusion *excl,
			       const float *temps, const uint64_t *seeds,
			       struct fresh_hit *hits, float *logprob,
			       size_t *counts)
{
	size_t threads = fresh_pool_threads(pool), block;
	struct entry *all = NULL;
	struct job j;
	enum fresh_status st = FRESH_OK;

	if (n == 0 || n > FRESH_MAX_K)
		return FRESH_INVALID;
	for (size_t q = 0; q < qs->b; q++)
		if (!(temps[q] > 0.0f) || !isfinite(temps[q]))
			return FRESH_INVALID;
	memset(&j, 0, sizeof j);
	j.excl = excl;
	j.temps = temps;
	j.seeds = seeds;
	j.ids = m->ids;
	j.n = n;
	j.gumbel = gumbel;
	block = HEAP_BUDGET_BYTES / (threads * n * sizeof(struct entry));
	if (block < 256)
		block = 256;
	if (block > qs->b)
		block = qs->b;
	j.heaps = calloc(threads, sizeof *j.heaps);
	j.states = calloc(threads, sizeof *j.states);
	j.masked = calloc(threads, sizeof *j.masked);
	all = malloc(threads * n * sizeof *all);
	if (!j.heaps || !j.states || !j.masked || !all) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t w = 0; w < threads; w++) {
		j.heaps[w] = malloc(block * n * sizeof **j.heaps);
		j.states[w] = malloc(block * sizeof **j.states);
		j.masked[w] = fresh_alloc(FRESH_SCAN_MAX_TILE_ROWS,
					  sizeof(float));
		if (!j.heaps[w] || !j.states[w] || !j.masked[w]) {
			st = FRESH_NOMEM;
			goto out;
		}
	}
	for (size_t q0 = 0; q0 < qs->b && st == FRESH_OK; q0 += block) {
		size_t nq = qs->b - q0 < block ? qs->b - q0 : block;

		j.q_begin = q0;
		for (size_t w = 0; w < threads; w++)
			for (size_t i = 0; i < nq; i++) {
				j.states[w][i].m = -INFINITY;
				j.states[w][i].s = 0.0;
				j.states[w][i].n = 0;
			}
		st = fresh_scan(pool, m, qs, q0, nq, sample_tile, &j);
		for (size_t i = 0; i < nq && st == FRESH_OK; i++) {
			size_t q = q0 + i, count = 0;
			double mm = -INFINITY, ss = 0.0, log_z, inv_t;

			for (size_t w = 0; w < threads; w++)
				if (j.states[w][i].m > mm)
					mm = j.states[w][i].m;
			for (size_t w = 0; w < threads; w++) {
				const struct qstate *qsw = &j.states[w][i];
				if (qsw->n == 0 && qsw->m == -INFINITY)
					continue;
				ss += qsw->s * exp(qsw->m - mm);
				memcpy(all + count, j.heaps[w] + i * n,
				       qsw->n * sizeof *all);
				count += qsw->n;
			}
			qsort(all, count, sizeof *all, cmp_entry_desc);
			if (count > n)
				count = n;
			if (mm == -INFINITY) /* everything excluded */
				count = 0;
			log_z = mm + log(ss);
			inv_t = 1.0 / (double)temps[q];
			for (size_t c = 0; c < count; c++) {
				hits[q * n + c].id = all[c].id;
				hits[q * n + c].score = all[c].score;
				logprob[q * n + c] = (float)(
					(double)all[c].score * inv_t - log_z);
			}
			counts[q] = count;
		}
	}
out:
	for (size_t w = 0; j.heaps && w < threads; w++)
		free(j.heaps[w]);
	for (size_t w = 0; j.states && w < threads; w++)
		free(j.states[w]);
	for (size_t w = 0; j.masked && w < threads; w++)
		fresh_free(j.masked[w]);
	free(j.heaps);
	free(j.states);
	free(j.masked);
	free(all);
	return st;
}
