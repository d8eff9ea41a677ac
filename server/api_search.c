/*
 * api_search.c - POST /v1/search and POST /v1/negatives: parse, hand the
 * queries to the dispatcher, answer with the hits and the version of the
 * model that scored every one of them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "parse.h"
#include "server.h"

static const char *const scorings[] = {"corrected", "stale", NULL};

/* The parts of a request both endpoints share. */
struct query_req {
	json_t *body;
	float *q;
	size_t b;
	enum fresh_scoring scoring;
	uint64_t **excl;  /* b lists, or NULL */
	size_t *excl_n;
};

static void query_req_free(struct query_req *qr)
{
	srv_body_release(qr->body);
	free(qr->q);
	for (size_t i = 0; qr->excl && i < qr->b; i++)
		free(qr->excl[i]);
	free(qr->excl);
	free(qr->excl_n);
}

/* Appends list to qr's exclusions of query i. */
static bool add_exclusions(struct query_req *qr, size_t i, const uint64_t *ids,
			   size_t n, struct srv_error *e)
{
	uint64_t *grown;

	if (!qr->excl) {
		qr->excl = calloc(qr->b, sizeof *qr->excl);
		qr->excl_n = calloc(qr->b, sizeof *qr->excl_n);
		if (!qr->excl || !qr->excl_n)
			return srv_fail(e, 503, "overloaded", "out of memory");
	}
	grown = realloc(qr->excl[i], (qr->excl_n[i] + n + 1) * sizeof *grown);
	if (!grown)
		return srv_fail(e, 503, "overloaded", "out of memory");
	memcpy(grown + qr->excl_n[i], ids, n * sizeof *ids);
	qr->excl[i] = grown;
	qr->excl_n[i] += n;
	return true;
}

/* Reads "key": one id list per query into the exclusions. */
static bool read_lists(struct query_req *qr, const char *key, bool must_exist,
		       struct srv_server *srv, struct srv_error *e)
{
	json_t *v = json_object_get(qr->body, key);
	struct fresh_model *m = NULL;
	bool ok = true;

	if (!v || json_is_null(v))
		return true;
	if (!json_is_array(v))
		return srv_bad(e, "%s: expected one list of ids per query", key);
	if (json_array_size(v) != qr->b)
		return srv_bad(e, "%s: %zu lists for %zu queries; give one per "
				  "query",
			       key, json_array_size(v), qr->b);
	if (must_exist)
		m = fresh_engine_acquire(srv->engine);
	for (size_t i = 0; i < qr->b && ok; i++) {
		char path[64];
		uint64_t *ids;
		size_t n;
		snprintf(path, sizeof path, "%s[%zu]", key, i);
		ok = srv_get_id_list(json_array_get(v, i), path, SIZE_MAX / 16,
				     &ids, &n, e);
		for (size_t t = 0; ok && m && t < n; t++) {
			size_t row;
			if (!fresh_index_find(fresh_model_index(m), ids[t], &row))
				ok = srv_fail(e, 404, "not_found",
					      "%s[%zu]: unknown target id "
					      "%" PRIu64,
					      path, t, ids[t]);
		}
		if (ok)
			ok = add_exclusions(qr, i, ids, n, e);
		free(ids);
	}
	fresh_model_release(m);
	return ok;
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
	if (qr->scoring == FRESH_SCORING_STALE) {
		struct fresh_model *m = fresh_engine_acquire(srv->engine);
		dim = fresh_index_dim(fresh_model_index(m));
		fresh_model_release(m);
	} else {
		dim = fresh_engine_fresh_dim(srv->engine);
	}
	return srv_get_queries(qr->body, dim, srv->cfg.max_queries, &qr->q,
			       &qr->b, e);
}

/* Runs the job, answering errors; true when the hits are in. */
static bool run_job(struct srv_server *srv, struct srv_job *job,
		    struct srv_error *e)
{
	enum fresh_status st;

