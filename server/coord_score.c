/*
 * coord_score.c - POST /v1/search and /v1/negatives over the shards: checked
 * here, sent to every shard, merged exactly (coord.c says why it is exact).
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

/* ---- search and negatives --------------------------------------------- */

struct hitd {
	uint64_t id;
	float score;
	double key; /* negatives: the merge key */
};

/* One shard's answer: hits of b queries, at most k each. */
struct answer {
	size_t *counts;	   /* b */
	struct hitd *hits; /* b x k */
	double *log_z;	   /* b, negatives */
	uint64_t version;
};

static void answer_free(struct answer *a)
{
	free(a->counts);
	free(a->hits);
	free(a->log_z);
}

static double exact_of(json_t *v)
{
	const char *s = json_string_value(v);

	return s ? strtod(s, NULL) : -INFINITY;
}

/* Reads a shard's search or negatives answer (detail: keys and log Z). */
static bool read_answer_json(const struct srv_call *call, size_t b, size_t k,
			     bool detail, struct answer *a, char *why,
			     size_t cap)
{
	struct srv_error e;
	json_t *body = NULL, *results, *log_z = NULL;
	bool ok = false;

	memset(a, 0, sizeof *a);
	a->counts = calloc(b, sizeof *a->counts);
	a->hits = malloc(b * k * sizeof *a->hits);
	a->log_z = malloc(b * sizeof *a->log_z);
	if (!a->counts || !a->hits || !a->log_z) {
		snprintf(why, cap, "out of memory");
		return false;
	}
	if (!srv_parse_body(call->body, call->len, false, &body, &e)) {
		snprintf(why, cap, "answer is not JSON: %s", e.msg);
		return false;
	}
	results = json_object_get(body, "results");
	if (detail)
		log_z = json_object_get(body, "log_z");
	if (!json_is_array(results) || json_array_size(results) != b ||
	    !json_is_integer(json_object_get(body, "corrector_version")) ||
	    (detail &&
	     (!json_is_array(log_z) || json_array_size(log_z) != b))) {
		snprintf(why, cap, "answer of another shape");
		goto out;
	}
	a->version = (uint64_t)json_integer_value(
		json_object_get(body, "corrector_version"));
	for (size_t i = 0; i < b; i++) {
		json_t *list = json_array_get(results, i);
		size_t n = json_array_size(list);
		if (!json_is_array(list) || n > k) {
			snprintf(why, cap, "answer of another shape");
			goto out;
		}
		for (size_t h = 0; h < n; h++) {
			json_t *o = json_array_get(list, h);
			struct hitd *d = &a->hits[i * k + h];
			double sc;
			if (!srv_get_u64(json_object_get(o, "id"), "id", &d->id,
					 &e) ||
			    !srv_get_double(json_object_get(o, "score"),
					    "score", &sc, &e)) {
				snprintf(why, cap, "answer with a bad hit: %s",
					 e.msg);
				goto out;
			}
			d->score = (float)sc;
			d->key = detail ? exact_of(json_object_get(o, "key"))
					: 0.0;
		}
		a->counts[i] = n;
		a->log_z[i] =
			detail ? exact_of(json_array_get(log_z, i)) : -INFINITY;
	}
	ok = true;
out:
	srv_body_release(body);
	return ok;
}

