/*
 * api_search.c - POST /v1/search and POST /v1/negatives: parse, hand the
 * queries to the dispatcher, answer with the hits and the version of the
 * model that scored every one of them.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "parse.h"
#include "server.h"

static const char *const scorings[] = {"corrected", "stale", NULL};

/* One list of ids per query, as read from the body. */
struct id_lists {
	uint64_t **lists; /* b lists, or NULL when the field is absent */
	size_t *counts;
};

/* The parts of a request both endpoints share. */
struct query_req {
	json_t *body;
	float *q;
	size_t b;
	enum fresh_scoring scoring;
	struct id_lists positives, exclude;
};

static void id_lists_free(struct id_lists *l, size_t b)
{
	for (size_t i = 0; l->lists && i < b; i++)
		free(l->lists[i]);
	free(l->lists);
	free(l->counts);
}

static void query_req_free(struct query_req *qr)
{
	srv_body_release(qr->body);
	free(qr->q);
	id_lists_free(&qr->positives, qr->b);
	id_lists_free(&qr->exclude, qr->b);
}

static struct fresh_id_lists as_core(const struct id_lists *l)
{
	struct fresh_id_lists c = {(const uint64_t *const *)l->lists,
				   l->counts};
	return c;
}

/*
 * Reads "key": one id list per query. Whether the ids exist is checked
 * where they are used, on the model that scores the request.
 */
static bool read_lists(struct query_req *qr, const char *key,
		       struct id_lists *out, struct srv_error *e)
{
	json_t *v = json_object_get(qr->body, key);

	if (!v || json_is_null(v))
		return true;
	if (!json_is_array(v))
		return srv_bad(e, "%s: expected one list of ids per query",
			       key);
	if (json_array_size(v) != qr->b)
		return srv_bad(e,
			       "%s: %zu lists for %zu queries; give one per "
			       "query",
			       key, json_array_size(v), qr->b);
	out->lists = calloc(qr->b, sizeof *out->lists);
	out->counts = calloc(qr->b, sizeof *out->counts);
	if (!out->lists || !out->counts)
		return srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; i < qr->b; i++) {
		char path[64];
		snprintf(path, sizeof path, "%s[%zu]", key, i);
		if (!srv_get_id_list(json_array_get(v, i), path, SIZE_MAX / 16,
				     &out->lists[i], &out->counts[i], e))
			return false;
	}
	return true;
}

static bool parse_queries(struct srv_request *req, const char *const *keys,
			  struct query_req *qr, struct srv_error *e)
{
	struct srv_server *srv = req->srv;
	int scoring;
	size_t dim;

	memset(qr, 0, sizeof *qr);
	if (!srv_parse_body(req->body, req->body_len, false, &qr->body, e) ||
	    !srv_check_keys(qr->body, keys, e) ||
	    !srv_field_choice(qr->body, "scoring", scorings, 0, &scoring, e))
		return false;
	qr->scoring = (enum fresh_scoring)scoring;
	dim = qr->scoring == FRESH_SCORING_STALE
		      ? fresh_engine_dim(srv->engine)
		      : fresh_engine_fresh_dim(srv->engine);
	return srv_get_queries(qr->body, dim, srv->cfg.max_queries, &qr->q,
			       &qr->b, e);
}

bool srv_run_query_job(struct srv_server *srv, struct srv_job *job,
		       struct srv_error *e)
{
	struct fresh_request *rq = &job->req;
	bool logprob = rq->op != FRESH_OP_TOPK;
	enum fresh_status st;

	rq->hits = malloc(rq->b * rq->k * sizeof *rq->hits);
	rq->counts = malloc(rq->b * sizeof *rq->counts);
	if (logprob)
		rq->logprob = malloc(rq->b * rq->k * sizeof *rq->logprob);
	if (logprob && job->detail) {
		rq->keys = malloc(rq->b * rq->k * sizeof *rq->keys);
		rq->log_z = malloc(rq->b * sizeof *rq->log_z);
	}
	if (!rq->hits || !rq->counts || (logprob && !rq->logprob) ||
	    (job->detail && logprob && (!rq->keys || !rq->log_z))) {
		srv_error_from_status(e, FRESH_NOMEM, NULL);
		return false;
	}
	st = srv_dispatch_run(srv->dispatch, job);
	if (st == FRESH_OK)
		return true;
	if (st == FRESH_NOT_FOUND)
		return srv_fail(
			e, 404, "not_found",
			"positives[%zu][%zu]: unknown target id %" PRIu64,
			rq->missing_query, rq->missing_index, rq->missing_id);
	if (st == FRESH_NOT_READY)
		srv_error_from_status(
			e, st,
			"corrected scoring is not ready: the fresh "
			"width differs from the index's and no "
			"corrector has been fitted yet (post "
			"updates, then POST /v1/refit)");
	else if (st == FRESH_BUSY)
		srv_error_from_status(e, st,
				      "too many queries queued; retry shortly");
	else if (st == FRESH_CANCELLED)
		srv_error_from_status(e, st, "shutting down");
	else
		srv_error_from_status(e, st, NULL);
	return false;
}

