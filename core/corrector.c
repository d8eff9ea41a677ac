/*
 * corrector.c - the corrector network: shapes, forward, backward,
 * folding into queries (see corrector.h). Its file format is
 * checkpoint.c's.
 *
 * Design: every product is one sgemm over the whole batch; the element-wise
 * work (bias, activation and its derivative) is plain loops. The backward
 * pass is checked against finite differences in tests/unit/test_corrector.c.
 */
#include "corrector.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas.h"
#include "dot.h"
#include "bytes.h"
#include "crc32c.h"
#include "fileio.h"
#include "index.h"
#include "mem.h"

struct fresh_corrector {
	struct fresh_corrector_shape shape;
	struct fresh_corrector_layout layout;
	uint64_t version, trained_through;
	bool normalize, has_holdout;
	struct fresh_holdout holdout;
	float *params;
	/* Targets served their fresh row in place of h(s) (ascending ids). */
	size_t fresh_n;
	uint64_t *fresh_ids;
	float *fresh_rows;    /* fresh_n x d_out */
	uint64_t *fresh_seqs; /* the record each row came from, or NULL */
};

const char *fresh_corrector_kind_name(enum fresh_corrector_kind kind)
{
	switch (kind) {
	case FRESH_CORRECTOR_NONE:
		return "none";
	case FRESH_CORRECTOR_AFFINE:
		return "affine";
	case FRESH_CORRECTOR_MLP:
		return "mlp";
	}
	return "unknown";
}

const char *fresh_activation_name(enum fresh_activation act)
{
	return act == FRESH_ACT_GELU ? "gelu" : "relu";
}

bool fresh_corrector_kind_parse(const char *s, enum fresh_corrector_kind *k)
{
	if (strcmp(s, "mlp") == 0)
		*k = FRESH_CORRECTOR_MLP;
	else if (strcmp(s, "affine") == 0)
		*k = FRESH_CORRECTOR_AFFINE;
	else if (strcmp(s, "none") == 0)
		*k = FRESH_CORRECTOR_NONE;
	else
		return false;
	return true;
}

bool fresh_activation_parse(const char *s, enum fresh_activation *a)
{
	if (strcmp(s, "relu") == 0)
		*a = FRESH_ACT_RELU;
	else if (strcmp(s, "gelu") == 0)
		*a = FRESH_ACT_GELU;
	else
		return false;
	return true;
}

bool fresh_corrector_shape_equal(const struct fresh_corrector_shape *a,
				 const struct fresh_corrector_shape *b)
{
	return a->kind == b->kind && a->act == b->act && a->d_in == b->d_in &&
	       a->d_out == b->d_out && a->hidden == b->hidden;
}

void fresh_corrector_shape_describe(const struct fresh_corrector_shape *s,
				    char *buf, size_t cap)
{
	snprintf(buf, cap, "%s %zu->%zu hidden %zu (%s)",
		 fresh_corrector_kind_name(s->kind), s->d_in, s->d_out,
		 s->hidden, fresh_activation_name(s->act));
}

