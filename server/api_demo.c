/*
 * api_demo.c - with --demo only: the "new encoder" the demo corpus drifted
 * to, so a walk-through can post real fresh embeddings and check answers
 * against the truth.
 *
 *   POST /v1/demo/fresh {"ids": [...]}          -> {"vectors": [[...]]}
 *   POST /v1/demo/truth {"vector(s)": ..., "k"}  -> top-k under fresh
 *                                                  embeddings of all targets
 */
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "server.h"

static bool need_demo(struct srv_request *req, struct srv_error *e)
{
	if (req->srv->demo)
		return true;
	return srv_fail(e, 404, "not_found",
			"demo endpoints exist only with --demo");
}

void srv_api_demo_fresh(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids", NULL};
	struct srv_server *srv = req->srv;
	struct srv_error e;
	json_t *body = NULL, *out;
	uint64_t *ids = NULL;
	size_t n, *rows = NULL, d = srv->cfg.demo_dim;
	float *vec = NULL;

	if (!need_demo(req, &e) ||
	    !srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e))
		goto fail;
	if (!json_object_get(body, "ids")) {
		srv_bad(&e, "ids: missing");
		goto fail;
	}
	if (!srv_get_id_list(json_object_get(body, "ids"), "ids", 65536, &ids,
			     &n, &e))
		goto fail;
	rows = malloc((n ? n : 1) * sizeof *rows);
	vec = malloc((n ? n : 1) * d * sizeof *vec);
	if (!rows || !vec) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= srv->cfg.demo_size) {
			srv_fail(&e, 404, "not_found",
				 "ids[%zu]: unknown target id %llu", i,
				 (unsigned long long)ids[i]);
			goto fail;
		}
		rows[i] = (size_t)ids[i];
	}
	if (fresh_demo_fresh(srv->demo, rows, n, vec) != FRESH_OK) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, srv_json_floats(vec + i * d, d));
	srv_reply_json(r, 200, json_pack("{s:o}", "vectors", out));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(ids);
	free(rows);
	free(vec);
}

void srv_api_demo_truth(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector", "vectors", "vector_b64", "vectors_b64", "k", NULL};
	struct srv_server *srv = req->srv;
	struct srv_error e;
	json_t *body = NULL, *results;
	float *q = NULL;
	size_t b, d = srv->cfg.demo_dim, *counts = NULL;
	struct fresh_hit *hits = NULL;
	int64_t k;

	if (!need_demo(req, &e) ||
	    !srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e) ||
	    !srv_field_int(body, "k", 1, (int64_t)FRESH_MAX_K, 10, &k, &e) ||
	    !srv_get_queries(body, d, srv->cfg.max_queries, &q, &b, &e))
		goto fail;
	hits = malloc(b * (size_t)k * sizeof *hits);
	counts = malloc(b * sizeof *counts);
	if (!hits || !counts) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	{
		enum fresh_status st = fresh_demo_truth(
			srv->demo, fresh_engine_search_pool(srv->engine), q, b,
			(size_t)k, hits, counts);
		if (st != FRESH_OK) {
			srv_error_from_status(&e, st, NULL);
			goto fail;
		}
	}
	results = json_array();
	for (size_t i = 0; i < b; i++) {
		json_t *list = json_array();
		for (size_t h = 0; h < counts[i]; h++)
			json_array_append_new(
				list,
				json_pack("{s:o,s:o}", "id",
					  srv_json_u64(
						  hits[i * (size_t)k + h].id),
					  "score",
					  srv_json_float(hits[i * (size_t)k + h]
								 .score)));
		json_array_append_new(results, list);
	}
	srv_reply_json(r, 200, json_pack("{s:o}", "results", results));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_body_release(body);
	free(q);
	free(hits);
	free(counts);
}
