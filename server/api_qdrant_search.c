/*
 * api_qdrant_search.c - the Qdrant surface's searches: POST
 * /collections/{name}/points/query[/batch] and .../search[/batch], parsed
 * into the same dispatcher requests /v1/search makes (same ids and
 * scores), answered in Qdrant's shapes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_qdrant.h"
#include "parse.h"
#include "server.h"

/* One nearest-neighbour request of a query or search body. */
struct qd_search {
	enum fresh_scoring scoring;
	float *q; /* width of the scoring */
	size_t limit, offset;
	bool has_threshold;
	float threshold;
	bool with_vector, with_payload;
	bool by_id; /* the query is a point's vector: skip that point */
	uint64_t id;
};

/* "using" or a named vector's "name": "" or absent is corrected. */
static bool vector_name(json_t *v, const char *path,
			enum fresh_scoring *scoring, struct srv_error *e)
{
	size_t len;
	const char *s;

	*scoring = FRESH_SCORING_CORRECTED;
	if (!v || json_is_null(v))
		return true;
	s = srv_string(v, &len);
	if (!s)
		return srv_bad(e, "%s: expected a vector name", path);
	if (len == 0 || (len == 9 && memcmp(s, "corrected", 9) == 0))
		return true;
	if (len == 5 && memcmp(s, "stale", 5) == 0) {
		*scoring = FRESH_SCORING_STALE;
		return true;
	}
	return srv_bad(e,
		       "%s: no vector named '%.64s' (this collection has the "
		       "default vector, the corrected embeddings, and "
		       "'stale')",
		       path, s);
}

/* Fields every request shares: limit, offset, score_threshold, with_*. */
static bool common_fields(json_t *o, const char *path, struct qd_search *s,
			  struct srv_error *e)
{
	int64_t limit, offset;
	double thr;
	json_t *f = json_object_get(o, "filter");
	json_t *t = json_object_get(o, "score_threshold");

	if (f && !json_is_null(f))
		return srv_bad(e,
			       "%sfilter: freshd stores no payloads, so it "
			       "cannot filter; leave filter out",
			       path);
	const char *lkey =
		!json_object_get(o, "limit") && json_object_get(o, "top")
			? "top" /* the search API's alias */
			: "limit";

	if (!srv_field_int(o, lkey, 1, (int64_t)FRESH_MAX_K, 10, &limit, e) ||
	    !srv_field_int(o, "offset", 0, (int64_t)FRESH_MAX_K, 0, &offset, e))
		return false;
	if ((size_t)(limit + offset) > FRESH_MAX_K)
		return srv_bad(e, "%slimit + offset: %" PRId64 ", at most %d",
			       path, limit + offset, (int)FRESH_MAX_K);
	s->limit = (size_t)limit;
	s->offset = (size_t)offset;
	if (t && !json_is_null(t)) {
		if (!srv_get_double(t, "score_threshold", &thr, e))
			return false;
		s->has_threshold = true;
		s->threshold = (float)thr;
	}
	return srv_qdrant_selector(o,
				   json_object_get(o, "with_vectors")
					   ? "with_vectors"
					   : "with_vector",
				   false, &s->with_vector, e) &&
	       srv_qdrant_selector(o, "with_payload", false, &s->with_payload,
				   e);
}

/* A query vector of the scoring's width into s->q. */
static bool query_vector(struct srv_server *srv, json_t *v, const char *path,
			 struct qd_search *s, struct srv_error *e)
{
	size_t dim = srv_qdrant_width(srv, s->scoring);

	s->q = malloc(dim * sizeof *s->q);
	if (!s->q)
		return srv_fail(e, 503, "overloaded", "out of memory");
	return srv_get_vector(v, false, path, dim, s->q, e);
}