enum fresh_status fresh_corrector_shape_check(
	const struct fresh_corrector_shape *s, struct fresh_error *err)
{
	if (s->kind != FRESH_CORRECTOR_NONE &&
	    s->kind != FRESH_CORRECTOR_AFFINE && s->kind != FRESH_CORRECTOR_MLP)
		return fresh_fail(err, FRESH_INVALID,
				  "unknown corrector kind %d", (int)s->kind);
	if (s->act != FRESH_ACT_RELU && s->act != FRESH_ACT_GELU)
		return fresh_fail(err, FRESH_INVALID, "unknown activation %d",
				  (int)s->act);
	if (s->d_in == 0 || s->d_in > FRESH_MAX_DIM || s->d_out == 0 ||
	    s->d_out > FRESH_MAX_DIM)
		return fresh_fail(err, FRESH_INVALID,
				  "dimensions %zu -> %zu out of range 1..%zu",
				  s->d_in, s->d_out, FRESH_MAX_DIM);
	if (s->kind == FRESH_CORRECTOR_NONE && s->d_in != s->d_out)
		return fresh_fail(
			err, FRESH_INVALID,
			"corrector 'none' cannot map width %zu to %zu", s->d_in,
			s->d_out);
	if (s->kind == FRESH_CORRECTOR_MLP &&
	    (s->hidden == 0 || s->hidden > FRESH_MAX_HIDDEN))
		return fresh_fail(err, FRESH_INVALID,
				  "hidden width %zu out of range 1..%zu",
				  s->hidden, FRESH_MAX_HIDDEN);
	if (s->kind != FRESH_CORRECTOR_MLP && s->hidden != 0)
		return fresh_fail(err, FRESH_INVALID,
				  "hidden width %zu given for corrector '%s'",
				  s->hidden,
				  fresh_corrector_kind_name(s->kind));
	return FRESH_OK;
}

struct fresh_corrector_layout fresh_corrector_layout_of(
	const struct fresh_corrector_shape *s)
{
	struct fresh_corrector_layout l = {0, 0, 0, 0, 0, 0};

	if (s->kind == FRESH_CORRECTOR_NONE)
		return l;
	l.a = 0;
	l.b = l.a + s->d_out * s->d_in;
	l.w1 = l.b + s->d_out;
	l.b1 = l.w1 + s->hidden * s->d_in;
	l.w2 = l.b1 + s->hidden;
	l.total = l.w2 + s->d_out * s->hidden;
	return l;
}

enum fresh_status fresh_corrector_create(
	const struct fresh_corrector_shape *shape, struct fresh_corrector **out,
	struct fresh_error *err)
{
	struct fresh_corrector *c;
	enum fresh_status st = fresh_corrector_shape_check(shape, err);

	if (st != FRESH_OK)
		return st;
	c = calloc(1, sizeof *c);
	if (!c)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	c->shape = *shape;
	c->layout = fresh_corrector_layout_of(shape);
	c->params = fresh_calloc(c->layout.total ? c->layout.total : 1,
				 sizeof(float));
	if (!c->params) {
		size_t total = c->layout.total;
		free(c);
		return fresh_fail(err, FRESH_NOMEM,
				  "no memory for %zu corrector parameters",
				  total);
	}
	*out = c;
	return FRESH_OK;
}

enum fresh_status fresh_corrector_clone(const struct fresh_corrector *c,
					struct fresh_corrector **out)
{
	struct fresh_corrector *d;
	enum fresh_status st = fresh_corrector_create(&c->shape, &d, NULL);

	if (st != FRESH_OK)
		return st;
	memcpy(d->params, c->params, c->layout.total * sizeof(float));
	d->version = c->version;
	d->trained_through = c->trained_through;
	d->normalize = c->normalize;
	d->has_holdout = c->has_holdout;
	d->holdout = c->holdout;
	if (c->fresh_n && fresh_corrector_set_fresh_rows_seqs(
				  d, c->fresh_ids, c->fresh_rows, c->fresh_seqs,
				  c->fresh_n) != FRESH_OK) {
		fresh_corrector_free(d);
		return FRESH_NOMEM;
	}
	*out = d;
	return FRESH_OK;
}

void fresh_corrector_free(struct fresh_corrector *c)
{
	if (!c)
		return;
	fresh_free(c->params);
	fresh_free(c->fresh_ids);
	fresh_free(c->fresh_rows);
	fresh_free(c->fresh_seqs);
	free(c);
}

struct id_row {
	uint64_t id;
	size_t k;
};

