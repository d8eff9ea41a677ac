/*
 * api_qdrant_points.c - the Qdrant surface's points: POST
 * /collections/{name}/points (retrieve by id, the corrected or stale
 * vector) and PUT /collections/{name}/points (an upsert: a training
 * update, logged exactly as /v1/updates logs one).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_qdrant.h"
#include "parse.h"
#include "server.h"

/* POST .../points: the points of some ids (unknown ids are left out). */
void srv_qdrant_retrieve(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids",	  "with_payload",
					   "with_vector", "with_vectors",
					   "shard_key",	  NULL};
	struct srv_server *srv = req->srv;
	size_t dim = srv_qdrant_width(srv, FRESH_SCORING_CORRECTED), n;
	struct srv_error e;
	json_t *body = NULL, *ids_j, *out;
	uint64_t *ids = NULL, version;
	float *vecs = NULL;
	bool *found = NULL, with_payload, with_vector;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e) ||
	    !srv_qdrant_selector(body, "with_payload", false, &with_payload,
				 &e) ||
	    !srv_qdrant_selector(body,
				 json_object_get(body, "with_vectors")
					 ? "with_vectors"
					 : "with_vector",
				 false, &with_vector, &e))
		goto fail;
	ids_j = json_object_get(body, "ids");
	if (!ids_j) {
		srv_bad(&e, "ids: missing");
		goto fail;
	}
	if (!srv_qdrant_uuid_free(ids_j, "ids", &e) ||
	    !srv_get_id_list(ids_j, "ids", srv->cfg.max_queries, &ids, &n, &e))
		goto fail;
	/* Without vectors the stale rows are read (to learn which ids exist). */
	if (!with_vector)
		dim = srv_qdrant_width(srv, FRESH_SCORING_STALE);
	vecs = malloc((n ? n : 1) * dim * sizeof *vecs);
	found = malloc((n ? n : 1) * sizeof *found);
	if (!vecs || !found) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	st = fresh_engine_vectors(srv->engine,
				  with_vector ? FRESH_SCORING_CORRECTED
					      : FRESH_SCORING_STALE,
				  ids, n, vecs, found, &version);
	if (st != FRESH_OK) {
		srv_error_corrected(&e, st);
		goto fail;
	}
	out = json_array();
	for (size_t i = 0; i < n; i++) {
		if (!found[i])
			continue;
		json_t *p = json_pack("{s:o}", "id", srv_json_u64(ids[i]));
		if (with_payload)
			json_object_set_new(p, "payload", json_object());
		if (with_vector)
			json_object_set_new(
				p, "vector",
				srv_json_floats(vecs + i * dim, dim));
		json_array_append_new(out, p);
	}
	srv_reply_qdrant(r, 200, out);
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(vecs);
	free(found);
}

/* A point's vector: a dense array, or {"": [...]} for the default name. */
static bool upsert_vector(json_t *v, const char *path, size_t dim, float *out,
			  struct srv_error *e)
{
	char at[96];

	if (json_is_object(v)) {
		json_t *d = json_object_get(v, "");
		if (!d || json_object_size(v) != 1)
			return srv_bad(e,
				       "%s: only the default (unnamed) vector "
				       "can be upserted: it is the fresh "
				       "embedding of the target",
				       path);
		snprintf(at, sizeof at, "%s[\"\"]", path);
		return srv_get_vector(d, false, at, dim, out, e);
	}
	return srv_get_vector(v, false, path, dim, out, e);
}

static bool empty_payload(json_t *p, const char *path, struct srv_error *e)
{
	if (!p || json_is_null(p) ||
	    (json_is_object(p) && !json_object_size(p)))
		return true;
	return srv_bad(e,
		       "%s: freshd stores no payloads; upsert points "
		       "without one",
		       path);
}

/*
 * Qdrant would create a point it does not have; freshd's targets are the
 * index's rows, so an unknown id is refused (400) before anything is kept.
 */
static bool known_points(struct srv_server *srv, const uint64_t *ids, size_t n,
			 bool points, struct srv_error *e)
{
	size_t dim = fresh_engine_dim(srv->engine);
	float *tmp = malloc(n * dim * sizeof *tmp);
	bool *found = malloc(n * sizeof *found);
	uint64_t version;
	bool ok = tmp && found &&
		  fresh_engine_vectors(srv->engine, FRESH_SCORING_STALE, ids, n,
				       tmp, found, &version) == FRESH_OK;

	if (!ok)
		srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; ok && i < n; i++)
		if (!found[i])
			ok = srv_bad(e,
				     "%s[%zu]%s: no point with id %" PRIu64
				     " (freshd cannot add points: an upsert is "
				     "the fresh embedding of an existing "
				     "target)",
				     points ? "points" : "batch.ids", i,
				     points ? ".id" : "", ids[i]);
	free(tmp);
	free(found);
	return ok;
}

/*
 * PUT .../points: the vectors are fresh embeddings of existing targets,
 * so an upsert is a training update (durably logged before the answer,
 * as /v1/updates); it does not change what searches return until a
 * refit publishes a corrector trained on it.
 */
