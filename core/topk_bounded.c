/*
 * topk_bounded.c - exact top-k from a bf16 scan and float32 rescoring
 * (--store bf16; see topk.h and bf16.h).
 *
 * Design: the scan gives each row an approximate score a and, from the
 * row's norm bound and the query, an error bound E with the exact score
 * (the fixed-order float32 one clients get) in [a - E, a + E]; the query's
 * offset and the row's scale, being monotone roundings, carry the bounds
 * through. Per worker and query, a min-heap keeps the k largest lower
 * bounds: its root T is a lower bound of the k-th exact score, since k
 * rows score at least their lower bounds. A row whose upper bound is below
 * T cannot be in the answer; every other row is a candidate. After the
 * pass, T is recomputed over all workers' heaps, and the candidates still
 * at or above it are scored exactly, in float32, in the same operations
 * as the float32 scan (scan.c): dot, then offset, then scale. The answer
 * is the top-k of those exact scores with the same ties, so it equals the
 * float32 scan's bit for bit whatever the approximation did.
 *
 * Candidate lists grow by doubling and are pruned against the worker's
 * current T whenever they fill, so their size stays near the number of
 * rows whose bounds straddle the k-th score. Their float32 rows are asked
 * of the kernel all at once before the rescoring (they may be on disk).
 */
#include "topk.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bf16.h"
#include "dot.h"

#define STATE_BUDGET_BYTES ((size_t)64 << 20)

/* Rows rescored in float32, since the start (for /metrics and benches). */
static atomic_ullong rescored_total;

unsigned long long fresh_topk_bounded_rescored(void)
{
	return atomic_load_explicit(&rescored_total, memory_order_relaxed);
}

struct cand {
	uint32_t row;
	float hi;
};

struct qstate {
	float *lo; /* min-heap of the k largest lower bounds */
	size_t nlo;
	struct cand *c;
	size_t nc, cap;
};

struct bounded_job {
	const struct fresh_matrix *m;
	const struct fresh_queries *qs;
	const struct fresh_exclusion *excl;
	size_t k, q_begin, threads;
	float *slope, *flo; /* the bound's terms, per query of the block */
	struct qstate **st; /* [worker][q - q_begin] */
	struct fresh_hit *hits;
	size_t *counts;
	atomic_bool nomem;
};

static void lo_sift_down(float *h, size_t n, size_t i)
{
	float x = h[i];

	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && h[c + 1] < h[c])
			c++;
		if (!(h[c] < x))
			break;
		h[i] = h[c];
		i = c;
	}
	h[i] = x;
}

/* Offers v to the min-heap of the k largest; returns the threshold. */
static float lo_offer(float *h, size_t *n, size_t k, float v)
{
	if (*n < k) {
		size_t i = (*n)++;
		while (i > 0 && v < h[(i - 1) / 2]) {
			h[i] = h[(i - 1) / 2];
			i = (i - 1) / 2;
		}
		h[i] = v;
	} else if (v > h[0]) {
		h[0] = v;
		lo_sift_down(h, k, 0);
	}
	return *n == k ? h[0] : -INFINITY;
}

/* Keeps the candidates at or above t; false when out of memory. */
static bool cand_push(struct qstate *s, uint32_t row, float hi, float t)
{
	if (s->nc == s->cap) {
		size_t keep = 0;
		for (size_t i = 0; i < s->nc; i++)
			if (s->c[i].hi >= t)
				s->c[keep++] = s->c[i];
		s->nc = keep;
		if (keep > s->cap / 2) {
			struct cand *g =
				realloc(s->c, 2 * s->cap * sizeof *s->c);
			if (!g)
				return false;
			s->c = g;
			s->cap *= 2;
		}
	}
	s->c[s->nc].row = row;
	s->c[s->nc].hi = hi;
	s->nc++;
	return true;
}

/*
 * The upper bounds of a tile's rows for one query, in a loop the compiler
 * vectorizes: hi = ((a + err) + o) * rs, the float32 scan's operations on
 * the bound (adding 0 and multiplying by 1 when there is no offset or
 * scale are exact). A NaN (an overflowed approximation) becomes +inf: the
 * row is then rescored.
 */
