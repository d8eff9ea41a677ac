/*
 * engine_updates.c - training updates: checked against the index before
 * they are logged, so the log holds only updates that were acknowledged;
 * applied to the pair buffer by the log's callback once durable, and by
 * replay at open exactly as the live path did.
 */
#include "engine_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "datadir.h"
#include "hash.h"
#include "mem.h"

/* The log's apply callback: replay and live updates take this path. */
void fresh_engine_apply_record(void *ctx, uint64_t seq, const void *payload,
			       size_t len)
{
	struct fresh_engine *e = ctx;
	struct fresh_refitter *refitter = NULL;
	enum fresh_record_type type;
	struct fresh_update u;
	size_t dropped = 0, arrived = 0;

	if (fresh_record_decode(payload, len, &type, &u) != FRESH_OK) {
		fresh_engine_logf(e, FRESH_LOG_ERROR,
				  "update log record %" PRIu64
				  " does not decode; skipped",
				  seq);
		return;
	}
	pthread_mutex_lock(&e->mu);
	if (seq < e->switch_seq) {
		/* Written for the index a recorded switch replaced. */
		e->applied_seq = seq;
		pthread_mutex_unlock(&e->mu);
		return;
	}
	if (type == FRESH_RECORD_CLEAR) {
		fresh_pairs_clear(e->pairs);
		fresh_qbuf_clear(e->qbuf);
	} else if (type == FRESH_RECORD_EXPIRE) {
		fresh_pairs_expire(e->pairs, u.step);
	} else if (u.dim == e->shape.d_out) {
		if (fresh_qbuf_add(e->qbuf, &u, seq) != FRESH_OK)
			dropped += u.n_queries;
		for (size_t i = 0; i < u.n_targets; i++) {
			size_t row;
			bool kept;
			if (!fresh_index_find(e->index, u.ids[i], &row)) {
				dropped++;
				continue;
			}
			if (fresh_pairs_put(e->pairs, u.ids[i],
					    u.vectors + i * u.dim, u.has_step,
					    u.step, seq, &kept) != FRESH_OK)
				dropped++;
		}
		e->pairs_total += u.n_targets;
		refitter = e->refitter;
		if (refitter)
			arrived = u.n_targets;
		else
			e->replayed_pairs += u.n_targets;
	} else {
		dropped = u.n_targets;
	}
	e->applied_seq = seq;
	pthread_mutex_unlock(&e->mu);
	if (arrived)
		fresh_refitter_pairs_arrived(refitter, arrived);
	if (dropped)
		fresh_engine_logf(e, FRESH_LOG_WARN,
				  "update log record %" PRIu64
				  ": %zu pairs not buffered (unknown ids or no "
				  "memory)",
				  seq, dropped);
}

/* Finds a positive among the targets; ids small enough for a scan. */
static bool among(const uint64_t *ids, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

static enum fresh_status check_update(struct fresh_engine *e,
				      const struct fresh_index *idx,
				      const struct fresh_update *u,
				      struct fresh_error *err)
{
	size_t row;

	if (u->n_targets == 0)
		return fresh_fail(err, FRESH_INVALID,
				  "targets: at least one is needed");
	if (u->dim != e->shape.d_out)
		return fresh_fail(
			err, FRESH_INVALID,
			"targets[0].vector: %zu numbers, expected %zu", u->dim,
			e->shape.d_out);
	if (u->n_targets > UINT32_MAX || u->n_queries > UINT32_MAX)
		return fresh_fail(err, FRESH_INVALID, "too many targets");
	for (size_t i = 0; i < u->n_targets; i++) {
		if (!fresh_index_find(idx, u->ids[i], &row))
			return fresh_fail(err, FRESH_NOT_FOUND,
					  "targets[%zu].id: unknown target id "
					  "%" PRIu64,
					  i, u->ids[i]);
		for (size_t c = 0; c < u->dim; c++)
			if (!isfinite(u->vectors[i * u->dim + c]))
				return fresh_fail(err, FRESH_INVALID,
						  "targets[%zu].vector[%zu]: "
						  "not a finite number",
						  i, c);
	}
	for (size_t q = 0; q < u->n_queries; q++) {
		/* Sort-free: requests hold at most a few thousand targets. */
		if (!among(u->ids, u->n_targets, u->positives[q]))
			return fresh_fail(err, FRESH_INVALID,
					  "queries[%zu].positive: %" PRIu64
					  " is not among this update's targets",
					  q, u->positives[q]);
		for (size_t c = 0; c < u->dim; c++)
			if (!isfinite(u->queries[q * u->dim + c]))
				return fresh_fail(err, FRESH_INVALID,
						  "queries[%zu].vector[%zu]: "
						  "not a finite number",
						  q, c);
	}
	return FRESH_OK;
}

static void maybe_compact(struct fresh_engine *e)
{
	if (e->cfg.compact_bytes &&
	    fresh_wal_bytes(e->wal) > e->cfg.compact_bytes)
		fresh_refitter_request_compact(e->refitter);
}

enum fresh_status fresh_engine_update(struct fresh_engine *e,
				      const struct fresh_update *u,
				      struct fresh_update_ack *ack,
				      struct fresh_error *err)
{
	struct fresh_index *idx = fresh_engine_index(e);
	size_t size;
	void *rec;
	enum fresh_status st = check_update(e, idx, u, err);

	fresh_index_release(idx);
	if (st != FRESH_OK)
		return st;
	size = fresh_record_size(u);
	if (size == 0)
		return fresh_fail(err, FRESH_TOO_LARGE, "update too large");
	rec = malloc(size);
	if (!rec)
		return fresh_fail(err, FRESH_NOMEM, "out of memory");
	fresh_record_encode(u, rec);
	st = fresh_wal_append(e->wal, rec, size, &ack->seq, err);
	free(rec);
	if (st != FRESH_OK)
		return st;
	ack->accepted = u->n_targets;
	pthread_mutex_lock(&e->mu);
	ack->buffered = fresh_pairs_count(e->pairs);
	pthread_mutex_unlock(&e->mu);
	maybe_compact(e);
	return FRESH_OK;
}

enum fresh_status fresh_engine_clear_pairs(struct fresh_engine *e,
					   struct fresh_error *err)
{
	unsigned char rec[FRESH_RECORD_HEADER];
	uint64_t seq;

	fresh_record_encode_clear(rec);
	return fresh_wal_append(e->wal, rec, sizeof rec, &seq, err);
}
