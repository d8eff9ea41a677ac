/*
 * model.c - building and scoring a published model (see model.h).
 *
 * Design: what a corrected search scans is decided once, at build:
 *   - identity or 'none' corrector: the stale matrix S itself;
 *   - affine: S again, with the corrector folded into each query
 *     (<q, s + As + b> = <q + Aᵀq, s> + <q, b>), so no copy of the index
 *     exists and an affine refit publishes in the time of a fold;
 *   - mlp: the corrected matrix C = h(S), materialized in row chunks on
 *     the (low-priority) pool, one workspace per worker. Under --store
 *     bf16 no float32 C is held in memory: each chunk is computed into
 *     the worker's scratch, written to an unnamed file (spill.h) and
 *     rounded into a bf16 copy with norm bounds, which the scan reads;
 *     the file, mapped read-only, gives the exact float32 rows to the
 *     rescoring and the sampler, as the index file does for S.
 * Normalized output becomes a per-row scale 1/||h(s)|| for S-based plans
 * and is applied in place to C. A model is immutable after build; the
 * reference count is its only mutable field.
 */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "blas.h"
#include "mem.h"
#include "rows.h"
#include "sample.h"
#include "scan.h"
#include "spill.h"

#define CHUNK_ROWS ((size_t)1024)

struct fresh_model {
	atomic_size_t refs;
	struct fresh_index *index;
	struct fresh_corrector *corr;
	float *corrected; /* n x d_out for mlp, else NULL */
	/*
	 * mlp under --store bf16: corrected is mapped from spill, and the
	 * scan reads corrected_h (n x d_out) with norm bounds.
	 */
	struct fresh_spill spill;
	uint16_t *corrected_h;
	float *corrected_norm;
	float corrected_max;
	float *row_scale; /* n, when normalizing an S-based plan, else NULL */
	float *fold_rows; /* what queries are folded with, when fold */
	size_t fresh_served; /* rows of C that are the corrector's fresh rows */
	bool fold, can_correct;
};

double fresh_progress_fraction(const struct fresh_progress *p)
{
	size_t total = atomic_load(&p->total), done = atomic_load(&p->done);

	return total ? (double)done / (double)total : 0.0;
}

/* A fresh row of the corrector (its k-th) and the index row it replaces. */
struct fresh_at {
	size_t row, k;
};

struct build_job {
	struct fresh_model *m;
	const float *s;
	size_t n, d_in, d_out;
	const struct fresh_at *fresh; /* ascending rows */
	size_t nfresh;
	const float *fresh_rows;
	struct fresh_corrector_ws *ws; /* per worker */
	float **tmp;		       /* per worker: CHUNK_ROWS x d_out */
	float *max_norm;	       /* per worker, with corrected_h */
	struct fresh_progress *prog;
	const atomic_bool *cancel;
	atomic_int failed; /* a fresh_status, FRESH_OK while none failed */
};

/*
 * A chunk of h(S) computed into scratch goes to the spill file and, rounded,
 * to the bf16 copy with its rows' norm bounds.
 */
static enum fresh_status spill_chunk(struct build_job *j, size_t r0, size_t nr,
				     const float *y, size_t worker)
{
	struct fresh_model *m = j->m;
	size_t d = j->d_out;
	enum fresh_status st;

	st = fresh_spill_write(&m->spill, y, nr * d * sizeof(float),
			       r0 * d * sizeof(float));
	if (st != FRESH_OK)
		return st;
	if (fresh_bf16_convert(y, m->corrected_h + r0 * d, nr * d) !=
	    (size_t)-1)
		return FRESH_FORMAT; /* beyond bf16's range */
	for (size_t i = 0; i < nr; i++) {
		float nb = fresh_norm_bound(y + i * d, d);
		m->corrected_norm[r0 + i] = nb;
		if (nb > j->max_norm[worker])
			j->max_norm[worker] = nb;
	}
	return FRESH_OK;
}

