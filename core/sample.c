/*
 * sample.c - Gumbel-top-k sampling over scan tiles (see sample.h).
 *
 * Design: per group of tiles (scan.h) and query, a running log-sum-exp
 * (max m, sum s in double) over the group's tiles in row order, combined
 * in group order at the end; groups are fixed by the matrix, so log Z has
 * the same bits whatever the batch, the threads or which worker ran which
 * task. Per worker and query, a bounded
 * heap of the n best keys. The Gumbel key of a row
 * beats the heap's worst key thr exactly when E = -log U <= exp(z - thr)
 * =: x; since exp(-x) >= 1 - x, U < 1 - x rules a row out without a
 * logarithm. A tile row is therefore handled in passes the compiler
 * vectorizes: every row's weight exp(z - m) (for the sum); then, once the
 * heap is full, x from the scores and thr directly (not as a weight times
 * exp(m - thr), which overflows a float when scores / T span more than
 * ~88 and would make every row a candidate), the top 24 bits of the
 * uniform, and whether the row could be drawn. A scalar pass then looks
 * only at those few rows, with the exact uniform and key in double. The
 * fast pass errs only towards looking at a row, so the draw is the same as
 * a scalar loop over every row would give.
 * Excluded rows are masked to -inf in a copy of the tile's row.
 *
 * The uniform of (seed, id) is built from 32-bit halves so that the fast
 * pass needs no 64-bit multiplies: v = mix64(id) ^ seed split into a, b;
 * the high word is fmix32(a ^ fmix32(b ^ K1)), the low word
 * fmix32(b ^ fmix32(a ^ K2)), and U = unit_open(high:low).
 */
#include "sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "heap.h"
#include "mem.h"

#define HEAP_BUDGET_BYTES ((size_t)64 << 20)

/*
 * The elementwise passes are compiled for AVX-512 and AVX2 as well and
 * picked at load time by the CPU; the results do not depend on which.
 * Not under ThreadSanitizer: the clones' resolvers run before its runtime
 * is set up, and the program crashes at load.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FRESH_NO_CLONES 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define FRESH_NO_CLONES 1
#endif
#if defined(__x86_64__) && defined(__has_attribute) && !defined(FRESH_NO_CLONES)
#if __has_attribute(target_clones)
#define VECTOR_CLONES   \
	__attribute__(( \
		target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif
#define HASH_K1 0x9e3779b9u
#define HASH_K2 0x7f4a7c15u

struct entry {
	double key;
	float score;
	uint64_t id;
};

/* The log-sum-exp of one task's rows for one query: m + log(s). */
struct lse {
	double m, s;
};

/* A worker's heap for one query. */
struct qstate {
	size_t n; /* entries in the heap */
};

/* Per-worker scratch, one tile row long. */
struct scratch {
	float *masked, *weight;
	uint32_t *ida, *idb; /* halves of mix64(id) of the tile's rows */
	unsigned char *cand;
	size_t r0, nr; /* the rows ida/idb describe */
};

