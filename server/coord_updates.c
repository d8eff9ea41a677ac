/*
 * coord_updates.c - POST /v1/updates routed to the shards that own the
 * targets, checked in full first; POST /v1/corrected gathered from the
 * owning shards.
 */
/* Messages that name a shard may be cut to their buffers; that is fine. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coord_impl.h"
#include "log.h"
#include "parse.h"

/* ---- updates ---------------------------------------------------------- */

void srv_coord_updates(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"targets", "queries", "step", NULL};
	struct srv_coord *c = req->srv->coord;
	struct srv_call *calls = NULL;
	struct srv_error e;
	json_t *body = NULL, *targets, *queries, **parts = NULL;
	char **bodies = NULL;
	size_t *lens = NULL, nt = 0, nq = 0, dim;
	uint64_t *ids = NULL, *pos = NULL, accepted = 0, seq = 0, buffered = 0;
	float *vec = NULL, *qv = NULL;
	int *own = NULL;
	bool *which = NULL, ok;
	int64_t step;
	int bad;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	pthread_mutex_lock(&c->mu);
	dim = c->fresh_dim;
	pthread_mutex_unlock(&c->mu);
	ok = srv_parse_body(req->body, req->body_len, false, &body, &e) &&
	     srv_check_keys(body, keys, &e) &&
	     srv_field_int(body, "step", 0, INT64_MAX, -1, &step, &e);
	targets = json_object_get(body, "targets");
	queries = json_object_get(body, "queries");
	if (ok && (!targets || !json_is_array(targets)))
		ok = srv_bad(&e, "targets: %s",
			     targets ? "expected an array" : "missing");
	if (ok && (nt = json_array_size(targets)) == 0)
		ok = srv_bad(&e, "targets: empty; at least one is needed");
	if (ok && queries && !json_is_null(queries)) {
		if (!json_is_array(queries))
			ok = srv_bad(&e, "queries: expected an array");
		else if ((nq = json_array_size(queries)) >
			 c->srv->cfg.max_queries)
			ok = srv_bad(&e, "queries: %zu, at most %zu", nq,
				     c->srv->cfg.max_queries);
	}
	if (ok) {
		ids = malloc(nt * sizeof *ids);
		vec = malloc(nt * dim * sizeof *vec);
		pos = malloc((nq ? nq : 1) * sizeof *pos);
		qv = malloc((nq ? nq : 1) * dim * sizeof *qv);
		own = malloc(nt * sizeof *own);
		which = calloc(c->n, sizeof *which);
		parts = calloc(c->n, sizeof *parts);
		bodies = calloc(c->n, sizeof *bodies);
		lens = calloc(c->n, sizeof *lens);
		calls = calloc(c->n, sizeof *calls);
		if (!ids || !vec || !pos || !qv || !own || !which || !parts ||
		    !bodies || !lens || !calls)
			ok = srv_fail(&e, 503, "overloaded", "out of memory");
	}
	for (size_t i = 0; ok && i < nt; i++)
		ok = srv_update_item(json_array_get(targets, i), "targets", i,
				     "id", dim, ids + i, vec + i * dim, &e);
	for (size_t i = 0; ok && i < nq; i++)
		ok = srv_update_item(json_array_get(queries, i), "queries", i,
				     "positive", dim, pos + i, qv + i * dim,
				     &e);
	srv_body_release(body);
	if (ok) {
		pthread_rwlock_rdlock(&c->ids_lock);
		for (size_t i = 0; ok && i < nt; i++) {
			own[i] = coord_owner_locked(c, ids[i]);
			if (own[i] < 0)
				ok = srv_fail(&e, 404, "not_found",
					      "targets[%zu].id: unknown target "
					      "id %" PRIu64,
					      i, ids[i]);
		}
		pthread_rwlock_unlock(&c->ids_lock);
	}
	for (size_t q = 0; ok && q < nq; q++) {
		size_t t = 0;
		while (t < nt && ids[t] != pos[q])
			t++;
		if (t == nt)
			ok = srv_bad(&e,
				     "queries[%zu].positive: %" PRIu64
				     " is not among this update's targets",
				     q, pos[q]);
	}
	/* Each shard's part: its targets, the queries of its positives. */
	for (size_t s = 0; ok && s < c->n; s++) {
		json_t *ts = json_array(), *qs = json_array();
		for (size_t i = 0; ts && i < nt; i++) {
			json_t *b64;
			if (own[i] != (int)s)
				continue;
			b64 = coord_b64(vec + i * dim, dim);
			if (!b64 || json_array_append_new(
					    ts, json_pack("{s:o,s:o}", "id",
							  srv_json_u64(ids[i]),
							  "vector_b64", b64)))
				ok = false;
		}
		for (size_t q = 0; qs && q < nq; q++) {
			size_t t = 0;
			json_t *b64;
			while (ids[t] != pos[q])
				t++;
			if (own[t] != (int)s)
				continue;
			b64 = coord_b64(qv + q * dim, dim);
			if (!b64 ||
			    json_array_append_new(
				    qs, json_pack("{s:o,s:o}", "positive",
						  srv_json_u64(pos[q]),
						  "vector_b64", b64)))
				ok = false;
		}
		if (!ok || !ts || !qs) {
			json_decref(ts);
			json_decref(qs);
			ok = srv_fail(&e, 503, "overloaded", "out of memory");
			break;
		}
		which[s] = json_array_size(ts) > 0;
		if (!which[s]) {
			json_decref(ts);
			json_decref(qs);
			continue;
		}
		parts[s] = json_pack("{s:o,s:o}", "targets", ts, "queries", qs);
		if (parts[s] && step >= 0)
			json_object_set_new(parts[s], "step",
					    json_integer(step));
		bodies[s] = parts[s] ? coord_dump(parts[s], &lens[s]) : NULL;
		parts[s] = NULL;
		if (!bodies[s])
			ok = srv_fail(&e, 503, "overloaded", "out of memory");
	}
	if (!ok) {
		srv_reply_error(r, &e);
		goto done;
	}
	bad = coord_fan_out(c, which, "POST", "/v1/updates", "application/json",
			    bodies, lens, NULL, 0, CALL_TIMEOUT, calls);
	if (coord_fan_check(c, which, bad, calls, r)) {
		pthread_mutex_lock(&c->mu);
		for (size_t s = 0; s < c->n; s++) {
			json_t *j;
			if (!which[s])
				continue;
			j = json_loadb(calls[s].body, calls[s].len, 0, NULL);
			accepted += (uint64_t)json_integer_value(
				json_object_get(j, "accepted"));
			c->shards[s].seq = (uint64_t)json_integer_value(
				json_object_get(j, "seq"));
			c->shards[s].buffered = (uint64_t)json_integer_value(
				json_object_get(j, "buffered"));
			json_decref(j);
		}
		for (size_t s = 0; s < c->n; s++) {
			seq += c->shards[s].seq;
			buffered += c->shards[s].buffered;
		}
		c->pairs_since += nt;
		if (c->srv->cfg.engine.refit_every_pairs &&
		    c->pairs_since >= c->srv->cfg.engine.refit_every_pairs &&
		    !c->running) {
			c->want = c->want_full = true;
			pthread_cond_broadcast(&c->cv);
		}
		pthread_mutex_unlock(&c->mu);
		srv_reply_json(r, 202,
			       json_pack("{s:I,s:I,s:I}", "accepted",
					 (json_int_t)accepted, "seq",
					 (json_int_t)seq, "buffered",
					 (json_int_t)buffered));
	} else if (bad >= 0 || r->status >= 500) {
		/* Say what may have been logged. */
		srv_log(SRV_WARN,
			"update %" PRIu64 " failed on a shard; other "
			"shards may have logged their part",
			req->id);
	}
	coord_fan_done(c, calls);