/* Rows [r0, r0 + nr) of C, in y, that the corrector serves fresh. */
static void put_fresh_rows(const struct build_job *j, size_t r0, size_t nr,
			   float *y)
{
	size_t lo = 0, hi = j->nfresh;

	while (lo < hi) { /* the first at or after r0 */
		size_t mid = lo + (hi - lo) / 2;
		if (j->fresh[mid].row < r0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < j->nfresh && j->fresh[lo].row < r0 + nr; lo++)
		memcpy(y + (j->fresh[lo].row - r0) * j->d_out,
		       j->fresh_rows + j->fresh[lo].k * j->d_out,
		       j->d_out * sizeof *y);
}

static int fresh_at_cmp(const void *a, const void *b)
{
	const struct fresh_at *x = a, *y = b;

	return (x->row > y->row) - (x->row < y->row);
}

/*
 * Where the corrector's fresh rows go in idx, ascending by row; ids the
 * index lacks are skipped. *out is NULL when there are none.
 */
static enum fresh_status locate_fresh_rows(const struct fresh_corrector *c,
					   const struct fresh_index *idx,
					   struct fresh_at **out, size_t *n)
{
	const uint64_t *ids;
	size_t nf = fresh_corrector_fresh_rows(c, &ids, NULL), row;

	*out = NULL;
	*n = 0;
	if (!nf)
		return FRESH_OK;
	*out = malloc(nf * sizeof **out);
	if (!*out)
		return FRESH_NOMEM;
	for (size_t k = 0; k < nf; k++)
		if (fresh_index_find(idx, ids[k], &row))
			(*out)[(*n)++] = (struct fresh_at){row, k};
	qsort(*out, *n, sizeof **out, fresh_at_cmp);
	return FRESH_OK;
}

static void build_task(void *arg, size_t task, size_t worker)
{
	struct build_job *j = arg;
	struct fresh_model *m = j->m;
	size_t r0 = task * CHUNK_ROWS;
	size_t nr = j->n - r0 < CHUNK_ROWS ? j->n - r0 : CHUNK_ROWS;
	const float *x = j->s + r0 * j->d_in;
	bool identity = !m->corrected && !m->fold && !m->corrected_h;
	bool in_c = m->corrected || m->corrected_h;
	enum fresh_status st;
	float *y;

	if ((j->cancel && atomic_load(j->cancel)) || atomic_load(&j->failed))
		return;
	if (identity) {
		y = (float *)x; /* norms of s itself */
	} else {
		y = m->corrected ? m->corrected + r0 * j->d_out
				 : j->tmp[worker];
		st = fresh_corrector_apply(m->corr, x, nr, y, &j->ws[worker]);
		if (st != FRESH_OK) {
			atomic_store(&j->failed, (int)st);
			return;
		}
		put_fresh_rows(j, r0, nr, y);
	}
	if (fresh_corrector_normalize(m->corr)) {
		/* In place in C, or as per-row scales for an S-based plan. */
		if (in_c)
			fresh_normalize_rows(y, nr, j->d_out, NULL, 1);
		else
			fresh_normalize_rows(y, nr, j->d_out, m->row_scale + r0,
					     0);
	}
	if (m->corrected_h) {
		st = spill_chunk(j, r0, nr, y, worker);
		if (st != FRESH_OK) {
			atomic_store(&j->failed, (int)st);
			return;
		}
	}
	if (j->prog)
		atomic_fetch_add(&j->prog->done, nr);
}

static void model_free(struct fresh_model *m)
{
	fresh_index_release(m->index);
	fresh_corrector_free(m->corr);
	if (m->spill.fd >= 0)
		fresh_spill_close(&m->spill); /* corrected was its mapping */
	else
		fresh_free(m->corrected);
	fresh_free(m->corrected_h);
	fresh_free(m->corrected_norm);
	fresh_free(m->row_scale);
	fresh_free(m->fold_rows);
	free(m);
}

/*
 * Room for h(S): float32 in memory, or under --store bf16 with a spill_dir
 * a bf16 copy in memory and the float32 rows in a file there. Refused up
 * front, naming the bytes, rather than killed for memory mid-way.
 */
static enum fresh_status alloc_corrected(struct fresh_model *m,
					 struct fresh_index *idx, size_t d_out,
					 const char *spill_dir,
					 struct fresh_error *err)
{
	size_t n = fresh_index_size(idx);
	bool bf16 = fresh_index_store(idx) == FRESH_STORE_BF16 && spill_dir;
	size_t need = bf16 ? n * (d_out * sizeof(uint16_t) + sizeof(float))
			   : n * d_out * sizeof(float);
	size_t avail = fresh_mem_available();
	enum fresh_status st;

	if (avail && need > avail)
		return fresh_fail(err, FRESH_NOMEM,
				  "the corrected matrix h(S) needs %.2f GiB "
				  "(%zu x %zu %s) and %.2f GiB are available: "
				  "an affine corrector needs none",
				  need / 1073741824.0, n, d_out,
				  bf16 ? "bf16 values and norms" : "floats",
				  avail / 1073741824.0);
	if (!bf16) {
		m->corrected = fresh_alloc(n, d_out * sizeof(float));
		if (!m->corrected)
			return fresh_fail(err, FRESH_NOMEM,
					  "no memory for the corrected matrix "
					  "(%zu x %zu floats)",
					  n, d_out);
		return FRESH_OK;
	}
	m->corrected_h = fresh_alloc(n, d_out * sizeof(uint16_t));
	m->corrected_norm = fresh_alloc(n, sizeof(float));
	if (!m->corrected_h || !m->corrected_norm) {
		st = fresh_fail(err, FRESH_NOMEM,
				"no memory for the bf16 corrected matrix "
				"(%zu x %zu)",
				n, d_out);
		goto fail;
	}
	st = fresh_spill_create(spill_dir, n * d_out * sizeof(float), &m->spill,
				err);
	if (st == FRESH_OK)
		return FRESH_OK;
fail:
	fresh_free(m->corrected_h);
	fresh_free(m->corrected_norm);
	m->corrected_h = NULL;
	m->corrected_norm = NULL;
	return st;
}

enum fresh_status fresh_model_build(
	struct fresh_index *idx, struct fresh_corrector *corr,
	struct fresh_pool *pool, struct fresh_progress *prog,
	const atomic_bool *cancel, const char *spill_dir,
	struct fresh_model **out, struct fresh_error *err)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(corr);
	size_t n = fresh_index_size(idx), threads = fresh_pool_threads(pool);
	struct fresh_model *m;
	struct build_job j;
	enum fresh_status st = FRESH_OK;
	bool identity = fresh_corrector_is_identity(corr) &&
			!fresh_corrector_fresh_rows(corr, NULL, NULL);
	struct fresh_at *fresh = NULL;
	size_t nfresh = 0;
	bool work;

	if (sh->d_in != fresh_index_dim(idx))
		return fresh_fail(err, FRESH_CONFLICT,
				  "corrector input width %zu, index width %zu",
				  sh->d_in, fresh_index_dim(idx));
	m = calloc(1, sizeof *m);
	if (!m)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	atomic_init(&m->refs, 1);
	m->spill.fd = -1;
	m->fold = sh->kind == FRESH_CORRECTOR_AFFINE && !identity;
	m->can_correct = true;
	if (!fresh_corrector_residual(corr)) {
		const float *a = fresh_corrector_params_const(corr);
		size_t na = sh->d_out * sh->d_in;
		m->can_correct = false;
		for (size_t i = 0; i < na && !m->can_correct; i++)
			m->can_correct = a[i] != 0.0f;
	}
	if (sh->kind == FRESH_CORRECTOR_MLP && !identity && m->can_correct) {
		st = locate_fresh_rows(corr, idx, &fresh, &nfresh);
		if (st == FRESH_OK)
			st = alloc_corrected(m, idx, sh->d_out, spill_dir, err);
		else
			fresh_fail(err, st, "no memory for the fresh rows");
		if (st != FRESH_OK) {
			free(fresh);
			free(m);
			return st;
		}
		m->fresh_served = nfresh;
	}
	if (fresh_corrector_normalize(corr) && !m->corrected &&
	    !m->corrected_h && m->can_correct) {
		m->row_scale = fresh_alloc(n, sizeof(float));
		if (!m->row_scale) {
			model_free(m);
			return fresh_fail(err, FRESH_NOMEM,
					  "no memory for row norms");
		}
	}
	if (m->fold &&
	    fresh_corrector_fold_rows(corr, &m->fold_rows) != FRESH_OK) {
		model_free(m);
		return fresh_fail(err, FRESH_NOMEM, "no memory for the fold");
	}
	/* From here on the model owns corr and a reference to idx. */
	m->corr = corr;
	fresh_index_retain(idx);
	m->index = idx;

	work = m->corrected || m->corrected_h || m->row_scale;
	memset(&j, 0, sizeof j);
	if (prog) {
		atomic_store(&prog->done, 0);
		atomic_store(&prog->total, work ? n : 0);
	}
	if (!work)
		goto done;
	j.m = m;
	j.s = fresh_index_vectors(idx);
	j.n = n;
	j.d_in = sh->d_in;
	j.d_out = sh->d_out;
	j.fresh = fresh;
	j.nfresh = nfresh;
	fresh_corrector_fresh_rows(corr, NULL, &j.fresh_rows);
	j.prog = prog;
	j.cancel = cancel;
	atomic_init(&j.failed, 0);
	j.ws = calloc(threads, sizeof *j.ws);
	j.tmp = calloc(threads, sizeof *j.tmp);
	j.max_norm = calloc(threads, sizeof *j.max_norm);
	if (!j.ws || !j.tmp || !j.max_norm)
		st = FRESH_NOMEM;
	for (size_t w = 0; w < threads && st == FRESH_OK; w++) {
		st = fresh_corrector_ws_init(&j.ws[w], CHUNK_ROWS, sh->hidden);
		if (st == FRESH_OK &&
		    ((m->row_scale && m->fold) || m->corrected_h)) {
			j.tmp[w] = fresh_alloc(CHUNK_ROWS,
					       sh->d_out * sizeof(float));
			if (!j.tmp[w])
				st = FRESH_NOMEM;
		}
	}
	if (st == FRESH_OK)
		fresh_pool_run(pool, (n + CHUNK_ROWS - 1) / CHUNK_ROWS,
			       build_task, &j);
	for (size_t w = 0; j.ws && w < threads; w++)
		fresh_corrector_ws_free(&j.ws[w]);
	for (size_t w = 0; j.tmp && w < threads; w++)
		fresh_free(j.tmp[w]);
	free(j.ws);
	free(j.tmp);
	for (size_t w = 0; j.max_norm && w < threads; w++)
		if (j.max_norm[w] > m->corrected_max)
			m->corrected_max = j.max_norm[w];
	free(j.max_norm);
	free(fresh);
	fresh = NULL;
	if (st == FRESH_OK && cancel && atomic_load(cancel))
		st = FRESH_CANCELLED;
	if (st == FRESH_OK && atomic_load(&j.failed))
		st = (enum fresh_status)atomic_load(&j.failed);
	if (st == FRESH_OK && m->corrected_h) {
		st = fresh_spill_map(&m->spill, err);
		if (st != FRESH_OK) {
			m->corr = NULL;
			model_free(m);
			return st;
		}
		m->corrected = m->spill.map;
	}
done:
	free(fresh);
	if (st != FRESH_OK) {
		/* Hand corr back untouched: the caller still owns it. */
		m->corr = NULL;
		model_free(m);
		if (st == FRESH_FORMAT)
			return fresh_fail(err, st,
					  "h(S) has a value beyond bfloat16's "
					  "range (--store bf16 needs |x| < "
					  "3.39e38; use --store f32)");
		if (st == FRESH_NO_SPACE || st == FRESH_IO)
			return fresh_fail(err, st,
					  "writing h(S) in float32 to its file "
					  "in %s: %s",
					  spill_dir, fresh_status_str(st));
		return fresh_fail(err, st, "building the corrected model: %s",
				  fresh_status_str(st));
	}
	*out = m;
	return FRESH_OK;
}