/* The vector of a point, as the scoring sees it, into s->q. */
static bool point_vector(struct srv_server *srv, struct qd_search *s,
			 const char *path, struct srv_error *e)
{
	size_t dim = srv_qdrant_width(srv, s->scoring);
	uint64_t version;
	bool found = false;
	enum fresh_status st;

	s->q = malloc(dim * sizeof *s->q);
	if (!s->q)
		return srv_fail(e, 503, "overloaded", "out of memory");
	st = fresh_engine_vectors(srv->engine, s->scoring, &s->id, 1, s->q,
				  &found, &version);
	if (st != FRESH_OK) {
		srv_error_from_status(e, st, NULL);
		return false;
	}
	if (!found)
		return srv_fail(e, 404, "not_found",
				"%s: No point with id %" PRIu64 " found", path,
				s->id);
	s->by_id = true;
	return true;
}

/* A QueryRequest (POST .../points/query): nearest neighbours only. */
static bool parse_query(struct srv_server *srv, json_t *o, const char *path,
			struct qd_search *s, struct srv_error *e)
{
	static const char *const keys[] = {"query",	      "using",
					   "limit",	      "offset",
					   "score_threshold", "with_vector",
					   "with_vectors",    "with_payload",
					   "filter",	      "params",
					   "prefetch",	      "lookup_from",
					   "shard_key",	      NULL};
	json_t *q, *p = NULL;
	char at[96];

	memset(s, 0, sizeof *s);
	if (!json_is_object(o))
		return srv_bad(e, "%sexpected an object", path);
	if (!srv_check_keys(o, keys, e) ||
	    !vector_name(json_object_get(o, "using"), "using", &s->scoring,
			 e) ||
	    !common_fields(o, path, s, e))
		return false;
	p = json_object_get(o, "prefetch");
	if (p && !json_is_null(p) && !(json_is_array(p) && !json_array_size(p)))
		return srv_bad(e,
			       "%sprefetch: not supported (freshd answers "
			       "exact nearest neighbours in one stage)",
			       path);
	p = json_object_get(o, "lookup_from");
	if (p && !json_is_null(p))
		return srv_bad(e, "%slookup_from: not supported", path);
	q = json_object_get(o, "query");
	if (!q || json_is_null(q))
		return srv_bad(e,
			       "%squery: missing (freshd answers nearest-"
			       "neighbour queries: a vector, a point id or "
			       "{\"nearest\": ...})",
			       path);
	if (json_is_object(q)) {
		json_t *n = json_object_get(q, "nearest");
		if (!n || json_object_size(q) != 1)
			return srv_bad(e,
				       "%squery: only nearest-neighbour "
				       "queries are supported (a vector, a "
				       "point id or {\"nearest\": ...})",
				       path);
		q = n;
		snprintf(at, sizeof at, "%squery.nearest", path);
	} else {
		snprintf(at, sizeof at, "%squery", path);
	}
	if (srv_is_list(q, NULL))
		return query_vector(srv, q, at, s, e);
	if (json_is_object(q))
		return srv_bad(e,
			       "%s: sparse and multi-vectors are not "
			       "supported; give a dense vector",
			       at);
	return srv_qdrant_point_id(q, at, &s->id, e) &&
	       point_vector(srv, s, at, e);
}

/* A SearchRequest (POST .../points/search, Qdrant before 1.16's clients). */
static bool parse_search(struct srv_server *srv, json_t *o, const char *path,
			 struct qd_search *s, struct srv_error *e)
{
	static const char *const keys[] = {
		"vector",	"limit",	   "top",
		"offset",	"score_threshold", "with_vector",
		"with_vectors", "with_payload",	   "filter",
		"params",	"shard_key",	   NULL};
	json_t *v;
	char at[96];

	memset(s, 0, sizeof *s);
	if (!json_is_object(o))
		return srv_bad(e, "%sexpected an object", path);
	if (!srv_check_keys(o, keys, e) || !common_fields(o, path, s, e))
		return false;
	v = json_object_get(o, "vector");
	snprintf(at, sizeof at, "%svector", path);
	if (!v)
		return srv_bad(e, "%s: missing", at);
	if (json_is_object(v)) { /* a named vector: {"name", "vector"} */
		static const char *const nkeys[] = {"name", "vector", NULL};
		if (!srv_check_keys(v, nkeys, e) ||
		    !vector_name(json_object_get(v, "name"), "vector.name",
				 &s->scoring, e))
			return false;
		v = json_object_get(v, "vector");
		snprintf(at, sizeof at, "%svector.vector", path);
	}
	return query_vector(srv, v, at, s, e);
}

