/*
 * api_targets.c - reading targets: GET /v1/targets/{id} (stale vector,
 * corrected vector, its pairs) and POST /v1/corrected.
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

void srv_api_target(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	size_t d, dd = fresh_engine_fresh_dim(srv->engine);
	struct fresh_target_view v;
	float *stale, *corr, *fresh;
	enum fresh_status st;
	struct srv_error e;

	d = fresh_engine_dim(srv->engine);
	stale = malloc(d * sizeof *stale);
	corr = malloc(dd * sizeof *corr);
	fresh = malloc(dd * sizeof *fresh);
	if (!stale || !corr || !fresh) {
		st = FRESH_NOMEM;
	} else {
		st = fresh_engine_target(srv->engine, req->target_id, stale,
					 corr, fresh, &v);
	}
	if (st == FRESH_OK) {
		json_t *j = json_object();
		json_object_set_new(j, "id", srv_json_u64(req->target_id));
		json_object_set_new(j, "stale", srv_json_floats(stale, d));
		json_object_set_new(j, "corrected",
				    v.corrected_ok ? srv_json_floats(corr, dd)
						   : json_null());
		json_object_set_new(j, "fresh",
				    v.has_fresh ? srv_json_floats(fresh, dd)
						: json_null());
		json_object_set_new(j, "fresh_step",
				    v.has_fresh && v.has_step
					    ? json_integer(v.step)
					    : json_null());
		json_object_set_new(j, "corrector_version",
				    json_integer((json_int_t)v.version));
		srv_reply_json(r, 200, j);
	} else {
		char msg[128];
		snprintf(msg, sizeof msg, "unknown target id %" PRIu64,
			 req->target_id);
		srv_error_from_status(&e, st,
				      st == FRESH_NOT_FOUND ? msg : NULL);
		srv_reply_error(r, &e);
	}
	free(stale);
	free(corr);
	free(fresh);
}

void srv_api_corrected(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids", NULL};
	struct srv_server *srv = req->srv;
	struct srv_error e;
	json_t *body = NULL, *out = NULL;
	uint64_t *ids = NULL, version = 0;
	size_t n = 0, dd = fresh_engine_fresh_dim(srv->engine), missing = 0;
	float *vec = NULL;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e))
		goto fail;
	if (!json_object_get(body, "ids")) {
		srv_bad(&e, "ids: missing");
		goto fail;
	}
	if (!srv_get_id_list(json_object_get(body, "ids"), "ids",
			     srv->cfg.max_queries, &ids, &n, &e))
		goto fail;
	vec = malloc((n ? n : 1) * dd * sizeof *vec);
	if (!vec) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	st = fresh_engine_corrected(srv->engine, ids, n, vec, &version,
				    &missing);
	if (st == FRESH_NOT_FOUND) {
		srv_fail(&e, 404, "not_found",
			 "ids[%zu]: unknown target id %" PRIu64, missing,
			 ids[missing]);
		goto fail;
	}
	if (st != FRESH_OK) {
		srv_error_corrected(&e, st);
		goto fail;
	}
	out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, srv_json_floats(vec + i * dd, dd));
	srv_reply_json(r, 200,
		       json_pack("{s:o,s:I}", "vectors", out,
				 "corrector_version", (json_int_t)version));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(vec);
}