static void upper_bounds(const float *a, const float *norm, const float *rs,
			 float slope, float fl, float o, size_t nr, float *hi)
{
	for (size_t c = 0; c < nr; c++) {
		float h = (a[c] + (slope * norm[c] + fl) + o) *
			  (rs ? rs[c] : 1.0f);
		hi[c] = h == h ? h : INFINITY;
	}
}

static void bounded_tile(void *ctx, size_t worker, size_t q0, size_t nq,
			 size_t r0, size_t nr, const float *scores)
{
	struct bounded_job *j = ctx;
	const struct fresh_matrix *m = j->m;
	const float *norm = m->row_norm + r0;
	const float *rs = m->row_scale ? m->row_scale + r0 : NULL;
	size_t k = j->k;
	float hi[FRESH_SCAN_TILE_ROWS];

	for (size_t i = 0; i < nq; i++) {
		size_t slot = q0 + i - j->q_begin;
		struct qstate *s = &j->st[worker][slot];
		const struct fresh_exclusion *e =
			j->excl && j->excl[q0 + i].count ? &j->excl[q0 + i]
							 : NULL;
		const float *a = scores + i * nr;
		float slope = j->slope[slot], fl = j->flo[slot];
		float o = j->qs->offset ? j->qs->offset[q0 + i] : 0.0f;
		float t = s->nlo == k ? s->lo[0] : -INFINITY;

		upper_bounds(a, norm, rs, slope, fl, o, nr, hi);
		for (size_t c = 0; c < nr; c++) {
			float lo;

			if (!(hi[c] >= t))
				continue;
			if (e && fresh_excluded(e, r0 + c))
				continue;
			lo = (a[c] - (slope * norm[c] + fl) + o) *
			     (rs ? rs[c] : 1.0f);
			if (!isfinite(a[c]) || hi[c] == INFINITY || lo != lo)
				lo = -INFINITY;
			t = lo_offer(s->lo, &s->nlo, k, lo);
			if (hi[c] >= t &&
			    !cand_push(s, (uint32_t)(r0 + c), hi[c], t)) {
				atomic_store(&j->nomem, true);
				return;
			}
		}
	}
}

/* Exact scoring of one query's surviving candidates (a pool task). */
static void rescore_task(void *arg, size_t task, size_t worker)
{
	struct bounded_job *j = arg;
	const struct fresh_matrix *m = j->m;
	size_t q = j->q_begin + task, k = j->k, n = 0, nlo = 0, scored = 0;
	const float *qv = j->qs->q + q * m->dim;
	struct fresh_hit *out = j->hits + q * k;
	float t = -INFINITY;
	float *lo = malloc(k * sizeof *lo);

	(void)worker;
	if (!lo) {
		atomic_store(&j->nomem, true);
		return;
	}
	for (size_t w = 0; w < j->threads; w++) {
		const struct qstate *s = &j->st[w][task];
		for (size_t i = 0; i < s->nlo; i++)
			t = lo_offer(lo, &nlo, k, s->lo[i]);
	}
	free(lo);
	for (size_t w = 0; w < j->threads; w++) {
		const struct qstate *s = &j->st[w][task];
		for (size_t i = 0; i < s->nc; i++) {
			size_t row = s->c[i].row;
			struct fresh_hit hit;
			float v;

			if (!(s->c[i].hi >= t))
				continue;
			/* The float32 scan's operations, in its order. */
			v = fresh_dot(qv, m->x + row * m->dim, m->dim);
			if (j->qs->offset)
				v += j->qs->offset[q];
			if (m->row_scale)
				v *= m->row_scale[row];
			if (isnan(v))
				continue;
			hit.id = m->ids[row];
			hit.score = v;
			fresh_heap_offer(out, &n, k, hit);
			scored++;
		}
	}
	atomic_fetch_add_explicit(&rescored_total, scored,
				  memory_order_relaxed);
	fresh_heap_sort(out, n);
	j->counts[q] = n;
}

/*
 * Asks the kernel to read the float32 rows of every candidate still above
 * its worker's threshold, all at once, before any is scored. Under bf16
 * those rows are in a mapped file (the index's, or h(S)'s spill file) that
 * need not fit the page cache: a page fault per row would wait for one
 * disk read after another, while advice for all of them lets the device
 * serve them in parallel. Rows already in memory cost a system call.
 */
