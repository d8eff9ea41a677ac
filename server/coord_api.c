/*
 * coord_api.c - the coordinator's probes, info, metrics and corrector, and
 * what it forwards as it is: to every shard (reset, checkpoint, pairs) or to
 * one (a target, the checkpoint, the query map).
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

/* ---- probes, info, the corrector -------------------------------------- */

void srv_coord_healthz(struct srv_request *req, struct srv_reply *r)
{
	(void)req;
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void srv_coord_readyz(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	srv_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
}

static json_t *shards_json(struct srv_coord *c)
{
	json_t *a = json_array();

	pthread_rwlock_rdlock(&c->ids_lock);
	pthread_mutex_lock(&c->mu);
	for (size_t s = 0; a && s < c->n; s++) {
		const struct shard *sh = &c->shards[s];
		char fp[32];
		snprintf(fp, sizeof fp, "%016" PRIx64, sh->fingerprint);
		json_array_append_new(
			a, json_pack("{s:s,s:b,s:I,s:s,s:I,s:s?}", "url",
				     srv_client_url(sh->client), "ready",
				     sh->up, "targets", (json_int_t)sh->n,
				     "fingerprint", fp, "corrector_version",
				     (json_int_t)sh->version, "error",
				     sh->up ? NULL : sh->why));
	}
	pthread_mutex_unlock(&c->mu);
	pthread_rwlock_unlock(&c->ids_lock);
	return a;
}

/*
 * The corrector as GET /v1/corrector shows it: the first shard's view of
 * the installed corrector, with the pairs summed over every shard and
 * the refit state of this coordinator (which is the one that refits).
 */
json_t *coord_corrector_json(struct srv_coord *c, struct srv_reply *r)
{
	struct srv_call *calls = calloc(c->n, sizeof *calls);
	json_t *j = NULL;
	uint64_t buffered = 0, total = 0, fresh_rows = 0;
	bool answered = false;
	int bad;

	if (!calls) {
		struct srv_error e;
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		return NULL;
	}
	bad = coord_fan_out(c, NULL, "GET", "/v1/corrector", NULL, NULL, NULL,
			    NULL, 0, 30.0, calls);
	answered = coord_fan_check(c, NULL, bad, calls, r);
	if (answered) {
		for (size_t s = 0; s < c->n; s++) {
			json_t *o = json_loadb(calls[s].body, calls[s].len, 0,
					       NULL);
			json_t *p = json_object_get(o, "pairs");
			buffered += (uint64_t)json_integer_value(
				json_object_get(p, "buffered"));
			total += (uint64_t)json_integer_value(
				json_object_get(p, "total"));
			fresh_rows += (uint64_t)json_integer_value(
				json_object_get(o, "fresh_rows"));
			if (s == 0)
				j = o;
			else
				json_decref(o);
		}
	}
	coord_fan_done(c, calls);
	free(calls);
	if (!j) {
		if (answered) /* 2xx, but not the object it should be */
			coord_reply_unavailable(r, &c->shards[0],
						"GET /v1/corrector: not JSON");
		return NULL;
	}
	json_object_set_new(j, "pairs",
			    json_pack("{s:I,s:I}", "buffered",
				      (json_int_t)buffered, "total",
				      (json_int_t)total));
	json_object_set_new(j, "fresh_rows",
			    json_integer((json_int_t)fresh_rows));
	pthread_mutex_lock(&c->mu);
	json_object_set_new(j, "state",
			    json_string(fresh_refit_state_name(c->state)));
	json_object_set_new(j, "progress", json_real(0.0));
	json_object_set_new(j, "last_refit",
			    c->last.valid ? srv_refit_json(&c->last)
					  : json_null());
	json_object_set_new(j, "refits",
			    json_pack("{s:I,s:I,s:I,s:I}", "started",
				      (json_int_t)c->started, "accepted",
				      (json_int_t)c->accepted, "rejected",
				      (json_int_t)c->rejected, "failed",
				      (json_int_t)c->failed));
	pthread_mutex_unlock(&c->mu);
	json_object_del(j, "last_seq");
	return j;
}

void srv_coord_corrector(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;
	json_t *j;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	j = coord_corrector_json(c, r);
	if (j)
		srv_reply_json(r, 200, j);
}

void srv_coord_info(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;
	json_t *j, *corr;
	size_t targets, dim, fresh_dim;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	corr = coord_corrector_json(c, r);
	if (!corr)
		return;
	pthread_mutex_lock(&c->mu);
	targets = c->targets;
	dim = c->dim;
	fresh_dim = c->fresh_dim;
	pthread_mutex_unlock(&c->mu);
	j = json_pack("{s:I,s:I,s:I,s:o,s:{s:s},s:s,s:b,s:o}", "targets",
		      (json_int_t)targets, "dim", (json_int_t)dim, "fresh_dim",
		      (json_int_t)fresh_dim, "corrector", corr, "index",
		      "source", "shards", "version", FRESHD_VERSION,
		      "coordinator", 1, "shards", shards_json(c));
	srv_reply_json(r, 200, j);
}

void srv_coord_metrics(struct srv_request *req, struct srv_reply *r)
{
	struct srv_server *srv = req->srv;
	struct srv_coord *c = srv->coord;
	struct srv_buf b = SRV_BUF_INIT;

	srv_route_metrics(srv, &b);
	pthread_mutex_lock(&c->mu);
	srv_buf_printf(&b,
		       "# HELP freshd_shard_up Whether a shard answered ready "
		       "at the last probe.\n"
		       "# TYPE freshd_shard_up gauge\n");
	for (size_t s = 0; s < c->n; s++)
		srv_buf_printf(&b, "freshd_shard_up{shard=\"%s\"} %d\n",
			       srv_client_url(c->shards[s].client),
			       c->shards[s].up ? 1 : 0);
	srv_buf_printf(
		&b,
		"# HELP freshd_corrector_version Version of the published "
		"corrector.\n"
		"# TYPE freshd_corrector_version gauge\n"
		"freshd_corrector_version %" PRIu64 "\n"
		"# HELP freshd_refits_total Refits finished, by result.\n"
		"# TYPE freshd_refits_total counter\n"
		"freshd_refits_total{result=\"accepted\"} %" PRIu64 "\n"
		"freshd_refits_total{result=\"rejected\"} %" PRIu64 "\n"
		"freshd_refits_total{result=\"failed\"} %" PRIu64 "\n"
		"# HELP freshd_pairs_buffered Pairs buffered on the shards, "
		"as of their last update answers.\n"
		"# TYPE freshd_pairs_buffered gauge\n",
		c->shards[0].version, c->accepted, c->rejected, c->failed);
	{
		uint64_t buffered = 0;
		for (size_t s = 0; s < c->n; s++)
			buffered += c->shards[s].buffered;
		srv_buf_printf(&b, "freshd_pairs_buffered %" PRIu64 "\n",
			       buffered);
	}
	{
		uint64_t rows = 0;
		for (size_t s = 0; s < c->n; s++)
			rows += c->shards[s].fresh_rows;
		srv_buf_printf(&b,
			       "# HELP freshd_fresh_rows_served Targets the "
			       "shards score by their fresh row, not h(s), as "
			       "of the last probe.\n"
			       "# TYPE freshd_fresh_rows_served gauge\n"
			       "freshd_fresh_rows_served %" PRIu64 "\n",
			       rows);
	}
	pthread_mutex_unlock(&c->mu);
	if (b.failed || !b.data) {
		struct srv_error e;
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
		return;
	}
	srv_reply_text(r, 200, "text/plain; version=0.0.4", b.data, b.len);
	free(b.data);
}

/* ---- forwarded to every shard, or to one ------------------------------ */

/*
 * Calls for a fan-out to every shard (free() them), or NULL after replying
 * 503 when the shards are not all ready (or out of memory).
 */
static struct srv_call *calls_if_ready(struct srv_coord *c, struct srv_reply *r)
{
	struct srv_call *calls;
	struct srv_error e;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return NULL;
	}
	calls = calloc(c->n, sizeof *calls);
	if (!calls) {
		srv_error_from_status(&e, FRESH_NOMEM, NULL);
		srv_reply_error(r, &e);
	}
	return calls;
}