static int cmp_score(const void *a, const void *b)
{
	const struct hitd *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static int cmp_key(const void *a, const void *b)
{
	const struct hitd *x = a, *y = b;

	if (x->key != y->key)
		return x->key > y->key ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/*
 * Reads every shard's answer and merges query by query: the k first by
 * score (or by key, with logprobs from the shards' log Z). 503 when the
 * shards' versions differ; *skew then says so, to retry.
 */
static json_t *merge(struct srv_coord *c, struct srv_call *calls, size_t b,
		     size_t k, bool negatives, double inv_t, bool *skew,
		     struct srv_reply *r)
{
	struct answer *a = calloc(c->n, sizeof *a);
	struct hitd *all = malloc(c->n * k * sizeof *all);
	json_t *results = NULL, *out = NULL;
	char why[300];
	size_t s;

	*skew = false;
	if (!a || !all) {
		struct srv_error e;
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		goto out;
	}
	for (s = 0; s < c->n; s++)
		if (!read_answer_json(&calls[s], b, k, negatives, &a[s], why,
				      sizeof why)) {
			coord_reply_unavailable(r, &c->shards[s], why);
			goto out;
		}
	for (s = 1; s < c->n; s++)
		if (a[s].version != a[0].version) {
			*skew = true;
			goto out;
		}
	results = json_array();
	for (size_t i = 0; results && i < b; i++) {
		json_t *list = json_array();
		size_t m = 0;
		double mm = -INFINITY, ss = 0.0, log_z;

		for (s = 0; s < c->n; s++) {
			memcpy(all + m, a[s].hits + i * k,
			       a[s].counts[i] * sizeof *all);
			m += a[s].counts[i];
			if (a[s].log_z[i] > mm)
				mm = a[s].log_z[i];
		}
		for (s = 0; negatives && s < c->n; s++)
			if (a[s].log_z[i] > -INFINITY)
				ss += exp(a[s].log_z[i] - mm);
		log_z = mm + log(ss);
		qsort(all, m, sizeof *all, negatives ? cmp_key : cmp_score);
		for (size_t h = 0; list && h < m && h < k; h++) {
			json_t *o = json_object();
			json_object_set_new(o, "id", srv_json_u64(all[h].id));
			json_object_set_new(o, "score",
					    srv_json_float(all[h].score));
			if (negatives)
				json_object_set_new(
					o, "logprob",
					srv_json_float(
						(float)((double)all[h].score *
								inv_t -
							log_z)));
			json_array_append_new(list, o);
		}
		json_array_append_new(results, list);
	}
	out = json_pack("{s:o,s:I}", "results", results, "corrector_version",
			(json_int_t)a[0].version);
out:
	for (s = 0; a && s < c->n; s++)
		answer_free(&a[s]);
	free(a);
	free(all);
	return out;
}

/*
 * Runs a scoring fan-out until the shards agree on the version: each try
 * sends bodies to every shard under the publish lock's read side.
 */
static void score_all(struct srv_coord *c, char *const *bodies,
		      const size_t *lens, const char *body, size_t len,
		      const char *path, size_t b, size_t k, bool negatives,
		      double inv_t, struct srv_reply *r)
{
	struct srv_call *calls = calloc(c->n, sizeof *calls);
	bool skew = true;

	if (!calls) {
		struct srv_error e;
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		return;
	}
	for (int t = 0; t < VERSION_TRIES && skew; t++) {
		json_t *j = NULL;
		int bad;

		if (t > 0)
			coord_await_round(c); /* the health thread repairs it */
		if (!coord_publish_rdlock(c, r)) {
			skew = false;
			break;
		}
		bad = coord_fan_out(c, NULL, "POST", path, "application/json",
				    bodies, lens, body, len, CALL_TIMEOUT,
				    calls);
		pthread_rwlock_unlock(&c->publish);
		if (coord_fan_check(c, NULL, bad, calls, r))
			j = merge(c, calls, b, k, negatives, inv_t, &skew, r);
		else
			skew = false;
		coord_fan_done(c, calls);
		if (j)
			srv_reply_json(r, 200, j);
		if (!skew)
			break;
	}
	if (skew) {
		struct srv_error e;
		srv_fail(&e, 503, "shard_unavailable",
			 "the shards serve different corrector versions; "
			 "the coordinator is installing the newest on every "
			 "shard");
		e.retry_after = 1;
		srv_reply_error(r, &e);
	}
	free(calls);
}

static const char *const scorings[] = {"corrected", "stale", NULL};

/* The queries of a request, checked as a daemon checks them. */
static bool read_queries(struct srv_coord *c, json_t *body,
			 const char *const *keys, float **q, size_t *b,
			 int *scoring, size_t *dim, struct srv_error *e)
{
	if (!srv_check_keys(body, keys, e) ||
	    !srv_field_choice(body, "scoring", scorings, 0, scoring, e))
		return false;
	pthread_mutex_lock(&c->mu);
	*dim = *scoring == 1 ? c->dim : c->fresh_dim;
	pthread_mutex_unlock(&c->mu);
	return srv_get_queries(body, *dim, c->srv->cfg.max_queries, q, b, e);
}

void srv_coord_search(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector", "vectors", "vector_b64", "vectors_b64",
		"k",	  "exclude", "scoring",	   NULL};
	struct srv_coord *c = req->srv->coord;
	struct srv_error e;
	json_t *body = NULL;
	float *q = NULL;
	size_t b, dim;
	int scoring;
	int64_t k;
	bool ok;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	/* Checked here so that a bad request never reaches a shard. */
	ok = srv_parse_body(req->body, req->body_len, false, &body, &e) &&
	     read_queries(c, body, keys, &q, &b, &scoring, &dim, &e) &&
	     srv_field_int(body, "k", 1, (int64_t)FRESH_MAX_K, 10, &k, &e);
	if (ok && json_object_get(body, "exclude") &&
	    !json_is_null(json_object_get(body, "exclude"))) {
		size_t n;
		if (!srv_is_list(json_object_get(body, "exclude"), &n) ||
		    n != b)
			ok = srv_bad(&e, "exclude: expected one list of ids "
					 "per query");
	}
	srv_body_release(body);
	free(q);
	if (!ok) {
		srv_reply_error(r, &e);
		return;
	}
	/* Every shard gets the body as it came: exclusions of ids a shard
	 * does not serve exclude nothing there. */
	score_all(c, NULL, NULL, req->body, req->body_len, "/v1/search", b,
		  (size_t)k, false, 0.0, r);
}

/* One id list per query; lists NULL when absent. */
struct lists {
	uint64_t **ids;
	size_t *n;
};

static void lists_free(struct lists *l, size_t b)
{
	for (size_t i = 0; l->ids && i < b; i++)
		free(l->ids[i]);
	free(l->ids);
	free(l->n);
}

static bool read_lists(json_t *body, const char *key, size_t b, struct lists *l,
		       struct srv_error *e)
{
	json_t *v = json_object_get(body, key);
	size_t n;

	memset(l, 0, sizeof *l);
	if (!v || json_is_null(v))
		return true;
	if (!srv_is_list(v, &n) || !json_is_array(v))
		return srv_bad(e, "%s: expected one list of ids per query",
			       key);
	if (n != b)
		return srv_bad(e,
			       "%s: %zu lists for %zu queries; give one per "
			       "query",
			       key, n, b);
	l->ids = calloc(b, sizeof *l->ids);
	l->n = calloc(b, sizeof *l->n);
	if (!l->ids || !l->n)
		return srv_fail(e, 503, "overloaded", "out of memory");
	for (size_t i = 0; i < b; i++) {
		char path[64];
		snprintf(path, sizeof path, "%s[%zu]", key, i);
		if (!srv_get_id_list(json_array_get(v, i), path, SIZE_MAX / 16,
				     &l->ids[i], &l->n[i], e))
			return false;
	}
	return true;
}

/* The ids of l that shard s serves, one list per query (ids_lock held). */
static json_t *lists_for(struct srv_coord *c, const struct lists *l, size_t b,
			 int s)
{
	json_t *out = json_array();

	for (size_t i = 0; out && i < b; i++) {
		json_t *list = json_array();
		for (size_t j = 0; list && j < l->n[i]; j++)
			if (coord_owner_locked(c, l->ids[i][j]) == s)
				json_array_append_new(
					list, srv_json_u64(l->ids[i][j]));
		json_array_append_new(out, list);
	}
	return out;
}

void srv_coord_negatives(struct srv_request *req, struct srv_reply *r)
{
	static const char *const keys[] = {
		"vector",      "vectors", "vector_b64", "vectors_b64",
		"positives",   "exclude", "n",		"method",
		"temperature", "seed",	  "scoring",	NULL};
	static const char *const methods[] = {"topk", "sample", NULL};
	struct srv_coord *c = req->srv->coord;
	struct lists pos = {NULL, NULL}, exc = {NULL, NULL};
	char **bodies = NULL;
	size_t *lens = NULL;
	struct srv_error e;
	json_t *body = NULL;
	float *q = NULL;
	size_t b = 0, dim;
	int scoring, method;
	int64_t n, seed;
	double temp;
	bool ok;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	ok = srv_parse_body(req->body, req->body_len, false, &body, &e) &&
	     read_queries(c, body, keys, &q, &b, &scoring, &dim, &e) &&
	     srv_field_int(body, "n", 1, (int64_t)FRESH_MAX_K, 16, &n, &e) &&
	     srv_field_choice(body, "method", methods, 0, &method, &e) &&
	     srv_field_double(body, "temperature", 1e-6, 1e6, 1.0, &temp, &e) &&
	     srv_field_int(body, "seed", 0, INT64_MAX, -1, &seed, &e) &&
	     read_lists(body, "positives", b, &pos, &e) &&
	     read_lists(body, "exclude", b, &exc, &e);
	srv_body_release(body);
	if (ok && seed < 0) {
		/* One seed for every shard, so that they draw as one. */
		uint64_t s =
			(uint64_t)(coord_wall_now() * 1e9) ^ (req->id << 32);
		seed = (int64_t)(s >> 1);
	}
	bodies = calloc(c->n, sizeof *bodies);
	lens = calloc(c->n, sizeof *lens);
	if (ok && (!bodies || !lens))
		ok = srv_fail(&e, 503, "overloaded", "out of memory");
	if (ok) {
		pthread_rwlock_rdlock(&c->ids_lock);
		for (size_t i = 0; ok && pos.ids && i < b; i++)
			for (size_t j = 0; ok && j < pos.n[i]; j++)
				if (coord_owner_locked(c, pos.ids[i][j]) < 0)
					ok = srv_fail(&e, 404, "not_found",
						      "positives[%zu][%zu]: "
						      "unknown target id "
						      "%" PRIu64,
						      i, j, pos.ids[i][j]);
		for (size_t s = 0; ok && s < c->n; s++) {
			json_t *vecs = json_array(), *j;
			for (size_t i = 0; vecs && i < b; i++)
				if (json_array_append_new(
					    vecs,
					    coord_b64(q + i * dim, dim))) {
					json_decref(vecs);
					vecs = NULL;
				}
			j = json_pack("{s:o,s:I,s:s,s:o,s:I,s:s,s:b}",
				      "vectors_b64", vecs, "n", (json_int_t)n,
				      "method", methods[method], "temperature",
				      srv_json_float((float)temp), "seed",
				      (json_int_t)seed, "scoring",
				      scorings[scoring], "detail", 1);
			if (j && pos.ids)
				json_object_set_new(
					j, "positives",
					lists_for(c, &pos, b, (int)s));
			if (j && exc.ids)
				json_object_set_new(
					j, "exclude",
					lists_for(c, &exc, b, (int)s));
			bodies[s] = j ? coord_dump(j, &lens[s]) : NULL;
			if (!bodies[s])
				ok = srv_fail(&e, 503, "overloaded",
					      "out of memory");
		}
		pthread_rwlock_unlock(&c->ids_lock);
	}
	if (ok)
		score_all(c, bodies, lens, NULL, 0, "/v1/negatives", b,
			  (size_t)n, true, 1.0 / (double)(float)temp, r);
	else
		srv_reply_error(r, &e);
	for (size_t s = 0; bodies && s < c->n; s++)
		free(bodies[s]);
	free(bodies);
	free(lens);
	free(q);
	lists_free(&pos, b);
	lists_free(&exc, b);
}