done:
	for (size_t s = 0; bodies && s < c->n; s++)
		free(bodies[s]);
	free(bodies);
	free(parts);
	free(lens);
	free(calls);
	free(which);
	free(own);
	free(ids);
	free(vec);
	free(pos);
	free(qv);
}

void srv_coord_corrected(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids", NULL};
	struct srv_coord *c = req->srv->coord;
	struct srv_call *calls = NULL;
	struct srv_error e;
	json_t *body = NULL;
	uint64_t *ids = NULL, version = 0;
	size_t n = 0, dim;
	int *own = NULL;
	char **bodies = NULL;
	size_t *lens = NULL;
	bool *which = NULL, ok, skew = false;
	float *out = NULL;
	int bad;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	pthread_mutex_lock(&c->mu);
	dim = c->fresh_dim;
	pthread_mutex_unlock(&c->mu);
	ok = srv_parse_body(req->body, req->body_len, false, &body, &e) &&
	     srv_check_keys(body, keys, &e);
	if (ok && !json_object_get(body, "ids"))
		ok = srv_bad(&e, "ids: missing");
	if (ok)
		ok = srv_get_id_list(json_object_get(body, "ids"), "ids",
				     c->srv->cfg.max_queries, &ids, &n, &e);
	srv_body_release(body);
	if (ok) {
		own = malloc((n ? n : 1) * sizeof *own);
		which = calloc(c->n, sizeof *which);
		bodies = calloc(c->n, sizeof *bodies);
		lens = calloc(c->n, sizeof *lens);
		calls = calloc(c->n, sizeof *calls);
		out = malloc((n ? n : 1) * dim * sizeof *out);
		if (!own || !which || !bodies || !lens || !calls || !out)
			ok = srv_fail(&e, 503, "overloaded", "out of memory");
	}
	if (ok) {
		pthread_rwlock_rdlock(&c->ids_lock);
		for (size_t i = 0; ok && i < n; i++)
			if ((own[i] = coord_owner_locked(c, ids[i])) < 0)
				ok = srv_fail(&e, 404, "not_found",
					      "ids[%zu]: unknown target id "
					      "%" PRIu64,
					      i, ids[i]);
		pthread_rwlock_unlock(&c->ids_lock);
	}
	for (size_t s = 0; ok && s < c->n; s++) {
		json_t *list = json_array();
		for (size_t i = 0; i < n; i++)
			if (own[i] == (int)s)
				json_array_append_new(list,
						      srv_json_u64(ids[i]));
		which[s] = json_array_size(list) > 0;
		bodies[s] =
			coord_dump(json_pack("{s:o}", "ids", list), &lens[s]);
		if (!bodies[s])
			ok = srv_fail(&e, 503, "overloaded", "out of memory");
	}
	if (!ok) {
		srv_reply_error(r, &e);
		goto done;
	}
	if (!coord_publish_rdlock(c, r))
		goto done;
	bad = coord_fan_out(c, which, "POST", "/v1/corrected",
			    "application/json", bodies, lens, NULL, 0,
			    CALL_TIMEOUT, calls);
	pthread_rwlock_unlock(&c->publish);
	if (coord_fan_check(c, which, bad, calls, r)) {
		bool first = true;
		for (size_t s = 0; ok && s < c->n; s++) {
			json_t *j = NULL, *vecs;
			size_t got = 0;
			if (!which[s])
				continue;
			if (!srv_parse_body(calls[s].body, calls[s].len, false,
					    &j, &e)) {
				ok = false;
				coord_reply_unavailable(r, &c->shards[s],
							"answer is not JSON");
				break;
			}
			vecs = json_object_get(j, "vectors");
			uint64_t v = (uint64_t)json_integer_value(
				json_object_get(j, "corrector_version"));
			if (!first && v != version)
				skew = true;
			version = v;
			first = false;
			for (size_t i = 0; ok && i < n; i++) {
				if (own[i] != (int)s)
					continue;
				ok = srv_get_vector(json_array_get(vecs, got++),
						    false, "vectors", dim,
						    out + i * dim, &e);
			}
			srv_body_release(j);
			if (!ok)
				coord_reply_unavailable(
					r, &c->shards[s],
					"answer of another shape");
		}
		if (first) { /* no id asked: the version served now */
			pthread_mutex_lock(&c->mu);
			version = c->shards[0].version;
			pthread_mutex_unlock(&c->mu);
		}
		if (ok && skew) {
			srv_fail(&e, 503, "shard_unavailable",
				 "the shards serve different corrector "
				 "versions; retry shortly");
			e.retry_after = 1;
			srv_reply_error(r, &e);
			coord_await_round(c);
		} else if (ok) {
			json_t *vecs = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append_new(
					vecs,
					srv_json_floats(out + i * dim, dim));
			srv_reply_json(r, 200,
				       json_pack("{s:o,s:I}", "vectors", vecs,
						 "corrector_version",
						 (json_int_t)version));
		}
	}
	coord_fan_done(c, calls);
done:
	for (size_t s = 0; bodies && s < c->n; s++)
		free(bodies[s]);
	free(bodies);
	free(lens);
	free(calls);
	free(which);
	free(own);
	free(ids);
	free(out);
}