static void searches_free(struct qd_search *s, size_t n)
{
	for (size_t i = 0; s && i < n; i++)
		free(s[i].q);
	free(s);
}

/* The answer of one search: ScoredPoints. */
static json_t *scored_points(const struct qd_search *s,
			     const struct fresh_request *rq, size_t i,
			     const float *vecs, size_t dim, size_t *vi)
{
	json_t *list = json_array();
	size_t n = rq->counts[i];

	for (size_t h = s->offset; list && h < n && h < s->offset + s->limit;
	     h++) {
		const struct fresh_hit *hit = &rq->hits[i * rq->k + h];
		json_t *p;
		if (s->has_threshold && hit->score < s->threshold)
			break;
		p = json_object();
		json_object_set_new(p, "id", srv_json_u64(hit->id));
		json_object_set_new(p, "version",
				    json_integer((json_int_t)rq->version));
		json_object_set_new(p, "score", srv_json_float(hit->score));
		/* Qdrant leaves out what was not asked for. */
		if (s->with_payload)
			json_object_set_new(p, "payload", json_object());
		if (s->with_vector)
			json_object_set_new(
				p, "vector",
				srv_json_floats(vecs + (*vi)++ * dim, dim));
		json_array_append_new(list, p);
	}
	return list;
}

/*
 * Runs n searches: one dispatcher job per scoring (the batch endpoints
 * may mix them), each with the largest limit + offset among its searches
 * (a smaller top-k is a prefix of a larger one), then the vectors asked
 * for from the model that scored. If a refit publishes between the two,
 * the whole is asked again, so that no answer mixes versions.
 */