/* Same shape, normalization and parameters: h is the same map of s. */
static bool same_network(const struct fresh_corrector *a,
			 const struct fresh_corrector *b)
{
	return fresh_corrector_shape_equal(fresh_corrector_shape(a),
					   fresh_corrector_shape(b)) &&
	       fresh_corrector_normalize(a) == fresh_corrector_normalize(b) &&
	       memcmp(fresh_corrector_params_const(a),
		      fresh_corrector_params_const(b),
		      fresh_corrector_layout(a).total * sizeof(float)) == 0;
}

/* Row r of C becomes fresh row f (d floats), normalized like C's rows. */
static void put_row(struct fresh_model *m, size_t r, const float *f, size_t d)
{
	float *y = m->corrected + r * d;

	memcpy(y, f, d * sizeof *y);
	if (fresh_corrector_normalize(m->corr))
		fresh_normalize_rows(y, 1, d, NULL, 1);
}

/* Row r of C becomes h(s_r) again (its fresh row went). */
static enum fresh_status redo_row(struct fresh_model *m, size_t r, size_t d,
				  struct fresh_corrector_ws *ws)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(m->corr);
	float *y = m->corrected + r * d;
	enum fresh_status st = fresh_corrector_apply(
		m->corr, fresh_index_vectors(m->index) + r * sh->d_in, 1, y,
		ws);

	if (st == FRESH_OK && fresh_corrector_normalize(m->corr))
		fresh_normalize_rows(y, 1, d, NULL, 1);
	return st;
}

