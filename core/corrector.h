/*
 * corrector.h - the corrector network h, which maps a stale embedding s
 * (d_in floats) toward the current encoder's space (d_out floats):
 *
 *   mlp:    h(s) = L(s) + A s + b + W2 act(W1 s + b1)
 *   affine: h(s) = L(s) + A s + b
 *   none:   h(s) = s
 *
 * where L(s) = s when d_in == d_out (the residual form of Monath et al.;
 * with A, b, W2 zero, h is the identity) and L(s) = 0 otherwise (A is then
 * the whole linear map from the stale width to the fresh one). The affine
 * part is what the closed-form (ridge) start fits; the MLP learns what is
 * left. All parameters live in one contiguous block, in the order
 * A (d_out x d_in), b (d_out), W1 (hidden x d_in), b1 (hidden),
 * W2 (d_out x hidden), all row-major.
 *
 * A corrector is immutable once published; the trainer works on a copy.
 */
#ifndef FRESH_CORRECTOR_H
#define FRESH_CORRECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

enum fresh_corrector_kind {
	FRESH_CORRECTOR_NONE = 0,
	FRESH_CORRECTOR_AFFINE = 1,
	FRESH_CORRECTOR_MLP = 2,
};

enum fresh_activation {
	FRESH_ACT_RELU = 0,
	FRESH_ACT_GELU = 1,
};

/* Largest hidden width a corrector may have. */
#define FRESH_MAX_HIDDEN ((size_t)16384)

struct fresh_corrector_shape {
	enum fresh_corrector_kind kind;
	enum fresh_activation act;
	size_t d_in, d_out, hidden; /* hidden is 0 unless kind is mlp */
};

/*
 * How a corrector did on the held-out pairs of the refit that made it:
 * mean squared distance and mean relative squared error ||x - g||²/||g||²
 * of the stale embeddings (when the widths agree) and of the corrected
 * ones, as scored. Travels with the corrector in its checkpoint.
 */
struct fresh_holdout {
	size_t n;
	bool stale_defined; /* false when the widths differ */
	double stale_mse, corrected_mse;
	double stale_rel_err, corrected_rel_err;
};

/* Offsets of each parameter in the block, and its total size. */
struct fresh_corrector_layout {
	size_t a, b, w1, b1, w2, total;
};

struct fresh_corrector;

/* Scratch for forward/backward over up to rows rows. */
struct fresh_corrector_ws {
	size_t rows, hidden;
	float *z1; /* rows x hidden: pre-activation */
	float *h1; /* rows x hidden: activation */
	float *dh; /* rows x hidden: gradient scratch */
};

/* Which parameters fresh_corrector_backward computes gradients for. */
enum {
	FRESH_GRAD_LINEAR = 1, /* A, b */
	FRESH_GRAD_MLP = 2,    /* W1, b1, W2 (and b) */
};

const char *fresh_corrector_kind_name(enum fresh_corrector_kind kind);
const char *fresh_activation_name(enum fresh_activation act);
/* Parses "mlp", "affine", "none" / "relu", "gelu"; false if unknown. */
bool fresh_corrector_kind_parse(const char *s, enum fresh_corrector_kind *k);
bool fresh_activation_parse(const char *s, enum fresh_activation *a);

bool fresh_corrector_shape_equal(const struct fresh_corrector_shape *a,
				 const struct fresh_corrector_shape *b);
/* "mlp 768->768 hidden 1024 (relu)", for messages. */
void fresh_corrector_shape_describe(const struct fresh_corrector_shape *s,
				    char *buf, size_t cap);
/* Validates a shape (kind none needs d_in == d_out; sizes in range). */
enum fresh_status fresh_corrector_shape_check(
	const struct fresh_corrector_shape *shape, struct fresh_error *err);
struct fresh_corrector_layout fresh_corrector_layout_of(
	const struct fresh_corrector_shape *shape);

/*
 * A new corrector with all parameters zero: the identity when d_in ==
 * d_out. Caller owns it; free with fresh_corrector_free.
 */
enum fresh_status fresh_corrector_create(
	const struct fresh_corrector_shape *shape, struct fresh_corrector **out,
	struct fresh_error *err);
/* A deep copy (same version and flags). */
enum fresh_status fresh_corrector_clone(const struct fresh_corrector *c,
					struct fresh_corrector **out);
void fresh_corrector_free(struct fresh_corrector *c);

const struct fresh_corrector_shape *fresh_corrector_shape(
	const struct fresh_corrector *c);
struct fresh_corrector_layout fresh_corrector_layout(
	const struct fresh_corrector *c);
/* The parameter block (layout.total floats). */
float *fresh_corrector_params(struct fresh_corrector *c);
const float *fresh_corrector_params_const(const struct fresh_corrector *c);
/* d_in == d_out: h adds its output to s. */
bool fresh_corrector_residual(const struct fresh_corrector *c);
/* True when h(s) == s for every s (residual with A, b, W2 all zero). */
bool fresh_corrector_is_identity(const struct fresh_corrector *c);