	job->hits = malloc(job->b * job->k * sizeof *job->hits);
	job->counts = malloc(job->b * sizeof *job->counts);
	if (job->op != SRV_OP_TOPK)
		job->logprob = malloc(job->b * job->k * sizeof *job->logprob);
	if (!job->hits || !job->counts ||
	    (job->op != SRV_OP_TOPK && !job->logprob)) {
		srv_error_from_status(e, FRESH_NOMEM, NULL);
		return false;
	}
	st = srv_dispatch_run(srv->dispatch, job);
	if (st == FRESH_OK)
		return true;
	if (st == FRESH_NOT_READY)
		srv_error_from_status(e, st,
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

static json_t *results_json(const struct srv_job *job)
{
	json_t *results = json_array();

	for (size_t i = 0; results && i < job->b; i++) {
		json_t *list = json_array();
		for (size_t h = 0; list && h < job->counts[i]; h++) {
			const struct fresh_hit *hit = &job->hits[i * job->k + h];
			json_t *o = json_object();
			json_object_set_new(o, "id", srv_json_u64(hit->id));
			json_object_set_new(o, "score", srv_json_float(hit->score));
			if (job->logprob)
				json_object_set_new(
					o, "logprob",
					srv_json_float(job->logprob[i * job->k + h]));
			json_array_append_new(list, o);
		}
		json_array_append_new(results, list);
	}
	return json_pack("{s:o,s:I}", "results", results, "corrector_version",
			 (json_int_t)job->version);
}

static void free_job(struct srv_job *job)
{
	free(job->hits);
	free(job->counts);
	free(job->logprob);
}

void srv_api_search(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"vector",  "vectors", "vector_b64",
					   "vectors_b64", "k", "exclude",
					   "scoring", NULL};
	struct srv_server *srv = req->srv;
	struct query_req qr;
	struct srv_job job;
	struct srv_error e;
	int64_t k;

	memset(&job, 0, sizeof job);
	if (!parse_queries(req, keys, &qr, &e) ||
	    !srv_field_int(qr.body, "k", 1, (int64_t)FRESH_MAX_K, 10, &k, &e) ||
	    !read_lists(&qr, "exclude", false, srv, &e))
		goto fail;
	job.op = SRV_OP_TOPK;
	job.scoring = qr.scoring;
	job.q = qr.q;
	job.b = qr.b;
	job.k = (size_t)k;
	job.excl = (const uint64_t *const *)qr.excl;
	job.excl_n = qr.excl_n;
	if (!run_job(srv, &job, &e))
		goto fail;
	srv_reply_json(r, 200, results_json(&job));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	free_job(&job);
	query_req_free(&qr);
}

void srv_api_negatives(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector",  "vectors",     "vector_b64", "vectors_b64",
		"positives", "exclude",   "n",          "method",
		"temperature", "seed",    "scoring",    NULL};
	static const char *const methods[] = {"topk", "sample", NULL};
	struct srv_server *srv = req->srv;
	struct query_req qr;
	struct srv_job job;
	struct srv_error e;
	int64_t n, seed;
	double temp;
	int method;

	memset(&job, 0, sizeof job);
	if (!parse_queries(req, keys, &qr, &e) ||
	    !srv_field_int(qr.body, "n", 1, (int64_t)FRESH_MAX_K, 16, &n, &e) ||
	    !srv_field_choice(qr.body, "method", methods, 0, &method, &e) ||
	    !srv_field_double(qr.body, "temperature", 1e-6, 1e6, 1.0, &temp,
			      &e) ||
	    !srv_field_int(qr.body, "seed", 0, INT64_MAX, -1, &seed, &e) ||
	    !read_lists(&qr, "positives", true, srv, &e) ||
	    !read_lists(&qr, "exclude", false, srv, &e))
		goto fail;
	if (seed < 0 && getrandom(&seed, sizeof seed, 0) != sizeof seed)
		seed = (int64_t)req->id;
	job.op = method == 1 ? SRV_OP_SAMPLE : SRV_OP_TOPK_LOGPROB;
	job.scoring = qr.scoring;
	job.q = qr.q;
	job.b = qr.b;
	job.k = (size_t)n;
	job.excl = (const uint64_t *const *)qr.excl;
	job.excl_n = qr.excl_n;
	job.temperature = (float)temp;
	job.seed = (uint64_t)seed;
	if (!run_job(srv, &job, &e))
		goto fail;
	srv_reply_json(r, 200, results_json(&job));
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	free_job(&job);
	query_req_free(&qr);
}