struct copy_job {
	float *dst;
	const float *src;
	size_t n, d;
};

/*
 * Rows [task * CHUNK_ROWS, ...) of C. A new C's pages are faulted in and
 * zeroed by the kernel as they are first written, most of a copy's time:
 * tasks spread that over the pool too.
 */
static void copy_task(void *arg, size_t task, size_t worker)
{
	const struct copy_job *j = arg;
	size_t r0 = task * CHUNK_ROWS;
	size_t nr = j->n - r0 < CHUNK_ROWS ? j->n - r0 : CHUNK_ROWS;

	(void)worker;
	memcpy(j->dst + r0 * j->d, j->src + r0 * j->d,
	       nr * j->d * sizeof(float));
}

/*
 * base's C (copied on pool) with the rows whose fresh row changed, came or
 * went redone; the ids of base's and corr's fresh rows are walked together
 * (both ascending). corr is m->corr already.
 */
static enum fresh_status redo_changed_rows(struct fresh_model *m,
					   const struct fresh_model *base,
					   struct fresh_pool *pool)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(m->corr);
	size_t d = sh->d_out, row, i = 0, j = 0;
	const uint64_t *bid, *nid;
	const float *brow, *nrow;
	size_t nb = fresh_corrector_fresh_rows(base->corr, &bid, &brow);
	size_t nn = fresh_corrector_fresh_rows(m->corr, &nid, &nrow);
	struct copy_job cj = {m->corrected, base->corrected,
			      fresh_index_size(m->index), d};
	struct fresh_corrector_ws ws;
	enum fresh_status st = fresh_corrector_ws_init(&ws, 1, sh->hidden);

	if (pool)
		fresh_pool_run(pool, (cj.n + CHUNK_ROWS - 1) / CHUNK_ROWS,
			       copy_task, &cj);
	else
		memcpy(cj.dst, cj.src, cj.n * d * sizeof(float));
	m->fresh_served = 0;
	while (st == FRESH_OK && (i < nb || j < nn)) {
		bool in_b = i < nb && (j == nn || bid[i] <= nid[j]);
		bool in_n = j < nn && (i == nb || nid[j] <= bid[i]);
		uint64_t id = in_n ? nid[j] : bid[i];

		if (fresh_index_find(m->index, id, &row)) {
			if (in_n)
				m->fresh_served++;
			if (in_n && (!in_b || memcmp(brow + i * d, nrow + j * d,
						     d * sizeof(float))))
				put_row(m, row, nrow + j * d, d);
			else if (!in_n)
				st = redo_row(m, row, d, &ws);
		}
		i += in_b;
		j += in_n;
	}
	fresh_corrector_ws_free(&ws);
	return st;
}