/* Metadata carried with the parameters (checkpointed). */
uint64_t fresh_corrector_version(const struct fresh_corrector *c);
void fresh_corrector_set_version(struct fresh_corrector *c, uint64_t v);
/* The last update sequence number the training data included. */
uint64_t fresh_corrector_trained_through(const struct fresh_corrector *c);
void fresh_corrector_set_trained_through(struct fresh_corrector *c,
					 uint64_t seq);
/* The held-out quality, when the corrector came from a refit. */
bool fresh_corrector_holdout(const struct fresh_corrector *c,
			     struct fresh_holdout *out);
void fresh_corrector_set_holdout(struct fresh_corrector *c,
				 const struct fresh_holdout *h);

/*
 * Fresh rows served in place of h(s) (--serve-fresh-rows): n targets' ids
 * and their fresh embeddings (n x d_out), copied and kept sorted by id.
 * Part of the corrector: checkpointed and installed with it, applied when
 * a model materializes C (model.h). FRESH_INVALID when an id comes twice
 * (nothing changes). n = 0 clears them.
 */
enum fresh_status fresh_corrector_set_fresh_rows(struct fresh_corrector *c,
						 const uint64_t *ids,
						 const float *rows, size_t n);
/*
 * The same, with the update-log record each row came from (seqs[i] for
 * ids[i]; may be NULL: not known). The records are soft state: cloned
 * with the corrector, not checkpointed, so a corrector read back from a
 * checkpoint has none (rowage.h then serves its rows as they are).
 */
enum fresh_status fresh_corrector_set_fresh_rows_seqs(struct fresh_corrector *c,
						      const uint64_t *ids,
						      const float *rows,
						      const uint64_t *seqs,
						      size_t n);
/* The records, parallel to the ascending ids; NULL when not known. */
const uint64_t *fresh_corrector_fresh_row_seqs(const struct fresh_corrector *c);
/* How many, with borrowed pointers to the ids (ascending) and rows. */
size_t fresh_corrector_fresh_rows(const struct fresh_corrector *c,
				  const uint64_t **ids, const float **rows);

/* Whether scoring uses h(s) / ||h(s)||. */
bool fresh_corrector_normalize(const struct fresh_corrector *c);
void fresh_corrector_set_normalize(struct fresh_corrector *c, bool on);

enum fresh_status fresh_corrector_ws_init(struct fresh_corrector_ws *ws,
					  size_t rows, size_t hidden);
void fresh_corrector_ws_free(struct fresh_corrector_ws *ws);

/*
 * y[n x d_out] = h(x[n x d_in]), n <= ws->rows (ws may be NULL for kinds
 * without hidden layer). Keeps z1 and h1 in ws for a following backward.
 * Not normalized: the caller applies fresh_corrector_normalize.
 */
enum fresh_status fresh_corrector_forward(const struct fresh_corrector *c,
					  const float *x, size_t n, float *y,
					  struct fresh_corrector_ws *ws);

/*
 * Given dy = dLoss/dy for the last forward on x, writes the gradient of
 * the parameters selected by mask into grad (layout.total floats; entries
 * not selected are set to zero). Uses ws->dh as scratch.
 */
/*
 * h(x) as served: like fresh_corrector_forward, but every product in
 * dot.h's fixed order, so a row's bits depend on that row and the
 * parameters only (not on n, its neighbours or where the index was cut
 * into shards). What models materialize and /v1/corrected returns.
 */
enum fresh_status fresh_corrector_apply(const struct fresh_corrector *c,
					const float *x, size_t n, float *y,
					struct fresh_corrector_ws *ws);
enum fresh_status fresh_corrector_backward(const struct fresh_corrector *c,
					   const float *x, size_t n,
					   const float *dy, float *grad,
					   unsigned mask,
					   struct fresh_corrector_ws *ws);

/*
 * Folds an affine corrector into queries: for q of width d_out,
 * <q, h(s)> = <q', s> + off with q' = q + Aᵀq (or Aᵀq without the
 * residual) and off = <q, b>.
 *
 * fresh_corrector_fold_rows makes, once per corrector, the rows the
 * queries are scored against: (d_in + 1) x d_out floats, row i < d_in the
 * column i of A, row d_in the bias b; *out is the caller's (fresh_free).
 * fresh_corrector_fold then computes, for q (rows x d_out), q2 (rows x
 * d_in) and off (rows) with the fixed-order products of dot.h, so a
 * query's fold has the same bits whatever the other queries of the batch.
 */
enum fresh_status fresh_corrector_fold_rows(const struct fresh_corrector *c,
					    float **out);
enum fresh_status fresh_corrector_fold(const struct fresh_corrector *c,
				       const float *fold_rows, const float *q,
				       size_t rows, float *q2, float *off);

#endif