/* A double that must survive the trip exactly (replies print 9 digits). */
static json_t *exact_double(double x)
{
	char buf[40];

	if (!(x > -INFINITY))
		return json_null();
	snprintf(buf, sizeof buf, "%.17g", x);
	return json_string(buf);
}

static json_t *results_json(const struct fresh_request *rq)
{
	json_t *results = json_array(), *log_z = NULL;

	for (size_t i = 0; results && i < rq->b; i++) {
		json_t *list = json_array();
		for (size_t h = 0; list && h < rq->counts[i]; h++) {
			const struct fresh_hit *hit = &rq->hits[i * rq->k + h];
			json_t *o = json_object();
			json_object_set_new(o, "id", srv_json_u64(hit->id));
			json_object_set_new(o, "score",
					    srv_json_float(hit->score));
			if (rq->logprob)
				json_object_set_new(
					o, "logprob",
					srv_json_float(
						rq->logprob[i * rq->k + h]));
			if (rq->keys)
				json_object_set_new(
					o, "key",
					exact_double(rq->keys[i * rq->k + h]));
			json_array_append_new(list, o);
		}
		json_array_append_new(results, list);
	}
	if (rq->log_z) {
		log_z = json_array();
		for (size_t i = 0; log_z && i < rq->b; i++)
			json_array_append_new(log_z,
					      exact_double(rq->log_z[i]));
		return json_pack("{s:o,s:I,s:o}", "results", results,
				 "corrector_version", (json_int_t)rq->version,
				 "log_z", log_z);
	}
	return json_pack("{s:o,s:I}", "results", results, "corrector_version",
			 (json_int_t)rq->version);
}

void srv_job_free(struct srv_job *job)
{
	free(job->req.hits);
	free(job->req.counts);
	free(job->req.logprob);
	free(job->req.keys);
	free(job->req.log_z);
}

void srv_api_search(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector", "vectors", "vector_b64", "vectors_b64",
		"k",	  "exclude", "scoring",	   NULL};
	struct srv_server *srv = req->srv;
	struct query_req qr;
	struct srv_job job;
	struct srv_error e;
	int64_t k;

	memset(&job, 0, sizeof job);
	if (!parse_queries(req, keys, &qr, &e) ||
	    !srv_field_int(qr.body, "k", 1, (int64_t)FRESH_MAX_K, 10, &k, &e) ||
	    !read_lists(&qr, "exclude", &qr.exclude, &e))
		goto fail;
	job.req.op = FRESH_OP_TOPK;
	job.req.scoring = qr.scoring;
	job.req.q = qr.q;
	job.req.b = qr.b;
	job.req.k = (size_t)k;
	job.req.exclude = as_core(&qr.exclude);
	if (!srv_run_query_job(srv, &job, &e))
		goto fail;
	srv_reply_json(r, 200, results_json(&job.req));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_job_free(&job);
	query_req_free(&qr);
}

void srv_api_negatives(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector",  "vectors", "vector_b64", "vectors_b64", "positives",
		"exclude", "n",	      "method",	    "temperature", "seed",
		"scoring", "detail",  NULL};
	static const char *const methods[] = {"topk", "sample", NULL};
	struct srv_server *srv = req->srv;
	struct query_req qr;
	struct srv_job job;
	struct srv_error e;
	int64_t n, seed;
	double temp;
	int method;
	json_t *detail;

	memset(&job, 0, sizeof job);
	if (!parse_queries(req, keys, &qr, &e) ||
	    !srv_field_int(qr.body, "n", 1, (int64_t)FRESH_MAX_K, 16, &n, &e) ||
	    !srv_field_choice(qr.body, "method", methods, 0, &method, &e) ||
	    !srv_field_double(qr.body, "temperature", 1e-6, 1e6, 1.0, &temp,
			      &e) ||
	    !srv_field_int(qr.body, "seed", 0, INT64_MAX, -1, &seed, &e) ||
	    !read_lists(&qr, "positives", &qr.positives, &e) ||
	    !read_lists(&qr, "exclude", &qr.exclude, &e))
		goto fail;
	detail = json_object_get(qr.body, "detail");
	if (detail && !json_is_boolean(detail)) {
		srv_bad(&e, "detail: expected true or false");
		goto fail;
	}
	job.detail = detail && json_is_true(detail);
	if (seed < 0 && getrandom(&seed, sizeof seed, 0) != sizeof seed)
		seed = (int64_t)req->id;
	job.req.op = method == 1 ? FRESH_OP_SAMPLE : FRESH_OP_TOPK_LOGPROB;
	job.req.scoring = qr.scoring;
	job.req.q = qr.q;
	job.req.b = qr.b;
	job.req.k = (size_t)n;
	job.req.positives = as_core(&qr.positives);
	job.req.exclude = as_core(&qr.exclude);
	job.req.temperature = (float)temp;
	job.req.seed = (uint64_t)seed;
	if (!srv_run_query_job(srv, &job, &e))
		goto fail;
	srv_reply_json(r, 200, results_json(&job.req));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	srv_job_free(&job);
	query_req_free(&qr);
}