enum fresh_status fresh_model_build_like(
	const struct fresh_model *base, struct fresh_index *idx,
	struct fresh_corrector *corr, struct fresh_pool *pool,
	struct fresh_progress *prog, const atomic_bool *cancel,
	const char *spill_dir, struct fresh_model **out,
	struct fresh_error *err)
{
	size_t n = fresh_index_size(idx);
	struct fresh_model *m;
	enum fresh_status st;

	/* Whenever a full build would not hold C (identity, no rows) too. */
	if (base->index != idx || !base->corrected || base->corrected_h ||
	    (fresh_corrector_is_identity(corr) &&
	     !fresh_corrector_fresh_rows(corr, NULL, NULL)) ||
	    fresh_corrector_shape(corr)->kind != FRESH_CORRECTOR_MLP ||
	    (fresh_index_store(idx) == FRESH_STORE_BF16 && spill_dir) ||
	    !same_network(base->corr, corr))
		return fresh_model_build(idx, corr, pool, prog, cancel,
					 spill_dir, out, err);
	m = calloc(1, sizeof *m);
	if (!m)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	atomic_init(&m->refs, 1);
	m->spill.fd = -1;
	m->can_correct = true;
	st = alloc_corrected(m, idx, fresh_corrector_shape(corr)->d_out, NULL,
			     err);
	if (st != FRESH_OK) {
		free(m);
		return st;
	}
	m->corr = corr;
	fresh_index_retain(idx);
	m->index = idx;
	if (prog) {
		atomic_store(&prog->done, 0);
		atomic_store(&prog->total, n);
	}
	st = redo_changed_rows(m, base, pool);
	if (st != FRESH_OK) {
		m->corr = NULL; /* the caller's still */
		model_free(m);
		return fresh_fail(err, st, "building the corrected model: %s",
				  fresh_status_str(st));
	}
	if (prog)
		atomic_store(&prog->done, n);
	*out = m;
	return FRESH_OK;
}