/*
 * Sends the request to every shard under the publish lock's write side
 * (it changes the corrector) and answers with the first shard's answer
 * when every shard agreed.
 */
static void to_all(struct srv_request *req, struct srv_reply *r,
		   const char *method, const char *path, const char *ctype)
{
	struct srv_coord *c = req->srv->coord;
	struct srv_call *calls = calls_if_ready(c, r);
	int bad;

	if (!calls)
		return;
	/* Not between an install's stage and its commit (coord_install.c). */
	pthread_mutex_lock(&c->install_mu);
	pthread_rwlock_wrlock(&c->publish);
	bad = coord_fan_out(c, NULL, method, path, ctype, NULL, NULL, req->body,
			    req->body_len, LONG_TIMEOUT, calls);
	pthread_rwlock_unlock(&c->publish);
	pthread_mutex_unlock(&c->install_mu);
	if (coord_fan_check(c, NULL, bad, calls, r))
		srv_reply_text(r, calls[0].status, "application/json",
			       calls[0].body, calls[0].len);
	coord_fan_done(c, calls);
	free(calls);
	coord_await_round(c); /* the versions the shards now serve */
}

void srv_coord_reset(struct srv_request *req, struct srv_reply *r)
{
	to_all(req, r, "POST", "/v1/corrector/reset",
	       req->body_len ? "application/json" : NULL);
}

