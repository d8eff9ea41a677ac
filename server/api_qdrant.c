/*
 * api_qdrant.c - the Qdrant-compatible surface (API.md "Qdrant-compatible
 * subset"): one collection, named by --collection, whose points are the
 * targets, whose default vector is the corrected one and whose vector
 * named "stale" is the cached one. Searches go through the same
 * dispatcher as /v1/search and give the same ids and scores; an upsert is
 * a training update, logged exactly as /v1/updates logs one.
 *
 * Shapes are Qdrant's own: {"result", "status": "ok", "time"} around a
 * success, {"status": {"error"}, "time"} around an error (reply.c), point
 * ids unsigned integers. freshd keeps no payloads: a payload asked for is
 * {}, a payload given is refused, and a filter is refused rather than
 * ignored.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"
#include "server.h"

/* The Qdrant release whose REST shapes this surface follows. */
#define QDRANT_VERSION "1.19.0"

/* One nearest-neighbour request of a query or search body. */
struct qd_search {
	enum fresh_scoring scoring;
	float *q;            /* width of the scoring */
	size_t limit, offset;
	bool has_threshold;
	float threshold;
	bool with_vector, with_payload;
	bool by_id;          /* the query is a point's vector: skip that point */
	uint64_t id;
};

static bool is_collection(struct srv_server *srv, const char *name,
			  size_t len)
{
	return strlen(srv->cfg.collection) == len &&
	       memcmp(srv->cfg.collection, name, len) == 0;
}

static bool no_collection(struct srv_error *e, const char *name, size_t len)
{
	return srv_fail(e, 404, "not_found",
			"Not found: Collection `%.*s` doesn't exist!",
			(int)(len > 255 ? 255 : len), name);
}

/* A point id: an unsigned integer (freshd has no UUID ids). */
static bool point_id(json_t *v, const char *path, uint64_t *id,
		     struct srv_error *e)
{
	if (srv_is_text(v))
		return srv_bad(e, "%s: freshd's point ids are unsigned "
				  "integers (the target ids); UUIDs are not "
				  "supported",
			       path);
	return srv_get_u64(v, path, id, e);
}

/* Refuses UUIDs in a list of point ids with point_id's message. */
static bool uuid_free(json_t *list, const char *path, struct srv_error *e)
{
	for (size_t i = 0; json_is_array(list) && i < json_array_size(list);
	     i++) {
		char at[48];
		uint64_t id;
		snprintf(at, sizeof at, "%s[%zu]", path, i);
		if (srv_is_text(json_array_get(list, i)))
			return point_id(json_array_get(list, i), at, &id, e);
	}
	return true;
}

/* with_payload / with_vector: a bool, or a selector (a list, include/exclude). */
static bool selector(json_t *obj, const char *key, bool def, bool *out,
		     struct srv_error *e)
{
	json_t *v = json_object_get(obj, key);
	size_t n;

	*out = def;
	if (!v || json_is_null(v))
		return true;
	if (json_is_boolean(v)) {
		*out = json_is_true(v);
		return true;
	}
	if (srv_is_list(v, &n)) {
		*out = n > 0;
		return true;
	}
	if (json_is_object(v)) {
		*out = true;
		return true;
	}
	return srv_bad(e, "%s: expected a boolean or a selector", key);
}

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
	return srv_bad(e, "%s: no vector named '%.64s' (this collection has the "
			  "default vector, the corrected embeddings, and "
			  "'stale')",
		       path, s);
}

static size_t width(struct srv_server *srv, enum fresh_scoring scoring)
{
	return scoring == FRESH_SCORING_STALE
		       ? fresh_engine_dim(srv->engine)
		       : fresh_engine_fresh_dim(srv->engine);
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
		return srv_bad(e, "%sfilter: freshd stores no payloads, so it "
				  "cannot filter; leave filter out",
			       path);
	const char *lkey = !json_object_get(o, "limit") && json_object_get(o, "top")
				   ? "top" /* the search API's alias */
				   : "limit";

	if (!srv_field_int(o, lkey, 1, (int64_t)FRESH_MAX_K, 10, &limit,
			   e) ||
	    !srv_field_int(o, "offset", 0, (int64_t)FRESH_MAX_K, 0, &offset,
			   e))
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
	return selector(o, json_object_get(o, "with_vectors") ? "with_vectors"
							       : "with_vector",
			false, &s->with_vector, e) &&
	       selector(o, "with_payload", false, &s->with_payload, e);
}

