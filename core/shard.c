/*
 * shard.c - the core's side of sharding (API.md --shards): what a
 * coordinator reads of a shard (its ids, its buffered pairs with their
 * stale rows: the format, encoded here, snapshotted by engine_shard.c)
 * and the coordinator's refit on the pairs gathered from every shard.
 *
 * Design: a coordinator holds no index, so its refit trains on the stale
 * rows the shards sent with their pairs, through the same recipe as a
 * daemon's (trainer.h): an index is built of just those rows, which is
 * all fresh_refit_train reads of one. What comes out is a checkpoint the
 * shards install (PUT /v1/corrector/checkpoint), each materializing it
 * over its own rows.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "bytes.h"
#include "engine.h"
#include "index.h"
#include "mem.h"
#include "model.h"
#include "pairs.h"
#include "shard.h"

#define EXPORT_MAGIC "FRSHPRS1"
#define EXPORT_HEADER 40 /* magic, n, d_in, d_out, version */
#define RECORD_HEADER 24 /* id, step, flags */

size_t fresh_engine_pairs_record(size_t d_in, size_t d_out)
{
	return RECORD_HEADER + (d_in + d_out) * sizeof(float);
}

static void put_floats(unsigned char *p, const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &x[i], sizeof u);
		fresh_put32(p + 4 * i, u);
	}
}

static void get_floats(const unsigned char *p, float *x, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = fresh_get32(p + 4 * i);
		memcpy(&x[i], &u, sizeof u);
	}
}

enum fresh_status fresh_shard_encode_pairs(
	const struct fresh_pairs_snapshot *snap, struct fresh_model *m,
	void **buf, size_t *len)
{
	const struct fresh_index *idx = fresh_model_index(m);
	size_t d_in = fresh_index_dim(idx), d_out = snap->dim, rec, n = 0, row;
	unsigned char *out, *p;

	rec = fresh_engine_pairs_record(d_in, d_out);
	out = malloc(EXPORT_HEADER + snap->n * rec);
	if (!out)
		return FRESH_NOMEM;
	p = out + EXPORT_HEADER;
	for (size_t i = 0; i < snap->n; i++) {
		/* A pair whose id left the index (a reload) is not one. */
		if (!fresh_index_find(idx, snap->ids[i], &row))
			continue;
		fresh_put64(p, snap->ids[i]);
		fresh_put64(p + 8, (uint64_t)snap->steps[i]);
		fresh_put64(p + 16, snap->has_step[i] ? 1 : 0);
		put_floats(p + RECORD_HEADER,
			   fresh_index_vectors(idx) + row * d_in, d_in);
		put_floats(p + RECORD_HEADER + d_in * sizeof(float),
			   snap->g + i * d_out, d_out);
		p += rec;
		n++;
	}
	memcpy(out, EXPORT_MAGIC, 8);
	fresh_put64(out + 8, n);
	fresh_put64(out + 16, d_in);
	fresh_put64(out + 24, d_out);
	fresh_put64(out + 32, fresh_model_version(m));
	*buf = out;
	*len = EXPORT_HEADER + n * rec;
	return FRESH_OK;
}

enum fresh_status fresh_engine_pairs_import(const void *buf, size_t len,
					    struct fresh_shard_pairs *into,
					    struct fresh_error *err)
{
	const unsigned char *p = buf;
	uint64_t n, d_in, d_out;
	size_t rec, old;

	if (len < EXPORT_HEADER || memcmp(p, EXPORT_MAGIC, 8) != 0)
		return fresh_fail(err, FRESH_FORMAT,
				  "not a pair export (%zu bytes)", len);
	n = fresh_get64(p + 8);
	d_in = fresh_get64(p + 16);
	d_out = fresh_get64(p + 24);
	if (d_in == 0 || d_out == 0 || d_in > FRESH_MAX_DIM ||
	    d_out > FRESH_MAX_DIM)
		return fresh_fail(err, FRESH_FORMAT,
				  "pair export of widths %" PRIu64
				  " and %" PRIu64,
				  d_in, d_out);
	rec = fresh_engine_pairs_record(d_in, d_out);
	if (n > (len - EXPORT_HEADER) / rec || len != EXPORT_HEADER + n * rec)
		return fresh_fail(err, FRESH_FORMAT,
				  "pair export of %" PRIu64 " pairs is %zu "
				  "bytes, expected %zu",
				  n, len, EXPORT_HEADER + (size_t)n * rec);
	if (into->n && (into->d_in != d_in || into->d_out != d_out))
		return fresh_fail(err, FRESH_CONFLICT,
				  "pairs of widths %" PRIu64 " and %" PRIu64
				  " where others had %zu and %zu",
				  d_in, d_out, into->d_in, into->d_out);
	if (n == 0)
		return FRESH_OK;
	old = into->n;
	if (fresh_engine_pairs_reserve(into, old + n, d_in, d_out) != FRESH_OK)
		return fresh_fail(err, FRESH_NOMEM,
				  "no memory for %" PRIu64 " pairs", n);
	p += EXPORT_HEADER;
	for (size_t i = old; i < old + n; i++, p += rec) {
		into->ids[i] = fresh_get64(p);
		into->steps[i] = (int64_t)fresh_get64(p + 8);
		into->has_step[i] = (fresh_get64(p + 16) & 1) != 0;
		get_floats(p + RECORD_HEADER, into->stale + i * d_in, d_in);
		get_floats(p + RECORD_HEADER + d_in * sizeof(float),
			   into->fresh + i * d_out, d_out);
	}
	into->n = old + n;
	return FRESH_OK;
}