void srv_coord_pairs_delete(struct srv_request *req, struct srv_reply *r)
{
	to_all(req, r, "DELETE", "/v1/pairs", NULL);
}

/*
 * Installs on every shard in two phases (coord_install.c): a checkpoint a
 * shard refuses (damaged, another shape, older) changes nothing and gets
 * that shard's answer; searches wait only for the commits.
 */
void srv_coord_checkpoint_put(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;
	struct srv_call *calls = calls_if_ready(c, r);
	struct coord_install in = {0};
	enum coord_install_result res;
	struct srv_error e;

	if (!calls)
		return;
	in.ckpt = req->body;
	in.len = req->body_len;
	in.force = srv_query_flag(req, "force");
	in.version = fresh_engine_checkpoint_version(req->body, req->body_len);
	res = coord_install(c, &in, calls);
	if (res == COORD_INSTALL_CHECK_FAILED) { /* stopping */
		srv_error_from_status(&e, FRESH_CANCELLED, in.why);
		srv_reply_error(r, &e);
	} else if (res != COORD_INSTALL_DONE || in.committed == 0) {
		/* Nothing changed: the first shard's refusal, as it is. */
		if (coord_fan_check(c, NULL, in.bad, calls, r)) {
			srv_fail(&e, 503, "shard_unavailable", "%s", in.why);
			e.retry_after = 1;
			srv_reply_error(r, &e);
		}
	} else if (in.committed < c->n) {
		srv_fail(&e, 503, "shard_unavailable",
			 "version %" PRIu64 " is installed on %zu of %zu "
			 "shards (the others get it when they can take it): %s",
			 in.version, in.committed, c->n, in.why);
		e.retry_after = 1;
		srv_reply_error(r, &e);
	} else {
		srv_reply_json(r, 200,
			       json_pack("{s:I,s:b}", "version",
					 (json_int_t)in.version, "staged",
					 false));
	}
	coord_fan_done(c, calls);
	free(calls);
	coord_await_round(c); /* the versions the shards now serve */
}

/* Proxies a GET to one shard, its answer as it is. */
static void to_one(struct srv_request *req, struct srv_reply *r, size_t s,
		   const char *path)
{
	struct srv_coord *c = req->srv->coord;
	struct srv_call call;
	const char *ctype;

	if (!srv_call(&call, c->shards[s].client, "GET", path, NULL, NULL, 0,
		      CALL_TIMEOUT)) {
		coord_reply_unavailable(r, &c->shards[s], call.error);
	} else if (call.status >= 500) {
		coord_reply_from_shard(r, &c->shards[s], &call);
	} else {
		ctype = call.status == 200 &&
					strcmp(path,
					       "/v1/corrector/checkpoint") == 0
				? "application/octet-stream"
				: "application/json";
		srv_reply_text(r, call.status, ctype, call.body, call.len);
	}
	srv_call_done(&call);
}

void srv_coord_checkpoint_get(struct srv_request *req, struct srv_reply *r)
{
	if (!coord_is_ready(req->srv->coord)) {
		coord_reply_not_ready(req->srv->coord, r);
		return;
	}
	to_one(req, r, 0, "/v1/corrector/checkpoint");
}

void srv_coord_query_map(struct srv_request *req, struct srv_reply *r)
{
	if (!coord_is_ready(req->srv->coord)) {
		coord_reply_not_ready(req->srv->coord, r);
		return;
	}
	to_one(req, r, 0, "/v1/corrector/query-map");
}

void srv_coord_target(struct srv_request *req, struct srv_reply *r)
{
	struct srv_coord *c = req->srv->coord;
	char path[64];
	int s;

	if (!coord_is_ready(c)) {
		coord_reply_not_ready(c, r);
		return;
	}
	pthread_rwlock_rdlock(&c->ids_lock);
	s = coord_owner_locked(c, req->target_id);
	pthread_rwlock_unlock(&c->ids_lock);
	if (s < 0) {
		struct srv_error e;
		srv_fail(&e, 404, "not_found", "unknown target id %" PRIu64,
			 req->target_id);
		srv_reply_error(r, &e);
		return;
	}
	snprintf(path, sizeof path, "/v1/targets/%" PRIu64, req->target_id);
	to_one(req, r, (size_t)s, path);
}

void srv_coord_reload(struct srv_request *req, struct srv_reply *r)
{
	struct srv_error e;

	(void)req;
	srv_fail(&e, 409, "conflict",
		 "a coordinator holds no index: re-embed by restarting each "
		 "shard on its new part (same ids), then POST "
		 "/v1/corrector/reset here");
	srv_reply_error(r, &e);
}