void srv_qdrant_upsert(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"points",	  "batch",
					   "shard_key",	  "update_filter",
					   "update_mode", NULL};
	static const char *const modes[] = {"upsert", "update_only",
					    "insert_only", NULL};
	int mode;
	static const char *const pkeys[] = {"id", "vector", "payload", NULL};
	static const char *const bkeys[] = {"ids", "vectors", "payloads", NULL};
	struct srv_server *srv = req->srv;
	size_t dim = fresh_engine_fresh_dim(srv->engine), n = 0;
	struct srv_error e;
	json_t *body = NULL, *points, *batch, *bids = NULL, *bvecs = NULL;
	uint64_t *ids = NULL;
	float *vecs = NULL;
	struct fresh_update u;
	struct fresh_update_ack ack;
	struct fresh_error ferr;
	enum fresh_status st;
	bool wait = srv_query_flag(req, "wait");

	if (req->auth != SRV_AUTH_WRITE) {
		srv_fail(&e, 403, "forbidden",
			 "the read-only key cannot upsert points");
		goto fail;
	}
	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e) ||
	    !srv_field_choice(body, "update_mode", modes, 0, &mode, &e))
		goto fail;
	if (mode == 2) {
		srv_bad(&e, "update_mode: insert_only would change nothing: "
			    "every point of this collection exists (its "
			    "targets are the index's rows)");
		goto fail;
	}
	points = json_object_get(body, "points");
	batch = json_object_get(body, "batch");
	if ((points != NULL) == (batch != NULL)) {
		srv_bad(&e, "give exactly one of points and batch");
		goto fail;
	}
	if (json_object_get(body, "update_filter") &&
	    !json_is_null(json_object_get(body, "update_filter"))) {
		srv_bad(&e, "update_filter: not supported");
		goto fail;
	}
	if (points) {
		if (!json_is_array(points)) {
			srv_bad(&e, "points: expected an array");
			goto fail;
		}
		n = json_array_size(points);
	} else {
		if (!json_is_object(batch) ||
		    !srv_check_keys(batch, bkeys, &e)) {
			if (json_is_object(batch))
				goto fail;
			srv_bad(&e, "batch: expected an object");
			goto fail;
		}
		bids = json_object_get(batch, "ids");
		bvecs = json_object_get(batch, "vectors");
		if (!bids || !bvecs) {
			srv_bad(&e, "batch.%s: missing",
				bids ? "vectors" : "ids");
			goto fail;
		}
		if (!srv_qdrant_uuid_free(bids, "batch.ids", &e) ||
		    !srv_get_id_list(bids, "batch.ids", srv->cfg.max_queries,
				     &ids, &n, &e))
			goto fail;
		if (!json_is_array(bvecs) || json_array_size(bvecs) != n) {
			srv_bad(&e,
				"batch.vectors: expected %zu vectors, one "
				"per id",
				n);
			goto fail;
		}
		if (json_object_get(batch, "payloads") &&
		    !json_is_null(json_object_get(batch, "payloads"))) {
			json_t *ps = json_object_get(batch, "payloads");
			if (!json_is_array(ps)) {
				srv_bad(&e,
					"batch.payloads: expected an array");
				goto fail;
			}
			for (size_t i = 0; i < json_array_size(ps); i++) {
				char path[48];
				snprintf(path, sizeof path,
					 "batch.payloads[%zu]", i);
				if (!empty_payload(json_array_get(ps, i), path,
						   &e))
					goto fail;
			}
		}
	}
	if (n == 0) {
		srv_bad(&e, "%s: empty; at least one point is needed",
			points ? "points" : "batch.ids");
		goto fail;
	}
	if (n > srv->cfg.max_queries) {
		srv_bad(&e, "%zu points, at most %zu (--max-queries)", n,
			srv->cfg.max_queries);
		goto fail;
	}
	if (!ids)
		ids = malloc(n * sizeof *ids);
	vecs = malloc(n * dim * sizeof *vecs);
	if (!ids || !vecs) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		char path[48], vpath[80];
		json_t *id, *v;
		if (points) {
			json_t *p = json_array_get(points, i);
			snprintf(path, sizeof path, "points[%zu]", i);
			if (!json_is_object(p)) {
				srv_bad(&e, "%s: expected an object", path);
				goto fail;
			}
			if (!srv_check_keys(p, pkeys, &e))
				goto fail;
			snprintf(vpath, sizeof vpath, "%s.payload", path);
			if (!empty_payload(json_object_get(p, "payload"), vpath,
					   &e))
				goto fail;
			id = json_object_get(p, "id");
			v = json_object_get(p, "vector");
			snprintf(vpath, sizeof vpath, "%s.vector", path);
			snprintf(path + strlen(path),
				 sizeof path - strlen(path), ".id");
		} else {
			id = NULL; /* read above */
			v = json_array_get(bvecs, i);
			snprintf(path, sizeof path, "batch.ids[%zu]", i);
			snprintf(vpath, sizeof vpath, "batch.vectors[%zu]", i);
		}
		if (points && !id) {
			srv_bad(&e, "%s: missing", path);
			goto fail;
		}
		if (!v) {
			srv_bad(&e, "%s: missing", vpath);
			goto fail;
		}
		if ((points && !srv_qdrant_point_id(id, path, &ids[i], &e)) ||
		    !upsert_vector(v, vpath, dim, vecs + i * dim, &e))
			goto fail;
	}
	if (!known_points(srv, ids, n, points != NULL, &e))
		goto fail;
	memset(&u, 0, sizeof u);
	u.n_targets = n;
	u.ids = ids;
	u.vectors = vecs;
	u.dim = dim;
	st = fresh_engine_update(srv->engine, &u, &ack, &ferr);
	if (st != FRESH_OK) {
		srv_error_from_status(&e, st, ferr.msg);
		goto fail;
	}
	srv_reply_qdrant(r, 200,
			 json_pack("{s:I,s:s}", "operation_id",
				   (json_int_t)ack.seq, "status",
				   wait ? "completed" : "acknowledged"));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(vecs);
}