static void prefetch_candidates(const struct bounded_job *j, size_t nq)
{
	const struct fresh_matrix *m = j->m;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	size_t row_bytes = m->dim * sizeof(float);

	for (size_t w = 0; w < j->threads; w++)
		for (size_t i = 0; i < nq; i++) {
			const struct qstate *s = &j->st[w][i];
			float t = s->nlo == j->k ? s->lo[0] : -INFINITY;
			for (size_t c = 0; c < s->nc; c++) {
				uintptr_t a, b;
				if (!(s->c[c].hi >= t))
					continue;
				a = (uintptr_t)(m->x +
						(size_t)s->c[c].row * m->dim);
				b = a + row_bytes;
				a &= ~(page - 1);
				(void)madvise((void *)a, b - a, MADV_WILLNEED);
			}
		}
}

enum fresh_status fresh_topk_bounded(struct fresh_pool *pool,
				     const struct fresh_matrix *m,
				     const struct fresh_queries *qs, size_t k,
				     const struct fresh_exclusion *excl,
				     struct fresh_hit *hits, size_t *counts)
{
	size_t threads = fresh_pool_threads(pool);
	size_t per_query =
		threads * k * (sizeof(float) + 4 * sizeof(struct cand));
	size_t block = STATE_BUDGET_BYTES / per_query;
	size_t cap0 = 4 * k + 60;
	struct bounded_job j;
	enum fresh_status st = FRESH_OK;

	if (k == 0 || k > FRESH_MAX_K)
		return FRESH_INVALID;
	if (!m->xh || !m->row_norm)
		return FRESH_INVALID;
	if (block < 16)
		block = 16;
	if (block > qs->b)
		block = qs->b;
	memset(&j, 0, sizeof j);
	j.m = m;
	j.qs = qs;
	j.excl = excl;
	j.k = k;
	j.threads = threads;
	j.hits = hits;
	j.counts = counts;
	atomic_init(&j.nomem, false);
	j.st = calloc(threads, sizeof *j.st);
	j.slope = malloc(block * sizeof *j.slope);
	j.flo = malloc(block * sizeof *j.flo);
	if (!j.st || !j.slope || !j.flo) {
		st = FRESH_NOMEM;
		goto out;
	}
	for (size_t w = 0; w < threads; w++) {
		j.st[w] = calloc(block, sizeof **j.st);
		if (!j.st[w]) {
			st = FRESH_NOMEM;
			goto out;
		}
		for (size_t i = 0; i < block; i++) {
			struct qstate *s = &j.st[w][i];
			s->lo = malloc(k * sizeof *s->lo);
			s->c = malloc(cap0 * sizeof *s->c);
			s->cap = cap0;
			if (!s->lo || !s->c) {
				st = FRESH_NOMEM;
				goto out;
			}
		}
	}
	for (size_t q0 = 0; q0 < qs->b && st == FRESH_OK; q0 += block) {
		size_t nq = qs->b - q0 < block ? qs->b - q0 : block;
		j.q_begin = q0;
		for (size_t i = 0; i < nq; i++) {
			const float *qv = qs->q + (q0 + i) * m->dim;
			j.slope[i] = fresh_bf16_slope(qv, m->dim);
			j.flo[i] = fresh_bf16_floor(qv, m->dim, m->max_norm);
			/*
			 * Where a partial sum could overflow (norms near
			 * float's range), bound nothing: every row is a
			 * candidate, scored exactly.
			 */
			if (!((double)j.slope[i] * 128.0 * (double)m->max_norm <
			      0x1p120))
				j.slope[i] = INFINITY;
		}
		for (size_t w = 0; w < threads; w++)
			for (size_t i = 0; i < nq; i++)
				j.st[w][i].nlo = j.st[w][i].nc = 0;
		st = fresh_scan_bf16(pool, m, qs, q0, nq, bounded_tile, &j);
		if (st == FRESH_OK && atomic_load(&j.nomem))
			st = FRESH_NOMEM;
		if (st != FRESH_OK)
			break;
		prefetch_candidates(&j, nq);
		fresh_pool_run(pool, nq, rescore_task, &j);
		if (atomic_load(&j.nomem))
			st = FRESH_NOMEM;
	}
out:
	for (size_t w = 0; j.st && w < threads; w++) {
		for (size_t i = 0; j.st[w] && i < block; i++) {
			free(j.st[w][i].lo);
			free(j.st[w][i].c);
		}
		free(j.st[w]);
	}
	free(j.st);
	free(j.slope);
	free(j.flo);
	return st;
}