/* A query vector of the scoring's width into s->q. */
static bool query_vector(struct srv_server *srv, json_t *v, const char *path,
			 struct qd_search *s, struct srv_error *e)
{
	size_t dim = width(srv, s->scoring);

	s->q = malloc(dim * sizeof *s->q);
	if (!s->q)
		return srv_fail(e, 503, "overloaded", "out of memory");
	return srv_get_vector(v, false, path, dim, s->q, e);
}

/* The vector of a point, as the scoring sees it, into s->q. */
static bool point_vector(struct srv_server *srv, struct qd_search *s,
			 const char *path, struct srv_error *e)
{
	size_t dim = width(srv, s->scoring);
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
	static const char *const keys[] = {
		"query",        "using",       "limit",  "offset",
		"score_threshold", "with_vector", "with_vectors", "with_payload",
		"filter",       "params",      "prefetch", "lookup_from",
		"shard_key",    NULL};
	json_t *q, *p = NULL;
	char at[96];

	memset(s, 0, sizeof *s);
	if (!json_is_object(o))
		return srv_bad(e, "%sexpected an object", path);
	if (!srv_check_keys(o, keys, e) ||
	    !vector_name(json_object_get(o, "using"), "using", &s->scoring, e) ||
	    !common_fields(o, path, s, e))
		return false;
	p = json_object_get(o, "prefetch");
	if (p && !json_is_null(p) && !(json_is_array(p) && !json_array_size(p)))
		return srv_bad(e, "%sprefetch: not supported (freshd answers "
				  "exact nearest neighbours in one stage)",
			       path);
	p = json_object_get(o, "lookup_from");
	if (p && !json_is_null(p))
		return srv_bad(e, "%slookup_from: not supported", path);
	q = json_object_get(o, "query");
	if (!q || json_is_null(q))
		return srv_bad(e, "%squery: missing (freshd answers nearest-"
				  "neighbour queries: a vector, a point id or "
				  "{\"nearest\": ...})",
			       path);
	if (json_is_object(q)) {
		json_t *n = json_object_get(q, "nearest");
		if (!n || json_object_size(q) != 1)
			return srv_bad(e, "%squery: only nearest-neighbour "
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
		return srv_bad(e, "%s: sparse and multi-vectors are not "
				  "supported; give a dense vector",
			       at);
	return point_id(q, at, &s->id, e) && point_vector(srv, s, at, e);
}

/* A SearchRequest (POST .../points/search, Qdrant before 1.16's clients). */
static bool parse_search(struct srv_server *srv, json_t *o, const char *path,
			 struct qd_search *s, struct srv_error *e)
{
	static const char *const keys[] = {
		"vector",       "limit",       "top",    "offset",
		"score_threshold", "with_vector", "with_vectors", "with_payload",
		"filter",       "params",      "shard_key", NULL};
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
		json_object_set_new(p, "version", json_integer((json_int_t)rq->version));
		json_object_set_new(p, "score", srv_json_float(hit->score));
		/* Qdrant leaves out what was not asked for. */
		if (s->with_payload)
			json_object_set_new(p, "payload", json_object());
		if (s->with_vector)
			json_object_set_new(p, "vector",
					    srv_json_floats(vecs + (*vi)++ * dim,
							    dim));
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
static bool run_searches(struct srv_server *srv, struct qd_search *s,
			 size_t n, bool query_shape, json_t **out,
			 struct srv_error *e)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		json_t *res = json_array();
		bool ok = true, stale_version = false;

		for (size_t i = 0; ok && i < n; i++)
			json_array_append_new(res, json_null());
		for (int sc = 0; ok && sc < 2; sc++) {
			enum fresh_scoring scoring = (enum fresh_scoring)sc;
			size_t dim = width(srv, scoring), b = 0, k = 1, nv = 0;
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
					if (s[i].limit + s[i].offset + s[i].by_id > k)
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
							&job.req.hits[j * k + h];
						if (x->has_threshold &&
						    hit->score < x->threshold)
							break;
						vid[nv++] = hit->id;
					}
				}
				enum fresh_status vst = fresh_engine_vectors(
					srv->engine, scoring, vid, nv, vecs, found,
					&version);
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
				json_t *pts = scored_points(&s[which[j]], &job.req,
							    j, vecs, dim, &nv);
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
static void search_endpoint(struct srv_request *req, struct srv_reply *r,
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

/* POST .../points: the points of some ids (unknown ids are left out). */
static void retrieve(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"ids", "with_payload", "with_vector",
					   "with_vectors", "shard_key", NULL};
	struct srv_server *srv = req->srv;
	size_t dim = width(srv, FRESH_SCORING_CORRECTED), n;
	struct srv_error e;
	json_t *body = NULL, *ids_j, *out;
	uint64_t *ids = NULL, version;
	float *vecs = NULL;
	bool *found = NULL, with_payload, with_vector;
	enum fresh_status st;

	if (!srv_parse_body(req->body, req->body_len, false, &body, &e) ||
	    !srv_check_keys(body, keys, &e) ||
	    !selector(body, "with_payload", false, &with_payload, &e) ||
	    !selector(body,
		      json_object_get(body, "with_vectors") ? "with_vectors"
							    : "with_vector",
		      false, &with_vector, &e))
		goto fail;
	ids_j = json_object_get(body, "ids");
	if (!ids_j) {
		srv_bad(&e, "ids: missing");
		goto fail;
	}
	if (!uuid_free(ids_j, "ids", &e) ||
	    !srv_get_id_list(ids_j, "ids", srv->cfg.max_queries, &ids, &n, &e))
		goto fail;
	/* Without vectors the stale rows are read (to learn which ids exist). */
	if (!with_vector)
		dim = width(srv, FRESH_SCORING_STALE);
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
			json_object_set_new(p, "vector",
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
			return srv_bad(e, "%s: only the default (unnamed) vector "
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
	if (!p || json_is_null(p) || (json_is_object(p) && !json_object_size(p)))
		return true;
	return srv_bad(e, "%s: freshd stores no payloads; upsert points "
			  "without one",
		       path);
}

/*
 * Qdrant would create a point it does not have; freshd's targets are the
 * index's rows, so an unknown id is refused (400) before anything is kept.
 */
static bool known_points(struct srv_server *srv, const uint64_t *ids,
			 size_t n, bool points, struct srv_error *e)
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
			ok = srv_bad(e, "%s[%zu]%s: no point with id %" PRIu64
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
static void upsert(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {"points", "batch", "shard_key",
					   "update_filter", "update_mode", NULL};
	static const char *const modes[] = {"upsert", "update_only",
					    "insert_only", NULL};
	int mode;
	static const char *const pkeys[] = {"id", "vector", "payload", NULL};
	static const char *const bkeys[] = {"ids", "vectors", "payloads",
					    NULL};
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
		if (!json_is_object(batch) || !srv_check_keys(batch, bkeys, &e)) {
			if (json_is_object(batch))
				goto fail;
			srv_bad(&e, "batch: expected an object");
			goto fail;
		}
		bids = json_object_get(batch, "ids");
		bvecs = json_object_get(batch, "vectors");
		if (!bids || !bvecs) {
			srv_bad(&e, "batch.%s: missing", bids ? "vectors" : "ids");
			goto fail;
		}
		if (!uuid_free(bids, "batch.ids", &e) ||
		    !srv_get_id_list(bids, "batch.ids", srv->cfg.max_queries,
				     &ids, &n, &e))
			goto fail;
		if (!json_is_array(bvecs) || json_array_size(bvecs) != n) {
			srv_bad(&e, "batch.vectors: expected %zu vectors, one "
				    "per id",
				n);
			goto fail;
		}
		if (json_object_get(batch, "payloads") &&
		    !json_is_null(json_object_get(batch, "payloads"))) {
			json_t *ps = json_object_get(batch, "payloads");
			if (!json_is_array(ps)) {
				srv_bad(&e, "batch.payloads: expected an array");
				goto fail;
			}
			for (size_t i = 0; i < json_array_size(ps); i++) {
				char path[48];
				snprintf(path, sizeof path, "batch.payloads[%zu]", i);
				if (!empty_payload(json_array_get(ps, i), path, &e))
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
			snprintf(path + strlen(path), sizeof path - strlen(path),
				 ".id");
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
		if ((points && !point_id(id, path, &ids[i], &e)) ||
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

/*
 * CollectionInfo in Qdrant 1.19's shape. freshd keeps no graph (m = 0 is
 * Qdrant's "no HNSW": every search is an exact scan), no payloads and one
 * segment; the optimizer figures are Qdrant's defaults, reported because
 * typed clients require the fields.
 */
static json_t *collection_info(struct srv_server *srv)
{
	struct fresh_engine_info info;

	fresh_engine_info(srv->engine, &info);
	return json_pack(
		"{s:s,s:s,s:I,s:I,s:i,"
		"s:{s:{s:{s:I,s:s},s:i,s:i,s:i,s:b},"
		"s:{s:i,s:i,s:i,s:i},"
		"s:{s:f,s:i,s:i,s:n,s:n,s:n,s:i,s:n},"
		"s:{s:i,s:i},s:n},"
		"s:{},s:{s:i}}",
		"status", "green", "optimizer_status", "ok",
		"points_count", (json_int_t)info.targets,
		"indexed_vectors_count", (json_int_t)0, "segments_count", 1,
		"config", "params", "vectors", "size", (json_int_t)info.fresh_dim,
		"distance", "Dot", "shard_number", 1, "replication_factor", 1,
		"write_consistency_factor", 1, "on_disk_payload", 1,
		"hnsw_config", "m", 0, "ef_construct", 100,
		"full_scan_threshold", 10000, "max_indexing_threads", 0,
		"optimizer_config", "deleted_threshold", 0.2,
		"vacuum_min_vector_number", 1000, "default_segment_number", 0,
		"max_segment_size", "memmap_threshold", "indexing_threshold",
		"flush_interval_sec", 5, "max_optimization_threads",
		"wal_config", "wal_capacity_mb", 32, "wal_segments_ahead", 0,
		"quantization_config", "payload_schema", "update_queue",
		"length", 0);
}

void srv_api_qdrant_root(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_json(r, 200,
		       json_pack("{s:s,s:s,s:s}", "title",
				 "qdrant - vector search engine", "version",
				 QDRANT_VERSION, "freshd", FRESHD_VERSION));
}

void srv_api_qdrant(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	const char *url = req->url, *name, *rest;
	const char *m = req->method;
	struct srv_error e;
	size_t len;

	if (strcmp(url, "/collections") == 0) {
		srv_reply_qdrant(r, 200,
				 json_pack("{s:[{s:s}]}", "collections", "name",
					   srv->cfg.collection));
		return;
	}
	name = url + strlen("/collections/");
	len = strcspn(name, "/");
	rest = name + len;
	if (strcmp(rest, "/exists") == 0 && strcmp(m, "GET") == 0) {
		srv_reply_qdrant(r, 200,
				 json_pack("{s:b}", "exists",
					   is_collection(srv, name, len)));
		return;
	}
	if (!is_collection(srv, name, len)) {
		no_collection(&e, name, len);
		srv_reply_error(r, &e);
		return;
	}
	if (strcmp(rest, "") == 0 && strcmp(m, "GET") == 0)
		srv_reply_qdrant(r, 200, collection_info(srv));
	else if (strcmp(rest, "/points/query") == 0 && strcmp(m, "POST") == 0)
		search_endpoint(req, r, true, false);
	else if (strcmp(rest, "/points/query/batch") == 0 &&
		 strcmp(m, "POST") == 0)
		search_endpoint(req, r, true, true);
	else if (strcmp(rest, "/points/search") == 0 && strcmp(m, "POST") == 0)
		search_endpoint(req, r, false, false);
	else if (strcmp(rest, "/points/search/batch") == 0 &&
		 strcmp(m, "POST") == 0)
		search_endpoint(req, r, false, true);
	else if (strcmp(rest, "/points") == 0 && strcmp(m, "POST") == 0)
		retrieve(req, r);
	else if (strcmp(rest, "/points") == 0 && strcmp(m, "PUT") == 0)
		upsert(req, r);
	else if (strcmp(rest, "") == 0 || strcmp(rest, "/points") == 0 ||
		 strcmp(rest, "/points/query") == 0 ||
		 strcmp(rest, "/points/query/batch") == 0 ||
		 strcmp(rest, "/points/search") == 0 ||
		 strcmp(rest, "/points/search/batch") == 0) {
		const char *allow = strcmp(rest, "") == 0	  ? "GET"
				    : strcmp(rest, "/points") == 0 ? "POST, PUT"
								   : "POST";
		srv_fail(&e, 405, "method_not_allowed",
			 "freshd does not implement %s %.300s (allowed: %s)", m,
			 url, allow);
		snprintf(r->allow, sizeof r->allow, "%s", allow);
		srv_reply_error(r, &e);
	} else {
		srv_fail(&e, 404, "not_found",
			 "freshd does not implement %s %.300s (its Qdrant-"
			 "compatible subset: GET /collections[/{name}[/exists]], "
			 "POST /collections/{name}/points[/query[/batch]|/search"
			 "[/batch]], PUT /collections/{name}/points)",
			 m, url);
		srv_reply_error(r, &e);
	}
}