enum fresh_status fresh_engine_pairs_reserve(struct fresh_shard_pairs *p,
					     size_t n, size_t d_in,
					     size_t d_out)
{
	void *a, *b, *c, *d, *f;

	if (n <= p->cap)
		return FRESH_OK;
	if (n < 2 * p->cap)
		n = 2 * p->cap;
	a = realloc(p->ids, n * sizeof *p->ids);
	if (a)
		p->ids = a;
	b = realloc(p->steps, n * sizeof *p->steps);
	if (b)
		p->steps = b;
	c = realloc(p->has_step, n * sizeof *p->has_step);
	if (c)
		p->has_step = c;
	d = realloc(p->stale, n * d_in * sizeof *p->stale);
	if (d)
		p->stale = d;
	f = realloc(p->fresh, n * d_out * sizeof *p->fresh);
	if (f)
		p->fresh = f;
	if (!a || !b || !c || !d || !f)
		return FRESH_NOMEM;
	p->cap = n;
	p->d_in = d_in;
	p->d_out = d_out;
	return FRESH_OK;
}

void fresh_engine_pairs_free(struct fresh_shard_pairs *p)
{
	free(p->ids);
	free(p->steps);
	free(p->has_step);
	free(p->stale);
	free(p->fresh);
	memset(p, 0, sizeof *p);
}

enum fresh_status fresh_engine_fit(const void *current, size_t current_len,
				   const struct fresh_shard_pairs *pairs,
				   const struct fresh_refit_config *cfg,
				   const atomic_bool *cancel, void **ckpt,
				   size_t *ckpt_len,
				   struct fresh_refit_report *rep,
				   struct fresh_error *err)
{
	struct fresh_corrector *cur = NULL, *cand = NULL;
	struct fresh_index *idx = NULL;
	struct fresh_pairs_snapshot snap;
	struct fresh_qgroups groups = {0, NULL};
	struct fresh_refit_config c = *cfg;
	enum fresh_status st;

	*ckpt = NULL;
	*ckpt_len = 0;
	memset(rep, 0, sizeof *rep);
	st = fresh_corrector_deserialize(current, current_len, &cur, err);
	if (st != FRESH_OK)
		return st;
	if (pairs->n && (pairs->d_in != fresh_corrector_shape(cur)->d_in ||
			 pairs->d_out != fresh_corrector_shape(cur)->d_out)) {
		fresh_corrector_free(cur);
		return fresh_fail(err, FRESH_CONFLICT,
				  "pairs of widths %zu and %zu for a corrector "
				  "of %zu and %zu",
				  pairs->d_in, pairs->d_out,
				  fresh_corrector_shape(cur)->d_in,
				  fresh_corrector_shape(cur)->d_out);
	}
	memset(&snap, 0, sizeof snap);
	snap.n = pairs->n;
	snap.dim = fresh_corrector_shape(cur)->d_out;
	snap.ids = pairs->ids;
	snap.g = pairs->fresh;
	snap.steps = pairs->steps;
	snap.has_step = pairs->has_step;
	if (c.rows_only || pairs->n < c.min_pairs || pairs->n == 0) {
		struct fresh_refit_report r;

		rep->pairs = pairs->n;
		snprintf(rep->reason, sizeof rep->reason,
			 "%zu pairs buffered on the shards; a refit needs "
			 "--min-pairs %zu",
			 pairs->n, c.min_pairs);
		r = *rep;
		if (c.rows_only || c.serve_fresh_rows) {
			/* No training: the serving network, new rows. */
			fresh_refit_report_serving(cur, rep);
			st = fresh_refit_rows(cur, &snap, &c, &cand, rep, err);
			if (st == FRESH_OK && !cand && !c.rows_only)
				*rep = r; /* the reason is the pairs */
		}
	} else {
		st = fresh_index_create(pairs->n, pairs->d_in, pairs->stale,
					pairs->ids, "pairs from the shards",
					&idx, err);
		/* Updates' queries stay on the shards: no logit term. */
		c.logit_weight = 0;
		if (st == FRESH_OK)
			st = fresh_refit_train(idx, &snap, &groups, cur, &c,
					       NULL, cancel, &cand, rep, err);
		fresh_index_release(idx);
	}
	if (st == FRESH_OK && cand) {
		fresh_corrector_set_version(cand,
					    fresh_corrector_version(cur) + 1);
		if (!rep->network_kept) /* else the network's own */
			fresh_corrector_set_holdout(cand, &rep->holdout);
		st = fresh_corrector_serialize(cand, ckpt, ckpt_len);
		if (st != FRESH_OK)
			fresh_fail(err, st, "could not encode the corrector");
	}
	fresh_corrector_free(cand);
	fresh_corrector_free(cur);
	return st;
}

uint64_t fresh_engine_checkpoint_version(const void *buf, size_t len)
{
	struct fresh_corrector *c;
	struct fresh_error err;
	uint64_t v;

	if (!buf || fresh_corrector_deserialize(buf, len, &c, &err) != FRESH_OK)
		return 0;
	v = fresh_corrector_version(c);
	fresh_corrector_free(c);
	return v;
}