/* The finalizer of MurmurHash3: a bijection on 32-bit words. */
static inline uint32_t fmix32(uint32_t h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static inline uint32_t uniform_high(uint32_t a, uint32_t b)
{
	return fmix32(a ^ fmix32(b ^ HASH_K1));
}

static inline uint32_t uniform_low(uint32_t a, uint32_t b)
{
	return fmix32(b ^ fmix32(a ^ HASH_K2));
}

uint64_t fresh_sample_seed(uint64_t seed, size_t t)
{
	return fresh_mix64(seed ^ fresh_mix64((uint64_t)t + 0x51ed27u));
}

static double uniform_of(uint64_t seed, uint64_t idmix)
{
	uint64_t v = idmix ^ seed;
	uint32_t a = (uint32_t)v, b = (uint32_t)(v >> 32);

	return fresh_unit_open((uint64_t)uniform_high(a, b) << 32 |
			       uniform_low(a, b));
}

double fresh_sample_uniform(uint64_t seed, uint64_t id)
{
	return uniform_of(seed, fresh_mix64(id));
}

/*
 * exp(x) for x <= 0 in float, relative error below 1e-6, 0 below -87;
 * plain arithmetic so that loops over it vectorize. Cody-Waite reduction
 * x = k ln2 + r, |r| <= ln2 / 2, and a degree-7 Taylor polynomial for
 * exp(r) (truncation error < 6e-9).
 */
static inline float exp_nonpos(float x)
{
	const float shifter = 12582912.0f;   /* 1.5 * 2^23: rounds to integer */
	float xc = x >= -87.0f ? x : -87.0f; /* NaN too */
	float kf = (xc * 1.44269504f + shifter) - shifter;
	float r = xc - kf * 0.693145752f;
	float p;
	int32_t bits;
	float scale;

	r = r - kf * 1.42860677e-06f;
	p = 1.0f / 5040.0f;
	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	bits = ((int32_t)kf + 127) << 23;
	memcpy(&scale, &bits, sizeof scale);
	return x >= -87.0f ? p * scale : 0.0f;
}

/* The largest of s[0..nr), -inf if none is above -inf. */
VECTOR_CLONES static float tile_max(const float *restrict s, size_t nr)
{
	float mx[16], best = -INFINITY;
	size_t c = 0;

	for (size_t t = 0; t < 16; t++)
		mx[t] = -INFINITY;
	for (; c + 16 <= nr; c += 16)
		for (size_t t = 0; t < 16; t++)
			mx[t] = s[c + t] > mx[t] ? s[c + t] : mx[t];
	for (; c < nr; c++)
		best = s[c] > best ? s[c] : best;
	for (size_t t = 0; t < 16; t++)
		best = mx[t] > best ? mx[t] : best;
	return best;
}

/* weight[c] = exp((s[c] - smax) * inv_t + shift); returns their sum. */
VECTOR_CLONES static double tile_weights(const float *restrict s, size_t nr,
					 float smax, float inv_t, float shift,
					 float *restrict weight)
{
	double acc[8] = {0};
	size_t c = 0;

	for (size_t i = 0; i < nr; i++)
		weight[i] = exp_nonpos((s[i] - smax) * inv_t + shift);
	for (; c + 8 <= nr; c += 8)
		for (size_t t = 0; t < 8; t++)
			acc[t] += (double)weight[c + t];
	for (; c < nr; c++)
		acc[0] += (double)weight[c];
	return ((acc[0] + acc[1]) + (acc[2] + acc[3])) +
	       ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/*
 * Row c certainly cannot beat the heap's worst key thr: with an upper
 * bound xs >= x = exp(z - thr) and u_hi >= U the uniform's upper bound
 * from its top 24 bits, U < u_hi < 1 - xs. The 1e-6 covers the float
 * error of 1 - xs.
 */
static inline bool ruled_out(uint32_t hi, float xs)
{
	float u_hi = (float)((hi >> 8) + 1) * (1.0f / 16777216.0f);

	return u_hi < 1.0f - xs - 1e-6f;
}

/*
 * cand[c] = 0 when row c is ruled out, with y = (s - smax) / T + shift,
 * shift = (smax / T) - thr, so that x = exp(y); slack >= 1 bounds the
 * relative error of the float x.
 */
VECTOR_CLONES static void tile_candidates(const float *restrict s, size_t nr,
					  float smax, float inv_t, float shift,
					  float slack,
					  const uint32_t *restrict ida,
					  const uint32_t *restrict idb,
					  uint32_t sa, uint32_t sb,
					  unsigned char *restrict cand)
{
	for (size_t c = 0; c < nr; c++) {
		float y = (s[c] - smax) * inv_t + shift;
		float x = exp_nonpos(y < 0.0f ? y : 0.0f);
		cand[c] = !ruled_out(uniform_high(ida[c] ^ sa, idb[c] ^ sb),
				     slack * x);
	}
}

/* a ranks below b: lower key, or equal key and higher id. */
static inline bool below(const struct entry *a, const struct entry *b)
{
	return a->key < b->key || (a->key == b->key && a->id > b->id);
}

FRESH_HEAP_DEFINE(key_heap, struct entry, below)

struct job {
	const struct fresh_exclusion *excl;
	const float *temps;
	const uint64_t *seeds;
	const uint64_t *ids;
	size_t n, q_begin, nq, group_rows;
	bool gumbel;
	struct entry **heaps;	 /* [worker][(q - q_begin) * n] */
	struct qstate **states;	 /* [worker][q - q_begin] */
	struct lse *lse;	 /* [group * nq + q - q_begin] */
	struct scratch *scratch; /* [worker] */
};

/* Exact top-n by z = score / T, ties by ascending id. */
static void offer_best(struct job *j, struct entry *h, struct qstate *st,
		       const float *s, size_t r0, size_t nr, double inv_t)
{
	for (size_t c = 0; c < nr; c++) {
		double z = (double)s[c] * inv_t;
		struct entry e;

		if (z == -INFINITY || (st->n == j->n && z < h[0].key))
			continue;
		e.key = z;
		e.score = s[c];
		e.id = j->ids[r0 + c];
		key_heap_offer(h, &st->n, j->n, e);
	}
}

/*
 * The Gumbel keys of the candidate rows; the rest cannot be drawn. The
 * heap's worst key rises as rows are taken, so a candidate is tested
 * again against the current one before its key is computed.
 */
static void offer_drawn(struct job *j, struct scratch *sc, struct entry *h,
			struct qstate *st, const float *s, size_t r0, size_t nr,
			double inv_t, uint64_t seed)
{
	uint32_t sa = (uint32_t)seed, sb = (uint32_t)(seed >> 32);

	for (size_t c = 0; c < nr; c++) {
		double z, u;
		struct entry e;
		uint64_t eight;

		if (c % 8 == 0 && c + 8 <= nr) {
			memcpy(&eight, sc->cand + c, sizeof eight);
			if (!eight) {
				c += 7; /* none of these eight */
				continue;
			}
		}
		if (!sc->cand[c])
			continue;
		z = (double)s[c] * inv_t;
		if (z == -INFINITY)
			continue;
		/* Again against the current thr, which rises as rows go in. */
		if (st->n == j->n &&
		    ruled_out(uniform_high(sc->ida[c] ^ sa, sc->idb[c] ^ sb),
			      1.00001f * (float)exp(fmin(0.0, z - h[0].key))))
			continue;
		u = uniform_of(seed, (uint64_t)sc->idb[c] << 32 | sc->ida[c]);
		e.key = z - log(-log(u));
		e.score = s[c];
		e.id = j->ids[r0 + c];
		if (st->n < j->n || below(&h[0], &e))
			key_heap_offer(h, &st->n, j->n, e);
	}
}

static void sample_tile(void *ctx, size_t worker, size_t q0, size_t nq,
			size_t r0, size_t nr, const float *scores)
{
	struct job *j = ctx;
	struct scratch *sc = &j->scratch[worker];

	if (j->gumbel && (sc->r0 != r0 || sc->nr != nr)) {
		for (size_t c = 0; c < nr; c++) {
			uint64_t v = fresh_mix64(j->ids[r0 + c]);
			sc->ida[c] = (uint32_t)v;
			sc->idb[c] = (uint32_t)(v >> 32);
		}
		sc->r0 = r0;
		sc->nr = nr;
	}
	size_t group = r0 / j->group_rows;

	for (size_t i = 0; i < nq; i++) {
		size_t q = q0 + i, slot = q - j->q_begin;
		struct entry *h = j->heaps[worker] + slot * j->n;
		struct qstate *st = &j->states[worker][slot];
		struct lse *ls = &j->lse[group * j->nq + slot];
		const float *s = scores + i * nr;
		double inv_t = 1.0 / (double)j->temps[q], tile_m;
		float smax;
		uint64_t seed = j->seeds[q];

		if (j->excl && j->excl[q].count) {
			float *w = sc->masked;
			memcpy(w, s, nr * sizeof *w);
			for (size_t c2 = 0; c2 < nr; c2++)
				if (fresh_excluded(&j->excl[q], r0 + c2))
					w[c2] = -INFINITY;
			s = w;
		}
		smax = tile_max(s, nr);
		if (smax == -INFINITY)
			continue;
		tile_m = (double)smax * inv_t;
		if (tile_m > ls->m) {
			ls->s *= exp(ls->m - tile_m);
			ls->m = tile_m;
		}
		/* weight[c] = exp(z - m) */
		ls->s += tile_weights(s, nr, smax, (float)inv_t,
				      (float)(tile_m - ls->m), sc->weight);
		if (!j->gumbel) {
			offer_best(j, h, st, s, r0, nr, inv_t);
			continue;
		}
		if (st->n < j->n) {
			memset(sc->cand, 1, nr); /* anything may go in */
		} else {
			/*
			 * y = z - thr in float: its error is a few ulps of the
			 * terms that cancel in it, |shift| plus the ~17 that
			 * matter; the slack covers that and exp_nonpos's.
			 */
			double shift = tile_m - h[0].key;
			float slack = 1.001f + 1e-6f * (float)fabs(shift);

			tile_candidates(s, nr, smax, (float)inv_t, (float)shift,
					slack, sc->ida, sc->idb, (uint32_t)seed,
					(uint32_t)(seed >> 32), sc->cand);
		}
		offer_drawn(j, sc, h, st, s, r0, nr, inv_t, seed);
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
	return fresh_sample_detailed(pool, m, qs, n, gumbel, excl, temps, seeds,
				     hits, logprob, counts, NULL);
}

enum fresh_status fresh_sample_detailed(
	struct fresh_pool *pool, const struct fresh_matrix *m,
	const struct fresh_queries *qs, size_t n, bool gumbel,
	const struct fresh_exclusion *excl, const float *temps,
	const uint64_t *seeds, struct fresh_hit *hits, float *logprob,
	size_t *counts, const struct fresh_sample_detail *detail)
{
	size_t threads = fresh_pool_threads(pool), block, ngroups;
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
	j.group_rows = fresh_scan_group_rows(m->n);
	ngroups = (m->n + j.group_rows - 1) / j.group_rows;
	block = HEAP_BUDGET_BYTES / (threads * n * sizeof(struct entry) +
				     ngroups * sizeof(struct lse));
	if (block < 256)
		block = 256;
	if (block > qs->b)
		block = qs->b;
	j.heaps = calloc(threads, sizeof *j.heaps);
	j.states = calloc(threads, sizeof *j.states);
	j.scratch = calloc(threads, sizeof *j.scratch);
	all = malloc(threads * n * sizeof *all);
	j.lse = malloc((ngroups ? ngroups : 1) * block * sizeof *j.lse);
	if (!j.heaps || !j.states || !j.scratch || !all || !j.lse) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t w = 0; w < threads; w++) {
		struct scratch *sc = &j.scratch[w];

		j.heaps[w] = malloc(block * n * sizeof **j.heaps);
		j.states[w] = malloc(block * sizeof **j.states);
		sc->masked = fresh_alloc(FRESH_SCAN_TILE_ROWS, sizeof(float));
		sc->weight = fresh_alloc(FRESH_SCAN_TILE_ROWS, sizeof(float));
		sc->ida = fresh_alloc(FRESH_SCAN_TILE_ROWS, sizeof(uint32_t));
		sc->idb = fresh_alloc(FRESH_SCAN_TILE_ROWS, sizeof(uint32_t));
		sc->cand = fresh_alloc(FRESH_SCAN_TILE_ROWS, 1);
		sc->r0 = SIZE_MAX;
		if (!j.heaps[w] || !j.states[w] || !sc->masked || !sc->weight ||
		    !sc->ida || !sc->idb || !sc->cand) {
			st = FRESH_NOMEM;
			goto out;
		}
	}
	for (size_t q0 = 0; q0 < qs->b && st == FRESH_OK; q0 += block) {
		size_t nq = qs->b - q0 < block ? qs->b - q0 : block;

		j.q_begin = q0;
		j.nq = nq;
		for (size_t w = 0; w < threads; w++)
			for (size_t i = 0; i < nq; i++) {
				j.states[w][i].n = 0;
			}
		for (size_t t = 0; t < ngroups * nq; t++) {
			j.lse[t].m = -INFINITY;
			j.lse[t].s = 0.0;
		}
		st = fresh_scan(pool, m, qs, q0, nq, sample_tile, &j);
		for (size_t i = 0; i < nq && st == FRESH_OK; i++) {
			size_t q = q0 + i, count = 0;
			double mm = -INFINITY, ss = 0.0, log_z, inv_t;

			for (size_t t = 0; t < ngroups; t++)
				if (j.lse[t * nq + i].m > mm)
					mm = j.lse[t * nq + i].m;
			for (size_t t = 0; t < ngroups; t++) {
				const struct lse *l = &j.lse[t * nq + i];
				if (l->m > -INFINITY)
					ss += l->s * exp(l->m - mm);
			}
			for (size_t w = 0; w < threads; w++) {
				size_t got = j.states[w][i].n;
				memcpy(all + count, j.heaps[w] + i * n,
				       got * sizeof *all);
				count += got;
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
				logprob[q * n + c] =
					(float)((double)all[c].score * inv_t -
						log_z);
				if (detail && detail->keys)
					detail->keys[q * n + c] = all[c].key;
			}
			if (detail && detail->log_z)
				detail->log_z[q] = count ? log_z : -INFINITY;
			counts[q] = count;
		}
	}
out:
	for (size_t w = 0; j.heaps && w < threads; w++)
		free(j.heaps[w]);
	for (size_t w = 0; j.states && w < threads; w++)
		free(j.states[w]);
	for (size_t w = 0; j.scratch && w < threads; w++) {
		fresh_free(j.scratch[w].masked);
		fresh_free(j.scratch[w].weight);
		fresh_free(j.scratch[w].ida);
		fresh_free(j.scratch[w].idb);
		fresh_free(j.scratch[w].cand);
	}
	free(j.heaps);
	free(j.states);
	free(j.scratch);
	free(j.lse);
	free(all);
	return st;
}