static bool run_searches(struct srv_server *srv, struct qd_search *s, size_t n,
			 bool query_shape, json_t **out, struct srv_error *e)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		json_t *res = json_array();
		bool ok = true, stale_version = false;

		for (size_t i = 0; ok && i < n; i++)
			json_array_append_new(res, json_null());
		for (int sc = 0; ok && sc < 2; sc++) {
			enum fresh_scoring scoring = (enum fresh_scoring)sc;
			size_t dim = srv_qdrant_width(srv, scoring), b = 0,
			       k = 1, nv = 0;
			size_t *which = malloc((n ? n : 1) * sizeof *which);
			uint64_t **excl = calloc(n ? n : 1, sizeof *excl);
			size_t *ecount = calloc(n ? n : 1, sizeof *ecount);
			uint64_t *vid = NULL, version = 0;
			float *q = NULL, *vecs = NULL;
			bool *found = NULL;
			struct srv_job job;

			memset(&job, 0, sizeof job);
			if (!which || !excl || !ecount) {
				ok = srv_fail(e, 503, "overloaded",
					      "out of memory");
				goto next;
			}
			for (size_t i = 0; i < n; i++)
				if (s[i].scoring == scoring) {
					which[b++] = i;
					if (s[i].limit + s[i].offset +
						    s[i].by_id >
					    k)
						k = s[i].limit + s[i].offset +
						    s[i].by_id;
				}
			if (b == 0)
				goto next;
			q = malloc(b * dim * sizeof *q);
			if (!q) {
				ok = srv_fail(e, 503, "overloaded",
					      "out of memory");
				goto next;
			}
			for (size_t j = 0; j < b; j++) {
				struct qd_search *x = &s[which[j]];
				memcpy(q + j * dim, x->q, dim * sizeof *q);
				if (x->by_id) {
					excl[j] = &x->id;
					ecount[j] = 1;
				}
			}
			job.req.op = FRESH_OP_TOPK;
			job.req.scoring = scoring;
			job.req.q = q;
			job.req.b = b;
			job.req.k = k;
			job.req.exclude.lists = (const uint64_t *const *)excl;
			job.req.exclude.counts = ecount;
			if (!srv_run_query_job(srv, &job, e)) {
				ok = false;
				goto next;
			}
			/* The vectors asked for, from the scoring model. */
			for (size_t j = 0; j < b; j++) {
				struct qd_search *x = &s[which[j]];
				if (x->with_vector)
					nv += job.req.counts[j];
			}
			if (nv) {
				vid = malloc(nv * sizeof *vid);
				vecs = malloc(nv * dim * sizeof *vecs);
				found = malloc(nv * sizeof *found);
				if (!vid || !vecs || !found) {
					ok = srv_fail(e, 503, "overloaded",
						      "out of memory");
					goto next;
				}
				nv = 0;
				for (size_t j = 0; j < b; j++) {
					struct qd_search *x = &s[which[j]];
					for (size_t h = x->offset;
					     x->with_vector &&
					     h < job.req.counts[j] &&
					     h < x->offset + x->limit;
					     h++) {
						const struct fresh_hit *hit =
							&job.req.hits[j * k +
								      h];
						if (x->has_threshold &&
						    hit->score < x->threshold)
							break;
						vid[nv++] = hit->id;
					}
				}
				enum fresh_status vst = fresh_engine_vectors(
					srv->engine, scoring, vid, nv, vecs,
					found, &version);
				if (vst != FRESH_OK) {
					srv_error_corrected(e, vst);
					ok = false;
					goto next;
				}
				if (version != job.req.version) {
					stale_version = true;
					goto next;
				}
			}
			nv = 0;
			for (size_t j = 0; j < b; j++) {
				json_t *pts =
					scored_points(&s[which[j]], &job.req, j,
						      vecs, dim, &nv);
				if (query_shape)
					pts = json_pack("{s:o}", "points", pts);
				json_array_set_new(res, which[j], pts);
			}
		next:
			srv_job_free(&job);
			free(q);
			free(vid);
			free(vecs);
			free(found);
			free(which);
			free(excl);
			free(ecount);
			if (stale_version)
				break;
		}
		if (ok && !stale_version) {
			*out = res;
			return true;
		}
		json_decref(res);
		if (!ok)
			return false;
	}
	return srv_fail(e, 503, "overloaded",
			"the corrector changed during every attempt; retry");
}

/* POST .../points/query, .../points/search and their /batch forms. */
void srv_qdrant_search(struct srv_request *req, struct srv_reply *r,
		       bool query_shape, bool batch)
{
	static const char *const batch_keys[] = {"searches", "timeout", NULL};
	struct srv_server *srv = req->srv;
	struct srv_error e;
	json_t *body = NULL, *list, *res = NULL;
	struct qd_search *s = NULL;
	size_t n = 1;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e))
		goto fail;
	if (batch) {
		if (!srv_check_keys(body, batch_keys, &e))
			goto fail;
		list = json_object_get(body, "searches");
		if (!list || !json_is_array(list)) {
			srv_bad(&e, "searches: %s",
				list ? "expected an array" : "missing");
			goto fail;
		}
		n = json_array_size(list);
		if (n > srv->cfg.max_queries) {
			srv_bad(&e, "searches: %zu, at most %zu", n,
				srv->cfg.max_queries);
			goto fail;
		}
	}
	s = calloc(n ? n : 1, sizeof *s);
	if (!s) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		char path[48] = "";
		json_t *o = batch ? json_array_get(list, i) : body;
		if (batch)
			snprintf(path, sizeof path, "searches[%zu].", i);
		if (!(query_shape ? parse_query(srv, o, path, &s[i], &e)
				  : parse_search(srv, o, path, &s[i], &e)))
			goto fail;
	}
	if (!run_searches(srv, s, n, query_shape, &res, &e))
		goto fail;
	if (!batch) {
		json_t *one = json_incref(json_array_get(res, 0));
		json_decref(res);
		res = one;
	}
	srv_reply_qdrant(r, 200, res);
	goto done;
fail:
	srv_reply_error(r, &e);
done:
	searches_free(s, n);
	srv_body_release(body);
}
