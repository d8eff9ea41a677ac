/*
 * api_updates.c - training updates: POST /v1/updates, DELETE /v1/pairs.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"
#include "server.h"

/* One item of "targets" or "queries": an id or positive and a vector. */
bool srv_update_item(json_t *item, const char *list, size_t i,
		     const char *id_key, size_t dim, uint64_t *id, float *vec,
		     struct srv_error *e)
{
	const char *keys[] = {id_key, "vector", "vector_b64", NULL};
	json_t *v, *b;
	char path[64];

	if (!json_is_object(item))
		return srv_bad(e, "%s[%zu]: expected an object", list, i);
	if (!srv_check_keys(item, keys, e)) {
		char inner[sizeof e->msg];
		snprintf(inner, sizeof inner, "%s", e->msg);
		return srv_bad(e, "%s[%zu]: %s", list, i, inner);
	}
	snprintf(path, sizeof path, "%s[%zu].%s", list, i, id_key);
	if (!json_object_get(item, id_key))
		return srv_bad(e, "%s: missing", path);
	if (!srv_get_u64(json_object_get(item, id_key), path, id, e))
		return false;
	v = json_object_get(item, "vector");
	b = json_object_get(item, "vector_b64");
	if ((v != NULL) == (b != NULL))
		return srv_bad(e,
			       "%s[%zu]: give exactly one of vector and "
			       "vector_b64",
			       list, i);
	snprintf(path, sizeof path, "%s[%zu].%s", list, i,
		 v ? "vector" : "vector_b64");
	return srv_get_vector(v ? v : b, b != NULL, path, dim, vec, e);
}

void srv_api_updates(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"targets", "queries", "step", NULL};
	struct srv_server *srv = req->srv;
	size_t dim = fresh_engine_fresh_dim(srv->engine), nt, nq = 0;
	struct fresh_update u;
	struct fresh_update_ack ack;
	struct fresh_error ferr;
	struct srv_error e;
	json_t *body = NULL, *targets, *queries;
	uint64_t *ids = NULL, *pos = NULL;
	float *vec = NULL, *qv = NULL;
	int64_t step;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e) ||
	    !srv_field_int(body, "step", 0, INT64_MAX, -1, &step, &e))
		goto fail;
	targets = json_object_get(body, "targets");
	queries = json_object_get(body, "queries");
	if (!targets || !json_is_array(targets)) {
		srv_bad(&e, "targets: %s",
			targets ? "expected an array" : "missing");
		goto fail;
	}
	nt = json_array_size(targets);
	if (nt == 0) {
		srv_bad(&e, "targets: empty; at least one is needed");
		goto fail;
	}
	if (queries && !json_is_null(queries)) {
		if (!json_is_array(queries)) {
			srv_bad(&e, "queries: expected an array");
			goto fail;
		}
		nq = json_array_size(queries);
		if (nq > srv->cfg.max_queries) {
			srv_bad(&e, "queries: %zu, at most %zu", nq,
				srv->cfg.max_queries);
			goto fail;
		}
	}
	ids = malloc(nt * sizeof *ids);
	vec = malloc(nt * dim * sizeof *vec);
	pos = malloc((nq ? nq : 1) * sizeof *pos);
	qv = malloc((nq ? nq : 1) * dim * sizeof *qv);
	if (!ids || !vec || !pos || !qv) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	for (size_t i = 0; i < nt; i++)
		if (!srv_update_item(json_array_get(targets, i), "targets", i,
				     "id", dim, ids + i, vec + i * dim, &e))
			goto fail;
	for (size_t i = 0; i < nq; i++)
		if (!srv_update_item(json_array_get(queries, i), "queries", i,
				     "positive", dim, pos + i, qv + i * dim,
				     &e))
			goto fail;
	memset(&u, 0, sizeof u);
	u.n_targets = nt;
	u.ids = ids;
	u.vectors = vec;
	u.dim = dim;
	u.has_step = step >= 0;
	u.step = step >= 0 ? step : 0;
	u.n_queries = nq;
	u.queries = qv;
	u.positives = pos;
	st = fresh_engine_update(srv->engine, &u, &ack, &ferr);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		goto fail;
	}
	srv_reply_json(r, 202,
		       json_pack("{s:I,s:I,s:I}", "accepted",
				 (json_int_t)ack.accepted, "seq",
				 (json_int_t)ack.seq, "buffered",
				 (json_int_t)ack.buffered));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(vec);
	free(pos);
	free(qv);
}

void srv_api_pairs_delete(struct srv_request *req, struct srv_reply *r)
{
	struct fresh_error ferr;
	struct srv_error e;
	enum fresh_status st =
		fresh_engine_clear_pairs(req->srv->engine, &ferr);

	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_json(r, 200, json_pack("{s:I}", "buffered", (json_int_t)0));
}