static int id_row_cmp(const void *a, const void *b)
{
	const struct id_row *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

enum fresh_status fresh_corrector_set_fresh_rows(struct fresh_corrector *c,
						 const uint64_t *ids,
						 const float *rows, size_t n)
{
	return fresh_corrector_set_fresh_rows_seqs(c, ids, rows, NULL, n);
}

enum fresh_status fresh_corrector_set_fresh_rows_seqs(struct fresh_corrector *c,
						      const uint64_t *ids,
						      const float *rows,
						      const uint64_t *seqs,
						      size_t n)
{
	size_t d = c->shape.d_out;
	uint64_t *nid = NULL, *nseq = NULL;
	float *nrow = NULL;
	struct id_row *order = NULL;

	if (n) {
		nid = fresh_alloc(n, sizeof *nid);
		nrow = fresh_alloc(n, d * sizeof *nrow);
		nseq = seqs ? fresh_alloc(n, sizeof *nseq) : NULL;
		order = malloc(n * sizeof *order);
		if (!nid || !nrow || (seqs && !nseq) || !order)
			goto nomem;
		for (size_t i = 0; i < n; i++)
			order[i] = (struct id_row){ids[i], i};
		qsort(order, n, sizeof *order, id_row_cmp);
		for (size_t i = 1; i < n; i++) {
			if (order[i].id == order[i - 1].id) {
				fresh_free(nid);
				fresh_free(nrow);
				fresh_free(nseq);
				free(order);
				return FRESH_INVALID; /* one row an id */
			}
		}
		for (size_t i = 0; i < n; i++) {
			nid[i] = order[i].id;
			memcpy(nrow + i * d, rows + order[i].k * d,
			       d * sizeof *nrow);
			if (nseq)
				nseq[i] = seqs[order[i].k];
		}
		free(order);
	}
	fresh_free(c->fresh_ids);
	fresh_free(c->fresh_rows);
	fresh_free(c->fresh_seqs);
	c->fresh_n = n;
	c->fresh_ids = nid;
	c->fresh_rows = nrow;
	c->fresh_seqs = nseq;
	return FRESH_OK;
nomem:
	fresh_free(nid);
	fresh_free(nrow);
	fresh_free(nseq);
	free(order);
	return FRESH_NOMEM;
}

const uint64_t *fresh_corrector_fresh_row_seqs(const struct fresh_corrector *c)
{
	return c->fresh_seqs;
}

size_t fresh_corrector_fresh_rows(const struct fresh_corrector *c,
				  const uint64_t **ids, const float **rows)
{
	if (ids)
		*ids = c->fresh_ids;
	if (rows)
		*rows = c->fresh_rows;
	return c->fresh_n;
}

const struct fresh_corrector_shape *fresh_corrector_shape(
	const struct fresh_corrector *c)
{
	return &c->shape;
}

struct fresh_corrector_layout fresh_corrector_layout(
	const struct fresh_corrector *c)
{
	return c->layout;
}

float *fresh_corrector_params(struct fresh_corrector *c)
{
	return c->params;
}

const float *fresh_corrector_params_const(const struct fresh_corrector *c)
{
	return c->params;
}

bool fresh_corrector_residual(const struct fresh_corrector *c)
{
	return c->shape.d_in == c->shape.d_out;
}

bool fresh_corrector_is_identity(const struct fresh_corrector *c)
{
	const struct fresh_corrector_layout *l = &c->layout;

	if (!fresh_corrector_residual(c))
		return false;
	for (size_t i = l->a; i < l->w1; i++) /* A and b */
		if (c->params[i] != 0.0f)
			return false;
	for (size_t i = l->w2; i < l->total; i++)
		if (c->params[i] != 0.0f)
			return false;
	return true;
}

uint64_t fresh_corrector_version(const struct fresh_corrector *c)
{
	return c->version;
}

void fresh_corrector_set_version(struct fresh_corrector *c, uint64_t v)
{
	c->version = v;
}

uint64_t fresh_corrector_trained_through(const struct fresh_corrector *c)
{
	return c->trained_through;
}

void fresh_corrector_set_trained_through(struct fresh_corrector *c,
					 uint64_t seq)
{
	c->trained_through = seq;
}

bool fresh_corrector_holdout(const struct fresh_corrector *c,
			     struct fresh_holdout *out)
{
	if (c->has_holdout && out)
		*out = c->holdout;
	return c->has_holdout;
}

void fresh_corrector_set_holdout(struct fresh_corrector *c,
				 const struct fresh_holdout *h)
{
	c->has_holdout = h != NULL;
	if (h)
		c->holdout = *h;
	else
		memset(&c->holdout, 0, sizeof c->holdout);
}

bool fresh_corrector_normalize(const struct fresh_corrector *c)
{
	return c->normalize;
}

void fresh_corrector_set_normalize(struct fresh_corrector *c, bool on)
{
	c->normalize = on;
}

enum fresh_status fresh_corrector_ws_init(struct fresh_corrector_ws *ws,
					  size_t rows, size_t hidden)
{
	memset(ws, 0, sizeof *ws);
	ws->rows = rows;
	ws->hidden = hidden;
	if (hidden == 0)
		return FRESH_OK;
	ws->z1 = fresh_alloc(rows, hidden * sizeof(float));
	ws->h1 = fresh_alloc(rows, hidden * sizeof(float));
	ws->dh = fresh_alloc(rows, hidden * sizeof(float));
	if (!ws->z1 || !ws->h1 || !ws->dh) {
		fresh_corrector_ws_free(ws);
		return FRESH_NOMEM;
	}
	return FRESH_OK;
}

void fresh_corrector_ws_free(struct fresh_corrector_ws *ws)
{
	fresh_free(ws->z1);
	fresh_free(ws->h1);
	fresh_free(ws->dh);
	memset(ws, 0, sizeof *ws);
}

static inline float gelu(float x)
{
	return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
}

static inline float gelu_grad(float x)
{
	float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
	float pdf = expf(-0.5f * x * x) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
	return cdf + x * pdf;
}

static void activate(enum fresh_activation act, const float *z, float *h,
		     size_t count)
{
	if (act == FRESH_ACT_RELU) {
		for (size_t i = 0; i < count; i++)
			h[i] = z[i] > 0.0f ? z[i] : 0.0f;
	} else {
		for (size_t i = 0; i < count; i++)
			h[i] = gelu(z[i]);
	}
}

/* Sets each of n rows of y (width w) to bias. */
static void broadcast_rows(float *y, size_t n, size_t w, const float *bias)
{
	for (size_t r = 0; r < n; r++)
		memcpy(y + r * w, bias, w * sizeof(float));
}

/* out[w] = sum of the n rows of y (width w), accumulated in double. */
static void column_sums(const float *y, size_t n, size_t w, float *out)
{
	double *acc = calloc(w, sizeof *acc);

	if (!acc) {
		/* Rare: fall back to float accumulation rather than fail. */
		memset(out, 0, w * sizeof *out);
		for (size_t r = 0; r < n; r++)
			for (size_t c = 0; c < w; c++)
				out[c] += y[r * w + c];
		return;
	}
	for (size_t r = 0; r < n; r++)
		for (size_t c = 0; c < w; c++)
			acc[c] += y[r * w + c];
	for (size_t c = 0; c < w; c++)
		out[c] = (float)acc[c];
	free(acc);
}

enum fresh_status fresh_corrector_forward(const struct fresh_corrector *c,
					  const float *x, size_t n, float *y,
					  struct fresh_corrector_ws *ws)
{
	const struct fresh_corrector_shape *s = &c->shape;
	const struct fresh_corrector_layout *l = &c->layout;
	const float *p = c->params;
	enum fresh_status st;

	if (s->kind == FRESH_CORRECTOR_NONE) {
		memcpy(y, x, n * s->d_in * sizeof(float));
		return FRESH_OK;
	}
	if (s->kind == FRESH_CORRECTOR_MLP &&
	    (!ws || ws->rows < n || ws->hidden != s->hidden))
		return FRESH_INVALID;
	broadcast_rows(y, n, s->d_out, p + l->b);
	if (fresh_corrector_residual(c))
		for (size_t i = 0; i < n * s->d_out; i++)
			y[i] += x[i];
	st = fresh_sgemm(false, true, n, s->d_out, s->d_in, 1.0f, x, s->d_in,
			 p + l->a, s->d_in, 1.0f, y, s->d_out);
	if (st != FRESH_OK || s->kind != FRESH_CORRECTOR_MLP)
		return st;
	broadcast_rows(ws->z1, n, s->hidden, p + l->b1);
	st = fresh_sgemm(false, true, n, s->hidden, s->d_in, 1.0f, x, s->d_in,
			 p + l->w1, s->d_in, 1.0f, ws->z1, s->hidden);
	if (st != FRESH_OK)
		return st;
	activate(s->act, ws->z1, ws->h1, n * s->hidden);
	return fresh_sgemm(false, true, n, s->d_out, s->hidden, 1.0f, ws->h1,
			   s->hidden, p + l->w2, s->hidden, 1.0f, y, s->d_out);
}

enum fresh_status fresh_corrector_apply(const struct fresh_corrector *c,
					const float *x, size_t n, float *y,
					struct fresh_corrector_ws *ws)
{
	const struct fresh_corrector_shape *s = &c->shape;
	const struct fresh_corrector_layout *l = &c->layout;
	const float *p = c->params;
	bool residual = fresh_corrector_residual(c);
	float *t;

	if (s->kind == FRESH_CORRECTOR_NONE) {
		memcpy(y, x, n * s->d_in * sizeof(float));
		return FRESH_OK;
	}
	if (s->kind == FRESH_CORRECTOR_MLP &&
	    (!ws || ws->rows < n || ws->hidden != s->hidden))
		return FRESH_INVALID;
	/* y = (b + x) + <x, A_i>, each term in dot.h's order. */
	fresh_dot_tile(x, s->d_in, n, p + l->a, s->d_in, s->d_out, s->d_in, y,
		       s->d_out);
	for (size_t r = 0; r < n; r++) {
		float *yr = y + r * s->d_out;
		const float *b = p + l->b, *xr = x + r * s->d_in;
		for (size_t i = 0; i < s->d_out; i++)
			yr[i] = (residual ? b[i] + xr[i] : b[i]) + yr[i];
	}
	if (s->kind != FRESH_CORRECTOR_MLP || n == 0)
		return FRESH_OK;
	/* z1 = b1 + <x, W1_h>; y += <act(z1), W2_i>. */
	fresh_dot_tile(x, s->d_in, n, p + l->w1, s->d_in, s->hidden, s->d_in,
		       ws->z1, s->hidden);
	for (size_t r = 0; r < n; r++)
		for (size_t h = 0; h < s->hidden; h++)
			ws->z1[r * s->hidden + h] += p[l->b1 + h];
	activate(s->act, ws->z1, ws->h1, n * s->hidden);
	t = fresh_alloc(n, s->d_out * sizeof(float));
	if (!t)
		return FRESH_NOMEM;
	fresh_dot_tile(ws->h1, s->hidden, n, p + l->w2, s->hidden, s->d_out,
		       s->hidden, t, s->d_out);
	for (size_t i = 0; i < n * s->d_out; i++)
		y[i] += t[i];
	fresh_free(t);
	return FRESH_OK;
}

enum fresh_status fresh_corrector_backward(const struct fresh_corrector *c,
					   const float *x, size_t n,
					   const float *dy, float *grad,
					   unsigned mask,
					   struct fresh_corrector_ws *ws)
{
	const struct fresh_corrector_shape *s = &c->shape;
	const struct fresh_corrector_layout *l = &c->layout;
	const float *p = c->params;
	enum fresh_status st = FRESH_OK;

	memset(grad, 0, l->total * sizeof *grad);
	if (s->kind == FRESH_CORRECTOR_NONE || n == 0)
		return FRESH_OK;
	if (s->kind == FRESH_CORRECTOR_MLP &&
	    (!ws || ws->rows < n || ws->hidden != s->hidden))
		return FRESH_INVALID;
	if (mask & (FRESH_GRAD_LINEAR | FRESH_GRAD_MLP))
		column_sums(dy, n, s->d_out, grad + l->b);
	if (mask & FRESH_GRAD_LINEAR)
		st = fresh_sgemm(true, false, s->d_out, s->d_in, n, 1.0f, dy,
				 s->d_out, x, s->d_in, 0.0f, grad + l->a,
				 s->d_in);
	if (st != FRESH_OK || s->kind != FRESH_CORRECTOR_MLP ||
	    !(mask & FRESH_GRAD_MLP))
		return st;
	/* dW2 = dyᵀ h1; dh = dy W2; dz = dh * act'(z1); dW1 = dzᵀ x. */
	st = fresh_sgemm(true, false, s->d_out, s->hidden, n, 1.0f, dy,
			 s->d_out, ws->h1, s->hidden, 0.0f, grad + l->w2,
			 s->hidden);
	if (st == FRESH_OK)
		st = fresh_sgemm(false, false, n, s->hidden, s->d_out, 1.0f, dy,
				 s->d_out, p + l->w2, s->hidden, 0.0f, ws->dh,
				 s->hidden);
	if (st != FRESH_OK)
		return st;
	if (s->act == FRESH_ACT_RELU) {
		for (size_t i = 0; i < n * s->hidden; i++)
			ws->dh[i] = ws->z1[i] > 0.0f ? ws->dh[i] : 0.0f;
	} else {
		for (size_t i = 0; i < n * s->hidden; i++)
			ws->dh[i] *= gelu_grad(ws->z1[i]);
	}
	column_sums(ws->dh, n, s->hidden, grad + l->b1);
	return fresh_sgemm(true, false, s->hidden, s->d_in, n, 1.0f, ws->dh,
			   s->hidden, x, s->d_in, 0.0f, grad + l->w1, s->d_in);
}

enum fresh_status fresh_corrector_fold_rows(const struct fresh_corrector *c,
					    float **out)
{
	const struct fresh_corrector_shape *s = &c->shape;
	const float *a = c->params + c->layout.a;
	float *r;

	if (s->kind != FRESH_CORRECTOR_AFFINE)
		return FRESH_INVALID;
	r = fresh_alloc(s->d_in + 1, s->d_out * sizeof(float));
	if (!r)
		return FRESH_NOMEM;
	/* A is d_out x d_in: row i of the result is its column i. */
	for (size_t o = 0; o < s->d_out; o++)
		for (size_t i = 0; i < s->d_in; i++)
			r[i * s->d_out + o] = a[o * s->d_in + i];
	memcpy(r + s->d_in * s->d_out, c->params + c->layout.b,
	       s->d_out * sizeof(float));
	*out = r;
	return FRESH_OK;
}

enum fresh_status fresh_corrector_fold(const struct fresh_corrector *c,
				       const float *fold_rows, const float *q,
				       size_t rows, float *q2, float *off)
{
	const struct fresh_corrector_shape *s = &c->shape;

	if (s->kind != FRESH_CORRECTOR_AFFINE)
		return FRESH_INVALID;
	fresh_dot_tile(q, s->d_out, rows, fold_rows, s->d_out, s->d_in,
		       s->d_out, q2, s->d_in);
	fresh_dot_tile(q, s->d_out, rows, fold_rows + s->d_in * s->d_out,
		       s->d_out, 1, s->d_out, off, 1);
	if (fresh_corrector_residual(c))
		for (size_t i = 0; i < rows * s->d_in; i++)
			q2[i] += q[i];
	return FRESH_OK;
}