void fresh_model_stamp(struct fresh_model *m, uint64_t version,
		       uint64_t trained_through)
{
	fresh_corrector_set_version(m->corr, version);
	fresh_corrector_set_trained_through(m->corr, trained_through);
}

void fresh_model_retain(struct fresh_model *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void fresh_model_release(struct fresh_model *m)
{
	if (m &&
	    atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		model_free(m);
}

uint64_t fresh_model_version(const struct fresh_model *m)
{
	return fresh_corrector_version(m->corr);
}

struct fresh_index *fresh_model_index(const struct fresh_model *m)
{
	return m->index;
}

const struct fresh_corrector *fresh_model_corrector(const struct fresh_model *m)
{
	return m->corr;
}

size_t fresh_model_query_dim(const struct fresh_model *m,
			     enum fresh_scoring scoring)
{
	return scoring == FRESH_SCORING_STALE
		       ? fresh_index_dim(m->index)
		       : fresh_corrector_shape(m->corr)->d_out;
}

size_t fresh_model_fresh_rows(const struct fresh_model *m)
{
	return m->fresh_served;
}

bool fresh_model_can_correct(const struct fresh_model *m)
{
	return m->can_correct;
}

size_t fresh_model_extra_bytes(const struct fresh_model *m)
{
	size_t n = fresh_index_size(m->index), bytes = 0;

	if (m->corrected_h) /* the float32 rows are in the spill file */
		bytes += n * (fresh_corrector_shape(m->corr)->d_out * 2 + 4);
	else if (m->corrected)
		bytes += n * fresh_corrector_shape(m->corr)->d_out * 4;
	if (m->row_scale)
		bytes += n * 4;
	/* The fresh rows the corrector carries: an id and a row each. */
	bytes += fresh_corrector_fresh_rows(m->corr, NULL, NULL) *
		 (8 + fresh_corrector_shape(m->corr)->d_out * 4);
	return bytes;
}

size_t fresh_model_mapped_bytes(const struct fresh_model *m)
{
	return m->spill.fd >= 0 ? m->spill.len : 0;
}

enum fresh_status fresh_model_query_map(const struct fresh_model *m, float *w,
					float *b)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(m->corr);
	const struct fresh_corrector_layout lay =
		fresh_corrector_layout(m->corr);
	const float *p = fresh_corrector_params_const(m->corr);
	bool linear = sh->kind != FRESH_CORRECTOR_NONE &&
		      !fresh_corrector_is_identity(m->corr);

	if (!m->can_correct)
		return FRESH_NOT_READY;
	if (m->corrected || m->row_scale)
		return FRESH_CONFLICT;
	memset(w, 0, sh->d_out * sh->d_in * sizeof *w);
	memset(b, 0, sh->d_out * sizeof *b);
	if (linear) {
		memcpy(w, p + lay.a, sh->d_out * sh->d_in * sizeof *w);
		memcpy(b, p + lay.b, sh->d_out * sizeof *b);
	}
	if (fresh_corrector_residual(m->corr))
		for (size_t i = 0; i < sh->d_out; i++)
			w[i * sh->d_in + i] += 1.0f;
	return FRESH_OK;
}

void fresh_model_plan(const struct fresh_model *m, enum fresh_scoring scoring,
		      struct fresh_scan_plan *plan)
{
	struct fresh_matrix *x = &plan->matrix;

	x->n = fresh_index_size(m->index);
	x->ids = fresh_index_ids(m->index);
	x->x = fresh_index_vectors(m->index);
	x->dim = fresh_index_dim(m->index);
	x->row_scale = NULL;
	/* --store bf16: the stale rows are scanned in bf16 and rescored. */
	x->xh = fresh_index_bf16(m->index);
	x->row_norm = fresh_index_norms(m->index);
	x->max_norm = fresh_index_max_norm(m->index);
	plan->fold = false;
	if (scoring == FRESH_SCORING_STALE)
		return;
	if (m->corrected) {
		/* h(S): float32, and under bf16 its rounded copy too. */
		x->x = m->corrected;
		x->dim = fresh_corrector_shape(m->corr)->d_out;
		x->xh = m->corrected_h;
		x->row_norm = m->corrected_norm;
		x->max_norm = m->corrected_max;
	}
	x->row_scale = m->row_scale;
	plan->fold = m->fold;
}

enum fresh_status fresh_model_prepare_queries(
	const struct fresh_model *m, const struct fresh_scan_plan *plan,
	const float *q, size_t b, float *q2, float *offsets)
{
	if (plan->fold)
		return fresh_corrector_fold(m->corr, m->fold_rows, q, b, q2,
					    offsets);
	memcpy(q2, q, b * plan->matrix.dim * sizeof(float));
	memset(offsets, 0, b * sizeof *offsets);
	return FRESH_OK;
}

/*
 * Runs a selection over the plan for scoring: folds the queries when the
 * plan needs it, then calls select_fn. Shared by search and sampling.
 */
struct selection {
	size_t k;
	bool gumbel; /* sampling only */
	const struct fresh_exclusion *excl;
	const float *temps;    /* sampling only */
	const uint64_t *seeds; /* sampling only */
	struct fresh_hit *hits;
	float *logprob; /* sampling only */
	size_t *counts;
	const struct fresh_sample_detail *detail; /* sampling, may be NULL */
};

static enum fresh_status run_selection(const struct fresh_model *m,
				       struct fresh_pool *pool,
				       enum fresh_scoring scoring,
				       const float *q, size_t b,
				       const struct selection *sel)
{
	struct fresh_scan_plan plan;
	struct fresh_queries qs = {q, b, NULL};
	float *q2 = NULL, *off = NULL;
	enum fresh_status st = FRESH_OK;

	if (scoring == FRESH_SCORING_CORRECTED && !m->can_correct)
		return FRESH_NOT_READY;
	fresh_model_plan(m, scoring, &plan);
	if (plan.fold) {
		q2 = fresh_alloc(b, plan.matrix.dim * sizeof(float));
		off = malloc(b * sizeof *off);
		if (!q2 || !off)
			st = FRESH_NOMEM;
		if (st == FRESH_OK)
			st = fresh_model_prepare_queries(m, &plan, q, b, q2,
							 off);
		qs.q = q2;
		qs.offset = off;
	}
	if (st == FRESH_OK && sel->temps)
		st = fresh_sample_detailed(pool, &plan.matrix, &qs, sel->k,
					   sel->gumbel, sel->excl, sel->temps,
					   sel->seeds, sel->hits, sel->logprob,
					   sel->counts, sel->detail);
	else if (st == FRESH_OK)
		st = fresh_topk(pool, &plan.matrix, &qs, sel->k, sel->excl,
				sel->hits, sel->counts);
	fresh_free(q2);
	free(off);
	return st;
}

enum fresh_status fresh_model_search(const struct fresh_model *m,
				     struct fresh_pool *pool,
				     enum fresh_scoring scoring, const float *q,
				     size_t b, size_t k,
				     const struct fresh_exclusion *excl,
				     struct fresh_hit *hits, size_t *counts)
{
	struct selection sel = {k,    false, excl,   NULL, NULL,
				hits, NULL,  counts, NULL};

	return run_selection(m, pool, scoring, q, b, &sel);
}

enum fresh_status fresh_model_sample(
	const struct fresh_model *m, struct fresh_pool *pool,
	enum fresh_scoring scoring, const float *q, size_t b, size_t n,
	bool gumbel, const struct fresh_exclusion *excl, const float *temps,
	const uint64_t *seeds, struct fresh_hit *hits, float *logprob,
	size_t *counts, const struct fresh_sample_detail *detail)
{
	struct selection sel = {n,    gumbel,  excl,   temps, seeds,
				hits, logprob, counts, detail};

	return run_selection(m, pool, scoring, q, b, &sel);
}

enum fresh_status fresh_model_corrected_rows(const struct fresh_model *m,
					     const size_t *rows, size_t n,
					     float *out)
{
	const struct fresh_corrector_shape *sh = fresh_corrector_shape(m->corr);
	const float *s = fresh_index_vectors(m->index);
	struct fresh_corrector_ws ws;
	enum fresh_status st = FRESH_OK;
	float *x;

	if (m->corrected) {
		for (size_t i = 0; i < n; i++)
			memcpy(out + i * sh->d_out,
			       m->corrected + rows[i] * sh->d_out,
			       sh->d_out * sizeof(float));
		return FRESH_OK;
	}
	if (!m->can_correct)
		return FRESH_NOT_READY;
	x = fresh_alloc(n ? n : 1, sh->d_in * sizeof(float));
	if (!x)
		return FRESH_NOMEM;
	for (size_t i = 0; i < n; i++)
		memcpy(x + i * sh->d_in, s + rows[i] * sh->d_in,
		       sh->d_in * sizeof(float));
	st = fresh_corrector_ws_init(&ws, n, sh->hidden);
	if (st == FRESH_OK) {
		st = fresh_corrector_apply(m->corr, x, n, out, &ws);
		fresh_corrector_ws_free(&ws);
	}
	if (st == FRESH_OK && fresh_corrector_normalize(m->corr))
		fresh_normalize_rows(out, n, sh->d_out, NULL, 1);
	fresh_free(x);
	return st;
}
